using GemmaGen.Kernels;
using GemmaGen.Tests.Infrastructure;
using Xunit;

namespace GemmaGen.Tests.Kernels;

/// <summary><see cref="Activations"/> against float64 evaluations of the formulas in docs/gemma2-numerics.md.</summary>
[IsaSensitive]
public sealed class ActivationsTests
{
    private static double GeluTanhReference(double u) =>
        0.5 * u * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (u + 0.044715 * u * u * u)));

    /// <summary>Asserts |actual − expected| ≤ absolute + relative · |expected| for every element.</summary>
    private static void AssertClose(ReadOnlySpan<double> expected, ReadOnlySpan<float> actual, double absolute, double relative, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
        {
            double error = Math.Abs(actual[i] - expected[i]);
            if (!(error <= absolute + relative * Math.Abs(expected[i])))
                Assert.Fail($"{what}[{i}] of {expected.Length} = {actual[i]:R}, expected {expected[i]:R} (error {error:E2})");
        }
    }

    [Fact]
    public void GeluScaleIsSqrtOfTwoOverPi()
    {
        Assert.Equal(Activations.GeluScale, (float)Math.Sqrt(2 / Math.PI));
    }

    [Fact]
    public void GeluTanhMatchesTheTanhFormula()
    {
        var inputs = Enumerable.Range(-1600, 3201).Select(i => i / 100f).Concat([1e-6f, -1e-6f, 30f, -30f, 1000f, -1000f]).ToArray();
        var expected = inputs.Select(u => GeluTanhReference(u)).ToArray();
        var actual = inputs.Select(Activations.GeluTanh).ToArray();

        AssertClose(expected, actual, 1e-6, 1e-6, "gelu_tanh");
    }

    [Theory]
    [InlineData(0)]
    [InlineData(7)]
    [InlineData(16)]
    [InlineData(3201 + 6)]
    public unsafe void GeluTanhGatedIsGeluOfEachGateTimesItsUp(int count)
    {
        var gates = Enumerable.Range(-1600, 3201).Select(i => i / 100f).Concat([1e-6f, -1e-6f, 30f, -30f, 1000f, -1000f]).Take(count).ToArray();
        var gateUp = new float[2 * count];
        for (int i = 0; i < count; i++)
        {
            gateUp[2 * i] = gates[i];
            gateUp[2 * i + 1] = 0.5f + (i % 13) * 0.25f * (i % 2 == 0 ? 1 : -1);
        }
        var actual = new float[count + 1];
        actual[count] = float.NaN;
        fixed (float* pg = gateUp, py = actual)
        {
            Activations.GeluTanhGated(pg, py, count);
        }
        var expected = Enumerable.Range(0, count).Select(i => GeluTanhReference(gates[i]) * gateUp[2 * i + 1]).ToArray();

        AssertClose(expected, actual.AsSpan(0, count), 1e-6, 2e-6, "gelu_tanh(gate)·up");
        Assert.True(float.IsNaN(actual[count]), "written past the count");
    }

    [Theory]
    [InlineData(50f, 0.0625f)]
    [InlineData(30f, 1f)]
    public void SoftCapScalesBeforeCapping(float cap, float scale)
    {
        var values = KernelTestData.RandomFloats(257, seed: 5, scale: 40 * cap);
        var expected = values.Select(x => cap * Math.Tanh(scale * (double)x / cap)).ToArray();

        Activations.SoftCap(values, cap, scale);

        AssertClose(expected, values, 2e-7 * cap, 1e-6, "softcap");
    }

    [Fact]
    public void SoftCapWithoutACapOnlyScales()
    {
        var values = KernelTestData.RandomFloats(33, seed: 6, scale: 1000f);
        var expected = values.Select(x => x * 0.0625f).ToArray();

        Activations.SoftCap(values, 0f, 0.0625f);

        Assert.Equal(expected, values);
    }

    [Fact]
    public void GeluTanhIsNotTheErfGelu()
    {
        // The erf GELU at 1 is Φ(1) = 0.5·(1 + erf(1/√2)) = 0.8413447460685429; the tanh form gives 0.8411920.
        const double erfGeluAtOne = 0.8413447460685429;
        float atOne = Activations.GeluTanh(1f);

        Assert.Equal(GeluTanhReference(1), atOne, 1e-6);
        Assert.True(erfGeluAtOne - atOne > 1e-4, $"gelu_tanh(1) = {atOne:R} is within 1e-4 of the erf GELU");
    }

    public static TheoryData<int, float> LengthsAndCaps()
    {
        var data = new TheoryData<int, float>();
        foreach (int length in KernelTestData.LengthValues) data.Add(length, length % 2 == 0 ? 50f : 30f);
        return data;
    }

    [Theory]
    [MemberData(nameof(LengthsAndCaps))]
    public void SoftCapMatchesCapTimesTanh(int length, float cap)
    {
        var values = KernelTestData.RandomFloats(length, seed: length, scale: 4 * cap);
        values[0] = 1e30f;
        var expected = values.Select(x => cap * Math.Tanh(x / (double)cap)).ToArray();

        Activations.SoftCap(values, cap);

        // TensorPrimitives.Tanh is accurate to a few float32 ulps of 1 (absolutely, not relative to small results).
        AssertClose(expected, values, 2e-7 * cap, 1e-6, "softcap");
    }

    [Fact]
    public void SoftCapOfZeroMeansNone()
    {
        var values = KernelTestData.RandomFloats(100, seed: 3, scale: 1000f);
        var original = values.ToArray();

        Activations.SoftCap(values, 0f);

        Assert.Equal(original, values);
    }

    [Theory]
    [MemberData(nameof(KernelTestData.Lengths), MemberType = typeof(KernelTestData))]
    public void SoftmaxOfLargeValuesMatchesDouble(int length)
    {
        // exp(1000) overflows float and double alike: only subtracting the maximum keeps this finite.
        var values = KernelTestData.RandomFloats(length, seed: length, scale: 20f).Select(x => x + 1000f).ToArray();
        double max = values.Max();
        var exps = values.Select(x => Math.Exp(x - max)).ToArray();
        double sum = exps.Sum();
        var expected = exps.Select(e => e / sum).ToArray();

        Activations.Softmax(values);

        Assert.All(values, p => Assert.True(float.IsFinite(p) && p >= 0, $"probability {p}"));
        Assert.Equal(1.0, values.Sum(p => (double)p), 1e-5);
        AssertClose(expected, values, 1e-7, 2e-6, "softmax");
    }

    [Fact]
    public void SoftmaxGivesMaskedEntriesZero()
    {
        float[] values = [2f, float.NegativeInfinity, 1f, float.NegativeInfinity, -3f];
        double sum = Math.Exp(0) + Math.Exp(-1) + Math.Exp(-5);

        Activations.Softmax(values);

        Assert.Equal(0f, values[1]);
        Assert.Equal(0f, values[3]);
        AssertClose([1 / sum, 0, Math.Exp(-1) / sum, 0, Math.Exp(-5) / sum], values, 1e-7, 2e-6, "masked softmax");
    }

    [Fact]
    public void SoftmaxOfOneValueIsOne()
    {
        float[] values = [-12345f];

        Activations.Softmax(values);

        Assert.Equal(1f, values[0]);
    }

    [Theory]
    [MemberData(nameof(KernelTestData.Lengths), MemberType = typeof(KernelTestData))]
    public void RmsNormMatchesDoubleTimesMultiplier(int length)
    {
        var x = KernelTestData.RandomFloats(length, seed: length, scale: 30f);
        var w = KernelTestData.RandomFloats(length, seed: length + 1, scale: 2f);
        const float eps = 1e-6f;
        double rms = Math.Sqrt(x.Sum(v => (double)v * v) / length + eps);
        var expected = x.Select((v, i) => v / rms * w[i]).ToArray();
        var y = new float[length];

        Activations.RmsNorm(x, w, eps, y);

        AssertClose(expected, y, 1e-6, 1e-6, "rmsnorm");
    }

    [Fact]
    public void RmsNormWithUnitMultiplierHasUnitRms()
    {
        // The multiplier is 1 + w (ModelWeights adds the 1 at load): a multiplier of 1 leaves the normalized values as
        // they are, with a root mean square of 1.
        var x = KernelTestData.RandomFloats(2304, seed: 5, scale: 100f);
        var y = new float[x.Length];
        var one = new float[x.Length];
        Array.Fill(one, 1f);

        Activations.RmsNorm(x, one, 1e-6f, y);

        Assert.Equal(1.0, Math.Sqrt(y.Average(v => (double)v * v)), 1e-5);
    }

    [Fact]
    public void RmsNormOfZerosIsZeros()
    {
        var y = new float[33];
        Array.Fill(y, float.NaN);

        Activations.RmsNorm(new float[33], KernelTestData.RandomFloats(33, seed: 6), 1e-6f, y);

        Assert.All(y, v => Assert.Equal(0f, v));
    }
}
