namespace GemmaGen.Kernels;

/// <summary>How a weight matrix's elements are stored.</summary>
public enum WeightFormat
{
    /// <summary>IEEE float32.</summary>
    F32,
    /// <summary>bfloat16: the upper 16 bits of a float32 (widened exactly by <c>bits &lt;&lt; 16</c>).</summary>
    BF16,
    /// <summary>Blocks of 32 int8 values and a bf16 scale, 1.0625 bytes per weight, rows interleaved in panels of 4
    /// (see <see cref="QuantizedLayout"/>). Quantized when rows are written; the width must be a multiple of 32.</summary>
    Q8_0,
    /// <summary>Blocks of 32 four-bit values (offset 8) and a bf16 scale, 0.5625 bytes per weight, rows interleaved in
    /// panels of 4 (see <see cref="QuantizedLayout"/>). Quantized when rows are written; the width must be a multiple
    /// of 32.</summary>
    Q4_0,
}

/// <summary>
/// A weight matrix <c>[Rows, Cols]</c> (HF layout <c>[out, in]</c>, <c>y = x·Wᵀ</c>) in native memory: row-major
/// elements for F32 and BF16; for the quantized formats, blocks of 32 columns in panels of 4 interleaved rows
/// (<see cref="QuantizedLayout"/>).
/// </summary>
public sealed unsafe class WeightMatrix : IDisposable
{
    private readonly NativeBuffer _storage;

    /// <summary>An uninitialized matrix named <paramref name="name"/> (rows are filled with <see cref="WriteRow"/>).</summary>
    /// <exception cref="ArgumentException">A quantized <paramref name="format"/> with a width that is not a multiple of 32.</exception>
    public WeightMatrix(string name, int rows, int cols, WeightFormat format)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        ArgumentOutOfRangeException.ThrowIfNegative(cols);
        if (!CanStore(format, cols))
            throw new ArgumentException($"{name}: {format} stores blocks of {QuantizedLayout.BlockSize} columns; {cols} columns are not a multiple", nameof(cols));
        Name = name;
        Rows = rows;
        Cols = cols;
        Format = format;
        _storage = new NativeBuffer(ByteLengthOf(format, rows, cols));
        if (QuantizedLayout.IsQuantized(format) && rows % QuantizedLayout.PanelRows != 0)
        {
            long panel = QuantizedLayout.PanelBytes(format, cols);
            new Span<byte>((byte*)Data + (rows / QuantizedLayout.PanelRows) * panel, checked((int)panel)).Clear();
        }
    }

    /// <summary>The checkpoint tensor(s) this matrix was made from, for messages.</summary>
    public string Name { get; }

    /// <summary>Output features: the number of rows.</summary>
    public int Rows { get; }

    /// <summary>Input features: the length of a row.</summary>
    public int Cols { get; }

    /// <summary>How the elements are stored.</summary>
    public WeightFormat Format { get; }

    /// <summary>First byte of the matrix: for F32 and BF16 row r starts at <c>Data + r·Cols·ElementSize</c>; for the
    /// quantized formats panel p (rows 4p..4p+3) starts at <c>Data + p·QuantizedLayout.PanelBytes</c>.</summary>
    public void* Data => _storage.Pointer;

    /// <summary>Bytes of weight data held (what one pass over the matrix reads).</summary>
    public long ByteLength => _storage.ByteLength;

    /// <summary>Bytes of one element of F32 or BF16. The block formats have none: see <see cref="ByteLengthOf"/>.</summary>
    public static int ElementSize(WeightFormat format) => format switch
    {
        WeightFormat.F32 => 4,
        WeightFormat.BF16 => 2,
        _ => throw new ArgumentOutOfRangeException(nameof(format), format, "a block format has no element size"),
    };

    /// <summary>Bytes a <paramref name="rows"/> × <paramref name="cols"/> matrix of <paramref name="format"/> takes.</summary>
    public static long ByteLengthOf(WeightFormat format, int rows, int cols) =>
        QuantizedLayout.IsQuantized(format) ? QuantizedLayout.MatrixBytes(format, rows, cols) : (long)rows * cols * ElementSize(format);

    /// <summary>Whether a matrix of <paramref name="cols"/> columns can be stored in <paramref name="format"/>: always
    /// for F32 and BF16; for the quantized formats when the width is a multiple of 32.</summary>
    public static bool CanStore(WeightFormat format, int cols) =>
        !QuantizedLayout.IsQuantized(format) || cols % QuantizedLayout.BlockSize == 0;

    /// <summary>Row <paramref name="row"/> widened (or dequantized) to float32 into <paramref name="destination"/>.</summary>
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
            default:
                QuantizedLayout.DequantizeRow(Format, Panel(row), row % QuantizedLayout.PanelRows, destination[..Cols]);
                break;
        }
    }

    /// <summary>Writes float32 values into row <paramref name="row"/>, rounding to the matrix's format (for the
    /// quantized formats, quantizing the row: <see cref="QuantizedLayout.QuantizeRow"/>).</summary>
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
            default:
                QuantizedLayout.QuantizeRow(Format, source, Panel(row), row % QuantizedLayout.PanelRows);
                break;
        }
    }

    /// <summary>The raw bytes of row <paramref name="row"/> of an F32 or BF16 matrix.</summary>
    /// <exception cref="NotSupportedException">A quantized matrix: its rows are interleaved, not contiguous.</exception>
    public Span<byte> RowBytes(int row)
    {
        if ((uint)row >= (uint)Rows) throw new ArgumentOutOfRangeException(nameof(row));
        if (QuantizedLayout.IsQuantized(Format))
            throw new NotSupportedException($"{Name}: rows of {Format} are interleaved in panels of {QuantizedLayout.PanelRows}; use ReadRow and WriteRow");
        int size = ElementSize(Format);
        return new Span<byte>((byte*)Data + (long)row * Cols * size, Cols * size);
    }

    private byte* Panel(int row) => (byte*)Data + row / QuantizedLayout.PanelRows * QuantizedLayout.PanelBytes(Format, Cols);

    /// <summary>Frees the native memory.</summary>
    public void Dispose() => _storage.Dispose();
}
