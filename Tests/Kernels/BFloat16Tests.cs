using GemmaGen.Kernels;
using GemmaGen.Tests.Infrastructure;
using Xunit;

namespace GemmaGen.Tests.Kernels;

/// <summary><see cref="BFloat16"/> against the bit-level definition and a float64 round-to-nearest-even reference.</summary>
[IsaSensitive]
public sealed class BFloat16Tests
{
    private static float FromBits(uint bits) => BitConverter.UInt32BitsToSingle(bits);

    private static bool IsNaN(ushort bf16) => (bf16 & 0x7F80) == 0x7F80 && (bf16 & 0x007F) != 0;

    /// <summary>
    /// The reference rounding, from the definition: of the two bf16 values around <paramref name="value"/> (its
    /// truncation and the next one away from zero), the nearer in double, the one with an even last bit on a tie.
    /// Past the largest bf16 the next value is 2^128, so rounding there overflows to infinity as IEEE does.
    /// </summary>
    private static ushort RoundToNearestEven(float value)
    {
        ushort truncated = (ushort)(BitConverter.SingleToUInt32Bits(value) >> 16);
        ushort next = (ushort)(truncated + 1);
        double magnitude = Math.Abs((double)value);
        double below = Math.Abs((double)FromBits((uint)truncated << 16));
        double above = (truncated & 0x7FFF) == 0x7F7F ? Math.Pow(2, 128) : Math.Abs((double)FromBits((uint)next << 16));
        double down = magnitude - below, up = above - magnitude;
        if (down != up) return down < up ? truncated : next;
        return (truncated & 1) == 0 ? truncated : next;
    }

    [Fact]
    public void ToSingleIsExactForEveryBitPattern()
    {
        for (int bits = 0; bits <= ushort.MaxValue; bits++)
        {
            uint expected = (uint)bits << 16;
            uint actual = BitConverter.SingleToUInt32Bits(BFloat16.ToSingle((ushort)bits));
            if (actual != expected) Assert.Fail($"ToSingle(0x{bits:X4}) = 0x{actual:X8}, expected 0x{expected:X8}");
        }
    }

    [Fact]
    public void FromSingleRoundTripsEveryBFloat16()
    {
        for (int bits = 0; bits <= ushort.MaxValue; bits++)
        {
            if (IsNaN((ushort)bits)) continue;
            ushort actual = BFloat16.FromSingle(BFloat16.ToSingle((ushort)bits));
            if (actual != bits) Assert.Fail($"FromSingle(ToSingle(0x{bits:X4})) = 0x{actual:X4}");
        }
    }

    [Fact]
    public void FromSingleRoundsRandomFloatsToNearestEven()
    {
        var random = new Random(1);
        for (int n = 0; n < 200_000; n++)
        {
            uint bits = (uint)random.NextInt64(0, 1L << 32);
            if ((bits & 0x7F800000) == 0x7F800000) continue;
            ushort expected = RoundToNearestEven(FromBits(bits));
            ushort actual = BFloat16.FromSingle(FromBits(bits));
            if (actual != expected) Assert.Fail($"FromSingle(0x{bits:X8}) = 0x{actual:X4}, expected 0x{expected:X4}");
        }
    }

    [Theory]
    [InlineData(0x3F808000u, (ushort)0x3F80)] // 1 + 2^-8: halfway between 1 and 1 + 2^-7, ties to the even 1
    [InlineData(0x3F818000u, (ushort)0x3F82)] // halfway between odd 0x3F81 and even 0x3F82
    [InlineData(0xBF808000u, (ushort)0xBF80)] // negative ties to even too
    [InlineData(0xBF818000u, (ushort)0xBF82)]
    [InlineData(0x3F808001u, (ushort)0x3F81)] // just above the tie rounds up
    [InlineData(0x3F807FFFu, (ushort)0x3F80)] // just below the tie rounds down
    [InlineData(0x00008000u, (ushort)0x0000)] // subnormal tie to even zero
    [InlineData(0x00018000u, (ushort)0x0002)] // subnormal tie to even 0x0002
    [InlineData(0x007F8000u, (ushort)0x0080)] // largest subnormals round up to the smallest normal
    [InlineData(0x7F7F7FFFu, (ushort)0x7F7F)] // below the tie with 2^128 stays the largest finite bf16
    [InlineData(0x7F7F8000u, (ushort)0x7F80)] // the tie above the largest bf16 (odd) overflows to infinity
    [InlineData(0x7F7FFFFFu, (ushort)0x7F80)] // float.MaxValue overflows to infinity
    [InlineData(0xFF7FFFFFu, (ushort)0xFF80)]
    public void FromSingleRoundsTiesToEven(uint floatBits, ushort expected)
    {
        Assert.Equal(expected, RoundToNearestEven(FromBits(floatBits)));
        Assert.Equal(expected, BFloat16.FromSingle(FromBits(floatBits)));
    }

    [Fact]
    public void FromSingleKeepsInfinitiesAndSignedZeros()
    {
        Assert.Equal(0x7F80, BFloat16.FromSingle(float.PositiveInfinity));
        Assert.Equal(0xFF80, BFloat16.FromSingle(float.NegativeInfinity));
        Assert.Equal(0x0000, BFloat16.FromSingle(0f));
        Assert.Equal(0x8000, BFloat16.FromSingle(-0f));
    }

    [Theory]
    [InlineData(0x7FC00000u)] // the canonical quiet NaN
    [InlineData(0xFFC00000u)]
    [InlineData(0x7F800001u)] // payload only in the low half: truncation alone would make it infinity
    [InlineData(0xFF800001u)]
    [InlineData(0x7FBFFFFFu)]
    [InlineData(0x7FFFFFFFu)] // rounding up would carry into the sign bit
    public void FromSingleKeepsNaNAndItsSign(uint floatBits)
    {
        ushort result = BFloat16.FromSingle(FromBits(floatBits));

        Assert.True(IsNaN(result), $"0x{floatBits:X8} became 0x{result:X4}, not a NaN");
        Assert.Equal(floatBits >> 31, (uint)result >> 15);
    }

    [Theory]
    [MemberData(nameof(KernelTestData.Lengths), MemberType = typeof(KernelTestData))]
    public void WidenMatchesScalarConversion(int length)
    {
        var random = new Random(length);
        var source = new ushort[length];
        for (int i = 0; i < length; i++) source[i] = (ushort)random.Next(0, 1 << 16);
        var destination = new float[length + 3];
        Array.Fill(destination, 42f);

        BFloat16.Widen(source, destination);

        for (int i = 0; i < length; i++)
        {
            if (BitConverter.SingleToUInt32Bits(destination[i]) != (uint)source[i] << 16)
                Assert.Fail($"element {i}: 0x{source[i]:X4} widened to 0x{BitConverter.SingleToUInt32Bits(destination[i]):X8}");
        }
        Assert.Equal([42f, 42f, 42f], destination[length..]);
    }

    [Theory]
    [MemberData(nameof(KernelTestData.Lengths), MemberType = typeof(KernelTestData))]
    public void NarrowMatchesScalarRounding(int length)
    {
        var source = KernelTestData.RandomFloats(length, seed: length, scale: 1000f);
        source[0] = float.NaN;
        var destination = new ushort[length + 1];
        destination[length] = 0xABCD;

        BFloat16.Narrow(source, destination);

        for (int i = 0; i < length; i++) Assert.Equal(BFloat16.FromSingle(source[i]), destination[i]);
        Assert.Equal(0xABCD, destination[length]);
    }

    [Fact]
    public void ShortDestinationThrows()
    {
        Assert.Throws<ArgumentException>(() => BFloat16.Widen(new ushort[17], new float[16]));
        Assert.Throws<ArgumentException>(() => BFloat16.Narrow(new float[17], new ushort[16]));
    }
}
