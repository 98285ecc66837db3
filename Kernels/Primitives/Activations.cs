using System.Numerics.Tensors;
using System.Runtime.CompilerServices;

namespace GemmaGen.Kernels;

/// <summary>The element-wise functions of Gemma 2, in float32.</summary>
public static class Activations
{
    /// <summary>√(2/π), the tanh-GELU constant.</summary>
    public const float GeluScale = 0.7978845608028654f;

    /// <summary>gelu_pytorch_tanh: 0.5·u·(1 + tanh(√(2/π)·(u + 0.044715·u³))). Not the erf GELU.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float GeluTanh(float u) => 0.5f * u * (1f + MathF.Tanh(GeluScale * (u + 0.044715f * u * u * u)));

    /// <summary>cap·tanh(x/cap) in place; a cap of zero (or none) leaves the values alone.</summary>
    public static void SoftCap(Span<float> values, float cap)
    {
        if (cap <= 0) return;
        TensorPrimitives.Multiply(values, 1f / cap, values);
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

    /// <summary>y = x / √(mean(x²) + eps) · (1 + w). The stored weight is w; the 1 + is applied here, as one FMA.</summary>
    public static void RmsNorm(ReadOnlySpan<float> x, ReadOnlySpan<float> w, float eps, Span<float> y)
    {
        float sumOfSquares = TensorPrimitives.Dot(x, x);
        float scale = 1f / MathF.Sqrt(sumOfSquares / x.Length + eps);
        for (int i = 0; i < x.Length; i++)
        {
            float m = x[i] * scale;
            y[i] = MathF.FusedMultiplyAdd(w[i], m, m);
        }
    }
}
