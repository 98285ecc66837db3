using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace GemmaGen.Kernels;

/// <summary>
/// <see cref="WeightFormat.Q4_0"/> (bf16 scales) and <see cref="WeightFormat.Q4_0F16"/> (IEEE half scales, ggml's
/// <c>block_q4_0</c> as stored): a row's block is 16 bytes whose low nibbles are columns 0..15 and high nibbles
/// columns 16..31, each the value plus 8 (the weight is (q − 8)·d, −8..7), and a scale d.
/// </summary>
/// <typeparam name="TScale">How the scales are stored.</typeparam>
internal readonly unsafe struct Q4_0Block<TScale> : IQuantizedBlock
    where TScale : struct, IBlockScale
{
    private const int Bias = QuantizedLayout.Q4Offset;

    public static int QuantBytes => QuantizedLayout.BlockSize / 2;

    public static int Offset => Bias;

    public static int MaxUnsigned => 15;

    /// <summary>m is the value of largest magnitude (the positive one on a tie), d = m / −8 rounded away from zero to
    /// the scale encoding, q = clamp(round(x / d), −8, 7); |x − q·d| ≤ |d|/2, except where x / d rounds to 8 (values of the sign
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
        ushort bits = TScale.Encode(extreme / -Bias);
        float d = TScale.ToSingle(bits);
        if (d == 0)
        {
            new Span<byte>(q, size / 2).Fill(Bias | Bias << 4);
            return bits;
        }
        if (Vector256.IsHardwareAccelerated)
        {
            var offset = Vector256.Create(Bias);
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

    private static int Nibble(float x, float d) => Math.Clamp((int)MathF.Round(x / d), -Bias, Bias - 1) + Bias;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Nibbles(float* x, float d, Vector256<int> offset) =>
        Vector256.Min(Vector256.Max(Vector256.ConvertToInt32(Vector256.Round(Vector256.Load(x) / d)), -offset), offset - Vector256<int>.One) + offset;

    public static void Dequantize(byte* q, float d, float* y)
    {
        if (Vector256.IsHardwareAccelerated)
        {
            var packed = Vector128.Load(q);
            QuantizedLayout.Widen(Vector256.Create(packed & Vector128.Create((byte)0xF), packed >> 4).AsSByte() - Vector256.Create((sbyte)Bias), d, y);
            return;
        }
        const int half = QuantizedLayout.BlockSize / 2;
        for (int i = 0; i < half; i++)
        {
            y[i] = ((q[i] & 0xF) - Bias) * d;
            y[i + half] = ((q[i] >> 4) - Bias) * d;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<byte> Columns(byte* record, int g, int half)
    {
        var nibble = Vector256.Create((byte)0x0F);
        if (g < 4) return Vector256.Load(record + g * QuantizedLayout.VectorBytes + 32 * half) & nibble;
        return (Vector256.Load(record + (g - 4) * QuantizedLayout.VectorBytes + 32 * half).AsUInt16() >> 4).AsByte() & nibble;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Scale(ushort bits) => TScale.ToSingle(bits);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Scales512(ushort* scales) => TScale.Widen512(scales);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Scales256(ushort* scales) => TScale.Widen256(scales);

    /// <summary>GGUF's Q4_0 for half scales.</summary>
    public static TensorDType? SourceType => typeof(TScale) == typeof(F16Scale) ? TensorDType.Q4_0 : null;

    /// <summary>ggml's <c>block_q4_0</c>: the half scale, then 16 bytes of nibbles in this layout's order (low nibble
    /// column j, high nibble column j + 16, each the value plus 8), copied.</summary>
    public static ushort CopyBlock(byte* source, byte* q)
    {
        Vector128.Load(source + 2).Store(q);
        return *(ushort*)source;
    }

    /// <summary>Unrolled: the nibble splits of one group overlap the products of the last (the kernel 1.11–1.25x in
    /// cache, whole 2B decode 1.06x median on AVX2; BENCHMARKS.md, "Q4_0 decode unrolled").</summary>
    public static bool DecodeUnrolled => true;

    /// <summary>Each four rows' bytes widened once as they load (<c>vpmovzxbw</c> from memory), then split: a byte
    /// zero-extended to 16 bits holds group g's nibble in bits 0..3 and group g + 4's in bits 4..7.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Widened256(byte* record, int g, int half, out Vector256<short> low, out Vector256<short> high,
        out Vector256<short> laterLow, out Vector256<short> laterHigh)
    {
        byte* bytes = record + g * QuantizedLayout.VectorBytes + 32 * half;
        var first = Avx2.ConvertToVector256Int16(bytes).AsInt16();
        var second = Avx2.ConvertToVector256Int16(bytes + 16).AsInt16();
        var nibble = Vector256.Create((short)0x0F);
        low = first & nibble;
        high = second & nibble;
        laterLow = first >>> 4;
        laterHigh = second >>> 4;
    }

    /// <summary>One load widened, then split: a byte zero-extended to 16 bits holds its low nibble in bits 0..3 and its
    /// high nibble in bits 4..7.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Widened512(byte* record, int g, int half, out Vector512<short> first, out Vector512<short> second)
    {
        var bytes = Avx512BW.ConvertToVector512Int16(Vector256.Load(record + g * QuantizedLayout.VectorBytes + 32 * half));
        first = bytes & Vector512.Create((short)0x0F);
        second = bytes >>> 4;
    }
}
