using System.Numerics.Tensors;
using BenchmarkDotNet.Attributes;
using GemmaGen.Kernels;

namespace GemmaGen.Benchmarks;

/// <summary>
/// One BF16 matrix-vector product of each decode shape, single-threaded: the decode kernel (4 rows per pass, widen +
/// FMA in one pass, <c>WeightMatrix.MatVecRows</c>) against the path of the reference decoder (each row widened to
/// float32, then TensorPrimitives.Dot). Memory-bound: compare with the bandwidth of
/// the machine (bytes = rows × cols × 2).
/// </summary>
[MemoryDiagnoser]
public unsafe class MatVecBenchmarks
{
    private WeightMatrix _matrix = null!;
    private float[] _x = null!, _y = null!, _row = null!;

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
    }

    [GlobalCleanup]
    public void Cleanup() => _matrix.Dispose();

    [Benchmark(Baseline = true, Description = "reference path (widen row, TensorPrimitives.Dot)")]
    public void RuntimeShape()
    {
        var x = _x.AsSpan();
        for (int r = 0; r < _matrix.Rows; r++)
        {
            _matrix.ReadRow(r, _row);
            _y[r] = TensorPrimitives.Dot(_row, x);
        }
    }

    [Benchmark(Description = "decode kernel")]
    public void Kernel()
    {
        fixed (float* x = _x, y = _y) _matrix.MatVecRows(x, y, 0, _matrix.Rows);
    }
}
