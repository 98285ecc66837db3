using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace GemmaGen.Kernels;

/// <summary>ggml's <c>block_q6_K</c> as stored (<see cref="KQuantBlocks"/>): 210 bytes per 256 values.</summary>
internal readonly unsafe struct Q6_KBlock : IKQuantBlock
{
    /// <summary>Bytes of one super-block.</summary>
    public const int Bytes = 210;

    /// <summary>Where the half d is.</summary>
    public const int ScaleOffset = 208;

    /// <summary>Where the 16 int8 scales are.</summary>
    public const int ScalesOffset = 192;

    private const int HighOffset = 128;

    public static TensorDType SourceType => TensorDType.Q6_K;

    public static int BlockBytes => Bytes;

    /// <summary>The four 32-value quarters of each half, one vector of values each.</summary>
    public static void Dequantize(byte* block, float* y)
    {
        float d = KQuantBlocks.HalfAt(block + ScaleOffset);
        sbyte* sc = (sbyte*)block + ScalesOffset;
        if (!Vector256.IsHardwareAccelerated)
        {
            byte* values = stackalloc byte[KQuantBlocks.BlockSize];
            Values(block, values);
            for (int i = 0; i < KQuantBlocks.BlockSize; i++) y[i] = d * sc[i / 16] * (values[i] - 32);
            return;
        }
        for (int half = 0; half < 2; half++)
        {
            byte* low = block + 64 * half, high = block + HighOffset + 32 * half;
            float* output = y + 128 * half;
            Vector256<byte> low0 = Vector256.Load(low), low1 = Vector256.Load(low + 32), bits = Vector256.Load(high);
            var nibble = Vector256.Create((byte)0xF);
            Store32(((low0 & nibble) | Vector256.ShiftLeft(bits & Vector256.Create((byte)3), 4)), d, sc + 8 * half, output);
            Store32(((low1 & nibble) | Vector256.ShiftLeft(Vector256.ShiftRightLogical(bits, 2) & Vector256.Create((byte)3), 4)), d, sc + 8 * half + 2, output + 32);
            Store32((Vector256.ShiftRightLogical(low0, 4) | Vector256.ShiftLeft(Vector256.ShiftRightLogical(bits, 4) & Vector256.Create((byte)3), 4)), d, sc + 8 * half + 4, output + 64);
            Store32((Vector256.ShiftRightLogical(low1, 4) | Vector256.ShiftLeft(Vector256.ShiftRightLogical(bits, 6), 4)), d, sc + 8 * half + 6, output + 96);
        }
    }

    /// <summary>The 256 values as <see cref="IKQuantBlock.Values"/> (0..63): in half h (values 128h..128h+127), quarter
    /// u (32 values), l &lt; 32: the low nibble of byte 64h + 32(u % 2) + l (u &lt; 2) or its high one (u ≥ 2), and bits
    /// 2u, 2u + 1 of byte 128 + 32h + l as bits 4-5.</summary>
    public static void Values(byte* block, byte* q)
    {
        for (int v = 0; v < KQuantBlocks.BlockSize; v++)
        {
            int h = v / 128, u = v % 128 / 32, l = v % 32;
            int low = (block[64 * h + 32 * (u % 2) + l] >> (4 * (u / 2))) & 0xF, high = (block[HighOffset + 32 * h + l] >> (2 * u)) & 3;
            q[v] = (byte)(low | high << 4);
        }
    }

    /// <summary>y = (d·sc_k)·(q − 32) for 32 values of 6-bit <paramref name="q"/>, the first 16 with scale
    /// <paramref name="sc"/>[0], the next with sc[1]: d·sc exact, times an exact small integer.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store32(Vector256<byte> q, float d, sbyte* sc, float* y)
    {
        var values = (q.AsSByte() - Vector256.Create((sbyte)32));
        Store16(Vector256.WidenLower(values), d * sc[0], y);
        Store16(Vector256.WidenUpper(values), d * sc[1], y + 16);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store16(Vector256<short> q, float scale, float* y)
    {
        (Vector256.ConvertToSingle(Vector256.WidenLower(q)) * scale).Store(y);
        (Vector256.ConvertToSingle(Vector256.WidenUpper(q)) * scale).Store(y + 8);
    }

    /// <summary>Per 16 values: the scale is the value of largest magnitude over −32 (so that it maps to −32, as Q4_0
    /// does); d is the largest scale magnitude over 127 as a half (rounded away from zero), sc the nearest integer to
    /// scale / d, q the nearest integer to x / (d·sc) within −32..31.</summary>
    public static void Quantize(float* x, byte* block)
    {
        Span<float> scale = stackalloc float[16];
        float largest = 0;
        for (int k = 0; k < 16; k++)
        {
            float extreme = 0;
            for (int l = 0; l < 16; l++)
            {
                if (MathF.Abs(x[16 * k + l]) > MathF.Abs(extreme)) extreme = x[16 * k + l];
            }
            scale[k] = extreme / -32;
            largest = MathF.Max(largest, MathF.Abs(scale[k]));
        }
        ushort bits = F16Scale.Encode(largest / 127);
        *(ushort*)(block + ScaleOffset) = bits;
        float d = F16Scale.ToSingle(bits);
        sbyte* sc = (sbyte*)block + ScalesOffset;
        for (int k = 0; k < 16; k++) sc[k] = (sbyte)(d == 0 ? 0 : Math.Clamp((int)MathF.Round(scale[k] / d), -128, 127));
        new Span<byte>(block, ScalesOffset).Clear();
        for (int i = 0; i < 256; i++)
        {
            float step = d * sc[i / 16];
            int q = (step == 0 ? 0 : Math.Clamp((int)MathF.Round(x[i] / step), -32, 31)) + 32;
            int half = i / 128, quarter = i % 128 / 32, l = i % 32;
            block[64 * half + 32 * (quarter % 2) + l] |= (byte)((q & 0xF) << (4 * (quarter / 2)));
            block[HighOffset + 32 * half + l] |= (byte)((q >> 4) << (2 * quarter));
        }
    }

}
