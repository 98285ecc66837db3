using BenchmarkDotNet.Attributes;
using GemmaGen.Kernels;

namespace GemmaGen.Benchmarks;

/// <summary>
/// The 2B attention-sized projection (2304 × 2304, also a quarter of gate/up's rows) and the down projection's shape
/// (2304 × 9216) in Q8_0 and Q4_0 for batches of 1, 4, 8, 16 and 64 token rows (decoding sequences together, and a
/// prefill pass), single-threaded: the rows dequantized to float32 and multiplied by the float kernels (the fallback,
/// <see cref="QuantizedMatVec.FloatMatMulRows"/>) against int8 inputs and integer products over the stored 16-row
/// groups (<see cref="QuantizedMatMul"/>, AVX-VNNI where the CPU has it). The float path is the baseline. The
/// previous integer kernel is not kept in the product for comparison: compare it by running this suite on its commit
/// (BENCHMARKS.md).
/// </summary>
public unsafe class QuantizedPrefillBenchmarks
{
    private WeightMatrix _matrix = null!;
    private float[] _x = null!, _y = null!;

    [Params("q8_0", "q4_0")]
    public string Format { get; set; } = "";

    /// <summary>2304 × 2304 and down (2304 × 9216).</summary>
    [Params("2304x2304", "2304x9216")]
    public string Shape { get; set; } = "";

    /// <summary>Token rows per call: one sequence, four, eight or sixteen decoding together, a prefill pass.</summary>
    [Params(1, 4, 8, 16, 64)]
    public int Tokens { get; set; }

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
