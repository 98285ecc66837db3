using System.Runtime.InteropServices;
using BenchmarkDotNet.Attributes;
using GemmaGen.Benchmarks.Compiled;

namespace GemmaGen.Benchmarks;

/// <summary>
/// Issue 10 item 6: the kernels still generated per shape against the same kernels written for runtime shapes
/// (<see cref="RuntimeShapeKernels"/>), single-threaded, the 2B shape: attention over a float32 cache (the two query
/// heads of one kv head, d = 256) at a few context lengths, and RoPE of one head. The setup checks that each pair gives
/// the same floats. (The matrix-vector kernels and RMSNorm, compared the same way, measured no faster generated and are
/// runtime kernels now: BENCHMARKS.md.)
/// </summary>
public unsafe class SpecializationBenchmarks
{
    private const int MaxContext = 4096;
    private float* _q, _keys, _values, _scores, _output, _head, _cos, _sin;

    /// <summary>Positions attended (RoPE ignores it).</summary>
    [Params(64, 512, 4096)]
    public int Positions { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _q = Random(2 * Gemma2_2B.HeadDim, 1);
        _keys = Random((long)MaxContext * Gemma2_2B.HeadDim, 2);
        _values = Random((long)MaxContext * Gemma2_2B.HeadDim, 3);
        _scores = Random(2L * MaxContext, 4);
        _output = Random(2 * Gemma2_2B.HeadDim, 5);
        _head = Random(Gemma2_2B.HeadDim, 6);
        _cos = Random(Gemma2_2B.HeadDim / 2, 7);
        _sin = Random(Gemma2_2B.HeadDim / 2, 8);

        AttentionRuntimeShape();
        var runtime = new Span<float>(_output, 2 * Gemma2_2B.HeadDim).ToArray();
        AttentionSpecialized();
        if (!runtime.AsSpan().SequenceEqual(new Span<float>(_output, 2 * Gemma2_2B.HeadDim)))
            throw new InvalidOperationException("the runtime-shape attention does not reproduce the generated one");
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
        foreach (var p in new[] { _q, _keys, _values, _scores, _output, _head, _cos, _sin }) NativeMemory.AlignedFree(p);
    }

    [Benchmark(Baseline = true, Description = "attention, runtime shape (same blocking, d a parameter)")]
    public void AttentionRuntimeShape() =>
        RuntimeShapeKernels.AttendGroup2(_q, _keys, _values, 0, Positions, int.MaxValue, _scores, MaxContext, _output,
            Gemma2_2B.HeadDim, Gemma2_2B.AttnSoftcap, Gemma2_2B.QueryScale);

    [Benchmark(Description = "attention, specialized (generated, d a constant)")]
    public void AttentionSpecialized() =>
        Gemma2_2B.AttendGroup(_q, _keys, _values, 0, Positions, int.MaxValue, _scores, MaxContext, _output);

    [Benchmark(Description = "RoPE of one head, runtime shape (a loop)")]
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
