using System.Numerics.Tensors;
using BenchmarkDotNet.Attributes;
using GemmaGen.Benchmarks.Compiled;
using GemmaGen.Kernels;

namespace GemmaGen.Benchmarks;

/// <summary>
/// The query heads of one kv head (G = 2 in each shape) in global attention over 512, 4096 and 8192 cached
/// positions: the compiled layers' kernel (<see cref="Attention"/>: each key and value row read once for the group, the
/// outputs held in registers across the weighted sum) against the code of the reference decoder (TensorPrimitives per
/// key and per value, per query head).
/// </summary>
public unsafe class AttentionBenchmarks
{
    private float[] _q = null!, _keys = null!, _values = null!, _scores = null!, _output = null!;
    private int _headDim, _group;
    private double _queryPreAttnScalar;
    private float _softcap, _queryScale;

    [Params("2B", "9B", "27B")]
    public string Model { get; set; } = "";

    [Params(512, 4096, 8192)]
    public int Positions { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        switch (Model)
        {
            case "2B":
                (_headDim, _group, _queryPreAttnScalar) = (Gemma2_2B.HeadDim, Gemma2_2B.GroupSize, 256.0);
                break;
            case "9B":
                (_headDim, _group, _queryPreAttnScalar) = (Gemma2_9B.HeadDim, Gemma2_9B.GroupSize, 256.0);
                break;
            default:
                (_headDim, _group, _queryPreAttnScalar) = (Gemma2_27B.HeadDim, Gemma2_27B.GroupSize, 144.0);
                break;
        }
        (_softcap, _queryScale) = (50f, (float)(1.0 / Math.Sqrt(_queryPreAttnScalar)));
        var random = new Random(2);
        float[] Fill(int n) => Enumerable.Range(0, n).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        _q = Pinned(Fill(_group * _headDim));
        _keys = Pinned(Fill(Positions * _headDim));
        _values = Pinned(Fill(Positions * _headDim));
        _scores = GC.AllocateArray<float>(_group * Positions, pinned: true);
        _output = GC.AllocateArray<float>(_group * _headDim, pinned: true);
    }

    private static float[] Pinned(float[] values)
    {
        var pinned = GC.AllocateArray<float>(values.Length, pinned: true);
        values.CopyTo(pinned, 0);
        return pinned;
    }

    [Benchmark(Baseline = true, Description = "runtime shape (TensorPrimitives)")]
    public void RuntimeShape()
    {
        int d = _headDim, count = Positions;
        float scale = (float)(1.0 / Math.Sqrt(_queryPreAttnScalar));
        for (int g = 0; g < _group; g++)
        {
            var q = _q.AsSpan(g * d, d);
            var scores = _scores.AsSpan(g * count, count);
            for (int j = 0; j < count; j++) scores[j] = TensorPrimitives.Dot(q, _keys.AsSpan(j * d, d));
            Activations.SoftCap(scores, 50f, scale);
            Activations.Softmax(scores);
            var output = _output.AsSpan(g * d, d);
            output.Clear();
            for (int j = 0; j < count; j++) TensorPrimitives.MultiplyAdd(_values.AsSpan(j * d, d), scores[j], output, output);
        }
    }

    [Benchmark(Description = "Attention (the compiled layers' kernel)")]
    public void Compiled()
    {
        fixed (float* q = _q, keys = _keys, values = _values, scores = _scores, output = _output)
            Attention.Attend<KvF32>(q, keys, null, values, null, Positions - 1, int.MaxValue, int.MaxValue, _headDim, _group, _softcap, _queryScale, scores, Positions, output);
    }
}
