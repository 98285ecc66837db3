using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace GemmaGen.Kernels;

/// <summary>
/// The compiled decoders' RMSNorm, written for runtime widths at the widest vector the CPU runs (eight vectors a pass).
/// It was generated per spec, with the width a constant, until the two measured alike side by side (BENCHMARKS.md,
/// "Specialization"); the sum of squares keeps the generated kernel's order (eight accumulators of consecutive vectors,
/// summed as a balanced tree), so the results are the same floats.
/// </summary>
public static unsafe class Normalization
{
    /// <summary>y = x / sqrt(mean(x²) + eps) · g over <paramref name="n"/> floats, g the norm's multiplier (1 + w).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void RmsNorm(float* x, float* g, float* y, int n, float eps)
    {
        float scale = Scale(x, n, eps);
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            // eight vectors a pass, written out, as the generated kernel was (one vector a pass measured 10-20% slower)
            for (; i + 128 <= n; i += 128)
            {
                float* xi = x + i, gi = g + i, yi = y + i;
                (Vector512.Load(xi) * scale * Vector512.Load(gi)).Store(yi);
                (Vector512.Load(xi + 16) * scale * Vector512.Load(gi + 16)).Store(yi + 16);
                (Vector512.Load(xi + 32) * scale * Vector512.Load(gi + 32)).Store(yi + 32);
                (Vector512.Load(xi + 48) * scale * Vector512.Load(gi + 48)).Store(yi + 48);
                (Vector512.Load(xi + 64) * scale * Vector512.Load(gi + 64)).Store(yi + 64);
                (Vector512.Load(xi + 80) * scale * Vector512.Load(gi + 80)).Store(yi + 80);
                (Vector512.Load(xi + 96) * scale * Vector512.Load(gi + 96)).Store(yi + 96);
                (Vector512.Load(xi + 112) * scale * Vector512.Load(gi + 112)).Store(yi + 112);
            }
            for (; i + 16 <= n; i += 16) (Vector512.Load(x + i) * scale * Vector512.Load(g + i)).Store(y + i);
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            for (; i + 8 <= n; i += 8) (Vector256.Load(x + i) * scale * Vector256.Load(g + i)).Store(y + i);
        }
        for (; i < n; i++) y[i] = x[i] * scale * g[i];
    }

    /// <summary>x += RMSNorm(branch)·g over <paramref name="n"/> floats: a block's post-norm and residual add in one pass.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void RmsNormAdd(float* branch, float* g, float* x, int n, float eps)
    {
        float scale = Scale(branch, n, eps);
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            for (; i + 128 <= n; i += 128)
            {
                float* xi = x + i, bi = branch + i, gi = g + i;
                (Vector512.Load(xi) + Vector512.Load(bi) * scale * Vector512.Load(gi)).Store(xi);
                (Vector512.Load(xi + 16) + Vector512.Load(bi + 16) * scale * Vector512.Load(gi + 16)).Store(xi + 16);
                (Vector512.Load(xi + 32) + Vector512.Load(bi + 32) * scale * Vector512.Load(gi + 32)).Store(xi + 32);
                (Vector512.Load(xi + 48) + Vector512.Load(bi + 48) * scale * Vector512.Load(gi + 48)).Store(xi + 48);
                (Vector512.Load(xi + 64) + Vector512.Load(bi + 64) * scale * Vector512.Load(gi + 64)).Store(xi + 64);
                (Vector512.Load(xi + 80) + Vector512.Load(bi + 80) * scale * Vector512.Load(gi + 80)).Store(xi + 80);
                (Vector512.Load(xi + 96) + Vector512.Load(bi + 96) * scale * Vector512.Load(gi + 96)).Store(xi + 96);
                (Vector512.Load(xi + 112) + Vector512.Load(bi + 112) * scale * Vector512.Load(gi + 112)).Store(xi + 112);
            }
            for (; i + 16 <= n; i += 16) (Vector512.Load(x + i) + Vector512.Load(branch + i) * scale * Vector512.Load(g + i)).Store(x + i);
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            for (; i + 8 <= n; i += 8) (Vector256.Load(x + i) + Vector256.Load(branch + i) * scale * Vector256.Load(g + i)).Store(x + i);
        }
        for (; i < n; i++) x[i] += branch[i] * scale * g[i];
    }

    /// <summary>1 / sqrt(mean(x²) + eps).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Scale(float* x, int n, float eps) => 1f / MathF.Sqrt(SumOfSquares(x, n) / n + eps);

    /// <summary>Σ x[i]² in the generated dot product's order: vector v goes to accumulator v mod 8, the accumulators are
    /// summed as ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7)), then across lanes, then the tail in order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float SumOfSquares(float* x, int n)
    {
        if (Vector512.IsHardwareAccelerated) return SumOfSquares<Width512, Vector512<float>>(x, n);
        return SumOfSquares<Width256, Vector256<float>>(x, n);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float SumOfSquares<TS, TV>(float* x, int n)
        where TS : struct, IVectorWidth<TV> where TV : struct
    {
        TV a0 = TS.Zero, a1 = TS.Zero, a2 = TS.Zero, a3 = TS.Zero, a4 = TS.Zero, a5 = TS.Zero, a6 = TS.Zero, a7 = TS.Zero;
        int i = 0;
        if (TS.IsHardwareAccelerated)
        {
            int block = 8 * TS.Count;
            for (; i + block <= n; i += block)
            {
                TV v0 = TS.Load(x + i), v1 = TS.Load(x + i + TS.Count), v2 = TS.Load(x + i + 2 * TS.Count), v3 = TS.Load(x + i + 3 * TS.Count);
                TV v4 = TS.Load(x + i + 4 * TS.Count), v5 = TS.Load(x + i + 5 * TS.Count), v6 = TS.Load(x + i + 6 * TS.Count), v7 = TS.Load(x + i + 7 * TS.Count);
                a0 = TS.MultiplyAddEstimate(v0, v0, a0);
                a1 = TS.MultiplyAddEstimate(v1, v1, a1);
                a2 = TS.MultiplyAddEstimate(v2, v2, a2);
                a3 = TS.MultiplyAddEstimate(v3, v3, a3);
                a4 = TS.MultiplyAddEstimate(v4, v4, a4);
                a5 = TS.MultiplyAddEstimate(v5, v5, a5);
                a6 = TS.MultiplyAddEstimate(v6, v6, a6);
                a7 = TS.MultiplyAddEstimate(v7, v7, a7);
            }
            for (int k = 0; i + TS.Count <= n; i += TS.Count, k++)
            {
                TV v = TS.Load(x + i);
                switch (k)
                {
                    case 0: a0 = TS.MultiplyAddEstimate(v, v, a0); break;
                    case 1: a1 = TS.MultiplyAddEstimate(v, v, a1); break;
                    case 2: a2 = TS.MultiplyAddEstimate(v, v, a2); break;
                    case 3: a3 = TS.MultiplyAddEstimate(v, v, a3); break;
                    case 4: a4 = TS.MultiplyAddEstimate(v, v, a4); break;
                    case 5: a5 = TS.MultiplyAddEstimate(v, v, a5); break;
                    default: a6 = TS.MultiplyAddEstimate(v, v, a6); break;
                }
            }
        }
        float sum = TS.Sum(TS.Add(TS.Add(TS.Add(a0, a1), TS.Add(a2, a3)), TS.Add(TS.Add(a4, a5), TS.Add(a6, a7))));
        for (; i < n; i++) sum += x[i] * x[i];
        return sum;
    }
}
