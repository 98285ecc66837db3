using System.Runtime.InteropServices;
using BenchmarkDotNet.Attributes;
using GemmaGen.Benchmarks.Compiled;

namespace GemmaGen.Benchmarks;

/// <summary>
/// Issue 10 item 6: the kernels still generated per shape against the same kernels written for runtime shapes
/// (<see cref="RuntimeShapeKernels"/>), single-threaded, the 2B shape: RoPE of one head. The setup checks that the pair
/// gives the same floats. (The matrix-vector kernels, RMSNorm and attention, compared the same way, measured no faster
/// generated and are runtime kernels now: BENCHMARKS.md.)
/// </summary>
public unsafe class SpecializationBenchmarks
{
    private float* _head, _cos, _sin;

    [GlobalSetup]
    public void Setup()
    {
        _head = Random(Gemma2_2B.HeadDim, 6);
        _cos = Random(Gemma2_2B.HeadDim / 2, 7);
        _sin = Random(Gemma2_2B.HeadDim / 2, 8);

        var head = new Span<float>(_head, Gemma2_2B.HeadDim).ToArray();
        RopeRuntimeShape();
        var roped = new Span<float>(_head, Gemma2_2B.HeadDim).ToArray();
        head.CopyTo(new Span<float>(_head, Gemma2_2B.HeadDim));
        RopeSpecialized();
        if (!roped.AsSpan().SequenceEqual(new Span<float>(_head, Gemma2_2B.HeadDim)))
            throw new InvalidOperationException("the runtime-shape RoPE does not reproduce the generated one");
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        foreach (var p in new[] { _head, _cos, _sin }) NativeMemory.AlignedFree(p);
    }

    [Benchmark(Baseline = true, Description = "RoPE of one head, runtime shape (a loop)")]
    public void RopeRuntimeShape() => RuntimeShapeKernels.Rope(_head, _cos, _sin, Gemma2_2B.HeadDim / 2);

    [Benchmark(Description = "RoPE of one head, specialized (written out)")]
    public void RopeSpecialized() => Gemma2_2B.ApplyRope(_head, _cos, _sin);

    private static float* Random(long count, int seed)
    {
        var p = (float*)NativeMemory.AlignedAlloc((nuint)(count * sizeof(float)), 64);
        var random = new Random(seed);
        for (long i = 0; i < count; i++) p[i] = (float)(random.NextDouble() * 2 - 1);
        return p;
    }
}
