using System.Runtime.CompilerServices;

namespace GemmaGen.Kernels;

/// <summary>A block format laid out as <see cref="QuantizedLayout"/> describes: what code that is not specialized
/// per block type needs to know of it.</summary>
internal abstract unsafe class QuantizedFormat(string name, int quantBytes, bool integerPrefill)
    : WeightFormat(name, QuantizedLayout.BlockSize, QuantizedLayout.GroupRows)
{
    /// <summary>Whether the prefill (<see cref="WeightFormat.MatMulRows"/>) runs the int8 kernels where the CPU has
    /// them (<see cref="IntegerMatMulSupported"/>), rounding the inputs to int8; otherwise it runs the decode kernel's
    /// int16 products for every token (<see cref="QuantizedMatVec.TokenRows{TBlock}"/>), as exact as decoding.</summary>
    public bool IntegerPrefill { get; } = integerPrefill;

    public override bool RoundsPrefillInputs => IntegerPrefill && IntegerMatMulSupported;

    /// <summary>Bytes of quantized values of one row's block.</summary>
    public int QuantBytes { get; } = quantBytes;

    /// <summary>Whether this CPU runs the integer prefill kernels (<see cref="QuantizedMatMul"/>) for the format.</summary>
    public abstract bool IntegerMatMulSupported { get; }

    /// <summary>Bytes of one block's record: a 4-byte chunk of each of the group's rows per 64-byte vector.</summary>
    public int RecordBytes => QuantBytes * QuantizedLayout.GroupRows;

    /// <summary>Bytes of one group of <see cref="QuantizedLayout.GroupRows"/> rows of <paramref name="cols"/> columns.</summary>
    public long GroupBytes(int cols) => QuantizedLayout.ScaleBytes(cols) + (long)(cols / BlockSize) * RecordBytes;

    /// <summary>The first byte of the group holding row <paramref name="row"/>.</summary>
    public byte* Group(WeightMatrix matrix, int row) => (byte*)matrix.Data + row / GroupRows * GroupBytes(matrix.Cols);

    public override long ByteLength(int rows, int cols) => (long)((rows + GroupRows - 1) / GroupRows) * GroupBytes(cols);

    /// <summary>Zeroes a last group that is not full (its padding rows have zero scales).</summary>
    internal override void Initialize(WeightMatrix matrix)
    {
        if (matrix.Rows % GroupRows == 0) return;
        long group = GroupBytes(matrix.Cols);
        new Span<byte>(Group(matrix, matrix.Rows), checked((int)group)).Clear();
    }

    /// <summary><see cref="QuantizedMatMul"/> over rows [start, end): AVX-VNNI when <paramref name="vnni"/>, else
    /// AVX2 byte pairs (for formats whose sums fit them); the scaling 512-bit when <paramref name="wide"/>.</summary>
    internal abstract void IntegerMatMulRows(WeightMatrix matrix, float* x, int xStride, int tokens, float* y, int yStride, int start, int end, bool vnni, bool wide);

    /// <summary><see cref="QuantizedMatVec.TokenRows{TBlock}"/> over rows [start, end): the int16 products of decoding,
    /// for every token (what <see cref="WeightFormat.MatMulRows"/> runs where it does not round the inputs to int8).</summary>
    internal abstract void TokenRows(WeightMatrix matrix, float* x, int xStride, int tokens, float* y, int yStride, int start, int end);
}

/// <summary>
/// The block format of <typeparamref name="TBlock"/>: the group layout, row quantization and the kernels, shared by
/// every block type and specialized for each.
/// </summary>
/// <param name="name">The format's name.</param>
/// <param name="integerPrefill">Whether the prefill rounds its inputs to int8 for the integer kernels
/// (<see cref="QuantizedFormat.IntegerPrefill"/>).</param>
internal sealed unsafe class QuantizedFormat<TBlock>(string name, bool integerPrefill) : QuantizedFormat(name, TBlock.QuantBytes, integerPrefill)
    where TBlock : struct, IQuantizedBlock
{
    public override bool IntegerMatMulSupported => QuantizedMatMul.IsSupported<TBlock>();

    internal override TensorDType? SourceType => TBlock.SourceType;

    /// <summary>Quantizes the row block by block and stores each block's 4-byte chunks in its lane of the group's
    /// record.</summary>
    internal override void WriteRow(WeightMatrix matrix, int row, ReadOnlySpan<float> source)
    {
        byte* quants = RowBlocks(matrix, row, out ushort* scales);
        byte* block = stackalloc byte[BlockSize];
        fixed (float* x = source)
        {
            for (int b = 0; b < source.Length / BlockSize; b++)
            {
                scales[b * GroupRows] = TBlock.Quantize(x + b * BlockSize, block);
                StoreBlock(quants + (long)b * RecordBytes, block);
            }
        }
    }

    /// <summary>A checkpoint row of <typeparamref name="TBlock"/>'s source encoding (<see cref="IQuantizedBlock.SourceType"/>,
    /// GGUF's blocks): each block's scale bits and values stored as they are (<see cref="IQuantizedBlock.CopyBlock"/>),
    /// nothing rounded.</summary>
    internal override bool TryCopyRow(WeightMatrix matrix, int row, TensorDType dtype, ReadOnlySpan<byte> source)
    {
        if (TBlock.SourceType != dtype) return false;
        int blocks = matrix.Cols / BlockSize, sourceBlock = TensorView.BlockBytes(dtype);
        if (source.Length != (long)blocks * sourceBlock)
            throw new ArgumentException($"{source.Length} bytes are not one row of {matrix.Cols} {dtype} values", nameof(source));
        byte* quants = RowBlocks(matrix, row, out ushort* scales);
        byte* block = stackalloc byte[BlockSize];
        fixed (byte* s = source)
        {
            for (int b = 0; b < blocks; b++)
            {
                scales[b * GroupRows] = TBlock.CopyBlock(s + (long)b * sourceBlock, block);
                StoreBlock(quants + (long)b * RecordBytes, block);
            }
        }
        return true;
    }

    /// <summary>A row's block (<see cref="IQuantizedBlock.QuantBytes"/> bytes) into its lane of the record: chunk c
    /// at vector c.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreBlock(byte* record, byte* block)
    {
        for (int c = 0; c < TBlock.QuantBytes / 4; c++) *(uint*)(record + c * QuantizedLayout.VectorBytes) = *(uint*)(block + 4 * c);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal override void ReadRow(WeightMatrix matrix, int row, Span<float> destination)
    {
        byte* quants = RowBlocks(matrix, row, out ushort* scales);
        byte* block = stackalloc byte[BlockSize];
        fixed (float* y = destination)
        {
            for (int b = 0; b < destination.Length / BlockSize; b++)
            {
                byte* record = quants + (long)b * RecordBytes;
                for (int c = 0; c < TBlock.QuantBytes / 4; c++) *(uint*)(block + 4 * c) = *(uint*)(record + c * QuantizedLayout.VectorBytes);
                TBlock.Dequantize(block, TBlock.Scale(scales[b * GroupRows]), y + b * BlockSize);
            }
        }
    }

    /// <summary>Where row <paramref name="row"/>'s blocks are (its lane of the group): block b's chunk c at the
    /// returned pointer + b·RecordBytes + 64c, its scale at <c>scales[16b]</c>.</summary>
    private byte* RowBlocks(WeightMatrix matrix, int row, out ushort* scales)
    {
        byte* group = Group(matrix, row);
        int lane = row % GroupRows;
        scales = (ushort*)group + lane;
        return group + QuantizedLayout.ScaleBytes(matrix.Cols) + lane * 4;
    }

    internal override void MatVecRows(WeightMatrix matrix, float* x, float* y, int start, int end) =>
        QuantizedMatVec.Rows<TBlock>(matrix, x, y, start, end);

    internal override void GateUpRows(WeightMatrix matrix, float* x, float* y, int start, int end) =>
        QuantizedMatVec.GateUpRows<TBlock>(matrix, x, y, start, end);

    /// <summary>The int8 kernels where the format uses them (<see cref="QuantizedFormat.IntegerPrefill"/>) and the
    /// CPU runs them, else the matrix-vector kernel's int16 products for every token (<see cref="QuantizedMatVec.TokenRows{TBlock}"/>:
    /// as exact as decoding).</summary>
    internal override void MatMulRows(WeightMatrix matrix, float* x, int xStride, int tokens, float* y, int yStride, int start, int end)
    {
        if (IntegerPrefill && IntegerMatMulSupported) QuantizedMatMul.Rows<TBlock>(matrix, x, xStride, tokens, y, yStride, start, end, AvxVnniSupported);
        else QuantizedMatVec.TokenRows<TBlock>(matrix, x, xStride, tokens, y, yStride, start, end);
    }

    internal override void TokenRows(WeightMatrix matrix, float* x, int xStride, int tokens, float* y, int yStride, int start, int end) =>
        QuantizedMatVec.TokenRows<TBlock>(matrix, x, xStride, tokens, y, yStride, start, end);

    internal override void IntegerMatMulRows(WeightMatrix matrix, float* x, int xStride, int tokens, float* y, int yStride, int start, int end, bool vnni, bool wide) =>
        QuantizedMatMul.Rows<TBlock>(matrix, x, xStride, tokens, y, yStride, start, end, vnni, wide);

    private static bool AvxVnniSupported => System.Runtime.Intrinsics.X86.AvxVnni.IsSupported;
}
