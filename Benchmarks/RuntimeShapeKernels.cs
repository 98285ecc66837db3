using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using GemmaGen.Kernels;

namespace GemmaGen.Benchmarks;

/// <summary>
/// Generated kernels written once more for runtime shapes, for issue 10 item 6's comparison
/// (<see cref="SpecializationBenchmarks"/>): the same blocking and the same order of operations (so the same floats),
/// the dimension a parameter instead of a constant. What the two measure apart is what the constant buys.
/// </summary>
public static unsafe class RuntimeShapeKernels
{
    /// <summary>The generated <c>AttendGroup</c> over a float32 cache for a group of two query heads (every Gemma 2
    /// size), 512-bit: blocks of eight vectors of the head, sixteen accumulators, the head dimension
    /// <paramref name="headDim"/> (a multiple of 128) a parameter.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void AttendGroup2(float* q, float* keys, float* values, int firstSlot, int count, int ring, float* scores, long stride,
        float* output, int headDim, float softcap, float queryScale)
    {
        if (!Vector512.IsHardwareAccelerated || headDim % 128 != 0) throw new PlatformNotSupportedException("the twin is written for AVX-512 and heads of a multiple of 128");
        int slot = firstSlot;
        for (int n = 0; n < count; n++)
        {
            GroupDot2(q, keys + (long)slot * headDim, scores + n, stride, headDim);
            if (++slot == ring) slot = 0;
        }
        for (int g = 0; g < 2; g++)
        {
            var s = new Span<float>(scores + g * stride, count);
            Activations.SoftCap(s, softcap, queryScale);
            Activations.Softmax(s);
        }
        for (int b = 0; b < headDim; b += 128)
        {
            Vector512<float> o00 = default, o01 = default, o02 = default, o03 = default, o04 = default, o05 = default, o06 = default, o07 = default;
            Vector512<float> o10 = default, o11 = default, o12 = default, o13 = default, o14 = default, o15 = default, o16 = default, o17 = default;
            slot = firstSlot;
            for (int n = 0; n < count; n++)
            {
                float* v = values + (long)slot * headDim + b;
                var p0 = Vector512.Create(scores[n]);
                var p1 = Vector512.Create(scores[stride + n]);
                var v0 = Vector512.Load(v); o00 = Vector512.MultiplyAddEstimate(v0, p0, o00); o10 = Vector512.MultiplyAddEstimate(v0, p1, o10);
                var v1 = Vector512.Load(v + 16); o01 = Vector512.MultiplyAddEstimate(v1, p0, o01); o11 = Vector512.MultiplyAddEstimate(v1, p1, o11);
                var v2 = Vector512.Load(v + 32); o02 = Vector512.MultiplyAddEstimate(v2, p0, o02); o12 = Vector512.MultiplyAddEstimate(v2, p1, o12);
                var v3 = Vector512.Load(v + 48); o03 = Vector512.MultiplyAddEstimate(v3, p0, o03); o13 = Vector512.MultiplyAddEstimate(v3, p1, o13);
                var v4 = Vector512.Load(v + 64); o04 = Vector512.MultiplyAddEstimate(v4, p0, o04); o14 = Vector512.MultiplyAddEstimate(v4, p1, o14);
                var v5 = Vector512.Load(v + 80); o05 = Vector512.MultiplyAddEstimate(v5, p0, o05); o15 = Vector512.MultiplyAddEstimate(v5, p1, o15);
                var v6 = Vector512.Load(v + 96); o06 = Vector512.MultiplyAddEstimate(v6, p0, o06); o16 = Vector512.MultiplyAddEstimate(v6, p1, o16);
                var v7 = Vector512.Load(v + 112); o07 = Vector512.MultiplyAddEstimate(v7, p0, o07); o17 = Vector512.MultiplyAddEstimate(v7, p1, o17);
                if (++slot == ring) slot = 0;
            }
            float* a = output + b, c = output + headDim + b;
            o00.Store(a); o01.Store(a + 16); o02.Store(a + 32); o03.Store(a + 48); o04.Store(a + 64); o05.Store(a + 80); o06.Store(a + 96); o07.Store(a + 112);
            o10.Store(c); o11.Store(c + 16); o12.Store(c + 32); o13.Store(c + 48); o14.Store(c + 64); o15.Store(c + 80); o16.Store(c + 96); o17.Store(c + 112);
        }
    }

    /// <summary>The generated <c>GroupDot</c>: one key row against the two queries, eight accumulators each, summed as a
    /// balanced tree.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void GroupDot2(float* q, float* k, float* scores, long stride, int headDim)
    {
        Vector512<float> a00 = default, a01 = default, a02 = default, a03 = default, a04 = default, a05 = default, a06 = default, a07 = default;
        Vector512<float> a10 = default, a11 = default, a12 = default, a13 = default, a14 = default, a15 = default, a16 = default, a17 = default;
        float* r = q + headDim;
        for (int i = 0; i < headDim; i += 128)
        {
            var k0 = Vector512.Load(k + i); a00 = Vector512.MultiplyAddEstimate(Vector512.Load(q + i), k0, a00); a10 = Vector512.MultiplyAddEstimate(Vector512.Load(r + i), k0, a10);
            var k1 = Vector512.Load(k + i + 16); a01 = Vector512.MultiplyAddEstimate(Vector512.Load(q + i + 16), k1, a01); a11 = Vector512.MultiplyAddEstimate(Vector512.Load(r + i + 16), k1, a11);
            var k2 = Vector512.Load(k + i + 32); a02 = Vector512.MultiplyAddEstimate(Vector512.Load(q + i + 32), k2, a02); a12 = Vector512.MultiplyAddEstimate(Vector512.Load(r + i + 32), k2, a12);
            var k3 = Vector512.Load(k + i + 48); a03 = Vector512.MultiplyAddEstimate(Vector512.Load(q + i + 48), k3, a03); a13 = Vector512.MultiplyAddEstimate(Vector512.Load(r + i + 48), k3, a13);
            var k4 = Vector512.Load(k + i + 64); a04 = Vector512.MultiplyAddEstimate(Vector512.Load(q + i + 64), k4, a04); a14 = Vector512.MultiplyAddEstimate(Vector512.Load(r + i + 64), k4, a14);
            var k5 = Vector512.Load(k + i + 80); a05 = Vector512.MultiplyAddEstimate(Vector512.Load(q + i + 80), k5, a05); a15 = Vector512.MultiplyAddEstimate(Vector512.Load(r + i + 80), k5, a15);
            var k6 = Vector512.Load(k + i + 96); a06 = Vector512.MultiplyAddEstimate(Vector512.Load(q + i + 96), k6, a06); a16 = Vector512.MultiplyAddEstimate(Vector512.Load(r + i + 96), k6, a16);
            var k7 = Vector512.Load(k + i + 112); a07 = Vector512.MultiplyAddEstimate(Vector512.Load(q + i + 112), k7, a07); a17 = Vector512.MultiplyAddEstimate(Vector512.Load(r + i + 112), k7, a17);
        }
        scores[0] = Vector512.Sum(((a00 + a01) + (a02 + a03)) + ((a04 + a05) + (a06 + a07)));
        scores[stride] = Vector512.Sum(((a10 + a11) + (a12 + a13)) + ((a14 + a15) + (a16 + a17)));
    }

    /// <summary>The generated <c>ApplyRope</c> as a loop over the half-head (<paramref name="half"/> a multiple of 16),
    /// 512-bit.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Rope(float* x, float* cos, float* sin, int half)
    {
        for (int i = 0; i < half; i += 16)
        {
            Vector512<float> a = Vector512.Load(x + i), b = Vector512.Load(x + half + i), c = Vector512.Load(cos + i), s = Vector512.Load(sin + i);
            (a * c - b * s).Store(x + i);
            (b * c + a * s).Store(x + half + i);
        }
    }
}
