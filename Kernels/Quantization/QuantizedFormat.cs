using System.Runtime.CompilerServices;

namespace GemmaGen.Kernels;

/// <summary>A block format laid out as <see cref="QuantizedLayout"/> describes: what code that is not specialized
/// per block type needs to know of it.</summary>
internal abstract unsafe class QuantizedFormat(string name, int quantBytes)
    : WeightFormat(name, QuantizedLayout.BlockSize, QuantizedLayout.PanelRows)
{
    /// <summary>Bytes of quantized values of one row's block.</summary>
    public int QuantBytes { get; } = quantBytes;

    /// <summary>Whether this CPU runs the integer prefill kernels (<see cref="QuantizedMatMul"/>) for the format.</summary>
    public abstract bool IntegerMatMulSupported { get; }

    /// <summary>Bytes of one panel of <see cref="QuantizedLayout.PanelRows"/> rows of <paramref name="cols"/> columns.</summary>
    public long PanelBytes(int cols) => QuantizedLayout.ScaleBytes(cols) + (long)(cols / BlockSize) * PanelRows * QuantBytes;

    /// <summary>The first byte of the panel holding row <paramref name="row"/>.</summary>
    public byte* Panel(WeightMatrix matrix, int row) => (byte*)matrix.Data + row / PanelRows * PanelBytes(matrix.Cols);

    public override long ByteLength(int rows, int cols) => (long)((rows + PanelRows - 1) / PanelRows) * PanelBytes(cols);

    /// <summary>Zeroes the padding of a last panel that is not full.</summary>
    internal override void Initialize(WeightMatrix matrix)
    {
        if (matrix.Rows % PanelRows == 0) return;
        long panel = PanelBytes(matrix.Cols);
        new Span<byte>(Panel(matrix, matrix.Rows), checked((int)panel)).Clear();
    }

    /// <summary><see cref="QuantizedMatMul"/> over rows [start, end): AVX-VNNI when <paramref name="vnni"/>, else
    /// AVX2 byte pairs (for formats whose sums fit them).</summary>
    internal abstract void IntegerMatMulRows(WeightMatrix matrix, float* x, int xStride, int tokens, float* y, int yStride, int start, int end, bool vnni);
}

/// <summary>
/// The block format of <typeparamref name="TBlock"/>: the panel layout, row quantization and the kernels, shared by
/// every block type and specialized for each.
/// </summary>
internal sealed unsafe class QuantizedFormat<TBlock>(string name) : QuantizedFormat(name, TBlock.QuantBytes)
    where TBlock : struct, IQuantizedBlock
{
    public override bool IntegerMatMulSupported => QuantizedMatMul.IsSupported<TBlock>();

    /// <summary>Quantizes the row block by block into its lane of its panel.</summary>
    internal override void WriteRow(WeightMatrix matrix, int row, ReadOnlySpan<float> source)
    {
        byte* quants = RowBlocks(matrix, row, out ushort* scales);
        fixed (float* x = source)
        {
            for (int b = 0; b < source.Length / BlockSize; b++)
                scales[b * PanelRows] = TBlock.Quantize(x + b * BlockSize, quants + b * PanelRows * TBlock.QuantBytes);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal override void ReadRow(WeightMatrix matrix, int row, Span<float> destination)
    {
        byte* quants = RowBlocks(matrix, row, out ushort* scales);
        fixed (float* y = destination)
        {
            for (int b = 0; b < destination.Length / BlockSize; b++)
                TBlock.Dequantize(quants + b * PanelRows * TBlock.QuantBytes, BFloat16.ToSingle(scales[b * PanelRows]), y + b * BlockSize);
        }
    }

    /// <summary>Where row <paramref name="row"/>'s blocks are (its lane of the panel): block b's quants at the returned
    /// pointer + 4b·QuantBytes, its scale at <c>scales[4b]</c>.</summary>
    private byte* RowBlocks(WeightMatrix matrix, int row, out ushort* scales)
    {
        byte* panel = Panel(matrix, row);
        int lane = row % PanelRows;
        scales = (ushort*)panel + lane;
        return panel + QuantizedLayout.ScaleBytes(matrix.Cols) + lane * TBlock.QuantBytes;
    }

    internal override void MatVecRows(WeightMatrix matrix, float* x, float* y, int start, int end) =>
        QuantizedMatVec.Rows<TBlock>(matrix, x, y, start, end);

    internal override void GateUpRows(WeightMatrix matrix, float* x, float* y, int start, int end) =>
        QuantizedMatVec.GateUpRows<TBlock>(matrix, x, y, start, end);

    /// <summary>The integer kernels where the CPU runs them for this format, else the rows dequantized and the float
    /// kernels (<see cref="QuantizedMatVec.FloatMatMulRows"/>).</summary>
    internal override void MatMulRows(WeightMatrix matrix, float* x, int xStride, int tokens, float* y, int yStride, int start, int end)
    {
        if (IntegerMatMulSupported) QuantizedMatMul.Rows<TBlock>(matrix, x, xStride, tokens, y, yStride, start, end, AvxVnniSupported);
        else QuantizedMatVec.FloatMatMulRows(matrix, x, xStride, tokens, y, yStride, start, end);
    }

    internal override void IntegerMatMulRows(WeightMatrix matrix, float* x, int xStride, int tokens, float* y, int yStride, int start, int end, bool vnni) =>
        QuantizedMatMul.Rows<TBlock>(matrix, x, xStride, tokens, y, yStride, start, end, vnni);

    private static bool AvxVnniSupported => System.Runtime.Intrinsics.X86.AvxVnni.IsSupported;
}
