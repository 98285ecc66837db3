using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace GemmaGen.Kernels;

/// <summary>
/// <see cref="WeightFormat.Q8_0"/>: a row's block is 32 int8 (−127..127) in column order and a bf16 scale d =
/// max|x| / 127 rounded up; the weight is q·d. Matrix-vector products widen the int8 to int16 and multiply them
/// pairwise with x̂ (<c>vpmaddwd</c>).
/// </summary>
internal readonly unsafe struct Q8_0Block : IQuantizedBlock
{
    public static int QuantBytes => QuantizedLayout.BlockSize;

    public static int DotsOffset => 0;

    public static int UnsignedOffset => 128;

    public static int MaxUnsigned => byte.MaxValue;

    /// <summary>d = max|x| / 127 rounded up to bf16, q = round(x / d), ties to even; |x − q·d| ≤ d/2 (up to the float32
    /// rounding of x / d).</summary>
    public static ushort Quantize(float* x, byte* quants)
    {
        sbyte* q = (sbyte*)quants;
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
            new Span<byte>(q, size).Clear();
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

    public static void Dequantize(byte* quants, float d, float* y)
    {
        sbyte* q = (sbyte*)quants;
        if (Vector256.IsHardwareAccelerated)
        {
            QuantizedLayout.Widen(Vector256.Load(q), d, y);
            return;
        }
        for (int i = 0; i < QuantizedLayout.BlockSize; i++) y[i] = q[i] * d;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> Unsigned(byte* q) => (Vector256.Load(q) ^ Vector256.Create((byte)0x80)).AsInt32();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void UnsignedPanel(byte* q, out Vector512<int> rows01, out Vector512<int> rows23)
    {
        var flip = Vector512.Create((byte)0x80);
        rows01 = (Vector512.Load(q) ^ flip).AsInt32();
        rows23 = (Vector512.Load(q + 64) ^ flip).AsInt32();
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void PanelDots(byte* q, int blocks, short* x, float* s, float* dots)
    {
        if (Avx512BW.IsSupported) QuantizedMatVec.PanelDots<Width512, Vector512<float>, Row512>(q, QuantBytes, blocks, x, s, dots);
        else if (Avx2.IsSupported && Fma.IsSupported) QuantizedMatVec.PanelDots<Width256, Vector256<float>, Row256>(q, QuantBytes, blocks, x, s, dots);
        else DotsScalar((sbyte*)q, blocks, x, s, dots);
    }

    /// <summary>The 32 int8 widened to int16 (vpmovsxbw) and multiplied pairwise with x̂ (vpmaddwd).</summary>
    private readonly struct Row512 : IRowProduct<Vector512<float>>
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<float> Row(byte* q, short* x, float scale, Vector512<float> acc) =>
            Avx512F.FusedMultiplyAdd(
                Avx512F.ConvertToVector512Single(Avx512BW.MultiplyAddAdjacent(Avx512BW.ConvertToVector512Int16(Vector256.Load((sbyte*)q)), Vector512.Load(x))),
                Vector512.Create(scale), acc);
    }

    /// <summary><see cref="Row512"/> in two halves of 16 columns.</summary>
    private readonly struct Row256 : IRowProduct<Vector256<float>>
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> Row(byte* q, short* x, float scale, Vector256<float> acc) =>
            Fma.MultiplyAdd(
                Avx.ConvertToVector256Single(
                    Avx2.MultiplyAddAdjacent(Avx2.ConvertToVector256Int16(Vector128.Load((sbyte*)q)), Vector256.Load(x)) +
                    Avx2.MultiplyAddAdjacent(Avx2.ConvertToVector256Int16(Vector128.Load((sbyte*)q + 16)), Vector256.Load(x + 16))),
                Vector256.Create(scale), acc);
    }

    private static void DotsScalar(sbyte* q, int blocks, short* x, float* s, float* dots)
    {
        float d0 = 0, d1 = 0, d2 = 0, d3 = 0;
        for (int b = 0; b < blocks; b++, q += 128, x += 32, s += 4)
        {
            int i0 = 0, i1 = 0, i2 = 0, i3 = 0;
            for (int j = 0; j < QuantizedLayout.BlockSize; j++)
            {
                int xj = x[j];
                i0 += q[j] * xj;
                i1 += q[32 + j] * xj;
                i2 += q[64 + j] * xj;
                i3 += q[96 + j] * xj;
            }
            d0 += i0 * s[0];
            d1 += i1 * s[1];
            d2 += i2 * s[2];
            d3 += i3 * s[3];
        }
        dots[0] = d0;
        dots[1] = d1;
        dots[2] = d2;
        dots[3] = d3;
    }
}
