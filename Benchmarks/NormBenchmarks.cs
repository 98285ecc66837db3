using BenchmarkDotNet.Attributes;
using GemmaGen.Benchmarks.Compiled;
using GemmaGen.Kernels;

namespace GemmaGen.Benchmarks;

/// <summary>RMSNorm over D (2304 / 3584 / 4608): the compiled decoders' kernel (<see cref="Normalization.RmsNorm"/>)
/// against the reference decoder's <see cref="Activations.RmsNorm"/> (TensorPrimitives).</summary>
public unsafe class NormBenchmarks
{
    private float[] _x = null!, _w = null!, _y = null!;

    [Params("2B", "9B", "27B")]
    public string Model { get; set; } = "";

    [GlobalSetup]
    public void Setup()
    {
        int d = Model switch
        {
            "2B" => Gemma2_2B.HiddenSize,
            "9B" => Gemma2_9B.HiddenSize,
            _ => Gemma2_27B.HiddenSize,
        };
        _x = GC.AllocateArray<float>(d, pinned: true);
        _w = GC.AllocateArray<float>(d, pinned: true);
        _y = GC.AllocateArray<float>(d, pinned: true);
        for (int i = 0; i < d; i++)
        {
            _x[i] = (float)Math.Sin(i);
            _w[i] = (float)Math.Cos(i) / 4;
        }
    }

    [Benchmark(Baseline = true, Description = "reference path (Activations.RmsNorm)")]
    public void Reference() => Activations.RmsNorm(_x, _w, 1e-6f, _y);

    [Benchmark(Description = "decoder kernel (Normalization.RmsNorm)")]
    public void Kernel()
    {
        fixed (float* x = _x, w = _w, y = _y) Normalization.RmsNorm(x, w, y, _x.Length, 1e-6f);
    }
}
