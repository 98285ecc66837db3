namespace GemmaGen.Kernels;

/// <summary>
/// A weight matrix <c>[Rows, Cols]</c> (HF layout <c>[out, in]</c>, <c>y = x·Wᵀ</c>) in native memory, laid out and
/// multiplied as its <see cref="WeightFormat"/> says: row-major elements for F32 and BF16; for the quantized formats,
/// blocks of 32 columns in groups of 16 interleaved rows (<see cref="QuantizedLayout"/>).
/// </summary>
public sealed unsafe class WeightMatrix : IDisposable
{
    /// <summary>The memory this matrix owns; null for a part of a stack (<see cref="Stack"/>), which views its stack's.</summary>
    private readonly NativeBuffer? _storage;
    private readonly void* _data;
    private readonly long _byteLength;

    /// <summary>A stack's parts and the row each starts at; empty for any other matrix.</summary>
    private readonly (WeightMatrix Part, int Start)[] _parts = [];

    /// <summary>An uninitialized matrix named <paramref name="name"/> (rows are filled with <see cref="WriteRow"/>).</summary>
    /// <exception cref="ArgumentException">A width that is not a multiple of the <paramref name="format"/>'s block size.</exception>
    public WeightMatrix(string name, int rows, int cols, WeightFormat format)
    {
        ArgumentNullException.ThrowIfNull(format);
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        ArgumentOutOfRangeException.ThrowIfNegative(cols);
        if (!format.CanStore(cols))
            throw new ArgumentException($"{name}: {format} stores blocks of {format.BlockSize} columns; {cols} columns are not a multiple", nameof(cols));
        Name = name;
        Rows = rows;
        Cols = cols;
        Format = format;
        _storage = new NativeBuffer(format.ByteLength(rows, cols));
        _data = _storage.Pointer;
        _byteLength = _storage.ByteLength;
        format.Initialize(this);
    }

    /// <summary>A part of a stack: <paramref name="byteLength"/> bytes of its stack's memory at <paramref name="data"/>.</summary>
    private WeightMatrix(string name, int rows, int cols, WeightFormat format, void* data, long byteLength)
    {
        Name = name;
        Rows = rows;
        Cols = cols;
        Format = format;
        _data = data;
        _byteLength = byteLength;
        format.Initialize(this);
    }

    /// <summary>A stack's memory, its parts (of more than one format) made over it.</summary>
    private WeightMatrix(string name, int cols, IReadOnlyList<(string Name, int Rows, WeightFormat Format)> parts)
    {
        Name = name;
        Cols = cols;
        Format = WeightFormat.Stacked;
        _storage = new NativeBuffer(StackByteLength(cols, parts));
        _data = _storage.Pointer;
        _byteLength = _storage.ByteLength;
        _parts = new (WeightMatrix, int)[parts.Count];
        long offset = 0;
        for (int i = 0; i < parts.Count; i++)
        {
            var (partName, rows, format) = parts[i];
            long bytes = format.ByteLength(rows, cols);
            _parts[i] = (new WeightMatrix(partName, rows, cols, format, (byte*)_data + offset, bytes), Rows);
            Rows += rows;
            offset += NativeBuffer.Align(bytes);
        }
    }

    /// <summary>
    /// A matrix stacked by rows from <paramref name="parts"/> each held in a format of its own: a q/k/v stack whose
    /// checkpoint tensors differ in type (a GGUF <c>*_K_M</c> layer's Q6_K attn_v beside Q4_K q and k) keeps every
    /// part as stored instead of widening them all to one format. Rows are written, read and multiplied through
    /// the part that holds them, each with its format's kernels (<see cref="Parts"/>); one memory holds them all.
    /// Parts that all share one format make an ordinary matrix of that format (their rows one after another).
    /// </summary>
    /// <exception cref="ArgumentException">No parts, or a part's format cannot store <paramref name="cols"/> columns.</exception>
    public static WeightMatrix Stack(string name, int cols, IReadOnlyList<(string Name, int Rows, WeightFormat Format)> parts)
    {
        if (parts.Count == 0) throw new ArgumentException("a stack needs parts", nameof(parts));
        foreach (var (partName, rows, format) in parts)
        {
            ArgumentOutOfRangeException.ThrowIfNegative(rows);
            if (!format.CanStore(cols))
                throw new ArgumentException($"{partName}: {format} stores blocks of {format.BlockSize} columns; {cols} columns are not a multiple", nameof(parts));
        }
        return OneFormat(parts) ? new WeightMatrix(name, parts.Sum(p => p.Rows), cols, parts[0].Format) : new WeightMatrix(name, cols, parts);
    }

    /// <summary>Bytes a <see cref="Stack"/> of <paramref name="parts"/> takes: an ordinary matrix's when they share one
    /// format, else each part's, every part starting on a 64-byte boundary.</summary>
    public static long StackByteLength(int cols, IReadOnlyList<(string Name, int Rows, WeightFormat Format)> parts) =>
        OneFormat(parts) ? parts[0].Format.ByteLength(parts.Sum(p => p.Rows), cols) : parts.Sum(p => NativeBuffer.Align(p.Format.ByteLength(p.Rows, cols)));

    private static bool OneFormat(IReadOnlyList<(string Name, int Rows, WeightFormat Format)> parts) =>
        parts.All(p => p.Format == parts[0].Format);

    /// <summary>The parts of a <see cref="Stack"/> and the first row of each, in order; empty for any other matrix.</summary>
    public IReadOnlyList<(WeightMatrix Part, int Start)> Parts => _parts;

    /// <summary>The part of a stack holding row <paramref name="row"/>, and the row's index in it.</summary>
    internal (WeightMatrix Part, int Row) PartOf(int row)
    {
        int i = _parts.Length - 1;
        while (_parts[i].Start > row) i--;
        return (_parts[i].Part, row - _parts[i].Start);
    }

    /// <summary><see cref="Parts"/> without an enumerator (the kernels walk it on every call).</summary>
    internal ReadOnlySpan<(WeightMatrix Part, int Start)> PartSpan => _parts;

    /// <summary>The checkpoint tensor(s) this matrix was made from, for messages.</summary>
    public string Name { get; }

    /// <summary>Output features: the number of rows.</summary>
    public int Rows { get; }

    /// <summary>Input features: the length of a row.</summary>
    public int Cols { get; }

    /// <summary>How the elements are stored.</summary>
    public WeightFormat Format { get; }

    /// <summary>How the products of decoding (and of batches) round this matrix's activations where its format offers a
    /// choice (<see cref="Kernels.DecodeActivations"/>); set for a whole model by <see cref="ModelWeights.DecodeActivations"/>.
    /// A stack passes it to its parts.</summary>
    public DecodeActivations DecodeActivations
    {
        get;
        set
        {
            field = value;
            foreach (var (part, _) in _parts) part.DecodeActivations = value;
        }
    }

    /// <summary>First byte of the matrix: for F32 and BF16 row r starts at <c>Data + r·Cols·ElementSize</c>; for the
    /// quantized formats group g (rows 16g..16g+15) starts at <c>Data + g·QuantizedLayout.GroupBytes</c>.</summary>
    public void* Data => _data;

    /// <summary>Bytes of weight data held (what one pass over the matrix reads).</summary>
    public long ByteLength => _byteLength;

    /// <summary>Bytes of one element of F32 or BF16. The block formats have none: see <see cref="ByteLengthOf"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A block format.</exception>
    public static int ElementSize(WeightFormat format) =>
        format.ElementSize ?? throw new ArgumentOutOfRangeException(nameof(format), format, "a block format has no element size");

    /// <summary>Bytes a <paramref name="rows"/> × <paramref name="cols"/> matrix of <paramref name="format"/> takes.</summary>
    public static long ByteLengthOf(WeightFormat format, int rows, int cols) => format.ByteLength(rows, cols);

    /// <summary>Whether a matrix of <paramref name="cols"/> columns can be stored in <paramref name="format"/>: always
    /// for F32 and BF16; for the quantized formats when the width is a multiple of 32.</summary>
    public static bool CanStore(WeightFormat format, int cols) => format.CanStore(cols);

    /// <summary>Row <paramref name="row"/> widened (or dequantized) to float32 into <paramref name="destination"/>.</summary>
    public void ReadRow(int row, Span<float> destination)
    {
        if ((uint)row >= (uint)Rows) throw new ArgumentOutOfRangeException(nameof(row));
        if (destination.Length < Cols) throw new ArgumentException("destination is shorter than a row", nameof(destination));
        Format.ReadRow(this, row, destination[..Cols]);
    }

    /// <summary>Writes float32 values into row <paramref name="row"/>, rounding to the matrix's format (for the
    /// quantized formats, quantizing the row: <see cref="QuantizedLayout"/>).</summary>
    public void WriteRow(int row, ReadOnlySpan<float> source)
    {
        if ((uint)row >= (uint)Rows) throw new ArgumentOutOfRangeException(nameof(row));
        if (source.Length != Cols) throw new ArgumentException("source is not one row long", nameof(source));
        Format.WriteRow(this, row, source);
    }

    /// <summary>
    /// Stores row <paramref name="row"/> from a checkpoint row of <paramref name="dtype"/> elements when they are already
    /// the format's encoding (F32 into F32, BF16 into BF16: copied bit for bit); false, with nothing written, otherwise.
    /// </summary>
    public bool TryCopyRow(int row, TensorDType dtype, ReadOnlySpan<byte> source)
    {
        if ((uint)row >= (uint)Rows) throw new ArgumentOutOfRangeException(nameof(row));
        return Format.TryCopyRow(this, row, dtype, source);
    }

    /// <summary>The raw bytes of row <paramref name="row"/> of an F32 or BF16 matrix.</summary>
    /// <exception cref="NotSupportedException">A block format: its rows are not contiguous runs of elements.</exception>
    public Span<byte> RowBytes(int row)
    {
        if ((uint)row >= (uint)Rows) throw new ArgumentOutOfRangeException(nameof(row));
        int size = Format.ElementSize
            ?? throw new NotSupportedException($"{Name}: rows of {Format} are interleaved in groups of {Format.GroupRows}; use ReadRow and WriteRow");
        return new Span<byte>((byte*)Data + (long)row * Cols * size, Cols * size);
    }

    /// <summary>Decode: y[r] = W[r]·x for rows [<paramref name="start"/>, <paramref name="end"/>), with the format's
    /// matrix-vector kernel.</summary>
    public void MatVecRows(float* x, float* y, int start, int end)
    {
        CheckRange(start, end, Rows);
        if (start < end) Format.MatVecRows(this, x, y, start, end);
    }

    /// <summary>Decode: y[i] = gelu_tanh(W[2i]·x)·(W[2i+1]·x) for outputs [<paramref name="start"/>,
    /// <paramref name="end"/>) of an interleaved gate/up matrix (gate row i is row 2i, up row i is row 2i + 1).</summary>
    public void GateUpRows(float* x, float* y, int start, int end)
    {
        CheckRange(start, end, Rows / 2);
        if (start < end) Format.GateUpRows(this, x, y, start, end);
    }

    /// <summary>Prefill: y[t·yStride + r] = W[r]·x[t·xStride ..] for rows [<paramref name="start"/>,
    /// <paramref name="end"/>) and tokens [0, <paramref name="tokens"/>), with the format's matrix-matrix kernel.</summary>
    public void MatMulRows(float* x, int xStride, int tokens, float* y, int yStride, int start, int end)
    {
        CheckRange(start, end, Rows);
        if (start < end && tokens > 0) Format.MatMulRows(this, x, xStride, tokens, y, yStride, start, end);
    }

    /// <summary>Throws unless [<paramref name="start"/>, <paramref name="end"/>) is a range of this matrix's rows (what
    /// every kernel called directly checks first).</summary>
    internal void CheckRows(int start, int end) => CheckRange(start, end, Rows);

    private static void CheckRange(int start, int end, int limit)
    {
        if (start < 0 || end > limit || start > end)
            throw new ArgumentOutOfRangeException(nameof(start), $"rows [{start}, {end}) are not within [0, {limit})");
    }

    /// <summary>Frees the native memory (a stack's, with its parts'; a part's belongs to its stack).</summary>
    public void Dispose() => _storage?.Dispose();
}
