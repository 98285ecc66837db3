using GemmaGen.Kernels;
using GemmaGen.Tests.Infrastructure;
using Xunit;

namespace GemmaGen.Tests.Kernels;

/// <summary><see cref="RopeTable"/> against rotate-half ("NeoX") rotary embedding evaluated in float64.</summary>
[IsaSensitive]
public sealed unsafe class RopeTableTests
{
    private const double Theta = 10000;
    private const int MaxContext = 8192;

    public static TheoryData<int, int> HeadDimsAndPositions()
    {
        var data = new TheoryData<int, int>();
        foreach (int headDim in new[] { 16, 64, 128, 256 })
            foreach (int position in new[] { 0, 1, 607, 8191 }) data.Add(headDim, position);
        return data;
    }

    /// <summary>φ_i = p / θ^(2i/d), the angle of pair i at position p.</summary>
    private static double Angle(int position, int i, int headDim) => position / Math.Pow(Theta, 2.0 * i / headDim);

    [Theory]
    [MemberData(nameof(HeadDimsAndPositions))]
    public void TablesHoldCosAndSinOfTheAngles(int headDim, int position)
    {
        var table = new RopeTable(headDim, Theta, MaxContext);
        float* cos = table.Cos(position), sin = table.Sin(position);

        Assert.Equal(headDim, table.HeadDim);
        for (int i = 0; i < headDim / 2; i++)
        {
            double angle = Angle(position, i, headDim);
            Assert.Equal(Math.Cos(angle), cos[i], 1e-7);
            Assert.Equal(Math.Sin(angle), sin[i], 1e-7);
        }
    }

    [Theory]
    [MemberData(nameof(HeadDimsAndPositions))]
    public void ApplyRotatesHalvesAsInDouble(int headDim, int position)
    {
        var table = new RopeTable(headDim, Theta, MaxContext);
        var head = KernelTestData.RandomFloats(headDim, seed: headDim + position);
        int half = headDim / 2;
        var expected = new double[headDim];
        for (int i = 0; i < half; i++)
        {
            double angle = Angle(position, i, headDim), a = head[i], b = head[i + half];
            expected[i] = a * Math.Cos(angle) - b * Math.Sin(angle);
            expected[i + half] = b * Math.Cos(angle) + a * Math.Sin(angle);
        }

        table.Apply(head, position);

        for (int i = 0; i < headDim; i++) Assert.Equal(expected[i], head[i], 1e-6);
    }

    [Fact]
    public void PositionZeroIsTheIdentity()
    {
        var table = new RopeTable(64, Theta, 4);
        var head = KernelTestData.RandomFloats(64, seed: 9);
        var original = head.ToArray();

        table.Apply(head, 0);

        Assert.Equal(original, head);
    }

    [Fact]
    public void PairsElementIWithIPlusHalfNotItsNeighbour()
    {
        // d = 4, p = 1: pair 0 turns by 1 radian, pair 1 by 1/100. A unit x[0] moves into x[2], not x[1].
        var table = new RopeTable(4, Theta, 2);
        float[] head = [1, 0, 0, 0];

        table.Apply(head, 1);

        Assert.Equal(Math.Cos(1), head[0], 1e-7);
        Assert.Equal(0f, head[1]);
        Assert.Equal(Math.Sin(1), head[2], 1e-7);
        Assert.Equal(0f, head[3]);
    }

    [Theory]
    [InlineData(7)]
    [InlineData(255)]
    public void OddHeadDimThrows(int headDim)
    {
        var e = Assert.Throws<ArgumentException>(() => new RopeTable(headDim, Theta, 16));
        Assert.Contains(headDim.ToString(), e.Message);
    }
}
