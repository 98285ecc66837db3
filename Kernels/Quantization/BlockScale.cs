using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace GemmaGen.Kernels;

/// <summary>
/// How a block format stores its 16-bit block scales (<see cref="IQuantizedBlock"/>): the rounding a quantizer applies
/// and the exact widening to float32 the kernels apply, one scalar or 16 / 8 at a time (the scale rows of a group,
/// <see cref="QuantizedLayout"/>). Each block type names its encoding, so every kernel specialized for the block type
/// has the widening inlined.
/// </summary>
internal unsafe interface IBlockScale
{
    /// <summary><paramref name="scale"/> rounded away from zero to the encoding (so that no value of the block divided
    /// by it exceeds the integer bound the scale was computed for).</summary>
    /// <exception cref="ArgumentOutOfRangeException">The scale is beyond the encoding's finite range.</exception>
    static abstract ushort Encode(float scale);

    /// <summary>The scale of <paramref name="bits"/> as float32 (exact).</summary>
    static abstract float ToSingle(ushort bits);

    /// <summary>Sixteen scales widened to float32 (exact; AVX-512 F).</summary>
    static abstract Vector512<float> Widen512(ushort* scales);

    /// <summary>Eight scales widened to float32 (exact; AVX2).</summary>
    static abstract Vector256<float> Widen256(ushort* scales);
}

/// <summary>bfloat16 scales (GemmaGen's own <see cref="WeightFormat.Q8_0"/> and <see cref="WeightFormat.Q4_0"/>):
/// the upper half of a float32, widened by a shift.</summary>
internal readonly unsafe struct BF16Scale : IBlockScale
{
    public static ushort Encode(float scale) => QuantizedLayout.ScaleBits(scale);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float ToSingle(ushort bits) => BFloat16.ToSingle(bits);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Widen512(ushort* scales) => (Avx512F.ConvertToVector512Int32(Vector256.Load(scales)) << 16).AsSingle();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Widen256(ushort* scales) => (Avx2.ConvertToVector256Int32(Vector128.Load(scales)) << 16).AsSingle();
}

/// <summary>
/// IEEE half scales, as ggml's Q8_0 and Q4_0 blocks store them (<see cref="WeightFormat.Q8_0F16"/>,
/// <see cref="WeightFormat.Q4_0F16"/>). Widened exactly without F16C: the magnitude bits shifted left by 13 land the
/// half's exponent and mantissa in a float32's (its exponent still biased by 15, not 127), so the float32 they spell
/// times 2^112 is the half's magnitude: exact for every finite half, the subnormal ones included (shifted, a half
/// subnormal is a float32 subnormal, and the multiplication by a power of two makes it normal without rounding); the
/// sign bit is or-ed back. (Infinite and NaN halves do not come out as such; the loader refuses them,
/// <see cref="FiniteCheck"/>.)
/// </summary>
internal readonly unsafe struct F16Scale : IBlockScale
{
    /// <summary>2^112: the difference of the exponent biases (127 − 15).</summary>
    private const float Rebias = 5.192296858534828e33f;

    public static ushort Encode(float scale)
    {
        var half = (Half)scale;
        if (!Half.IsFinite(half))
            throw new ArgumentOutOfRangeException(nameof(scale), scale, "the block scale is beyond the range of a half (65504)");
        ushort bits = BitConverter.HalfToUInt16Bits(half);
        // Round the magnitude up: the next half away from zero when nearest rounding went towards it.
        if (MathF.Abs((float)half) < MathF.Abs(scale)) bits++;
        if (!Half.IsFinite(BitConverter.UInt16BitsToHalf(bits)))
            throw new ArgumentOutOfRangeException(nameof(scale), scale, "the block scale is beyond the range of a half (65504)");
        return bits;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float ToSingle(ushort bits)
    {
        float magnitude = BitConverter.Int32BitsToSingle((bits & 0x7FFF) << 13) * Rebias;
        return (bits & 0x8000) != 0 ? -magnitude : magnitude;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Widen512(ushort* scales)
    {
        var bits = Avx512F.ConvertToVector512Int32(Vector256.Load(scales));
        var magnitude = ((bits & Vector512.Create(0x7FFF)) << 13).AsSingle() * Rebias;
        return (magnitude.AsInt32() | ((bits & Vector512.Create(0x8000)) << 16)).AsSingle();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Widen256(ushort* scales)
    {
        var bits = Avx2.ConvertToVector256Int32(Vector128.Load(scales));
        var magnitude = ((bits & Vector256.Create(0x7FFF)) << 13).AsSingle() * Rebias;
        return (magnitude.AsInt32() | ((bits & Vector256.Create(0x8000)) << 16)).AsSingle();
    }
}
