using System.Runtime.CompilerServices;

namespace GemmaGen.Kernels;

/// <summary>A block format laid out as <see cref="QuantizedLayout"/> describes: what code that is not specialized
/// per block type needs to know of it.</summary>
internal abstract unsafe class QuantizedFormat(string name, int quantBytes, bool inputsPer16)
    : WeightFormat(name, QuantizedLayout.BlockSize, QuantizedLayout.GroupRows)
{
    /// <summary>
    /// How the prefill (<see cref="WeightFormat.MatMulRows"/>) rounds its inputs to int8 where the CPU runs the integer
    /// kernels (<see cref="IntegerMatMulSupported"/>). False (GemmaGen's own formats): per block of 32, every batch, as
    /// llama.cpp does. True (GGUF's blocks as stored): per 16 values, each half block with its own input scale, and
    /// only batches of <see cref="WeightFormat.ByteTokensFrom"/> tokens or more; smaller ones run the decode kernel's
    /// int16 products (<see cref="QuantizedMatVec.TokenRows{TBlock}"/>), as exact as decoding. Where the integer
    /// kernels do not run, every batch takes the int16 products. A matrix with int8 activations
    /// (<see cref="DecodeActivations.Int8"/>, Q4_0 blocks) rounds per 16 in every batch and in decoding instead.
    /// </summary>
    public bool InputsPer16 { get; } = inputsPer16;

    public override bool RoundsPrefillInputs => IntegerMatMulSupported;

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

    /// <summary>Whether <see cref="QuantizedMatMul"/> rounds <paramref name="matrix"/>'s inputs per 16 values (and runs
    /// its AVX2 kernels): GGUF's blocks as stored (<see cref="InputsPer16"/>), or int8 activations
    /// (<see cref="DecodeActivations.Int8"/>) where the CPU runs them for the format.</summary>
    internal abstract bool RoundsPer16(WeightMatrix matrix);

    /// <summary><see cref="QuantizedMatVec.TokenRows{TBlock}"/> over rows [start, end): the int16 products of decoding,
    /// for every token (what <see cref="WeightFormat.MatMulRows"/> runs where it does not round the inputs to int8).</summary>
    internal abstract void TokenRows(WeightMatrix matrix, float* x, int xStride, int tokens, float* y, int yStride, int start, int end);
}

/// <summary>
/// The block format of <typeparamref name="TBlock"/>: the group layout, row quantization and the kernels, shared by
/// every block type and specialized for each.
/// </summary>
/// <param name="name">The format's name.</param>
/// <param name="inputsPer16">Whether the prefill rounds its inputs to int8 per 16 values from
/// <see cref="WeightFormat.ByteTokensFrom"/> tokens, else per 32 in every batch (<see cref="QuantizedFormat.InputsPer16"/>).</param>
internal sealed unsafe class QuantizedFormat<TBlock>(string name, bool inputsPer16) : QuantizedFormat(name, TBlock.QuantBytes, inputsPer16)
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

    /// <summary>Whether <paramref name="matrix"/>'s products round activations to int8 per 16 everywhere
    /// (<see cref="DecodeActivations.Int8"/>, where this CPU runs the byte products of the block type).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool ByteActivations(WeightMatrix matrix) =>
        matrix.DecodeActivations == DecodeActivations.Int8 && QuantizedMatMul.ByteActivationsSupported<TBlock>();

    internal override bool RoundsPer16(WeightMatrix matrix) => InputsPer16 || ByteActivations(matrix);

    /// <summary>The int16 matrix-vector kernel, or with int8 activations the batched kernel for one token (the same
    /// floats as that token in any batch).</summary>
    internal override void MatVecRows(WeightMatrix matrix, float* x, float* y, int start, int end)
    {
        if (ByteActivations(matrix)) QuantizedMatMul.Rows<TBlock>(matrix, x, matrix.Cols, 1, y, 0, start, end, vnni: false);
        else QuantizedMatVec.Rows<TBlock>(matrix, x, y, start, end);
    }

    internal override void GateUpRows(WeightMatrix matrix, float* x, float* y, int start, int end)
    {
        if (ByteActivations(matrix)) QuantizedMatMul.GateUpRow<TBlock>(matrix, x, y, start, end);
        else QuantizedMatVec.GateUpRows<TBlock>(matrix, x, y, start, end);
    }

    /// <summary>The int8 kernels where the CPU runs them and the batch is large enough for the format
    /// (<see cref="QuantizedFormat.InputsPer16"/>), else the matrix-vector kernel's int16 products for every token
    /// (<see cref="QuantizedMatVec.TokenRows{TBlock}"/>: as exact as decoding). With int8 activations
    /// (<see cref="DecodeActivations.Int8"/>) every batch rounds per 16, as decoding then does. Per-16 inputs run the
    /// AVX2 kernels (<see cref="QuantizedMatMul"/>) on AVX-VNNI CPUs too.</summary>
    internal override void MatMulRows(WeightMatrix matrix, float* x, int xStride, int tokens, float* y, int yStride, int start, int end)
    {
        if (ByteActivations(matrix))
            QuantizedMatMul.Rows<TBlock>(matrix, x, xStride, tokens, y, yStride, start, end, vnni: false);
        else if (IntegerMatMulSupported && (!InputsPer16 || tokens >= ByteTokensFrom))
            QuantizedMatMul.Rows<TBlock>(matrix, x, xStride, tokens, y, yStride, start, end, AvxVnniSupported && !InputsPer16);
        else QuantizedMatVec.TokenRows<TBlock>(matrix, x, xStride, tokens, y, yStride, start, end);
    }

    internal override void TokenRows(WeightMatrix matrix, float* x, int xStride, int tokens, float* y, int yStride, int start, int end) =>
        QuantizedMatVec.TokenRows<TBlock>(matrix, x, xStride, tokens, y, yStride, start, end);

    internal override void IntegerMatMulRows(WeightMatrix matrix, float* x, int xStride, int tokens, float* y, int yStride, int start, int end, bool vnni, bool wide) =>
        QuantizedMatMul.Rows<TBlock>(matrix, x, xStride, tokens, y, yStride, start, end, vnni, wide);

    private static bool AvxVnniSupported => System.Runtime.Intrinsics.X86.AvxVnni.IsSupported;
}
