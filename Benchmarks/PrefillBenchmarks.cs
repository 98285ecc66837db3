using BenchmarkDotNet.Attributes;
using GemmaGen.Kernels;

namespace GemmaGen.Benchmarks;

/// <summary>
/// The 2B gate/up projection for a 64-token prefill batch, single-threaded: 64 generated matrix-vector products
/// (the weights streamed 64 times) against one batched product, with MatMul's 4×4 dot-product blocks or its blocked
/// kernel (32 transposed rows × 12 tokens of outer products; what prefill runs with AVX-512).
/// </summary>
public unsafe class PrefillBenchmarks
{
    private const int Tokens = 64, Rows = 18432, Cols = 2304;
    private WeightMatrix _matrix = null!;
    private float[] _x = null!, _y = null!;

    [GlobalSetup]
    public void Setup()
    {
        _matrix = BenchmarkData.RandomMatrix("gate/up", Rows, Cols, WeightFormat.BF16, seed: 3);
        _x = BenchmarkData.Wave(Tokens * Cols);
        _y = GC.AllocateArray<float>(Tokens * Rows, pinned: true);
    }

    [GlobalCleanup]
    public void Cleanup() => _matrix.Dispose();

    [Benchmark(Baseline = true, Description = "64 matrix-vector products (token by token)")]
    public void TokenByToken()
    {
        fixed (float* x = _x, y = _y)
        {
            for (int t = 0; t < Tokens; t++) _matrix.MatVecRows(x + t * Cols, y + t * Rows, 0, Rows);
        }
    }

    [Benchmark(Description = "one batched product, 4x4 dot-product blocks")]
    public void Batched()
    {
        fixed (float* x = _x, y = _y) MatMul.Dots<BF16Elements>(_matrix.Data, Cols, x, Cols, Tokens, y, Rows, 0, Rows);
    }

    [Benchmark(Description = "one batched product, blocked (32 rows x 12 tokens)")]
    public void Blocked()
    {
        fixed (float* x = _x, y = _y) MatMul.Blocked<BF16Elements>(_matrix.Data, Cols, x, Cols, Tokens, y, Rows, 0, Rows);
    }
}
