namespace GemmaGen.Kernels;

/// <summary>
/// GGUF's K-quant tensors as stored: ggml's super-blocks of 256 values (<typeparamref name="TBlock"/>,
/// <see cref="KQuantBlocks"/>) copied block for block, rows one after another (row r at <c>Data + r·(Cols/256)·block
/// bytes</c>), nothing rounded. Decode runs on integer dot products (<see cref="KQuantMatVec"/>), and so do batches of
/// fewer than <see cref="IntegerTokensBelow"/> tokens (a step of several sequences, a short prompt), with the inputs
/// rounded to int16 as decoding rounds them; a larger batch dequantizes the rows (exactly) and multiplies them with
/// the float inputs (<see cref="QuantizedMatVec.FloatMatMulRows"/>).
/// The width must be a multiple of 256.
/// </summary>
/// <param name="name">The format's name.</param>
internal sealed unsafe class KQuantFormat<TBlock>(string name) : WeightFormat(name, KQuantBlocks.BlockSize, groupRows: 1)
    where TBlock : struct, IKQuantBlock
{
    internal override TensorDType? SourceType => TBlock.SourceType;

    public override long ByteLength(int rows, int cols) => (long)rows * (cols / BlockSize) * TBlock.BlockBytes;

    /// <summary>Row <paramref name="row"/>'s first super-block.</summary>
    private static byte* Row(WeightMatrix matrix, int row) => (byte*)matrix.Data + (long)row * (matrix.Cols / KQuantBlocks.BlockSize) * TBlock.BlockBytes;

    /// <summary>Quantizes the row super-block by super-block (<see cref="IKQuantBlock.Quantize"/>: a simple quantizer,
    /// not ggml's).</summary>
    internal override void WriteRow(WeightMatrix matrix, int row, ReadOnlySpan<float> source)
    {
        byte* blocks = Row(matrix, row);
        fixed (float* x = source)
        {
            for (int b = 0; b < source.Length / BlockSize; b++) TBlock.Quantize(x + b * BlockSize, blocks + (long)b * TBlock.BlockBytes);
        }
    }

    /// <summary>A GGUF row of <typeparamref name="TBlock"/>'s encoding: its bytes, as they are.</summary>
    internal override bool TryCopyRow(WeightMatrix matrix, int row, TensorDType dtype, ReadOnlySpan<byte> source)
    {
        if (dtype != TBlock.SourceType) return false;
        long bytes = (long)(matrix.Cols / BlockSize) * TBlock.BlockBytes;
        if (source.Length != bytes)
            throw new ArgumentException($"{source.Length} bytes are not one row of {matrix.Cols} {dtype} values ({bytes} bytes)", nameof(source));
        source.CopyTo(new Span<byte>(Row(matrix, row), source.Length));
        return true;
    }

    internal override void ReadRow(WeightMatrix matrix, int row, Span<float> destination)
    {
        fixed (float* y = destination) KQuantBlocks.Dequantize<TBlock>(Row(matrix, row), destination.Length / BlockSize, y);
    }

    internal override void MatVecRows(WeightMatrix matrix, float* x, float* y, int start, int end) =>
        KQuantMatVec.Rows<TBlock>(matrix, x, y, start, end);

    /// <summary>Batches of fewer tokens than this run the integer kernel (<see cref="KQuantMatVec.TokenRows{TBlock}"/>),
    /// larger ones the dequantized rows and the float kernel. Measured on an AMD EPYC Zen 3 (AVX2), one thread, a 2B-wide
    /// Q4_K matrix: the integer kernel 2.3x the float one at 8 tokens, 1.5–1.8x at 16, 1.1x at 32, even at 64; whole
    /// 2B, 64-token prefill 0.93x; 8 sequences decoding together 1.75–2.4x.</summary>
    internal const int IntegerTokensBelow = 64;

    internal override void MatMulRows(WeightMatrix matrix, float* x, int xStride, int tokens, float* y, int yStride, int start, int end)
    {
        if (KQuantMatVec.TokensSupported && tokens < IntegerTokensBelow) KQuantMatVec.TokenRows<TBlock>(matrix, x, xStride, tokens, y, yStride, start, end);
        else QuantizedMatVec.FloatMatMulRows(matrix, x, xStride, tokens, y, yStride, start, end);
    }
}
