namespace GemmaGen.Kernels;

/// <summary><see cref="WeightFormat.BF16"/>: bfloat16, row-major; floats are rounded to nearest even, a BF16
/// checkpoint tensor is copied as is.</summary>
internal sealed unsafe class BF16Format() : ElementFormat<BF16Elements>("bf16", TensorDType.BF16)
{
    internal override void WriteRow(WeightMatrix matrix, int row, ReadOnlySpan<float> source) =>
        BFloat16.Narrow(source, new Span<ushort>(Row(matrix, row), matrix.Cols));

    internal override void ReadRow(WeightMatrix matrix, int row, Span<float> destination) =>
        BFloat16.Widen(new ReadOnlySpan<ushort>(Row(matrix, row), matrix.Cols), destination);
}
