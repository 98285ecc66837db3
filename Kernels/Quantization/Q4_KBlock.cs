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

    public static void Quantize(float* x, byte* block) => MinKBlock.Quantize(x, block, fifthBits: false);

    public static void Dot512(byte* block, short* x, int* sums, float s, ref Vector512<float> acc, ref Vector256<float> minus) =>
        MinKBlock.Dot512(block, x, sums, s, ref acc, ref minus, fifthBits: false);

    public static void Dot256(byte* block, short* x, int* sums, float s, ref Vector256<float> acc, ref Vector256<float> minus) =>
        MinKBlock.Dot256(block, x, sums, s, ref acc, ref minus, fifthBits: false);

    public static bool HasMinimums => true;

    public static void Widen(byte* block, short* w, int* mins, out float d, out float dmin) =>
        MinKBlock.Widen(block, w, mins, out d, out dmin, fifthBits: false);
}

/// <summary>ggml's <c>block_q5_K</c> as stored (<see cref="KQuantBlocks"/>): 176 bytes per 256 values.</summary>
internal readonly unsafe struct Q5_KBlock : IKQuantBlock
{
    /// <summary>Bytes of one super-block.</summary>
    public const int Bytes = 176;

    public static TensorDType SourceType => TensorDType.Q5_K;

    public static int BlockBytes => Bytes;

    public static void Dequantize(byte* block, float* y) => MinKBlock.Dequantize(block, y, fifthBits: true);

    public static void Quantize(float* x, byte* block) => MinKBlock.Quantize(x, block, fifthBits: true);

    public static void Dot512(byte* block, short* x, int* sums, float s, ref Vector512<float> acc, ref Vector256<float> minus) =>
        MinKBlock.Dot512(block, x, sums, s, ref acc, ref minus, fifthBits: true);

    public static void Dot256(byte* block, short* x, int* sums, float s, ref Vector256<float> acc, ref Vector256<float> minus) =>
        MinKBlock.Dot256(block, x, sums, s, ref acc, ref minus, fifthBits: true);

    public static bool HasMinimums => true;

    public static void Widen(byte* block, short* w, int* mins, out float d, out float dmin) =>
        MinKBlock.Widen(block, w, mins, out d, out dmin, fifthBits: true);
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
        byte* qs = block + QuantsOffset(fifthBits), qh = block + HighBitsOffset;
        for (int j = 0; j < 8; j++)
        {
            // Sub-block j: the low (even j) or high (odd j) nibbles of bytes 32(j/2)..32(j/2)+31.
            float dj = d * (int)((scales >> (8 * j)) & 0xFF), mj = dmin * (int)((mins >> (8 * j)) & 0xFF);
            byte* q = qs + 32 * (j / 2);
            int shift = 4 * (j % 2);
            if (Vector256.IsHardwareAccelerated)
            {
                var values = Vector256.ShiftRightLogical(Vector256.Load(q), shift) & Vector256.Create((byte)0xF);
                if (fifthBits) values |= Vector256.ShiftLeft(Vector256.ShiftRightLogical(Vector256.Load(qh), j) & Vector256<byte>.One, 4);
                KQuantBlocks.Store32(values, dj, mj, y + 32 * j);
                continue;
            }
            for (int l = 0; l < 32; l++)
            {
                int value = (q[l] >> shift) & 0xF;
                if (fifthBits) value |= ((qh[l] >> j) & 1) << 4;
                y[32 * j + l] = dj * value - mj;
            }
        }
    }

    /// <summary>Sub-block j's 32 values as in <see cref="Dequantize"/>, widened to int16 and times sc_j; the minimums
    /// m_j as int32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Widen(byte* block, short* w, int* mins, out float d, out float dmin, bool fifthBits)
    {
        d = F16Scale.ToSingle(*(ushort*)block);
        dmin = F16Scale.ToSingle(*(ushort*)(block + 2));
        KQuantBlocks.UnpackScales(block + ScalesOffset, out ulong scales, out ulong minimums);
        Avx2.ConvertToVector256Int32(Vector128.CreateScalarUnsafe(minimums).AsByte()).Store(mins);
        byte* qs = block + QuantsOffset(fifthBits);
        var nibble = Vector256.Create((short)0xF);
        for (int half = 0; half < 2; half++)
        {
            // Bytes 16·half.. of each 32-byte run: values 16·half.. of both its sub-blocks.
            var high = fifthBits ? Avx2.ConvertToVector256Int16(block + HighBitsOffset + 16 * half).AsInt16() : default;
            for (int g = 0; g < 4; g++)
            {
                var bytes = Avx2.ConvertToVector256Int16(qs + 32 * g + 16 * half).AsInt16();
                var even = bytes & nibble;
                var odd = Vector256.ShiftRightLogical(bytes, 4);
                if (fifthBits)
                {
                    even |= Vector256.ShiftLeft(Vector256.ShiftRightLogical(high, 2 * g) & Vector256<short>.One, 4);
                    odd |= Vector256.ShiftLeft(Vector256.ShiftRightLogical(high, 2 * g + 1) & Vector256<short>.One, 4);
                }
                (even * Vector256.Create((short)((scales >> (16 * g)) & 0xFF))).Store(w + 64 * g + 16 * half);
                (odd * Vector256.Create((short)((scales >> (16 * g + 8)) & 0xFF))).Store(w + 64 * g + 32 + 16 * half);
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

    /// <summary>
    /// Per 64 values (32 bytes of nibbles), widened to int16: the low nibbles are sub-block 2g, the high ones 2g + 1
    /// (plus their fifth bits); each times its scale (at most 31·63, an int16; the scales widened once and spread by a
    /// permutation) meets its 32 inputs (<c>vpmaddwd</c>). Each lane sums 8 products per 128 values (below 2^30), then
    /// is scaled into the float lanes; the minimums' part is gathered in <paramref name="minus"/>. Unrolled by hand: the
    /// JIT does not unroll loops, and constant sub-block numbers make every shift and permutation index a constant.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Dot512(byte* block, short* x, int* sums, float s, ref Vector512<float> acc, ref Vector256<float> minus, bool fifthBits)
    {
        KQuantBlocks.UnpackScales(block + ScalesOffset, out ulong scales, out ulong mins);
        byte* qs = block + QuantsOffset(fifthBits);
        var high = fifthBits ? Avx512BW.ConvertToVector512Int16(Vector256.Load(block + HighBitsOffset)).AsInt16() : default;
        var sc = Sse41.ConvertToVector128Int16(Vector128.CreateScalarUnsafe(scales).AsByte()).ToVector256Unsafe().ToVector512Unsafe();
        var d = Vector512.Create(F16Scale.ToSingle(*(ushort*)block) * s);
        acc = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(Pair512(qs, x, high, sc, 0, fifthBits) + Pair512(qs, x, high, sc, 1, fifthBits)), d, acc);
        acc = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(Pair512(qs, x, high, sc, 2, fifthBits) + Pair512(qs, x, high, sc, 3, fifthBits)), d, acc);
        Minimums(block, mins, sums, s, ref minus);
    }

    /// <summary>Sub-blocks 2<paramref name="g"/> and 2g + 1 against their inputs: 16 int32 lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> Pair512(byte* qs, short* x, Vector512<short> high, Vector512<short> sc, int g, bool fifthBits)
    {
        var bytes = Avx512BW.ConvertToVector512Int16(Vector256.Load(qs + 32 * g)).AsInt16();
        var low = bytes & Vector512.Create((short)0xF);
        var upper = Vector512.ShiftRightLogical(bytes, 4);
        if (fifthBits)
        {
            low |= Vector512.ShiftLeft(Vector512.ShiftRightLogical(high, 2 * g) & Vector512<short>.One, 4);
            upper |= Vector512.ShiftLeft(Vector512.ShiftRightLogical(high, 2 * g + 1) & Vector512<short>.One, 4);
        }
        low *= Avx512BW.PermuteVar32x16(sc, Vector512.Create((short)(2 * g)));
        upper *= Avx512BW.PermuteVar32x16(sc, Vector512.Create((short)(2 * g + 1)));
        return Avx512BW.MultiplyAddAdjacent(low, Vector512.Load(x + 64 * g)) + Avx512BW.MultiplyAddAdjacent(upper, Vector512.Load(x + 64 * g + 32));
    }

    /// <summary>minus += s·dmin·(m_j·Σ x̂ of sub-block j), per sub-block lane (each product exact in int32, at most
    /// 63·32·32767 &lt; 2^26, then converted to float32).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Minimums(byte* block, ulong mins, int* sums, float s, ref Vector256<float> minus)
    {
        var products = Avx2.ConvertToVector256Int32(Vector128.CreateScalarUnsafe(mins).AsByte()) * Vector256.Load(sums);
        minus = Fma.MultiplyAdd(Avx.ConvertToVector256Single(products), Vector256.Create(F16Scale.ToSingle(*(ushort*)(block + 2)) * s), minus);
    }

    /// <summary><see cref="Dot512"/> at 256 bits: each 32 bytes of nibbles widened in two halves of 16, the scales
    /// spread by a byte shuffle; each lane sums 16 products per 128 values (below 2^31).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Dot256(byte* block, short* x, int* sums, float s, ref Vector256<float> acc, ref Vector256<float> minus, bool fifthBits)
    {
        KQuantBlocks.UnpackScales(block + ScalesOffset, out ulong scales, out ulong mins);
        byte* qs = block + QuantsOffset(fifthBits);
        Vector256<short> high0 = default, high1 = default;
        if (fifthBits)
        {
            high0 = Avx2.ConvertToVector256Int16(Vector128.Load(block + HighBitsOffset)).AsInt16();
            high1 = Avx2.ConvertToVector256Int16(Vector128.Load(block + HighBitsOffset + 16)).AsInt16();
        }
        var sc128 = Sse41.ConvertToVector128Int16(Vector128.CreateScalarUnsafe(scales).AsByte()).AsByte();
        var sc = Vector256.Create(sc128, sc128);
        var d = Vector256.Create(F16Scale.ToSingle(*(ushort*)block) * s);
        acc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(Pair256(qs, x, high0, high1, sc, 0, fifthBits) + Pair256(qs, x, high0, high1, sc, 1, fifthBits)), d, acc);
        acc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(Pair256(qs, x, high0, high1, sc, 2, fifthBits) + Pair256(qs, x, high0, high1, sc, 3, fifthBits)), d, acc);
        Minimums(block, mins, sums, s, ref minus);
    }

    /// <summary><see cref="Pair512"/> at 256 bits: 8 int32 lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Pair256(byte* qs, short* x, Vector256<short> high0, Vector256<short> high1, Vector256<byte> sc, int g, bool fifthBits)
    {
        var first = Avx2.Shuffle(sc, Word(2 * g)).AsInt16();
        var second = Avx2.Shuffle(sc, Word(2 * g + 1)).AsInt16();
        var bytes0 = Avx2.ConvertToVector256Int16(Vector128.Load(qs + 32 * g)).AsInt16();
        var bytes1 = Avx2.ConvertToVector256Int16(Vector128.Load(qs + 32 * g + 16)).AsInt16();
        return Avx2.MultiplyAddAdjacent(Values(bytes0, 0, high0, 2 * g, fifthBits) * first, Vector256.Load(x + 64 * g))
            + Avx2.MultiplyAddAdjacent(Values(bytes1, 0, high1, 2 * g, fifthBits) * first, Vector256.Load(x + 64 * g + 16))
            + Avx2.MultiplyAddAdjacent(Values(bytes0, 4, high0, 2 * g + 1, fifthBits) * second, Vector256.Load(x + 64 * g + 32))
            + Avx2.MultiplyAddAdjacent(Values(bytes1, 4, high1, 2 * g + 1, fifthBits) * second, Vector256.Load(x + 64 * g + 48));
    }

    /// <summary>The <c>vpshufb</c> control that spreads int16 word <paramref name="k"/> (k &lt; 8) of each 128-bit lane
    /// over the lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<byte> Word(int k) => Vector256.Create((ushort)(2 * k | (2 * k + 1) << 8)).AsByte();

    /// <summary>The nibble at <paramref name="shift"/> of each widened byte, with bit <paramref name="bit"/> of its high
    /// byte as the fifth bit.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<short> Values(Vector256<short> bytes, int shift, Vector256<short> high, int bit, bool fifthBits)
    {
        var values = Vector256.ShiftRightLogical(bytes, shift) & Vector256.Create((short)0xF);
        if (fifthBits) values |= Vector256.ShiftLeft(Vector256.ShiftRightLogical(high, bit) & Vector256<short>.One, 4);
        return values;
    }
}
