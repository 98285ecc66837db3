using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace GemmaGen.Kernels;

/// <summary>
/// <see cref="WeightFormat.Q8_0"/> (bf16 scales) and <see cref="WeightFormat.Q8_0F16"/> (IEEE half scales, ggml's
/// <c>block_q8_0</c> as stored): a row's block is 32 int8 in column order, stored plus 128, and a scale d; the weight is
/// (stored − 128)·d. Quantizing gives −127..127 (stored 1..255) and d = max|x| / 127 rounded up to the scale encoding;
/// a GGUF block may also hold −128 (stored 0), which every kernel reads as well.
/// </summary>
/// <typeparam name="TScale">How the scales are stored.</typeparam>
internal readonly unsafe struct Q8_0Block<TScale> : IQuantizedBlock
    where TScale : struct, IBlockScale
{
    public static int QuantBytes => QuantizedLayout.BlockSize;

    public static int Offset => 128;

    public static int MaxUnsigned => byte.MaxValue;

    /// <summary>The block as stored: <see cref="QuantizeSigned"/>'s int8 plus 128.</summary>
    public static ushort Quantize(float* x, byte* stored)
    {
        ushort bits = QuantizeSigned(x, (sbyte*)stored);
        if (Vector256.IsHardwareAccelerated)
        {
            (Vector256.Load(stored) ^ Vector256.Create((byte)0x80)).Store(stored);
        }
        else
        {
            for (int i = 0; i < QuantizedLayout.BlockSize; i++) stored[i] ^= 0x80;
        }
        return bits;
    }

    /// <summary>The Q8_0 rule (also the int8 KV cache's, with bf16 scales): d = max|x| / 127 rounded up to the scale
    /// encoding, q = round(x / d), ties to even, into <paramref name="q"/> as int8; |x − q·d| ≤ d/2 (up to the float32
    /// rounding of x / d). Returns d's bits.</summary>
    public static ushort QuantizeSigned(float* x, sbyte* q)
    {
        const int size = QuantizedLayout.BlockSize;
        float max = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var m = Vector256.Max(Vector256.Max(Vector256.Abs(Vector256.Load(x)), Vector256.Abs(Vector256.Load(x + 8))),
                Vector256.Max(Vector256.Abs(Vector256.Load(x + 16)), Vector256.Abs(Vector256.Load(x + 24))));
            max = QuantizedLayout.MaxAcross(m);
        }
        else
        {
            for (int i = 0; i < size; i++) max = MathF.Max(max, MathF.Abs(x[i]));
        }
        ushort bits = TScale.Encode(max / QuantizedLayout.Q8Max);
        float d = TScale.ToSingle(bits);
        if (d == 0)
        {
            new Span<sbyte>(q, size).Clear();
            return bits;
        }
        if (Vector256.IsHardwareAccelerated)
        {
            var a = Vector256.Narrow(Round(x, d), Round(x + 8, d));
            var b = Vector256.Narrow(Round(x + 16, d), Round(x + 24, d));
            Vector256.Narrow(a, b).Store(q);
        }
        else
        {
            for (int i = 0; i < size; i++) q[i] = (sbyte)MathF.Round(x[i] / d);
        }
        return bits;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Round(float* x, float d) => Vector256.ConvertToInt32(Vector256.Round(Vector256.Load(x) / d));

    public static void Dequantize(byte* stored, float d, float* y)
    {
        if (Vector256.IsHardwareAccelerated)
        {
            QuantizedLayout.Widen((Vector256.Load(stored) ^ Vector256.Create((byte)0x80)).AsSByte(), d, y);
            return;
        }
        for (int i = 0; i < QuantizedLayout.BlockSize; i++) y[i] = (sbyte)(stored[i] ^ 0x80) * d;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<byte> Columns(byte* record, int g, int half) =>
        Vector256.Load(record + g * QuantizedLayout.VectorBytes + 32 * half);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Scale(ushort bits) => TScale.ToSingle(bits);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Scales512(ushort* scales) => TScale.Widen512(scales);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Scales256(ushort* scales) => TScale.Widen256(scales);

    /// <summary>GGUF's Q8_0 for half scales.</summary>
    public static TensorDType? SourceType => typeof(TScale) == typeof(F16Scale) ? TensorDType.Q8_0 : null;

    /// <summary>ggml's <c>block_q8_0</c>: the half scale, then 32 int8, each made unsigned (+128).</summary>
    public static ushort CopyBlock(byte* source, byte* q)
    {
        (Vector256.Load(source + 2) ^ Vector256.Create((byte)0x80)).Store(q);
        return *(ushort*)source;
    }

    /// <summary>A loop: unrolled, the kernel ran 1.1–1.2x in cache but 0.95x from memory and 0.96–0.99x in the whole
    /// 2B on AVX2 (BENCHMARKS.md, "Q4_0 decode unrolled").</summary>
    public static bool DecodeUnrolled => false;

    /// <summary>Each four rows' bytes widened as they load (<c>vpmovzxbw</c> from memory).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Widened256(byte* record, int g, int half, out Vector256<short> low, out Vector256<short> high,
        out Vector256<short> laterLow, out Vector256<short> laterHigh)
    {
        byte* columns = record + g * QuantizedLayout.VectorBytes + 32 * half, later = columns + 4 * QuantizedLayout.VectorBytes;
        low = Avx2.ConvertToVector256Int16(columns).AsInt16();
        high = Avx2.ConvertToVector256Int16(columns + 16).AsInt16();
        laterLow = Avx2.ConvertToVector256Int16(later).AsInt16();
        laterHigh = Avx2.ConvertToVector256Int16(later + 16).AsInt16();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Widened512(byte* record, int g, int half, out Vector512<short> first, out Vector512<short> second)
    {
        first = Avx512BW.ConvertToVector512Int16(Columns(record, g, half));
        second = Avx512BW.ConvertToVector512Int16(Columns(record, g + 4, half));
    }
}
