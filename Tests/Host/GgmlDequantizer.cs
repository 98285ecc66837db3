using GemmaGen.Kernels;

namespace GemmaGen.Tests.Host;

/// <summary>
/// The product's decoding of ggml's quantized blocks (Q8_0, Q4_0 and the K-quants), as the weight formats and the
/// loader use it (<see cref="TensorView.ReadFloats"/>; the K-quants' layout in <see cref="KQuantBlocks"/>), over raw
/// block bytes, for the tests that hold it to an independent scalar reference and to the weights the formats keep.
/// </summary>
internal static unsafe class GgmlDequantizer
{
    /// <summary>Dequantizes whole blocks: <paramref name="values"/> holds <c>blocks × BlockSize</c> values and
    /// <paramref name="blocks"/> exactly their bytes.</summary>
    public static void Dequantize(GgmlType type, ReadOnlySpan<byte> blocks, Span<float> values)
    {
        var dtype = GgufCheckpoint.StoredAs(type);
        if (dtype is null || !TensorView.IsBlocked(dtype.Value))
            throw new ArgumentException($"ggml type {type.Name} is not a quantized type GemmaGen reads", nameof(type));
        if (values.Length % type.BlockSize != 0 || (long)values.Length / type.BlockSize * type.BytesPerBlock != blocks.Length)
            throw new ArgumentException($"{blocks.Length} bytes of {type.Name} blocks do not hold {values.Length} values");
        fixed (byte* data = blocks)
        {
            new TensorView(type.Name, dtype.Value, [values.Length], data, blocks.Length, "ggml blocks").ReadFloats(0, values);
        }
    }
}
