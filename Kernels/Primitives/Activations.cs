using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace GemmaGen.Kernels;

/// <summary>The element-wise functions of Gemma 2, in float32.</summary>
public static class Activations
{
    /// <summary>√(2/π), the tanh-GELU constant.</summary>
    public const float GeluScale = 0.7978845608028654f;

    /// <summary>gelu_pytorch_tanh: 0.5·u·(1 + tanh(√(2/π)·(u + 0.044715·u³))). Not the erf GELU. One lane of
    /// <see cref="GeluTanh(Vector128{float})"/>, so that every path computes the same function.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float GeluTanh(float u) => GeluTanh(Vector128.Create(u)).ToScalar();

    // The one definition of tanh-GELU, at each vector width: u / (1 + exp(−2z)), z = √(2/π)·(u + 0.044715·u³), the
    // same function as 0.5·u·(1 + tanh z) (within a few float32 ulps) with one vectorized exp. Decode, prefill, the
    // quantized kernels and the reference decoder all call these.

    /// <summary>gelu_tanh of each lane (see <see cref="GeluTanh(float)"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> GeluTanh(Vector512<float> u)
    {
        var z = GeluScale * (u + 0.044715f * u * u * u);
        return u / (Vector512<float>.One + Vector512.Exp(-2f * z));
    }

    /// <summary>gelu_tanh of each lane (see <see cref="GeluTanh(float)"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> GeluTanh(Vector256<float> u)
    {
        var z = GeluScale * (u + 0.044715f * u * u * u);
        return u / (Vector256<float>.One + Vector256.Exp(-2f * z));
    }

    /// <summary>gelu_tanh of each lane (see <see cref="GeluTanh(float)"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> GeluTanh(Vector128<float> u)
    {
        var z = GeluScale * (u + 0.044715f * u * u * u);
        return u / (Vector128<float>.One + Vector128.Exp(-2f * z));
    }

    /// <summary>
    /// The gated MLP activation: y[i] = gelu_tanh(gateUp[2i])·gateUp[2i + 1] for i &lt; <paramref name="count"/> (gate and
    /// up interleaved, as the fused gate/up matrix produces them). Decode and prefill both call this.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static unsafe void GeluTanhGated(float* gateUp, float* y, int count)
    {
        int i = 0;
        if (Avx512F.IsSupported)
        {
            var even = Vector512.Create(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
            var odd = even + Vector512<int>.One;
            for (; i + 16 <= count; i += 16)
            {
                Vector512<float> a = Vector512.Load(gateUp + 2 * i), b = Vector512.Load(gateUp + 2 * i + 16);
                (GeluTanh(Avx512F.PermuteVar16x32x2(a, even, b)) * Avx512F.PermuteVar16x32x2(a, odd, b)).Store(y + i);
            }
        }
        else if (Avx2.IsSupported)
        {
            for (; i + 8 <= count; i += 8)
            {
                Vector256<float> a = Vector256.Load(gateUp + 2 * i), b = Vector256.Load(gateUp + 2 * i + 8);
                // [a0 a2 b0 b2 | a4 a6 b4 b6] → [a0 a2 a4 a6 b0 b2 b4 b6]
                var u = Avx2.Permute4x64(Avx.Shuffle(a, b, 0b10_00_10_00).AsDouble(), 0b11_01_10_00).AsSingle();
                var up = Avx2.Permute4x64(Avx.Shuffle(a, b, 0b11_01_11_01).AsDouble(), 0b11_01_10_00).AsSingle();
                (GeluTanh(u) * up).Store(y + i);
            }
        }
        for (; i < count; i++) y[i] = GeluTanh(gateUp[2 * i]) * gateUp[2 * i + 1];
    }

    /// <summary>cap·tanh(scale·x / cap) in place, the soft-cap of attention scores (after the query scale) and of the
    /// final logits (scale 1); a cap of zero (or none) only scales.</summary>
    public static void SoftCap(Span<float> values, float cap, float scale = 1f)
    {
        if (cap <= 0)
        {
            if (scale != 1f) TensorPrimitives.Multiply(values, scale, values);
            return;
        }
        TensorPrimitives.Multiply(values, scale / cap, values);
        TensorPrimitives.Tanh(values, values);
        TensorPrimitives.Multiply(values, cap, values);
    }

    /// <summary>Softmax in place, the maximum subtracted first so no exponent overflows.</summary>
    public static void Softmax(Span<float> values)
    {
        float max = TensorPrimitives.Max(values);
        TensorPrimitives.Subtract(values, max, values);
        TensorPrimitives.Exp(values, values);
        float sum = TensorPrimitives.Sum(values);
        TensorPrimitives.Multiply(values, 1f / sum, values);
    }

    /// <summary>y = x / √(mean(x²) + eps) · g, where g is the norm's multiplier as <see cref="ModelWeights"/> holds it:
    /// float32(1 + w) for a Hugging Face weight w (as Hugging Face computes it), the stored value for GGUF.</summary>
    public static void RmsNorm(ReadOnlySpan<float> x, ReadOnlySpan<float> g, float eps, Span<float> y)
    {
        float sumOfSquares = TensorPrimitives.Dot(x, x);
        float scale = 1f / MathF.Sqrt(sumOfSquares / x.Length + eps);
        for (int i = 0; i < x.Length; i++) y[i] = x[i] * scale * g[i];
    }
}
