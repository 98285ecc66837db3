using System.IO.MemoryMappedFiles;

namespace GemmaGen;

/// <summary>
/// A checkpoint file mapped read-only into memory, whole: what <see cref="SafetensorsFile"/> and <see cref="GgufFile"/>
/// read their headers and tensors from. Opening refuses special files (<see cref="CheckpointFiles.RequireRegularFile"/>)
/// and files too short to hold their format's first field.
/// </summary>
internal sealed unsafe class MappedFile : IDisposable
{
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
