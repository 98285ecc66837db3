namespace GemmaGen.Kernels;

/// <summary>How a weight matrix's elements are stored.</summary>
public enum WeightFormat
{
    /// <summary>IEEE float32.</summary>
    F32,
    /// <summary>bfloat16: the upper 16 bits of a float32 (widened exactly by <c>bits &lt;&lt; 16</c>).</summary>
    BF16,
}

/// <summary>A row-major weight matrix <c>[Rows, Cols]</c> (HF layout <c>[out, in]</c>, <c>y = x·Wᵀ</c>) in native memory.</summary>
public sealed unsafe class WeightMatrix : IDisposable
{
    private readonly NativeBuffer _storage;

    public WeightMatrix(string name, int rows, int cols, WeightFormat format)
    {
        Name = name;
        Rows = rows;
        Cols = cols;
        Format = format;
        _storage = new NativeBuffer((long)rows * cols * ElementSize(format));
    }

    /// <summary>The checkpoint tensor(s) this matrix was made from, for messages.</summary>
    public string Name { get; }

    public int Rows { get; }

    public int Cols { get; }

    public WeightFormat Format { get; }

    /// <summary>First element of row 0; row r starts at <c>Data + r·Cols·ElementSize</c>.</summary>
    public void* Data => _storage.Pointer;

    public long ByteLength => _storage.ByteLength;

    public static int ElementSize(WeightFormat format) => format switch
    {
        WeightFormat.F32 => 4,
        WeightFormat.BF16 => 2,
        _ => throw new ArgumentOutOfRangeException(nameof(format)),
    };

    /// <summary>Row <paramref name="row"/> widened to float32 into <paramref name="destination"/>.</summary>
    public void ReadRow(int row, Span<float> destination)
    {
        if ((uint)row >= (uint)Rows) throw new ArgumentOutOfRangeException(nameof(row));
        if (destination.Length < Cols) throw new ArgumentException("destination is shorter than a row", nameof(destination));
        long offset = (long)row * Cols;
        switch (Format)
        {
            case WeightFormat.F32:
                new ReadOnlySpan<float>((float*)Data + offset, Cols).CopyTo(destination);
                break;
            case WeightFormat.BF16:
                BFloat16.Widen(new ReadOnlySpan<ushort>((ushort*)Data + offset, Cols), destination);
                break;
        }
    }

    /// <summary>Writes float32 values into row <paramref name="row"/>, rounding to the matrix's format.</summary>
    public void WriteRow(int row, ReadOnlySpan<float> source)
    {
        if ((uint)row >= (uint)Rows) throw new ArgumentOutOfRangeException(nameof(row));
        if (source.Length != Cols) throw new ArgumentException("source is not one row long", nameof(source));
        long offset = (long)row * Cols;
        switch (Format)
        {
            case WeightFormat.F32:
                source.CopyTo(new Span<float>((float*)Data + offset, Cols));
                break;
            case WeightFormat.BF16:
                BFloat16.Narrow(source, new Span<ushort>((ushort*)Data + offset, Cols));
                break;
        }
    }

    /// <summary>The raw bytes of row <paramref name="row"/>, in the matrix's format.</summary>
    public Span<byte> RowBytes(int row)
    {
        if ((uint)row >= (uint)Rows) throw new ArgumentOutOfRangeException(nameof(row));
        int size = ElementSize(Format);
        return new Span<byte>((byte*)Data + (long)row * Cols * size, Cols * size);
    }

    public void Dispose() => _storage.Dispose();
}
