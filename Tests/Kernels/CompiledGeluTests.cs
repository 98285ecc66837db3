using GemmaGen.Kernels;
using GemmaGen.Models;
using GemmaGen.Tests.Infrastructure;
using Xunit;

namespace GemmaGen.Tests.Kernels;

/// <summary>Decode's generated gate/up kernel applies the same tanh-GELU as prefill, <see cref="Activations.GeluTanhGated"/>.</summary>
[IsaSensitive]
public sealed unsafe class CompiledGeluTests
{
    [Fact]
    public void DecodeGateUpAppliesThePrefillActivationBitForBit()
    {
        const int d = Gemma2_Demo.HiddenSize, outputs = Gemma2_Demo.IntermediateSize, start = 3, end = outputs - 1;
        var w = KernelTestData.RandomFloats(2 * outputs * d, seed: 11, scale: 0.2f);
        var x = KernelTestData.RandomFloats(d, seed: 12, scale: 2f);
        var dots = new float[2 * outputs];
        var expected = new float[outputs];
        var actual = new float[outputs];
        fixed (float* pw = w, px = x, pd = dots, pe = expected, pa = actual)
        {
            // the kernel's dot products: gate/up rows of two outputs at a time
            for (int i = start; i + 2 <= end; i += 2) Gemma2_Demo.Dot4_F32_256(pw + (long)2 * i * d, px, pd + 2 * i);
            Activations.GeluTanhGated(pd + 2 * start, pe + start, end - start);

            Gemma2_Demo.GateUp_F32_256(pw, px, pa, start, end);
        }

        Assert.Equal(expected, actual);
    }
}
