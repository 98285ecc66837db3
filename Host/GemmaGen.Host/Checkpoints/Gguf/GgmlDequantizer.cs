using GemmaGen.Kernels;

namespace GemmaGen;

/// <summary>
/// Turns ggml's quantized blocks (Q8_0, Q4_0, Q4_K, Q5_K, Q6_K) into float32 values bit-identical to ggml's
/// <c>dequantize_row_*</c> (and gguf-py's numpy dequantizers), by the decoders the weight formats use
/// (<see cref="TensorView.ReadFloats"/>; the K-quants' layout in <see cref="KQuantBlocks"/>). Every value is a product
/// of an fp16 scale, a small integer sub-block scale and a small integer quant, which float32 holds exactly; the
/// K-quants with a minimum subtract one exact product from another, rounded once. So the float32 values are exactly
/// the values the file stores, nothing rounded to another format.
/// </summary>
internal static unsafe class GgmlDequantizer
{
    /// <summary>The quantized types this class dequantizes.</summary>
    public static IReadOnlyList<GgmlType> Types { get; } = [GgmlType.Q8_0, GgmlType.Q4_0, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K];

    /// <summary>Whether <paramref name="type"/> is one of <see cref="Types"/>.</summary>
    public static bool Supports(GgmlType type) => Types.Contains(type);

    /// <summary>Dequantizes whole blocks: <paramref name="values"/> holds <c>blocks × BlockSize</c> values and
    /// <paramref name="blocks"/> exactly their bytes.</summary>
    /// <exception cref="ArgumentException">The type is not supported, or the lengths do not match.</exception>
    public static void Dequantize(GgmlType type, ReadOnlySpan<byte> blocks, Span<float> values)
    {
        if (!Supports(type) || GgufCheckpoint.StoredAs(type) is not { } dtype)
            throw new ArgumentException($"ggml type {type.Name} is not a supported quantized type", nameof(type));
        if (values.Length % type.BlockSize != 0 || (long)values.Length / type.BlockSize * type.BytesPerBlock != blocks.Length)
            throw new ArgumentException($"{blocks.Length} bytes of {type.Name} blocks do not hold {values.Length} values");
        fixed (byte* data = blocks)
        {
            new TensorView(type.Name, dtype, [values.Length], data, blocks.Length, "ggml blocks").ReadFloats(0, values);
        }
    }
}
