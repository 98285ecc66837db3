using BenchmarkDotNet.Attributes;
using GemmaGen.Kernels;

namespace GemmaGen.Benchmarks;

/// <summary>
/// The 2B gate/up projection (and the down projection's shape) for a 64-token prefill batch in Q8_0 and Q4_0, single
/// -threaded: the rows dequantized to float32 and multiplied by the float kernels (the fallback,
/// <see cref="QuantizedMatVec.FloatMatMulRows"/>) against int8 inputs and integer products over repacked 8-row groups
/// (<see cref="QuantizedMatMul"/>, AVX-VNNI where the CPU has it). The float path is the baseline.
/// </summary>
public unsafe class QuantizedPrefillBenchmarks
{
    private const int Tokens = 64;
    private WeightMatrix _matrix = null!;
    private float[] _x = null!, _y = null!;

    [Params("q8_0", "q4_0")]
    public string Format { get; set; } = "";

    /// <summary>gate/up (18432 × 2304, a quarter of its rows) and down (2304 × 9216).</summary>
    [Params("2304x2304", "2304x9216")]
    public string Shape { get; set; } = "";

    private int Rows => int.Parse(Shape.Split('x')[0]);

    private int Cols => int.Parse(Shape.Split('x')[1]);

    [GlobalSetup]
    public void Setup()
    {
        _matrix = BenchmarkData.RandomMatrix("w", Rows, Cols, WeightFormat.Find(Format)!, seed: 5);
        _x = BenchmarkData.Wave(Tokens * Cols);
        _y = GC.AllocateArray<float>(Tokens * Rows, pinned: true);
    }

    [GlobalCleanup]
    public void Cleanup() => _matrix.Dispose();

    [Benchmark(Baseline = true, Description = "dequantized rows, float FMA")]
    public void Float()
    {
        fixed (float* x = _x, y = _y) QuantizedMatVec.FloatMatMulRows(_matrix, x, Cols, Tokens, y, Rows, 0, Rows);
    }

    [Benchmark(Description = "int8 inputs, integer products")]
    public void Integer()
    {
        fixed (float* x = _x, y = _y) QuantizedMatMul.Rows(_matrix, x, Cols, Tokens, y, Rows, 0, Rows);
    }
}
