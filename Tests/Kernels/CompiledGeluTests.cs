using GemmaGen.Kernels;
using GemmaGen.Tests.Infrastructure;
using Xunit;

namespace GemmaGen.Tests.Kernels;

/// <summary>Decode's gate/up kernel of the row-major formats applies the same tanh-GELU as prefill,
/// <see cref="Activations.GeluTanhGated"/>, to the same dot products its matrix-vector kernel computes.</summary>
[IsaSensitive]
public sealed unsafe class CompiledGeluTests
{
    [Theory]
    [InlineData("f32")]
    [InlineData("bf16")]
    public void DecodeGateUpAppliesThePrefillActivationBitForBit(string format)
    {
        const int d = 256, outputs = 100, start = 3, end = outputs - 1;
        using var matrix = new WeightMatrix("gate_up", 2 * outputs, d, WeightFormat.Find(format)!);
        for (int r = 0; r < 2 * outputs; r++) matrix.WriteRow(r, KernelTestData.RandomFloats(d, seed: 11 + r, scale: 0.2f));
        var x = KernelTestData.RandomFloats(d, seed: 12, scale: 2f);
        var dots = new float[2 * outputs];
        var expected = new float[outputs];
        var actual = new float[outputs];
        fixed (float* px = x, pd = dots, pe = expected, pa = actual)
        {
            // the interleaved gate and up rows of outputs [start, end), then the activation prefill uses
            matrix.MatVecRows(px, pd, 2 * start, 2 * end);
            Activations.GeluTanhGated(pd + 2 * start, pe + start, end - start);

            matrix.GateUpRows(px, pa, start, end);
        }

        Assert.Equal(expected, actual);
    }
}
