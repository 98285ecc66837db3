using GemmaGen.Kernels;
using GemmaGen.Models;
using GemmaGen.Tests.Infrastructure;
using Xunit;

namespace GemmaGen.Tests.Kernels;

/// <summary>
/// <see cref="Attention"/>, the attention of one kv head's group of query heads, against a float64 evaluation one
/// query head at a time: each query scores with its own row, writes its own output row and its own score row, a local
/// layer's keys wrap around the ring, and a bf16 or Q8_0 cache reads as its dequantized values. Over the demo shape the
/// compiled layers call it with (G = 2, d = 64, window 128, soft-cap 50) and over other group and head sizes: heads
/// that are not a multiple of the vector width (a scalar tail), groups that do not fill a run of queries, no soft-cap.
/// </summary>
[IsaSensitive]
public sealed unsafe class AttentionTests
{
    private const int G = Gemma2_Demo.GroupSize, D = Gemma2_Demo.HeadDim;

    /// <summary>softmax(cap·tanh(q_g·k_j·scale / cap))·V over the keys in <paramref name="slots"/>, for each of the
    /// <paramref name="group"/> queries (no cap: softmax(q_g·k_j·scale)).</summary>
    private static double[] Expected(float[] q, float[] keys, float[] values, int[] slots, int group, int d, float softcap, float scale)
    {
        var output = new double[group * d];
        for (int g = 0; g < group; g++)
        {
            var scores = slots.Select(slot =>
            {
                double dot = 0;
                for (int i = 0; i < d; i++) dot += (double)q[g * d + i] * keys[slot * d + i];
                return softcap > 0 ? softcap * Math.Tanh(dot * scale / softcap) : dot * scale;
            }).ToArray();
            double max = scores.Max(), sum = scores.Sum(s => Math.Exp(s - max));
            for (int n = 0; n < slots.Length; n++)
            {
                double p = Math.Exp(scores[n] - max) / sum;
                for (int i = 0; i < d; i++) output[g * d + i] += p * values[slots[n] * d + i];
            }
        }
        return output;
    }

    private static void AssertClose(double[] expected, float[] actual, int d)
    {
        for (int i = 0; i < expected.Length; i++)
        {
            if (!(Math.Abs(actual[i] - expected[i]) <= 1e-5 + 1e-5 * Math.Abs(expected[i])))
                Assert.Fail($"output[{i}] (query {i / d}) = {actual[i]:R}, expected {expected[i]:R}");
        }
    }

    private static int[] Window(int position, int window, int ring)
    {
        int first = Math.Max(0, position - window + 1);
        return Enumerable.Range(first, position - first + 1).Select(p => p % ring).ToArray();
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(300)]
    public void Global_attention_of_a_group_matches_each_head_alone(int position)
    {
        int keys = position + 1;
        var q = KernelTestData.RandomFloats(G * D, seed: 1, scale: 4f);
        var k = KernelTestData.RandomFloats(keys * D, seed: 2, scale: 4f);
        var v = KernelTestData.RandomFloats(keys * D, seed: 3);
        int stride = keys + 5;
        var scores = new float[G * stride];
        var output = new float[G * D];
        fixed (float* pq = q, pk = k, pv = v, ps = scores, po = output)
            Attention.Attend<KvF32>(pq, pk, null, pv, null, position, int.MaxValue, int.MaxValue, D, G, Gemma2_Demo.AttnSoftcap, Gemma2_Demo.QueryScale, ps, stride, po);

        AssertClose(Expected(q, k, v, Enumerable.Range(0, keys).ToArray(), G, D, Gemma2_Demo.AttnSoftcap, Gemma2_Demo.QueryScale), output, D);
        for (int g = 0; g < G; g++)
            Assert.Equal(1.0, scores.Skip(g * stride).Take(keys).Sum(p => (double)p), 1e-5);
    }

    [Theory]
    [InlineData(5)]
    [InlineData(Gemma2_Demo.SlidingWindow - 1)]
    [InlineData(Gemma2_Demo.SlidingWindow + 40)]
    [InlineData(3 * Gemma2_Demo.SlidingWindow + 7)]
    public void Local_attention_of_a_group_sees_the_window_across_the_ring(int position)
    {
        const int ring = Gemma2_Demo.SlidingWindow + 3;
        var q = KernelTestData.RandomFloats(G * D, seed: 4, scale: 4f);
        var k = KernelTestData.RandomFloats(ring * D, seed: 5, scale: 4f);
        var v = KernelTestData.RandomFloats(ring * D, seed: 6);
        var scores = new float[G * ring];
        var output = new float[G * D];
        fixed (float* pq = q, pk = k, pv = v, ps = scores, po = output)
            Attention.Attend<KvF32>(pq, pk, null, pv, null, position, Gemma2_Demo.SlidingWindow, ring, D, G, Gemma2_Demo.AttnSoftcap, Gemma2_Demo.QueryScale, ps, ring, po);

        AssertClose(Expected(q, k, v, Window(position, Gemma2_Demo.SlidingWindow, ring), G, D, Gemma2_Demo.AttnSoftcap, Gemma2_Demo.QueryScale), output, D);
    }

    /// <summary>Group and head sizes other than the demo's: every run of queries (one, two, three at a time, and a
    /// group that does not divide into runs), heads of whole blocks of eight vectors, of fewer, and of a scalar tail.</summary>
    [Theory]
    [InlineData(1, 256, 0f)]
    [InlineData(2, 256, 50f)]
    [InlineData(3, 128, 50f)]
    [InlineData(4, 64, 0f)]
    [InlineData(5, 72, 30f)]
    [InlineData(8, 40, 50f)]
    [InlineData(2, 7, 50f)]
    public void Any_group_and_head_size_matches_each_head_alone(int group, int d, float softcap)
    {
        const int position = 150, window = 64, ring = 70;
        float scale = 1f / MathF.Sqrt(d);
        var q = KernelTestData.RandomFloats(group * d, seed: group * 100 + d, scale: 4f);
        var k = KernelTestData.RandomFloats(ring * d, seed: d, scale: 4f);
        var v = KernelTestData.RandomFloats(ring * d, seed: d + 1);
        var scores = new float[group * ring];
        var output = new float[group * d];
        fixed (float* pq = q, pk = k, pv = v, ps = scores, po = output)
        {
            Attention.Attend<KvF32>(pq, pk, null, pv, null, position, window, ring, d, group, softcap, scale, ps, ring, po);
            AssertClose(Expected(q, k, v, Window(position, window, ring), group, d, softcap, scale), output, d);
            // global over the first keys of the same rows
            Attention.Attend<KvF32>(pq, pk, null, pv, null, ring - 1, int.MaxValue, int.MaxValue, d, group, softcap, scale, ps, ring, po);
            AssertClose(Expected(q, k, v, Enumerable.Range(0, ring).ToArray(), group, d, softcap, scale), output, d);
        }
    }

    [Theory]
    [InlineData(2, 64)]
    [InlineData(3, 256)]
    [InlineData(1, 40)]
    public void A_bf16_cache_reads_as_its_values(int group, int d)
    {
        const int position = 90;
        int keys = position + 1;
        float scale = 1f / MathF.Sqrt(d);
        var q = KernelTestData.RandomFloats(group * d, seed: 21, scale: 4f);
        var k = KernelTestData.RandomFloats(keys * d, seed: 22, scale: 4f);
        var v = KernelTestData.RandomFloats(keys * d, seed: 23);
        ushort[] ToBF16(float[] x) => x.Select(f => (ushort)(BitConverter.SingleToInt32Bits(f) >> 16)).ToArray();
        float[] FromBF16(ushort[] x) => x.Select(b => BitConverter.Int32BitsToSingle(b << 16)).ToArray();
        ushort[] kb = ToBF16(k), vb = ToBF16(v);
        var scores = new float[group * keys];
        var output = new float[group * d];
        fixed (float* pq = q, ps = scores, po = output)
        fixed (ushort* pk = kb, pv = vb)
            Attention.Attend<KvBF16>(pq, pk, null, pv, null, position, int.MaxValue, int.MaxValue, d, group, 50f, scale, ps, keys, po);

        AssertClose(Expected(q, FromBF16(kb), FromBF16(vb), Enumerable.Range(0, keys).ToArray(), group, d, 50f, scale), output, d);
    }

    /// <summary>int8 rows with a bf16 scale per block of 32 as float: element i is q[i]·scale[i / 32].</summary>
    private static float[] Dequantize(sbyte[] quants, ushort[] scales)
    {
        var values = new float[quants.Length];
        for (int i = 0; i < quants.Length; i++) values[i] = quants[i] * BitConverter.Int32BitsToSingle(scales[i / 32] << 16);
        return values;
    }

    /// <summary>Random int8 in [−127, 127] and, per block of 32, a random bf16 scale of about <paramref name="scale"/>/127.</summary>
    private static (sbyte[] Quants, ushort[] Scales) RandomQ8(int length, int seed, float scale)
    {
        var random = new Random(seed);
        var quants = new sbyte[length];
        for (int i = 0; i < length; i++) quants[i] = (sbyte)random.Next(-127, 128);
        var scales = new ushort[length / 32];
        for (int b = 0; b < scales.Length; b++)
            scales[b] = (ushort)(BitConverter.SingleToInt32Bits((float)(scale / 127 * (0.25 + random.NextDouble()))) >> 16);
        return (quants, scales);
    }

    [Theory]
    [InlineData(0, 2, D)]
    [InlineData(300, 2, D)]
    [InlineData(200, 3, 256)]
    [InlineData(100, 4, 96)]
    public void Global_attention_over_a_q8_cache_matches_the_dequantized_values(int position, int group, int d)
    {
        int keys = position + 1;
        float scale = 1f / MathF.Sqrt(d);
        var q = KernelTestData.RandomFloats(group * d, seed: 7, scale: 4f);
        var (kq, ks) = RandomQ8(keys * d, seed: 8, scale: 4f);
        var (vq, vs) = RandomQ8(keys * d, seed: 9, scale: 1f);
        int stride = keys + 5;
        var scores = new float[group * stride];
        var output = new float[group * d];
        fixed (float* pq = q, ps = scores, po = output)
        fixed (sbyte* pk = kq, pv = vq)
        fixed (ushort* pks = ks, pvs = vs)
            Attention.Attend<KvQ8>(pq, pk, pks, pv, pvs, position, int.MaxValue, int.MaxValue, d, group, 50f, scale, ps, stride, po);

        AssertClose(Expected(q, Dequantize(kq, ks), Dequantize(vq, vs), Enumerable.Range(0, keys).ToArray(), group, d, 50f, scale), output, d);
    }

    [Theory]
    [InlineData(Gemma2_Demo.SlidingWindow - 1)]
    [InlineData(3 * Gemma2_Demo.SlidingWindow + 7)]
    public void Local_attention_over_a_q8_cache_sees_the_window_across_the_ring(int position)
    {
        const int ring = Gemma2_Demo.SlidingWindow + 3;
        var q = KernelTestData.RandomFloats(G * D, seed: 10, scale: 4f);
        var (kq, ks) = RandomQ8(ring * D, seed: 11, scale: 4f);
        var (vq, vs) = RandomQ8(ring * D, seed: 12, scale: 1f);
        var scores = new float[G * ring];
        var output = new float[G * D];
        fixed (float* pq = q, ps = scores, po = output)
        fixed (sbyte* pk = kq, pv = vq)
        fixed (ushort* pks = ks, pvs = vs)
            Attention.Attend<KvQ8>(pq, pk, pks, pv, pvs, position, Gemma2_Demo.SlidingWindow, ring, D, G, Gemma2_Demo.AttnSoftcap, Gemma2_Demo.QueryScale, ps, ring, po);

        AssertClose(Expected(q, Dequantize(kq, ks), Dequantize(vq, vs), Window(position, Gemma2_Demo.SlidingWindow, ring), G, D, Gemma2_Demo.AttnSoftcap, Gemma2_Demo.QueryScale), output, D);
    }
}
