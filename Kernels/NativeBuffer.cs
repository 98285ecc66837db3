using System.Runtime.InteropServices;

namespace GemmaGen.Kernels;

/// <summary>A block of 64-byte aligned native memory (weights are too large and too hot for the GC heap).
/// Blocks of 2 MiB and more are aligned to 2 MiB and, on Linux, advised to use transparent huge pages: streaming
/// gigabytes of weights through 4 KiB pages spends a TLB miss on every page. Freed on <see cref="Dispose"/> or,
/// failing that, by the finalizer.</summary>
public sealed unsafe partial class NativeBuffer : IDisposable
{
    private const long HugePage = 2 << 20;
    private const int MadviseHugePage = 14;

    private void* _pointer;

    /// <summary>Bytes rounded up to the buffer's 64-byte alignment: the size of a piece of a buffer after which the next
    /// piece starts on a cache line (scratch laid out in one buffer, a stack's parts).</summary>
    public static long Align(long bytes) => (bytes + 63) & ~63L;

    /// <summary>Allocates <paramref name="bytes"/> bytes, uninitialized.</summary>
    public NativeBuffer(long bytes)
    {
        if (bytes < 0) throw new ArgumentOutOfRangeException(nameof(bytes));
        ByteLength = bytes;
        bool huge = bytes >= HugePage;
        _pointer = NativeMemory.AlignedAlloc((nuint)Math.Max(bytes, 1), huge ? (nuint)HugePage : 64);
        if (huge && OperatingSystem.IsLinux()) AdviseHugePages(_pointer, bytes);
        if (bytes > 0) GC.AddMemoryPressure(bytes);
    }

    /// <summary>Best effort: where the kernel refuses (no THP support), the memory simply stays in small pages.</summary>
    private static void AdviseHugePages(void* pointer, long bytes)
    {
        try
        {
            _ = Madvise(pointer, (nuint)(bytes / HugePage * HugePage), MadviseHugePage);
        }
        catch (DllNotFoundException)
        {
        }
        catch (EntryPointNotFoundException)
        {
        }
    }

    [LibraryImport("libc", EntryPoint = "madvise")]
    private static partial int Madvise(void* address, nuint length, int advice);

    /// <summary>Size of the block in bytes.</summary>
    public long ByteLength { get; }

    /// <summary>The first byte of the block.</summary>
    /// <exception cref="ObjectDisposedException">The block was freed.</exception>
    public void* Pointer => _pointer != null ? _pointer : throw new ObjectDisposedException(nameof(NativeBuffer));

    /// <summary>The block as elements of <typeparamref name="T"/>.</summary>
    public Span<T> AsSpan<T>() where T : unmanaged => new(Pointer, checked((int)(ByteLength / sizeof(T))));

    /// <summary>Frees the block.</summary>
    public void Dispose()
    {
        Free();
        GC.SuppressFinalize(this);
    }

    /// <summary>Frees a block that was not disposed.</summary>
    ~NativeBuffer() => Free();

    private void Free()
    {
        if (_pointer == null) return;
        NativeMemory.AlignedFree(_pointer);
        _pointer = null;
        if (ByteLength > 0) GC.RemoveMemoryPressure(ByteLength);
    }
}
