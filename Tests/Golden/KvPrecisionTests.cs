using GemmaGen.Kernels;
using Xunit.Abstractions;
using GemmaGen.Tests.Generation;
using GemmaGen.Tests.Infrastructure;

namespace GemmaGen.Tests.Golden;

/// <summary>
/// Reduced-precision KV caches (<c>--kv bf16</c>, <c>--kv q8_0</c>) against the goldens of Hugging Face transformers
/// (float64): keys and values are rounded once when stored, so the logits move by a little more than with a float32
/// cache, and the compiled kernels (which widen bf16 rows, or dequantize q8_0 rows, as they load them) compute what
/// the reference computes on the same rounded cache.
/// </summary>
[IsaSensitive]
public sealed class KvPrecisionTests(ITestOutputHelper output)
{
    /// <summary>Prompt logits and every step of greedy decoding through a bf16 cache stay within this fraction of the
    /// largest logit of the golden (the float32 cache is held to 1e-3 absolute; these logits reach about 10).</summary>
    private const double RelativeTolerance = 5e-3;

    /// <summary>Prompt logits and every step of decoding through a q8_0 cache stay within this of the golden, absolute:
    /// each key and value moves by up to half a step (max|block| / 254), which moved the logits by 0.043–0.056 on the
    /// three fixtures it can store (largest logits 5–30, the error not growing with them), on both paths; 0.07 leaves a
    /// quarter for the ISA's summation order, and a scale 1% off (every dequantized value ×1.01) already exceeds it
    /// (0.072 and 0.080).</summary>
    private const double Q8Tolerance = 0.07;

    /// <summary>Teacher-forced steps whose golden margin (top logit over the runner-up) is below this may pick either
    /// token; as in <see cref="DemoGoldenTests"/>.</summary>
    private const double DecisiveMargin = 0.05;

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

    /// <summary>The fixtures whose head_dim (32) a q8_0 cache can store; tiny-gqa's (16) it refuses.</summary>
    public static TheoryData<string, bool> Q8Checkpoints()
    {
        var data = new TheoryData<string, bool>();
        foreach (var folder in new[] { "tiny-softcap", "tiny-27b-like", "tiny-long" })
        {
            data.Add(folder, true);
            data.Add(folder, false);
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(Checkpoints))]
    public void ABf16CacheStaysCloseToTheGoldenAndGreedyDecodingHolds(string folder, bool compiled) =>
        StaysCloseToTheGolden(folder, compiled, KvPrecision.BF16, scale => RelativeTolerance * scale);

    [Theory]
    [MemberData(nameof(Q8Checkpoints))]
    public void AQ8CacheStaysCloseToTheGoldenAndGreedyDecodingHolds(string folder, bool compiled) =>
        StaysCloseToTheGolden(folder, compiled, KvPrecision.Q8_0, _ => Q8Tolerance);

    /// <param name="tolerance">The largest |diff| allowed, given the largest prompt logit of the golden.</param>
    private void StaysCloseToTheGolden(string folder, bool compiled, KvPrecision precision, Func<double, double> tolerance)
    {
        using var fixture = new GoldenCheckpoint(folder);
        using var pool = new WorkerPool(2);
        var expected = fixture.Golden.GetI64("generated_ids").Select(id => (int)id).ToArray();
        var expectedLogits = fixture.Golden.GetF32("generated_logits").ToArray();
        var promptLogits = fixture.Golden.GetF32("prompt_logits").ToArray();
        var prompt = fixture.PromptIds;
        int v = fixture.VocabSize;
        var model = Decoders.CreateModel(fixture.Weights, compiled, pool, prompt.Length + expected.Length);
        model.KvPrecision = precision;
        var decoder = new Gemma2Decoder(model, prompt.Length + expected.Length);
        Assert.Equal(precision, decoder.Sequence.Cache.Precision);
        var all = new float[prompt.Length * v];

        decoder.Forward(prompt, 0, all);
        double scale = promptLogits.Max(x => Math.Abs(x));
        output.WriteLine($"{folder} {(compiled ? "compiled" : "reference")} {precision}: prompt logits max |diff| {Worst(promptLogits, all):G3} (largest logit {scale:G3}, {Worst(promptLogits, all) / scale:G3} of it)");
        AssertWithin(promptLogits, all, tolerance(scale), "prompt_logits");

        var logits = all.AsSpan((prompt.Length - 1) * v, v).ToArray();
        double worstStep = 0;
        for (int step = 0; step < expected.Length; step++)
        {
            var golden = expectedLogits.AsSpan(step * v, v).ToArray();
            worstStep = Math.Max(worstStep, Worst(golden, logits));
            AssertWithin(golden, logits, tolerance(scale), $"step {step}");
            if (Margin(golden) >= DecisiveMargin) Assert.Equal(expected[step], GemmaModel.ArgMax(logits));
            else output.WriteLine($"step {step}: golden margin {Margin(golden):G3} < {DecisiveMargin}, token not compared");
            if (step + 1 < expected.Length) decoder.Step(expected[step], decoder.Length, logits);
        }
        output.WriteLine($"decoding: max |diff| {worstStep:G3} ({worstStep / scale:G3} of the largest prompt logit)");
    }

    /// <summary>The demo model's greedy continuations (trained weights, head_dim 64) through a q8_0 cache, as
    /// <see cref="DemoGoldenTests"/> holds a float32 cache to them: with teacher forcing the top token is the golden's at
    /// every step whose golden margin is at least <see cref="DecisiveMargin"/>, and free-running greedy decoding agrees
    /// token for token up to the first smaller margin.</summary>
    [Theory]
    [InlineData(0, true)]
    [InlineData(1, true)]
    [InlineData(2, true)]
    [InlineData(0, false)]
    public void AQ8CacheKeepsTheDemoModelsGreedyContinuations(int index, bool compiled)
    {
        string directory = DemoModel.Directory;
        var (prompt, expected, margins) = (DemoModel.Cases[index].PromptIds, DemoModel.Cases[index].GreedyIds, DemoModel.Cases[index].Margins);
        using var checkpoint = Checkpoint.Open(directory);
        using var weights = ModelWeights.Load(checkpoint.Config, checkpoint);
        using var pool = new WorkerPool(2);
        var logits = new float[checkpoint.Config.VocabSize];
        int decisive = Array.FindIndex(margins, m => m < DecisiveMargin);
        if (decisive < 0) decisive = expected.Length;

        var model = Decoders.CreateModel(weights, compiled, pool, prompt.Length + expected.Length);
        model.KvPrecision = KvPrecision.Q8_0;
        var forced = new Gemma2Decoder(model, prompt.Length + expected.Length);
        forced.Forward(prompt, 0, logits);
        for (int step = 0; step < expected.Length; step++)
        {
            int top = GemmaModel.ArgMax(logits);
            if (margins[step] >= DecisiveMargin)
                Assert.True(top == expected[step], $"teacher-forced step {step}: top token {top}, golden {expected[step]} (margin {margins[step]:G3})");
            if (step + 1 < expected.Length) forced.Step(expected[step], forced.Length, logits);
        }

        var greedy = new Gemma2Decoder(model, prompt.Length + expected.Length);
        Assert.Equal(KvPrecision.Q8_0, greedy.Sequence.Cache.Precision);
        greedy.Forward(prompt, 0, logits);
        for (int step = 0; step < decisive; step++)
        {
            int next = GemmaModel.ArgMax(logits);
            Assert.True(expected[step] == next, $"step {step}: {next}, golden {expected[step]} (margin {margins[step]:G3})");
            greedy.Step(next, greedy.Length, logits);
        }
        output.WriteLine($"case {index}: {decisive} of {expected.Length} tokens up to the first margin below {DecisiveMargin}");
    }

    [Fact]
    public void ReducedCachesHoldHalfAndSeventeenSixtyFourthsOfTheBytesOfAFloat32One()
    {
        using var fixture = new GoldenCheckpoint("tiny-long");
        var config = fixture.Weights.Config;
        var f32 = new KvCache(config, 300, 64, KvPrecision.F32);
        var bf16 = new KvCache(config, 300, 64, KvPrecision.BF16);
        var q8 = new KvCache(config, 300, 64, KvPrecision.Q8_0);

        Assert.Equal(f32.ByteLength, 2 * bf16.ByteLength);
        // q8_0: 32 int8 and a 2-byte scale per 32 elements, 34 bytes where float32 takes 128
        Assert.Equal(17 * f32.ByteLength, 64 * q8.ByteLength);
        Assert.Equal(KvCache.ByteLengthOf(config, 300, 64, KvPrecision.BF16), bf16.ByteLength);
        Assert.Equal(KvCache.ByteLengthOf(config, 300, 64, KvPrecision.Q8_0), q8.ByteLength);
        Assert.Equal(KvCache.ByteLengthOf(config, 300, 64), f32.ByteLength);
    }

    [Fact]
    public void AQ8CacheOfAHeadDimNotAMultipleOf32IsRefusedAtLoadAndAtCreation()
    {
        using var fixture = new GoldenCheckpoint("tiny-gqa");
        var config = fixture.Weights.Config;
        Assert.Equal(16, config.HeadDim);

        var created = Assert.Throws<ArgumentException>(() => new KvCache(config, 10, 1, KvPrecision.Q8_0));
        Assert.Contains("head_dim is 16", created.Message);
        Assert.Contains("multiple of 32", created.Message);

        var loaded = Assert.Throws<CheckpointException>(() => GemmaModel.Load(GoldenCheckpoint.FixturePath("tiny-gqa"), new GemmaModelOptions { KvCache = KvPrecision.Q8_0 }));
        Assert.Contains("tiny-gqa", loaded.Message);
        Assert.Contains("head_dim is 16", loaded.Message);
    }

    private static double Margin(float[] logits)
    {
        int top = GemmaModel.ArgMax(logits);
        double second = double.NegativeInfinity;
        for (int i = 0; i < logits.Length; i++)
            if (i != top) second = Math.Max(second, logits[i]);
        return logits[top] - second;
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
