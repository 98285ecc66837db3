using System.Numerics.Tensors;
using BenchmarkDotNet.Attributes;
using GemmaGen.Benchmarks.Compiled;
using GemmaGen.Kernels;

namespace GemmaGen.Benchmarks;

/// <summary>
/// One BF16 matrix-vector product of each decode shape, single-threaded: the generated kernel of that shape
/// (constant trip counts, 4 rows per pass, widen + FMA in one pass) against the runtime-shape path of the reference
/// decoder (each row widened to float32, then TensorPrimitives.Dot). Memory-bound: compare with the bandwidth of
/// the machine (bytes = rows × cols × 2).
/// </summary>
[MemoryDiagnoser]
public unsafe class MatVecBenchmarks
{
    private WeightMatrix _matrix = null!;
    private float[] _x = null!, _y = null!, _row = null!;
    private delegate*<ushort*, float*, float*, int, int, void> _kernel;

    public static IEnumerable<string> Cases => Shapes.MatVec.Select(s => $"{s.Model} {s.Matrix} {s.Rows}x{s.Cols}");

    [ParamsSource(nameof(Cases))]
    public string Shape { get; set; } = "";

    [GlobalSetup]
    public void Setup()
    {
        var shape = Shapes.MatVec.First(s => Shape.StartsWith($"{s.Model} {s.Matrix} ", StringComparison.Ordinal));
        _matrix = BenchmarkData.RandomMatrix(Shape, shape.Rows, shape.Cols, WeightFormat.BF16, seed: 1);
        _row = new float[shape.Cols];
        _y = GC.AllocateArray<float>(shape.Rows, pinned: true);
        _x = BenchmarkData.Wave(shape.Cols);
        _kernel = shape.Cols switch
        {
            2048 => &Gemma2_2B.MatVec_BF16_2048,
            2304 => &Gemma2_2B.MatVec_BF16_2304,
            9216 => &Gemma2_2B.MatVec_BF16_9216,
            3584 => &Gemma2_9B.MatVec_BF16_3584,
            4096 => &Gemma2_9B.MatVec_BF16_4096,
            14336 => &Gemma2_9B.MatVec_BF16_14336,
            4608 => &Gemma2_27B.MatVec_BF16_4608,
            36864 => &Gemma2_27B.MatVec_BF16_36864,
            _ => throw new InvalidOperationException(Shape),
        };
    }

    [GlobalCleanup]
    public void Cleanup() => _matrix.Dispose();

    [Benchmark(Baseline = true, Description = "runtime shape (widen row, TensorPrimitives.Dot)")]
    public void RuntimeShape()
    {
        var x = _x.AsSpan();
        for (int r = 0; r < _matrix.Rows; r++)
        {
            _matrix.ReadRow(r, _row);
            _y[r] = TensorPrimitives.Dot(_row, x);
        }
    }

    [Benchmark(Description = "specialized (generated kernel)")]
    public void Specialized()
    {
        fixed (float* x = _x, y = _y) _kernel((ushort*)_matrix.Data, x, y, 0, _matrix.Rows);
    }
}
