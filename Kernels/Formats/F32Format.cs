namespace GemmaGen.Kernels;

/// <summary><see cref="WeightFormat.F32"/>: IEEE float32, row-major; an F32 checkpoint tensor is copied as is.</summary>
internal sealed unsafe class F32Format() : ElementFormat<F32Elements>("f32", TensorDType.F32)
{
    internal override void WriteRow(WeightMatrix matrix, int row, ReadOnlySpan<float> source) =>
        source.CopyTo(new Span<float>(Row(matrix, row), matrix.Cols));

    internal override void ReadRow(WeightMatrix matrix, int row, Span<float> destination) =>
        new ReadOnlySpan<float>(Row(matrix, row), matrix.Cols).CopyTo(destination);
}
