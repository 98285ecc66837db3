using GemmaGen.Kernels;
using GemmaGen.Tests.Infrastructure;
using Xunit;

namespace GemmaGen.Tests.Kernels;

/// <summary>The bit test for NaN and infinity in each stored format, at every position of the vector loop and its tail
/// (the vector width depends on the ISA).</summary>
[IsaSensitive]
public sealed unsafe class FiniteCheckTests
{
    public static TheoryData<TensorDType> DTypes() => [TensorDType.F32, TensorDType.BF16, TensorDType.F16];

    /// <summary>The element bits of <paramref name="value"/> in <paramref name="dtype"/>, as bytes.</summary>
    private static byte[] Encode(TensorDType dtype, float value) => dtype switch
    {
        TensorDType.F32 => BitConverter.GetBytes(value),
        TensorDType.BF16 => BitConverter.GetBytes((ushort)(BitConverter.SingleToUInt32Bits(value) >> 16)),
        _ => BitConverter.GetBytes((Half)value),
    };

    /// <summary><paramref name="count"/> elements: the largest finite values, subnormals, zeros and ordinary numbers.</summary>
    private static byte[] Finite(TensorDType dtype, int count)
    {
        float largest = dtype switch { TensorDType.F32 => float.MaxValue, TensorDType.BF16 => 3.3895314e38f, _ => 65504f };
        float[] pool = [largest, -largest, 1e-40f, -0f, 0f, 1.5f, -2.25f, 6e-8f];
        return Enumerable.Range(0, count).SelectMany(i => Encode(dtype, pool[i % pool.Length])).ToArray();
    }

    private static bool AllFinite(TensorDType dtype, byte[] data)
    {
        fixed (byte* p = data) return FiniteCheck.AllFinite(dtype, p, data.Length / TensorView.ElementSize(dtype));
    }

    [Theory]
    [MemberData(nameof(DTypes))]
    public void FiniteValuesPass(TensorDType dtype)
    {
        foreach (int count in new[] { 0, 1, 7, 64, 127, 128, 129, 1000 })
            Assert.True(AllFinite(dtype, Finite(dtype, count)), $"{count} elements");
    }

    [Theory]
    [MemberData(nameof(DTypes))]
    public void OneNonFiniteValueAnywhereIsFound(TensorDType dtype)
    {
        const int Count = 301;
        int size = TensorView.ElementSize(dtype);
        foreach (float bad in new[] { float.NaN, float.PositiveInfinity, float.NegativeInfinity, -float.NaN })
        {
            for (int index = 0; index < Count; index++)
            {
                byte[] data = Finite(dtype, Count);
                Encode(dtype, bad).CopyTo(data, index * size);
                Assert.False(AllFinite(dtype, data), $"{bad} at {index}");
                fixed (byte* p = data)
                {
                    Assert.Equal((1L, (long)index), FiniteCheck.Find(dtype, p, Count));
                    Assert.Equal(float.IsNaN(bad), float.IsNaN(FiniteCheck.ElementAt(dtype, p, index)));
                }
            }
        }
    }

    [Fact]
    public void FindCountsEveryNonFiniteValue()
    {
        byte[] data = Finite(TensorDType.BF16, 200);
        foreach (int index in new[] { 150, 17, 199 }) Encode(TensorDType.BF16, float.PositiveInfinity).CopyTo(data, index * 2);
        fixed (byte* p = data) Assert.Equal((3L, 17L), FiniteCheck.Find(TensorDType.BF16, p, 200));
    }

    [Fact]
    public void FloatSpansAreChecked()
    {
        var logits = new float[1000];
        Assert.True(FiniteCheck.AllFinite(logits));
        logits[999] = float.NaN;
        Assert.False(FiniteCheck.AllFinite(logits));
    }
}
