using System.IO.MemoryMappedFiles;
using System.Runtime.InteropServices;

namespace GemmaGen;

/// <summary>
/// A checkpoint file mapped read-only into memory, whole: what <see cref="SafetensorsFile"/> and <see cref="GgufFile"/>
/// read their headers and tensors from. Opening refuses special files (<see cref="CheckpointFiles.RequireRegularFile"/>)
/// and files too short to hold their format's first field. A page the caller is done with can be given back
/// (<see cref="ReleasePages"/>): loading copies every tensor into the engine's own buffers, and without that every page
/// read would stay in the process beside the copy, the file's size again.
/// </summary>
internal sealed unsafe partial class MappedFile : IDisposable
{
    /// <summary>Linux's <c>MADV_DONTNEED</c>: unmap the pages; on a file mapping the next read faults them in again from
    /// the page cache (or the file).</summary>
    private const int MadviseDontNeed = 4;

    private readonly MemoryMappedFile _map;
    private readonly MemoryMappedViewAccessor _view;

    private MappedFile(MemoryMappedFile map, MemoryMappedViewAccessor view, byte* start, long length)
    {
        _map = map;
        _view = view;
        Start = start;
        Length = length;
    }

    /// <summary>The first byte of the file.</summary>
    public byte* Start { get; private set; }

    /// <summary>The file's length in bytes.</summary>
    public long Length { get; }

    /// <summary>Maps <paramref name="path"/>.</summary>
    /// <param name="path">The file.</param>
    /// <param name="kind">What the file is, for messages: <c>safetensors file</c>.</param>
    /// <param name="minimumLength">Bytes the format's first field takes.</param>
    /// <param name="firstField">That field, for the message: <c>the 8-byte header length a safetensors file starts with</c>.</param>
    /// <exception cref="CheckpointException">The file is a special file, cannot be opened, or is shorter than
    /// <paramref name="minimumLength"/>.</exception>
    public static MappedFile Open(string path, string kind, long minimumLength, string firstField)
    {
        if (File.Exists(path)) CheckpointFiles.RequireRegularFile(path, message => new CheckpointException(message));
        FileStream stream;
        try
        {
            stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CheckpointException($"{path}: cannot open the {kind}: {e.Message}", e);
        }

        MemoryMappedFile? map = null;
        MemoryMappedViewAccessor? view = null;
        bool pointerAcquired = false;
        try
        {
            long length = stream.Length;
            if (length < minimumLength)
                throw new CheckpointException($"{path}: file is {length} bytes, shorter than {firstField}");
            map = MemoryMappedFile.CreateFromFile(stream, null, 0, MemoryMappedFileAccess.Read, HandleInheritability.None, leaveOpen: false);
            view = map.CreateViewAccessor(0, length, MemoryMappedFileAccess.Read);
            byte* start = null;
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref start);
            pointerAcquired = true;
            return new MappedFile(map, view, start + view.PointerOffset, length);
        }
        catch
        {
            if (pointerAcquired) view!.SafeMemoryMappedViewHandle.ReleasePointer();
            view?.Dispose();
            map?.Dispose();
            stream.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Gives back the pages of [<paramref name="data"/>, data + <paramref name="length"/>) the caller is done with: on
    /// Linux the whole pages inside the range (<see cref="Environment.SystemPageSize"/> bytes each) leave the process
    /// (<c>madvise(MADV_DONTNEED)</c>), so a page the range shares with a neighbouring tensor is never dropped. The
    /// bytes stay readable: the mapping is read-only, so a later read faults the page in again, unchanged, from the
    /// page cache. The pages stay in the page cache (reclaimable, not this process's resident memory). Elsewhere, and
    /// where the call is refused, it does nothing.
    /// </summary>
    /// <param name="data">The first byte of the range, inside the mapping.</param>
    /// <param name="length">Bytes in the range.</param>
    /// <returns>Bytes given back: the whole pages inside the range; 0 when there are none, off Linux, or when the
    /// kernel refused.</returns>
    /// <exception cref="ObjectDisposedException">The file was unmapped.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The range does not lie inside the mapping: advising pages of
    /// another mapping could discard memory that is not a file's.</exception>
    public long ReleasePages(byte* data, long length)
    {
        ObjectDisposedException.ThrowIf(Start == null, this);
        if (length < 0 || data < Start || data - Start > Length - length)
            throw new ArgumentOutOfRangeException(nameof(length), length, $"bytes [{(long)(data - Start)}, {(long)(data - Start) + length}) do not lie inside the {Length}-byte mapping");
        long page = Environment.SystemPageSize;
        long first = ((long)data + page - 1) & -page, end = ((long)data + length) & -page;
        if (end <= first || !OperatingSystem.IsLinux()) return 0;
        try
        {
            return Madvise((void*)first, (nuint)(end - first), MadviseDontNeed) == 0 ? end - first : 0;
        }
        catch (DllNotFoundException)
        {
            return 0;
        }
        catch (EntryPointNotFoundException)
        {
            return 0;
        }
    }

    [LibraryImport("libc", EntryPoint = "madvise")]
    private static partial int Madvise(void* address, nuint length, int advice);

    /// <summary>Unmaps the file; pointers into it become invalid.</summary>
    public void Dispose()
    {
        if (Start == null) return;
        Start = null;
        _view.SafeMemoryMappedViewHandle.ReleasePointer();
        _view.Dispose();
        _map.Dispose();
    }
}
