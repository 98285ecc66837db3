namespace GemmaGen.Kernels;

/// <summary>
/// A row-major format of one <typeparamref name="TElements"/> per weight: row r starts at
/// <c>Data + r·Cols·ElementSize</c>. Decode goes through <see cref="ElementMatVec"/>, prefill through
/// <see cref="MatMul.Rows{TW}"/>.
/// </summary>
internal abstract unsafe class ElementFormat<TElements>(string name, TensorDType sourceType) : WeightFormat(name, blockSize: 1, groupRows: 1)
    where TElements : struct, IWeightElements
{
    public override int? ElementSize => TElements.Size;

    public override long ByteLength(int rows, int cols) => (long)rows * cols * TElements.Size;

    internal override bool TryCopyRow(WeightMatrix matrix, int row, TensorDType dtype, ReadOnlySpan<byte> source)
    {
        if (dtype != sourceType) return false;
        source.CopyTo(matrix.RowBytes(row));
        return true;
    }

    internal override void MatVecRows(WeightMatrix matrix, float* x, float* y, int start, int end) =>
        ElementMatVec.Rows<TElements>(matrix.Data, matrix.Cols, x, y, start, end);

    internal override void GateUpRows(WeightMatrix matrix, float* x, float* y, int start, int end) =>
        ElementMatVec.GateUpRows<TElements>(matrix.Data, matrix.Cols, x, y, start, end);

    internal override void MatMulRows(WeightMatrix matrix, float* x, int xStride, int tokens, float* y, int yStride, int start, int end) =>
        MatMul.Rows<TElements>(matrix.Data, matrix.Cols, x, xStride, tokens, y, yStride, start, end);

    /// <summary>Row <paramref name="row"/>'s elements.</summary>
    protected static void* Row(WeightMatrix matrix, int row) => (byte*)matrix.Data + (long)row * matrix.Cols * TElements.Size;
}
