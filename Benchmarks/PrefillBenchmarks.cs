using BenchmarkDotNet.Attributes;
using GemmaGen.Benchmarks.Compiled;
using GemmaGen.Kernels;

namespace GemmaGen.Benchmarks;

/// <summary>
/// The 2B gate/up projection for a 32-token prompt chunk, single-threaded: 32 generated matrix-vector products
/// (the weights streamed 32 times) against one batched product (MatMul's 4×4 register blocks: streamed once).
/// </summary>
public unsafe class PrefillBenchmarks
{
    private const int Tokens = 32, Rows = 18432, Cols = 2304;
    private WeightMatrix _matrix = null!;
    private float[] _x = null!, _y = null!;

    [GlobalSetup]
    public void Setup()
    {
        _matrix = new WeightMatrix("gate/up", Rows, Cols, WeightFormat.BF16);
        var random = new Random(3);
        var row = new float[Cols];
        for (int r = 0; r < Rows; r++)
        {
            for (int c = 0; c < Cols; c++) row[c] = (float)(random.NextDouble() - 0.5);
            _matrix.WriteRow(r, row);
        }
        _x = GC.AllocateArray<float>(Tokens * Cols, pinned: true);
        for (int i = 0; i < _x.Length; i++) _x[i] = (float)Math.Sin(i);
        _y = GC.AllocateArray<float>(Tokens * Rows, pinned: true);
    }

    [GlobalCleanup]
    public void Cleanup() => _matrix.Dispose();

    [Benchmark(Baseline = true, Description = "32 matrix-vector products (token by token)")]
    public void TokenByToken()
    {
        fixed (float* x = _x, y = _y)
        {
            for (int t = 0; t < Tokens; t++) Gemma2_2B.MatVec_BF16_2304((ushort*)_matrix.Data, x + t * Cols, y + t * Rows, 0, Rows);
        }
    }

    [Benchmark(Description = "one batched product (MatMul 4x4 blocks)")]
    public void Batched()
    {
        fixed (float* x = _x, y = _y) MatMul.Rows<BF16Elements>(_matrix.Data, Cols, x, Cols, Tokens, y, Rows, 0, Rows);
    }
}
