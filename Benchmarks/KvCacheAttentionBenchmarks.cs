using BenchmarkDotNet.Attributes;
using GemmaGen.Benchmarks.Compiled;
using GemmaGen.Kernels;

namespace GemmaGen.Benchmarks;

/// <summary>
/// Global attention (<see cref="Attention"/>, as the compiled layers call it) in the 2B shape (G = 2, d = 256) over 1024 and 3072 cached positions with each KV
/// cache precision (<c>--kv f32|bf16|q8_0</c>): what one (layer, kv head) unit of a decode step costs. Each call
/// attends the next of <see cref="Copies"/> caches, so the rows come from memory as in a decode step (which reads
/// 26 layers × 4 kv heads of them), not from a cache level that holds one head.
/// </summary>
public unsafe class KvCacheAttentionBenchmarks
{
    private const int D = Gemma2_2B.HeadDim, G = Gemma2_2B.GroupSize, Copies = 16;
    private float[] _q = null!, _scores = null!, _output = null!;
    private float[][] _keys = null!, _values = null!;
    private ushort[][] _keysBF16 = null!, _valuesBF16 = null!, _keyScales = null!, _valueScales = null!;
    private sbyte[][] _keysQ8 = null!, _valuesQ8 = null!;
    private int _next;

    [Params("f32", "bf16", "q8_0")]
    public string Kv { get; set; } = "";

    [Params(1024, 3072)]
    public int Positions { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var random = new Random(3);
        float Next() => (float)(random.NextDouble() * 2 - 1);
        _q = GC.AllocateArray<float>(G * D, pinned: true);
        for (int i = 0; i < _q.Length; i++) _q[i] = Next();
        _scores = GC.AllocateArray<float>(G * Positions, pinned: true);
        _output = GC.AllocateArray<float>(G * D, pinned: true);
        int n = Positions * D;
        T[][] Caches<T>(Func<T> value, int length) => Enumerable.Range(0, Copies).Select(_ =>
        {
            var cache = GC.AllocateArray<T>(length, pinned: true);
            for (int i = 0; i < length; i++) cache[i] = value();
            return cache;
        }).ToArray();
        switch (Kv)
        {
            case "f32":
                (_keys, _values) = (Caches(Next, n), Caches(Next, n));
                break;
            case "bf16":
                ushort Bf16() => (ushort)(BitConverter.SingleToInt32Bits(Next()) >> 16);
                (_keysBF16, _valuesBF16) = (Caches(Bf16, n), Caches(Bf16, n));
                break;
            default:
                sbyte Int8() => (sbyte)random.Next(-127, 128);
                ushort Scale() => (ushort)(BitConverter.SingleToInt32Bits(1f / 127) >> 16);
                (_keysQ8, _valuesQ8) = (Caches(Int8, n), Caches(Int8, n));
                (_keyScales, _valueScales) = (Caches(Scale, n / 32), Caches(Scale, n / 32));
                break;
        }
    }

    [Benchmark(Description = "global attention, one kv head")]
    public void Attend()
    {
        int c = _next++ % Copies;
        fixed (float* q = _q, scores = _scores, output = _output)
        {
            if (Kv == "f32")
            {
                fixed (float* k = _keys[c], v = _values[c])
                    Attention.Attend<KvF32>(q, k, null, v, null, Positions - 1, int.MaxValue, int.MaxValue, D, G, Gemma2_2B.AttnSoftcap, Gemma2_2B.QueryScale, scores, Positions, output);
            }
            else if (Kv == "bf16")
            {
                fixed (ushort* k = _keysBF16[c], v = _valuesBF16[c])
                    Attention.Attend<KvBF16>(q, k, null, v, null, Positions - 1, int.MaxValue, int.MaxValue, D, G, Gemma2_2B.AttnSoftcap, Gemma2_2B.QueryScale, scores, Positions, output);
            }
            else
            {
                fixed (sbyte* k = _keysQ8[c], v = _valuesQ8[c])
                fixed (ushort* ks = _keyScales[c], vs = _valueScales[c])
                    Attention.Attend<KvQ8>(q, k, ks, v, vs, Positions - 1, int.MaxValue, int.MaxValue, D, G, Gemma2_2B.AttnSoftcap, Gemma2_2B.QueryScale, scores, Positions, output);
            }
        }
    }
}
