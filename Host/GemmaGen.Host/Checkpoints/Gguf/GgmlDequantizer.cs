using System.Buffers.Binary;

namespace GemmaGen;

/// <summary>
/// Turns ggml's quantized blocks (Q8_0, Q4_0, Q4_K, Q5_K, Q6_K) into float32 values bit-identical to ggml's
/// <c>dequantize_row_*</c> (and gguf-py's numpy dequantizers). Every value is a product of an fp16 scale, a small
/// integer sub-block scale and a small integer quant, which float32 holds exactly; the K-quants with a minimum
/// subtract one exact product from another, rounded once. So the float32 values are exactly the values the file
/// stores, nothing rounded to another format.
/// </summary>
/// <remarks>Block layouts (little-endian, <c>d</c> and <c>dmin</c> are IEEE half):
/// <list type="bullet">
/// <item>Q8_0, 34 bytes / 32 values: <c>d</c>, 32 × int8 <c>q</c>; <c>v = d·q</c>.</item>
/// <item>Q4_0, 18 bytes / 32: <c>d</c>, 16 bytes whose low nibbles are values 0..15 and high nibbles 16..31;
/// <c>v = d·(q − 8)</c>.</item>
/// <item>Q4_K, 144 bytes / 256: <c>d</c>, <c>dmin</c>, 12 bytes packing eight 6-bit sub-block scales and mins, 128
/// bytes of nibbles; each 64 values take 32 bytes, low nibbles the first 32 values, high nibbles the next 32;
/// value in sub-block j: <c>(d·sc_j)·q − (dmin·m_j)</c>.</item>
/// <item>Q5_K, 176 bytes / 256: as Q4_K with 32 bytes of high bits after the scales: bit j of byte l is the fifth
/// bit of value l of sub-block j.</item>
/// <item>Q6_K, 210 bytes / 256: 128 bytes of low nibbles, 64 bytes of 2-bit high parts, 16 int8 scales (one per
/// 16 values), <c>d</c>; <c>v = (d·sc)·(q − 32)</c>.</item>
/// </list></remarks>
internal static class GgmlDequantizer
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
        if (values.Length % type.BlockSize != 0 || (long)values.Length / type.BlockSize * type.BytesPerBlock != blocks.Length)
            throw new ArgumentException($"{blocks.Length} bytes of {type.Name} blocks do not hold {values.Length} values");
        int count = values.Length / type.BlockSize;
        for (int b = 0; b < count; b++)
        {
            var block = blocks.Slice(b * type.BytesPerBlock, type.BytesPerBlock);
            var output = values.Slice(b * type.BlockSize, type.BlockSize);
            switch (type.Id)
            {
                case 8: Q8_0(block, output); break;
                case 2: Q4_0(block, output); break;
                case 12: Q4_K(block, output); break;
                case 13: Q5_K(block, output); break;
                case 14: Q6_K(block, output); break;
                default: throw new ArgumentException($"ggml type {type.Name} is not a supported quantized type", nameof(type));
            }
        }
    }

    private static float Half(ReadOnlySpan<byte> bytes) => (float)BinaryPrimitives.ReadHalfLittleEndian(bytes);

    private static void Q8_0(ReadOnlySpan<byte> block, Span<float> y)
    {
        float d = Half(block);
        for (int i = 0; i < 32; i++) y[i] = (sbyte)block[2 + i] * d;
    }

    private static void Q4_0(ReadOnlySpan<byte> block, Span<float> y)
    {
        float d = Half(block);
        var qs = block[2..];
        for (int i = 0; i < 16; i++)
        {
            y[i] = ((qs[i] & 0xF) - 8) * d;
            y[i + 16] = ((qs[i] >> 4) - 8) * d;
        }
    }

    /// <summary>The 6-bit scale and minimum of sub-block <paramref name="j"/> (0..7) from the 12 packed bytes: for
    /// j &lt; 4 the low 6 bits of bytes j and j + 4; above, a nibble of byte j + 4 and the top 2 bits of bytes j − 4
    /// and j.</summary>
    private static (int Scale, int Min) ScaleMin(ReadOnlySpan<byte> scales, int j) => j < 4
        ? (scales[j] & 63, scales[j + 4] & 63)
        : ((scales[j + 4] & 0xF) | ((scales[j - 4] >> 6) << 4), (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4));

    private static void Q4_K(ReadOnlySpan<byte> block, Span<float> y)
    {
        float d = Half(block), dmin = Half(block[2..]);
        var scales = block.Slice(4, 12);
        var qs = block.Slice(16, 128);
        for (int group = 0; group < 4; group++)
        {
            var (sc0, m0) = ScaleMin(scales, 2 * group);
            var (sc1, m1) = ScaleMin(scales, 2 * group + 1);
            float d0 = d * sc0, min0 = dmin * m0, d1 = d * sc1, min1 = dmin * m1;
            var q = qs.Slice(32 * group, 32);
            var output = y.Slice(64 * group, 64);
            for (int l = 0; l < 32; l++)
            {
                output[l] = d0 * (q[l] & 0xF) - min0;
                output[l + 32] = d1 * (q[l] >> 4) - min1;
            }
        }
    }

    private static void Q5_K(ReadOnlySpan<byte> block, Span<float> y)
    {
        float d = Half(block), dmin = Half(block[2..]);
        var scales = block.Slice(4, 12);
        var qh = block.Slice(16, 32);
        var qs = block.Slice(48, 128);
        for (int group = 0; group < 4; group++)
        {
            var (sc0, m0) = ScaleMin(scales, 2 * group);
            var (sc1, m1) = ScaleMin(scales, 2 * group + 1);
            float d0 = d * sc0, min0 = dmin * m0, d1 = d * sc1, min1 = dmin * m1;
            int bit0 = 2 * group, bit1 = 2 * group + 1;
            var q = qs.Slice(32 * group, 32);
            var output = y.Slice(64 * group, 64);
            for (int l = 0; l < 32; l++)
            {
                output[l] = d0 * ((q[l] & 0xF) | (((qh[l] >> bit0) & 1) << 4)) - min0;
                output[l + 32] = d1 * ((q[l] >> 4) | (((qh[l] >> bit1) & 1) << 4)) - min1;
            }
        }
    }

    private static void Q6_K(ReadOnlySpan<byte> block, Span<float> y)
    {
        var ql = block[..128];
        var qh = block.Slice(128, 64);
        var scales = block.Slice(192, 16);
        float d = Half(block[208..]);
        for (int half = 0; half < 2; half++)
        {
            var low = ql.Slice(64 * half, 64);
            var high = qh.Slice(32 * half, 32);
            var output = y.Slice(128 * half, 128);
            for (int l = 0; l < 32; l++)
            {
                int q0 = ((low[l] & 0xF) | (((high[l] >> 0) & 3) << 4)) - 32;
                int q1 = ((low[l + 32] & 0xF) | (((high[l] >> 2) & 3) << 4)) - 32;
                int q2 = ((low[l] >> 4) | (((high[l] >> 4) & 3) << 4)) - 32;
                int q3 = ((low[l + 32] >> 4) | (((high[l] >> 6) & 3) << 4)) - 32;
                int s = 8 * half + l / 16;
                output[l] = d * (sbyte)scales[s] * q0;
                output[l + 32] = d * (sbyte)scales[s + 2] * q1;
                output[l + 64] = d * (sbyte)scales[s + 4] * q2;
                output[l + 96] = d * (sbyte)scales[s + 6] * q3;
            }
        }
    }
}
