using GemmaGen.Models;
using GemmaGen.Tests.Infrastructure;
using Xunit;

namespace GemmaGen.Tests.Kernels;

/// <summary>
/// The generated attention of one kv head's group of query heads (the demo shape: G = 2, d = 64, window 128, soft-cap
/// 50) against a float64 evaluation, one query head at a time: each query scores with its own row, writes its own
/// output row and its own score row, and a local layer's keys wrap around the ring.
/// </summary>
[IsaSensitive]
public sealed unsafe class CompiledAttentionTests
{
    private const int G = Gemma2_Demo.GroupSize, D = Gemma2_Demo.HeadDim;

    /// <summary>softmax(cap·tanh(q_g·k_j·scale / cap))·V over the keys in <paramref name="slots"/>, for each query g.</summary>
    private static double[] Expected(float[] q, float[] keys, float[] values, int[] slots)
    {
        var output = new double[G * D];
        for (int g = 0; g < G; g++)
        {
            var scores = slots.Select(slot =>
            {
                double dot = 0;
                for (int i = 0; i < D; i++) dot += (double)q[g * D + i] * keys[slot * D + i];
                return Gemma2_Demo.AttnSoftcap * Math.Tanh(dot * Gemma2_Demo.QueryScale / Gemma2_Demo.AttnSoftcap);
            }).ToArray();
            double max = scores.Max(), sum = scores.Sum(s => Math.Exp(s - max));
            for (int n = 0; n < slots.Length; n++)
            {
                double p = Math.Exp(scores[n] - max) / sum;
                for (int i = 0; i < D; i++) output[g * D + i] += p * values[slots[n] * D + i];
            }
        }
        return output;
    }

    private static void AssertClose(double[] expected, float[] actual)
    {
        for (int i = 0; i < expected.Length; i++)
        {
            if (!(Math.Abs(actual[i] - expected[i]) <= 1e-5 + 1e-5 * Math.Abs(expected[i])))
                Assert.Fail($"output[{i}] (query {i / D}) = {actual[i]:R}, expected {expected[i]:R}");
        }
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(300)]
    public void GlobalAttentionOfAGroupMatchesEachHeadAlone(int position)
    {
        int keys = position + 1;
        var q = KernelTestData.RandomFloats(G * D, seed: 1, scale: 4f);
        var k = KernelTestData.RandomFloats(keys * D, seed: 2, scale: 4f);
        var v = KernelTestData.RandomFloats(keys * D, seed: 3);
        int stride = keys + 5;
        var scores = new float[G * stride];
        var output = new float[G * D];
        fixed (float* pq = q, pk = k, pv = v, ps = scores, po = output)
            Gemma2_Demo.GlobalAttention(pq, pk, pv, position, ps, stride, po);

        AssertClose(Expected(q, k, v, Enumerable.Range(0, keys).ToArray()), output);
        for (int g = 0; g < G; g++)
            Assert.Equal(1.0, scores.Skip(g * stride).Take(keys).Sum(p => (double)p), 1e-5);
    }

    [Theory]
    [InlineData(5)]
    [InlineData(Gemma2_Demo.SlidingWindow - 1)]
    [InlineData(Gemma2_Demo.SlidingWindow + 40)]
    [InlineData(3 * Gemma2_Demo.SlidingWindow + 7)]
    public void LocalAttentionOfAGroupSeesTheWindowAcrossTheRing(int position)
    {
        const int ring = Gemma2_Demo.SlidingWindow + 3;
        var q = KernelTestData.RandomFloats(G * D, seed: 4, scale: 4f);
        var k = KernelTestData.RandomFloats(ring * D, seed: 5, scale: 4f);
        var v = KernelTestData.RandomFloats(ring * D, seed: 6);
        var scores = new float[G * ring];
        var output = new float[G * D];
        fixed (float* pq = q, pk = k, pv = v, ps = scores, po = output)
            Gemma2_Demo.LocalAttention(pq, pk, pv, position, ps, ring, po, ring);

        int first = Math.Max(0, position - Gemma2_Demo.SlidingWindow + 1);
        var slots = Enumerable.Range(first, position - first + 1).Select(p => p % ring).ToArray();
        AssertClose(Expected(q, k, v, slots), output);
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
    [InlineData(0)]
    [InlineData(300)]
    public void GlobalAttentionOverAQ8CacheMatchesTheDequantizedValues(int position)
    {
        int keys = position + 1;
        var q = KernelTestData.RandomFloats(G * D, seed: 7, scale: 4f);
        var (kq, ks) = RandomQ8(keys * D, seed: 8, scale: 4f);
        var (vq, vs) = RandomQ8(keys * D, seed: 9, scale: 1f);
        int stride = keys + 5;
        var scores = new float[G * stride];
        var output = new float[G * D];
        fixed (float* pq = q, ps = scores, po = output)
        fixed (sbyte* pk = kq, pv = vq)
        fixed (ushort* pks = ks, pvs = vs)
            Gemma2_Demo.GlobalAttention(pq, pk, pks, pv, pvs, position, ps, stride, po);

        AssertClose(Expected(q, Dequantize(kq, ks), Dequantize(vq, vs), Enumerable.Range(0, keys).ToArray()), output);
    }

    [Theory]
    [InlineData(Gemma2_Demo.SlidingWindow - 1)]
    [InlineData(3 * Gemma2_Demo.SlidingWindow + 7)]
    public void LocalAttentionOverAQ8CacheSeesTheWindowAcrossTheRing(int position)
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
            Gemma2_Demo.LocalAttention(pq, pk, pks, pv, pvs, position, ps, ring, po, ring);

        int first = Math.Max(0, position - Gemma2_Demo.SlidingWindow + 1);
        var slots = Enumerable.Range(first, position - first + 1).Select(p => p % ring).ToArray();
        AssertClose(Expected(q, Dequantize(kq, ks), Dequantize(vq, vs), slots), output);
    }
}
