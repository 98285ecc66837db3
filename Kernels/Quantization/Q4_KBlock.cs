using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace GemmaGen.Kernels;

/// <summary>ggml's <c>block_q4_K</c> as stored (<see cref="KQuantBlocks"/>): 144 bytes per 256 values.</summary>
internal readonly unsafe struct Q4_KBlock : IKQuantBlock
{
    /// <summary>Bytes of one super-block.</summary>
    public const int Bytes = 144;

    public static TensorDType SourceType => TensorDType.Q4_K;

    public static int BlockBytes => Bytes;

    public static void Dequantize(byte* block, float* y) => MinKBlock.Dequantize(block, y, fifthBits: false);

    public static void Values(byte* block, byte* q) => MinKBlock.Values(block, q, fifthBits: false);

    public static void Quantize(float* x, byte* block) => MinKBlock.Quantize(x, block, fifthBits: false);
}

/// <summary>ggml's <c>block_q5_K</c> as stored (<see cref="KQuantBlocks"/>): 176 bytes per 256 values.</summary>
internal readonly unsafe struct Q5_KBlock : IKQuantBlock
{
    /// <summary>Bytes of one super-block.</summary>
    public const int Bytes = 176;

    public static TensorDType SourceType => TensorDType.Q5_K;

    public static int BlockBytes => Bytes;

    public static void Dequantize(byte* block, float* y) => MinKBlock.Dequantize(block, y, fifthBits: true);

    public static void Values(byte* block, byte* q) => MinKBlock.Values(block, q, fifthBits: true);

    public static void Quantize(float* x, byte* block) => MinKBlock.Quantize(x, block, fifthBits: true);
}

/// <summary>
/// The code Q4_K and Q5_K share (a Q5_K block is a Q4_K block with 32 bytes of fifth bits between the scales and the
/// nibbles); <c>fifthBits</c> is a constant at each call, so the inlined code has no branch on it.
/// </summary>
internal static unsafe class MinKBlock
{
    private const int ScalesOffset = 4, HighBitsOffset = 16;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int QuantsOffset(bool fifthBits) => fifthBits ? 48 : 16;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Dequantize(byte* block, float* y, bool fifthBits)
    {
        float d = KQuantBlocks.HalfAt(block), dmin = KQuantBlocks.HalfAt(block + 2);
        KQuantBlocks.UnpackScales(block + ScalesOffset, out ulong scales, out ulong mins);
        if (!Vector256.IsHardwareAccelerated)
        {
            byte* values = stackalloc byte[KQuantBlocks.BlockSize];
            Values(block, values, fifthBits);
            for (int i = 0; i < KQuantBlocks.BlockSize; i++)
                y[i] = d * (int)((scales >> (8 * (i / 32))) & 0xFF) * values[i] - dmin * (int)((mins >> (8 * (i / 32))) & 0xFF);
            return;
        }
        byte* qs = block + QuantsOffset(fifthBits), qh = block + HighBitsOffset;
        for (int j = 0; j < 8; j++)
        {
            // Sub-block j: the low (even j) or high (odd j) nibbles of bytes 32(j/2)..32(j/2)+31.
            float dj = d * (int)((scales >> (8 * j)) & 0xFF), mj = dmin * (int)((mins >> (8 * j)) & 0xFF);
            var q = Vector256.ShiftRightLogical(Vector256.Load(qs + 32 * (j / 2)), 4 * (j % 2)) & Vector256.Create((byte)0xF);
            if (fifthBits) q |= Vector256.ShiftLeft(Vector256.ShiftRightLogical(Vector256.Load(qh), j) & Vector256<byte>.One, 4);
            KQuantBlocks.Store32(q, dj, mj, y + 32 * j);
        }
    }

    /// <summary>The 256 values as <see cref="IKQuantBlock.Values"/>: value 32j + l is the low (even j) or high (odd j)
    /// nibble of byte 32(j/2) + l of the nibbles, with bit j of fifth-bit byte l as its bit 4 (Q5_K).</summary>
    public static void Values(byte* block, byte* q, bool fifthBits)
    {
        byte* qs = block + QuantsOffset(fifthBits), qh = block + HighBitsOffset;
        for (int j = 0; j < 8; j++)
        {
            for (int l = 0; l < 32; l++)
            {
                int value = (qs[32 * (j / 2) + l] >> (4 * (j % 2))) & 0xF;
                if (fifthBits) value |= ((qh[l] >> j) & 1) << 4;
                q[32 * j + l] = (byte)value;
            }
        }
    }

    /// <summary>Per sub-block: the minimum m = max(0, −min x) and the scale (max x + m) / qmax; d and dmin are the largest
    /// of them over 63 as halves, sc and m the nearest integers to them over d and dmin (at most 63), q the nearest to
    /// (x + dmin·m) / (d·sc) within 0..qmax.</summary>
    public static void Quantize(float* x, byte* block, bool fifthBits)
    {
        int qmax = fifthBits ? 31 : 15;
        Span<float> scale = stackalloc float[8], min = stackalloc float[8];
        float maxScale = 0, maxMin = 0;
        for (int j = 0; j < 8; j++)
        {
            float lo = 0, hi = 0;
            for (int l = 0; l < 32; l++)
            {
                lo = MathF.Min(lo, x[32 * j + l]);
                hi = MathF.Max(hi, x[32 * j + l]);
            }
            min[j] = -lo;
            scale[j] = (hi - lo) / qmax;
            maxScale = MathF.Max(maxScale, scale[j]);
            maxMin = MathF.Max(maxMin, min[j]);
        }
        var d = (Half)(maxScale / 63);
        var dmin = (Half)(maxMin / 63);
        Unsafe.WriteUnaligned(block, d);
        Unsafe.WriteUnaligned(block + 2, dmin);
        Span<byte> sc = stackalloc byte[8], m = stackalloc byte[8];
        for (int j = 0; j < 8; j++)
        {
            sc[j] = (byte)((float)d == 0 ? 0 : Math.Clamp((int)MathF.Round(scale[j] / (float)d), 0, 63));
            m[j] = (byte)((float)dmin == 0 ? 0 : Math.Clamp((int)MathF.Round(min[j] / (float)dmin), 0, 63));
        }
        KQuantBlocks.PackScales(sc, m, block + ScalesOffset);
        byte* qs = block + QuantsOffset(fifthBits), qh = block + HighBitsOffset;
        new Span<byte>(qs, 128).Clear();
        if (fifthBits) new Span<byte>(qh, 32).Clear();
        for (int j = 0; j < 8; j++)
        {
            float step = (float)d * sc[j], offset = (float)dmin * m[j];
            for (int l = 0; l < 32; l++)
            {
                int q = step == 0 ? 0 : Math.Clamp((int)MathF.Round((x[32 * j + l] + offset) / step), 0, qmax);
                qs[32 * (j / 2) + l] |= (byte)((q & 0xF) << (4 * (j % 2)));
                if (fifthBits) qh[l] |= (byte)((q >> 4) << j);
            }
        }
    }

}
