using GemmaGen.Kernels;
using Xunit.Abstractions;
using GemmaGen.Tests.Infrastructure;

namespace GemmaGen.Tests.Golden;

/// <summary>
/// A bfloat16 KV cache (<c>--kv bf16</c>) against the goldens of Hugging Face transformers (float64): keys and values
/// are rounded once when stored, so the logits move by a little more than with a float32 cache, and the compiled
/// kernels (which widen bf16 rows as they load them) compute what the reference computes on the same rounded cache.
/// </summary>
[IsaSensitive]
public sealed class KvPrecisionTests(ITestOutputHelper output)
{
    /// <summary>Prompt logits and every step of greedy decoding through a bf16 cache stay within this fraction of the
    /// largest logit of the golden (the float32 cache is held to 1e-3 absolute; these logits reach about 10).</summary>
    private const double RelativeTolerance = 5e-3;

    public static TheoryData<string, bool> Checkpoints()
    {
        var data = new TheoryData<string, bool>();
        foreach (var folder in new[] { "tiny-gqa", "tiny-softcap", "tiny-27b-like", "tiny-long" })
        {
            data.Add(folder, true);
            data.Add(folder, false);
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(Checkpoints))]
    public void ABf16CacheStaysCloseToTheGoldenAndGreedyDecodingHolds(string folder, bool compiled)
    {
        using var fixture = new GoldenCheckpoint(folder);
        using var pool = new WorkerPool(2);
        var expected = fixture.Golden.GetI64("generated_ids").Select(id => (int)id).ToArray();
        var expectedLogits = fixture.Golden.GetF32("generated_logits").ToArray();
        var promptLogits = fixture.Golden.GetF32("prompt_logits").ToArray();
        var prompt = fixture.PromptIds;
        int v = fixture.VocabSize;
        var model = Decoders.CreateModel(fixture.Weights, compiled, pool, prompt.Length + expected.Length);
        model.KvPrecision = KvPrecision.BF16;
        var decoder = new Gemma2Decoder(model, prompt.Length + expected.Length);
        Assert.Equal(KvPrecision.BF16, decoder.Sequence.Cache.Precision);
        var all = new float[prompt.Length * v];

        decoder.Forward(prompt, 0, all);
        double scale = promptLogits.Max(x => Math.Abs(x));
        AssertWithin(promptLogits, all, RelativeTolerance * scale, "prompt_logits");

        output.WriteLine($"{folder} {(compiled ? "compiled" : "reference")}: prompt logits max |diff| {Worst(promptLogits, all):G3} (largest logit {scale:G3})");
        var logits = all.AsSpan((prompt.Length - 1) * v, v).ToArray();
        for (int step = 0; step < expected.Length; step++)
        {
            AssertWithin(expectedLogits.AsSpan(step * v, v).ToArray(), logits, RelativeTolerance * scale, $"step {step}");
            Assert.Equal(expected[step], GemmaModel.ArgMax(logits));
            if (step + 1 < expected.Length) decoder.Step(expected[step], decoder.Length, logits);
        }
    }

    [Fact]
    public void ABf16CacheHoldsHalfTheBytesOfAFloat32One()
    {
        using var fixture = new GoldenCheckpoint("tiny-long");
        var config = fixture.Weights.Config;
        var f32 = new KvCache(config, 300, 64, KvPrecision.F32);
        var bf16 = new KvCache(config, 300, 64, KvPrecision.BF16);

        Assert.Equal(f32.ByteLength, 2 * bf16.ByteLength);
        Assert.Equal(KvCache.ByteLengthOf(config, 300, 64, KvPrecision.BF16), bf16.ByteLength);
        Assert.Equal(KvCache.ByteLengthOf(config, 300, 64), f32.ByteLength);
    }

    private static double Worst(float[] expected, float[] actual)
    {
        double worst = 0;
        for (int i = 0; i < expected.Length; i++) worst = Math.Max(worst, Math.Abs(expected[i] - actual[i]));
        return worst;
    }

    private static void AssertWithin(float[] expected, float[] actual, double tolerance, string what)
    {
        double worst = Worst(expected, actual);
        Assert.True(worst <= tolerance, $"{what}: max |diff| {worst:G3} > {tolerance:G3}");
    }
}
