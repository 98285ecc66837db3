using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace GemmaGen.Kernels;

/// <summary>
/// <see cref="WeightFormat.Q8_0"/>: a row's block is 32 int8 (−127..127) in column order, stored plus 128 (1..255), and a
/// bf16 scale d = max|x| / 127 rounded up; the weight is (stored − 128)·d.
/// </summary>
internal readonly unsafe struct Q8_0Block : IQuantizedBlock
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

    /// <summary>The Q8_0 rule (also the int8 KV cache's): d = max|x| / 127 rounded up to bf16, q = round(x / d), ties to
    /// even, into <paramref name="q"/> as int8; |x − q·d| ≤ d/2 (up to the float32 rounding of x / d). Returns d's bf16
    /// bits.</summary>
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
        ushort bits = QuantizedLayout.ScaleBits(max / QuantizedLayout.Q8Max);
        float d = BFloat16.ToSingle(bits);
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
    public static void Widened512(byte* record, int g, int half, out Vector512<short> first, out Vector512<short> second)
    {
        first = Avx512BW.ConvertToVector512Int16(Columns(record, g, half));
        second = Avx512BW.ConvertToVector512Int16(Columns(record, g + 4, half));
    }
}
