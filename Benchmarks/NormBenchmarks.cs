using BenchmarkDotNet.Attributes;
using GemmaGen.Benchmarks.Compiled;
using GemmaGen.Kernels;

namespace GemmaGen.Benchmarks;

/// <summary>RMSNorm over D (2304 / 3584 / 4608): the generated kernel against Activations.RmsNorm (TensorPrimitives).</summary>
public unsafe class NormBenchmarks
{
    private float[] _x = null!, _w = null!, _y = null!;
    private delegate*<float*, float*, float*, void> _kernel;

    [Params("2B", "9B", "27B")]
    public string Model { get; set; } = "";

    [GlobalSetup]
    public void Setup()
    {
        int d;
        switch (Model)
        {
            case "2B":
                d = Gemma2_2B.HiddenSize;
                _kernel = &Gemma2_2B.RmsNorm;
                break;
            case "9B":
                d = Gemma2_9B.HiddenSize;
                _kernel = &Gemma2_9B.RmsNorm;
                break;
            default:
                d = Gemma2_27B.HiddenSize;
                _kernel = &Gemma2_27B.RmsNorm;
                break;
        }
        _x = GC.AllocateArray<float>(d, pinned: true);
        _w = GC.AllocateArray<float>(d, pinned: true);
        _y = GC.AllocateArray<float>(d, pinned: true);
        for (int i = 0; i < d; i++)
        {
            _x[i] = (float)Math.Sin(i);
            _w[i] = (float)Math.Cos(i) / 4;
        }
    }

    [Benchmark(Baseline = true, Description = "runtime shape (Activations.RmsNorm)")]
    public void RuntimeShape() => Activations.RmsNorm(_x, _w, 1e-6f, _y);

    [Benchmark(Description = "specialized (generated kernel)")]
    public void Specialized()
    {
        fixed (float* x = _x, w = _w, y = _y) _kernel(x, w, y);
    }
}
