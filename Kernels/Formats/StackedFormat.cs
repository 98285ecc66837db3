namespace GemmaGen.Kernels;

/// <summary>
/// The format of a <see cref="WeightMatrix.Stack"/>: rows stacked from parts that keep formats of their own. Every
/// row is written and read through the part holding it, and a range of rows is multiplied part by part, each with
/// its own format's kernels (the parts' outputs land at their rows of the stack). Interleaved stacks (gate/up) are not
/// made of parts: the loader holds them in one format.
/// </summary>
internal sealed unsafe class StackedFormat() : WeightFormat("stacked", blockSize: 1, groupRows: QuantizedLayout.GroupRows)
{
    /// <summary>A stack's bytes are its parts' (<see cref="WeightMatrix.StackByteLength"/>), not a function of its shape.</summary>
    public override long ByteLength(int rows, int cols) =>
        throw new NotSupportedException("a stack's bytes are its parts' (WeightMatrix.StackByteLength)");

    internal override void WriteRow(WeightMatrix matrix, int row, ReadOnlySpan<float> source)
    {
        var (part, local) = matrix.PartOf(row);
        part.WriteRow(local, source);
    }

    internal override bool TryCopyRow(WeightMatrix matrix, int row, TensorDType dtype, ReadOnlySpan<byte> source)
    {
        var (part, local) = matrix.PartOf(row);
        return part.TryCopyRow(local, dtype, source);
    }

    internal override void ReadRow(WeightMatrix matrix, int row, Span<float> destination)
    {
        var (part, local) = matrix.PartOf(row);
        part.ReadRow(local, destination);
    }

    internal override void MatVecRows(WeightMatrix matrix, float* x, float* y, int start, int end)
    {
        foreach (var (part, first) in matrix.PartSpan)
        {
            int from = Math.Max(start, first), to = Math.Min(end, first + part.Rows);
            if (from < to) part.Format.MatVecRows(part, x, y + first, from - first, to - first);
        }
    }

    internal override void GateUpRows(WeightMatrix matrix, float* x, float* y, int start, int end) =>
        throw new NotSupportedException($"{matrix.Name}: a stack of parts is not an interleaved gate/up matrix");

    internal override void MatMulRows(WeightMatrix matrix, float* x, int xStride, int tokens, float* y, int yStride, int start, int end)
    {
        foreach (var (part, first) in matrix.PartSpan)
        {
            int from = Math.Max(start, first), to = Math.Min(end, first + part.Rows);
            if (from < to) part.Format.MatMulRows(part, x, xStride, tokens, y + first, yStride, from - first, to - first);
        }
    }
}
