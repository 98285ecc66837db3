using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using GemmaGen.Kernels;
using GemmaGen.Tests.Infrastructure;

namespace GemmaGen.Tests.Quantization;

/// <summary>
/// The block scale encodings the kernels widen (<see cref="IBlockScale"/>): every finite IEEE half, zeros and
/// subnormals included, and every bf16, widened by the scalar, 256-bit and 512-bit code exactly as .NET's own
/// conversions do; and the quantizers' rounding of a scale away from zero.
/// </summary>
[IsaSensitive]
public sealed unsafe class BlockScaleTests
{
    /// <summary>Every 16-bit pattern whose value is finite in <paramref name="half"/> (IEEE half) or bf16, and its value
    /// by .NET's conversion.</summary>
    private static (ushort[] Bits, float[] Expected) Finite(bool half)
    {
        var bits = new List<ushort>();
        var expected = new List<float>();
        for (int b = 0; b < 65536; b++)
        {
            float value = half ? (float)BitConverter.UInt16BitsToHalf((ushort)b) : BitConverter.Int32BitsToSingle(b << 16);
            if (!float.IsFinite(value)) continue;
            bits.Add((ushort)b);
            expected.Add(value);
        }
        // Padded to a multiple of 16 with zeros, so the vector widenings read whole groups.
        while (bits.Count % 16 != 0)
        {
            bits.Add(0);
            expected.Add(0);
        }
        return ([.. bits], [.. expected]);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Every_finite_scale_widens_exactly_in_every_width(bool half)
    {
        var (bits, expected) = Finite(half);
        Assert.True(bits.Length >= (half ? 63488 : 65280));
        var actual = new float[bits.Length];
        Widen(half, bits, actual, width: 1);
        AssertBitEqual(bits, expected, actual, "scalar");
        if (Avx2.IsSupported)
        {
            Widen(half, bits, actual, width: 8);
            AssertBitEqual(bits, expected, actual, "256-bit");
        }
        if (Avx512F.IsSupported)
        {
            Widen(half, bits, actual, width: 16);
            AssertBitEqual(bits, expected, actual, "512-bit");
        }
    }

    private static void Widen(bool half, ushort[] bits, float[] actual, int width)
    {
        Array.Fill(actual, float.NaN);
        fixed (ushort* b = bits)
        fixed (float* y = actual)
        {
            for (int i = 0; i < bits.Length; i += width)
            {
                switch (width, half)
                {
                    case (1, true): y[i] = F16Scale.ToSingle(b[i]); break;
                    case (1, false): y[i] = BF16Scale.ToSingle(b[i]); break;
                    case (8, true): F16Scale.Widen256(b + i).Store(y + i); break;
                    case (8, false): BF16Scale.Widen256(b + i).Store(y + i); break;
                    case (16, true): F16Scale.Widen512(b + i).Store(y + i); break;
                    default: BF16Scale.Widen512(b + i).Store(y + i); break;
                }
            }
        }
    }

    private static void AssertBitEqual(ushort[] bits, float[] expected, float[] actual, string path)
    {
        for (int i = 0; i < bits.Length; i++)
        {
            if (BitConverter.SingleToInt32Bits(expected[i]) != BitConverter.SingleToInt32Bits(actual[i]))
                Assert.Fail($"{path}: 0x{bits[i]:X4} widened to {actual[i]:R}, expected {expected[i]:R}");
        }
    }

    [Theory]
    [InlineData(1f)]
    [InlineData(1.0001f)]
    [InlineData(-1.0001f)]
    [InlineData(3.3e-3f)]
    [InlineData(-7.1e-6f)]
    [InlineData(1e-8f)]
    [InlineData(6.1e-5f)]
    [InlineData(65504f)]
    [InlineData(0f)]
    public void Half_scales_round_away_from_zero_to_the_nearest_half_at_or_beyond(float scale)
    {
        ushort bits = F16Scale.Encode(scale);
        float d = (float)BitConverter.UInt16BitsToHalf(bits);
        Assert.True(Math.Abs(d) >= Math.Abs(scale), $"{scale} encoded as {d}");
        Assert.True(scale == 0 ? bits == 0 : Math.Sign(d) == Math.Sign(scale), $"{scale} encoded as {d}");
        if (scale != 0) Assert.True(Math.Abs((float)BitConverter.UInt16BitsToHalf((ushort)(bits - 1))) < Math.Abs(scale), $"{scale}: {d} is not the nearest half beyond it");
    }

    [Fact]
    public void A_scale_beyond_the_half_range_is_refused()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => F16Scale.Encode(65505f));
        Assert.Throws<ArgumentOutOfRangeException>(() => F16Scale.Encode(-1e6f));
    }
}
