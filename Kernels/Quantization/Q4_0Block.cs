using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace GemmaGen.Kernels;

/// <summary>
/// <see cref="WeightFormat.Q4_0"/>: a row's block is 16 bytes whose low nibbles are columns 0..15 and high nibbles
/// columns 16..31, each the value plus 8 (the weight is (q − 8)·d, −8..7), and a bf16 scale. Matrix-vector products
/// sum the nibbles as stored (0..15); the offset, 8·Σ x̂ per block, is taken off once per row.
/// </summary>
internal readonly unsafe struct Q4_0Block : IQuantizedBlock
{
    private const int Offset = QuantizedLayout.Q4Offset;

    public static int QuantBytes => QuantizedLayout.BlockSize / 2;

    public static int DotsOffset => Offset;

    public static int UnsignedOffset => Offset;

    public static int MaxUnsigned => 15;

    /// <summary>m is the value of largest magnitude (the positive one on a tie), d = m / −8 rounded away from zero to
    /// bf16, q = clamp(round(x / d), −8, 7); |x − q·d| ≤ |d|/2, except where x / d rounds to 8 (values of the sign
    /// opposite to m, beyond 7.5·|d|): those become 7·d, off by at most |d|.</summary>
    public static ushort Quantize(float* x, byte* q)
    {
        const int size = QuantizedLayout.BlockSize;
        float max = float.MinValue, min = float.MaxValue;
        if (Vector256.IsHardwareAccelerated)
        {
            Vector256<float> v0 = Vector256.Load(x), v1 = Vector256.Load(x + 8), v2 = Vector256.Load(x + 16), v3 = Vector256.Load(x + 24);
            max = QuantizedLayout.MaxAcross(Vector256.Max(Vector256.Max(v0, v1), Vector256.Max(v2, v3)));
            min = -QuantizedLayout.MaxAcross(-Vector256.Min(Vector256.Min(v0, v1), Vector256.Min(v2, v3)));
        }
        else
        {
            for (int i = 0; i < size; i++)
            {
                max = MathF.Max(max, x[i]);
                min = MathF.Min(min, x[i]);
            }
        }
        float extreme = max >= -min ? max : min;
        ushort bits = QuantizedLayout.ScaleBits(extreme / -Offset);
        float d = BFloat16.ToSingle(bits);
        if (d == 0)
        {
            new Span<byte>(q, size / 2).Fill(Offset | Offset << 4);
            return bits;
        }
        if (Vector256.IsHardwareAccelerated)
        {
            var offset = Vector256.Create(Offset);
            var lo = Vector256.Narrow(Nibbles(x, d, offset), Nibbles(x + 8, d, offset));
            var hi = Vector256.Narrow(Nibbles(x + 16, d, offset), Nibbles(x + 24, d, offset));
            var packed = Vector256.Narrow(lo, hi).AsByte();
            (packed.GetLower() | (packed.GetUpper() << 4)).Store(q);
        }
        else
        {
            for (int i = 0; i < size / 2; i++)
                q[i] = (byte)(Nibble(x[i], d) | Nibble(x[i + size / 2], d) << 4);
        }
        return bits;
    }

    private static int Nibble(float x, float d) => Math.Clamp((int)MathF.Round(x / d), -Offset, Offset - 1) + Offset;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Nibbles(float* x, float d, Vector256<int> offset) =>
        Vector256.Min(Vector256.Max(Vector256.ConvertToInt32(Vector256.Round(Vector256.Load(x) / d)), -offset), offset - Vector256<int>.One) + offset;

    public static void Dequantize(byte* q, float d, float* y)
    {
        if (Vector256.IsHardwareAccelerated)
        {
            var packed = Vector128.Load(q);
            QuantizedLayout.Widen(Vector256.Create(packed & Vector128.Create((byte)0xF), packed >> 4).AsSByte() - Vector256.Create((sbyte)Offset), d, y);
            return;
        }
        const int half = QuantizedLayout.BlockSize / 2;
        for (int i = 0; i < half; i++)
        {
            y[i] = ((q[i] & 0xF) - Offset) * d;
            y[i + half] = ((q[i] >> 4) - Offset) * d;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> Unsigned(byte* q)
    {
        var packed = Vector128.Load(q);
        var nibble = Vector128.Create((byte)0x0F);
        return Vector256.Create(packed & nibble, Vector128.ShiftRightLogical(packed.AsUInt16(), 4).AsByte() & nibble).AsInt32();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void UnsignedPanel(byte* q, out Vector512<int> rows01, out Vector512<int> rows23)
    {
        // Row i's 16 bytes are 128-bit lane i: its low nibbles are columns 0..15, its high nibbles 16..31.
        var packed = Vector512.Load(q).AsUInt32();
        var nibble = Vector512.Create(0x0F0F0F0Fu);
        var low = (packed & nibble).AsInt64();
        var high = ((packed >> 4) & nibble).AsInt64();
        rows01 = Avx512F.PermuteVar8x64x2(low, Vector512.Create(0L, 1, 8, 9, 2, 3, 10, 11), high).AsInt32();
        rows23 = Avx512F.PermuteVar8x64x2(low, Vector512.Create(4L, 5, 12, 13, 6, 7, 14, 15), high).AsInt32();
    }

    /// <summary>
    /// With AVX-512 its own kernel (<see cref="DotsAvx512"/>): a row's block is 16 bytes, half of what one 512-bit vector
    /// of int16 holds, so two rows share each vector; with AVX2 the shared loop over <see cref="Row256"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void PanelDots(byte* q, int blocks, short* x, float* s, float* dots)
    {
        if (Avx512BW.IsSupported) DotsAvx512(q, blocks, x, s, dots);
        else if (Avx2.IsSupported && Fma.IsSupported) QuantizedMatVec.PanelDots<Width256, Vector256<float>, Row256>(q, QuantBytes, blocks, x, s, dots);
        else DotsScalar(q, blocks, x, s, dots);
    }

    /// <summary>
    /// Two rows at once: their 32 bytes widen to 32 int16 (row a, then row b); the low nibbles meet x̂[0..16) and the
    /// high nibbles x̂[16..32), each broadcast to both halves, so int32 lanes 0..7 sum row a and 8..15 row b.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> RowPair(byte* q, Vector512<short> xLow, Vector512<short> xHigh, Vector512<float> scales, Vector512<float> acc)
    {
        var w = Avx512BW.ConvertToVector512Int16(Vector256.Load(q));
        var sum = Avx512BW.MultiplyAddAdjacent(w & Vector512.Create((short)0xF), xLow) +
                  Avx512BW.MultiplyAddAdjacent(Avx512BW.ShiftRightLogical(w, 4), xHigh);
        return Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(sum), scales, acc);
    }

    /// <summary>16 int16 at <paramref name="x"/> in both halves of a 512-bit vector.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<short> Broadcast256(short* x)
    {
        var half = Vector256.Load(x);
        return Vector512.Create(half, half);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void DotsAvx512(byte* q, int blocks, short* x, float* s, float* dots)
    {
        var rows01 = Vector512.Create(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
        var rows23 = Vector512.Create(2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
        Vector512<float> a01 = default, a23 = default, b01 = default, b23 = default;
        int b = 0;
        for (; b + 2 <= blocks; b += 2, q += 128, x += 64, s += 8)
        {
            Sse.Prefetch0(q + QuantizedMatVec.PrefetchBytes);
            Sse.Prefetch0(q + QuantizedMatVec.PrefetchBytes + 64);
            var xLow = Broadcast256(x);
            var xHigh = Broadcast256(x + 16);
            var scales = Avx512F.BroadcastVector128ToVector512(s);
            a01 = RowPair(q, xLow, xHigh, Avx512F.PermuteVar16x32(scales, rows01), a01);
            a23 = RowPair(q + 32, xLow, xHigh, Avx512F.PermuteVar16x32(scales, rows23), a23);
            xLow = Broadcast256(x + 32);
            xHigh = Broadcast256(x + 48);
            scales = Avx512F.BroadcastVector128ToVector512(s + 4);
            b01 = RowPair(q + 64, xLow, xHigh, Avx512F.PermuteVar16x32(scales, rows01), b01);
            b23 = RowPair(q + 96, xLow, xHigh, Avx512F.PermuteVar16x32(scales, rows23), b23);
        }
        if (b < blocks)
        {
            var xLow = Broadcast256(x);
            var xHigh = Broadcast256(x + 16);
            var scales = Avx512F.BroadcastVector128ToVector512(s);
            a01 = RowPair(q, xLow, xHigh, Avx512F.PermuteVar16x32(scales, rows01), a01);
            a23 = RowPair(q + 32, xLow, xHigh, Avx512F.PermuteVar16x32(scales, rows23), a23);
        }
        a01 += b01;
        a23 += b23;
        dots[0] = Vector256.Sum(a01.GetLower());
        dots[1] = Vector256.Sum(a01.GetUpper());
        dots[2] = Vector256.Sum(a23.GetLower());
        dots[3] = Vector256.Sum(a23.GetUpper());
    }

    /// <summary>The low and high nibbles (vpmovzxbw, mask, shift) each against their 16 inputs (vpmaddwd).</summary>
    private readonly struct Row256 : IRowProduct<Vector256<float>>
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> Row(byte* q, short* x, float scale, Vector256<float> acc)
        {
            var w = Avx2.ConvertToVector256Int16(q);
            var sum = Avx2.MultiplyAddAdjacent(w & Vector256.Create((short)0xF), Vector256.Load(x)) +
                      Avx2.MultiplyAddAdjacent(Avx2.ShiftRightLogical(w, 4), Vector256.Load(x + 16));
            return Fma.MultiplyAdd(Avx.ConvertToVector256Single(sum), Vector256.Create(scale), acc);
        }
    }

    private static void DotsScalar(byte* q, int blocks, short* x, float* s, float* dots)
    {
        const int half = QuantizedLayout.BlockSize / 2;
        for (int r = 0; r < QuantizedLayout.PanelRows; r++) dots[r] = 0;
        for (int b = 0; b < blocks; b++, x += 32, s += 4)
        {
            for (int r = 0; r < QuantizedLayout.PanelRows; r++, q += half)
            {
                int sum = 0;
                for (int j = 0; j < half; j++) sum += (q[j] & 0xF) * x[j] + (q[j] >> 4) * x[j + half];
                dots[r] += sum * s[r];
            }
        }
    }
}
