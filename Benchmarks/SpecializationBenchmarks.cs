using BenchmarkDotNet.Attributes;
using GemmaGen.Benchmarks.Compiled;
using GemmaGen.Kernels;

namespace GemmaGen.Benchmarks;

/// <summary>
/// Issue 10 item 6: the generated BF16 matrix-vector kernel against the same kernel written for runtime shapes
/// (<see cref="RuntimeShapeKernels"/>: same blocking, same prefetch, the width a parameter), single-threaded, at the
/// 2B widths: a matrix of about 1 MiB that stays in cache (what the kernel itself costs) and the whole 2B gate/up
/// matrix streamed from memory (what decoding sees).
/// </summary>
public unsafe class SpecializationBenchmarks
{
    private WeightMatrix _matrix = null!;
    private float[] _x = null!, _y = null!;
    private delegate*<ushort*, float*, float*, int, int, void> _generated;

    /// <summary>Rows × cols: in cache (2304 and 9216 wide) and the 2B gate/up matrix from memory.</summary>
    [Params("224x2304 (in cache)", "56x9216 (in cache)", "18432x2304 (from memory)")]
    public string Shape { get; set; } = "";

    private int Rows => int.Parse(Shape.Split('x')[0]);

    private int Cols => int.Parse(Shape.Split('x', ' ')[1]);

    [GlobalSetup]
    public void Setup()
    {
        _matrix = BenchmarkData.RandomMatrix("w", Rows, Cols, WeightFormat.BF16, seed: 4);
        _x = BenchmarkData.Wave(Cols);
        _y = GC.AllocateArray<float>(Rows, pinned: true);
        _generated = Cols switch
        {
            2304 => &Gemma2_2B.MatVec_BF16_2304,
            9216 => &Gemma2_2B.MatVec_BF16_9216,
            _ => throw new InvalidOperationException(Shape),
        };
        // The two compute the same operations in the same order: the same floats, or the comparison is void.
        RuntimeShape();
        var runtime = (float[])_y.Clone();
        Specialized();
        if (!runtime.AsSpan().SequenceEqual(_y)) throw new InvalidOperationException($"{Shape}: the runtime-shape kernel does not reproduce the generated one");
    }

    [GlobalCleanup]
    public void Cleanup() => _matrix.Dispose();

    [Benchmark(Baseline = true, Description = "runtime shape (same kernel, width a parameter)")]
    public void RuntimeShape()
    {
        fixed (float* x = _x, y = _y) RuntimeShapeKernels.MatVecBF16((ushort*)_matrix.Data, x, y, 0, Rows, Cols);
    }

    [Benchmark(Description = "specialized (generated, width a constant)")]
    public void Specialized()
    {
        fixed (float* x = _x, y = _y) _generated((ushort*)_matrix.Data, x, y, 0, Rows);
    }
}
