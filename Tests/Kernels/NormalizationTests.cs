using GemmaGen.Kernels;
using GemmaGen.Tests.Infrastructure;
using Xunit;

namespace GemmaGen.Tests.Kernels;

/// <summary>The compiled layers' RMSNorm (<see cref="Normalization"/>) against float64, at widths that leave vectors
/// past the last pass of eight and elements past the last vector.</summary>
[IsaSensitive]
public sealed unsafe class NormalizationTests
{
    [Theory]
    [InlineData(1)]
    [InlineData(15)]
    [InlineData(16)]
    [InlineData(129)]
    [InlineData(256)]
    [InlineData(2304)]
    [InlineData(2311)]
    public void RmsNorm_and_RmsNormAdd_are_the_float64_norm_to_float_precision(int n)
    {
        const float eps = 1e-6f;
        var x = KernelTestData.RandomFloats(n, seed: 1, scale: 3f);
        var g = KernelTestData.RandomFloats(n, seed: 2, scale: 1f);
        var residual = KernelTestData.RandomFloats(n, seed: 3, scale: 1f);
        var y = new float[n];
        var added = (float[])residual.Clone();
        fixed (float* px = x, pg = g, py = y, pa = added)
        {
            Normalization.RmsNorm(px, pg, py, n, eps);
            Normalization.RmsNormAdd(px, pg, pa, n, eps);
        }

        double scale = 1 / Math.Sqrt(x.Sum(v => (double)v * v) / n + eps);
        for (int i = 0; i < n; i++)
        {
            double expected = x[i] * scale * g[i];
            Assert.True(Math.Abs(expected - y[i]) <= 1e-5 * Math.Abs(expected) + 1e-6, $"width {n}, element {i}: {expected} vs {y[i]}");
            double sum = residual[i] + expected;
            Assert.True(Math.Abs(sum - added[i]) <= 1e-5 * (Math.Abs(expected) + Math.Abs(residual[i])) + 1e-6, $"width {n}, element {i} with the residual: {sum} vs {added[i]}");
        }
    }
}
