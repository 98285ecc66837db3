using System.Runtime.InteropServices;

namespace GemmaGen.Kernels;

/// <summary>A block of 64-byte aligned native memory (weights are too large and too hot for the GC heap).
/// Freed on <see cref="Dispose"/> or, failing that, by the finalizer.</summary>
public sealed unsafe class NativeBuffer : IDisposable
{
    private void* _pointer;

    public NativeBuffer(long bytes)
    {
        if (bytes < 0) throw new ArgumentOutOfRangeException(nameof(bytes));
        ByteLength = bytes;
        _pointer = NativeMemory.AlignedAlloc((nuint)Math.Max(bytes, 1), 64);
        if (bytes > 0) GC.AddMemoryPressure(bytes);
    }

    public long ByteLength { get; }

    public void* Pointer => _pointer != null ? _pointer : throw new ObjectDisposedException(nameof(NativeBuffer));

    public Span<T> AsSpan<T>() where T : unmanaged => new(Pointer, checked((int)(ByteLength / sizeof(T))));

    public void Dispose()
    {
        Free();
        GC.SuppressFinalize(this);
    }

    ~NativeBuffer() => Free();

    private void Free()
    {
        if (_pointer == null) return;
        NativeMemory.AlignedFree(_pointer);
        _pointer = null;
        if (ByteLength > 0) GC.RemoveMemoryPressure(ByteLength);
    }
}
