using GemmaGen.Tests.Infrastructure;

namespace GemmaGen.Tests.Generation;

/// <summary>The sampler on hand-made logits, against argmax, sorted sets and softmax computed here.</summary>
[Collection(AllocationCountingCollection.Name)]
public sealed class SamplerTests
{
    /// <summary>Distinct pseudo-random logits in [-8, 8).</summary>
    private static float[] RandomLogits(int count, int seed)
    {
        var random = new Random(seed);
        var logits = new float[count];
        for (int i = 0; i < count; i++) logits[i] = (float)(random.NextDouble() * 16 - 8);
        return logits;
    }

    private static int IndexOfMax(float[] values)
    {
        int best = 0;
        for (int i = 1; i < values.Length; i++)
        {
            if (values[i] > values[best]) best = i;
        }
        return best;
    }

    /// <summary>Logits whose softmax is exactly <paramref name="probabilities"/> (up to float rounding).</summary>
    private static float[] LogitsOf(params double[] probabilities) => probabilities.Select(p => (float)Math.Log(p)).ToArray();

    private static int Draw(Sampler sampler, float[] logits) => sampler.Sample((float[])logits.Clone(), ReadOnlySpan<int>.Empty);

    private static int[] Histogram(Sampler sampler, float[] logits, int draws)
    {
        var counts = new int[logits.Length];
        for (int i = 0; i < draws; i++) counts[Draw(sampler, logits)]++;
        return counts;
    }

    [Fact]
    public void GreedyTakesTheArgmax()
    {
        for (int seed = 0; seed < 20; seed++)
        {
            var logits = RandomLogits(1000, seed);
            var sampler = new Sampler(SamplingOptions.GreedyDecoding, logits.Length);
            Assert.True(sampler.IsGreedy);
            Assert.Equal(IndexOfMax(logits), Draw(sampler, logits));
        }
    }

    [Fact]
    public void TemperatureZeroIsGreedy()
    {
        var sampler = new Sampler(new SamplingOptions { Temperature = 0, Seed = 3 }, 500);
        Assert.True(sampler.IsGreedy);
        for (int seed = 0; seed < 20; seed++)
        {
            var logits = RandomLogits(500, 100 + seed);
            Assert.Equal(IndexOfMax(logits), Draw(sampler, logits));
        }
    }

    [Theory]
    [InlineData(1e-45f)] // its inverse overflows to infinity
    [InlineData(1e-30f)]
    public void ATinyTemperatureIsGreedy(float temperature)
    {
        for (int seed = 0; seed < 10; seed++)
        {
            var logits = RandomLogits(500, 200 + seed);
            var sampler = new Sampler(new SamplingOptions { Temperature = temperature, TopK = 40, TopP = 0.9f, Seed = seed }, logits.Length);
            Assert.Equal(IndexOfMax(logits), Draw(sampler, logits));
        }
    }

    [Fact]
    public void ATokenWithZeroProbabilityIsNeverDrawn()
    {
        // The last token's weight is exactly 0 (a logit of -inf); every other token is equally likely.
        var logits = new float[64];
        logits[^1] = float.NegativeInfinity;
        var sampler = new Sampler(new SamplingOptions { Seed = 8 }, logits.Length);
        var counts = Histogram(sampler, logits, 20_000);
        Assert.Equal(0, counts[^1]);
        Assert.All(counts[..^1], count => Assert.True(count > 0));
    }

    [Fact]
    public void TopKOfOneIsTheArgmaxWhateverTheSeed()
    {
        var logits = RandomLogits(300, 7);
        // A flat distribution: without the filter, other tokens would be drawn often.
        for (int i = 0; i < logits.Length; i++) logits[i] = logits[i] / 16;
        int expected = IndexOfMax(logits);
        for (int seed = 0; seed < 50; seed++)
        {
            var sampler = new Sampler(new SamplingOptions { TopK = 1, Temperature = 1.5f, Seed = seed }, logits.Length);
            Assert.False(sampler.IsGreedy);
            for (int draw = 0; draw < 5; draw++) Assert.Equal(expected, Draw(sampler, logits));
        }
    }

    [Theory]
    [InlineData(2)]
    [InlineData(5)]
    [InlineData(17)]
    public void TopKNeverLeavesTheKBest(int k)
    {
        var logits = RandomLogits(200, 11);
        for (int i = 0; i < logits.Length; i++) logits[i] = logits[i] / 8; // flat enough for every one of the k to come up
        var best = Enumerable.Range(0, logits.Length).OrderByDescending(i => logits[i]).Take(k).ToHashSet();
        var sampler = new Sampler(new SamplingOptions { TopK = k, Seed = 42 }, logits.Length);

        var counts = Histogram(sampler, logits, 4000);
        for (int i = 0; i < counts.Length; i++)
        {
            if (!best.Contains(i)) Assert.True(counts[i] == 0, $"token {i}, outside the {k} best, was drawn {counts[i]} times");
        }
        Assert.All(best, i => Assert.True(counts[i] > 0, $"token {i}, one of the {k} best, was never drawn"));
    }

    [Theory]
    [InlineData(0.4f, new[] { 1 })]             // 0.5 alone reaches 0.4
    [InlineData(0.7f, new[] { 1, 4 })]          // 0.5 + 0.25 = 0.75 is the first sum >= 0.7
    [InlineData(0.8f, new[] { 1, 4, 0 })]       // 0.9 >= 0.8
    [InlineData(1.0f, new[] { 1, 4, 0, 2, 3 })] // everything
    public void TopPKeepsTheSmallestNucleus(float topP, int[] nucleus)
    {
        // Probabilities by token: 0 → 0.15, 1 → 0.5, 2 → 0.06, 3 → 0.04, 4 → 0.25.
        var logits = LogitsOf(0.15, 0.5, 0.06, 0.04, 0.25);
        var sampler = new Sampler(new SamplingOptions { TopP = topP, Seed = 9 }, logits.Length);

        var counts = Histogram(sampler, logits, 4000);
        for (int i = 0; i < counts.Length; i++)
        {
            if (nucleus.Contains(i)) Assert.True(counts[i] > 0, $"top-p {topP}: token {i} of the nucleus was never drawn");
            else Assert.True(counts[i] == 0, $"top-p {topP}: token {i}, outside the nucleus, was drawn {counts[i]} times");
        }
    }

    [Theory]
    [InlineData(0.35f, new[] { 1, 4 })]       // threshold 0.175: 0.15 and below go
    [InlineData(0.25f, new[] { 1, 4, 0 })]    // threshold 0.125
    [InlineData(0.1f, new[] { 1, 4, 0, 2 })]  // threshold 0.05: only 0.04 goes
    [InlineData(0.9f, new[] { 1 })]
    public void MinPDropsTokensBelowMinPTimesTheTop(float minP, int[] kept)
    {
        var logits = LogitsOf(0.15, 0.5, 0.06, 0.04, 0.25);
        var sampler = new Sampler(new SamplingOptions { MinP = minP, Seed = 4 }, logits.Length);

        var counts = Histogram(sampler, logits, 4000);
        for (int i = 0; i < counts.Length; i++)
        {
            if (kept.Contains(i)) Assert.True(counts[i] > 0, $"min-p {minP}: token {i} should be kept but was never drawn");
            else Assert.True(counts[i] == 0, $"min-p {minP}: token {i} should be dropped but was drawn {counts[i]} times");
        }
    }

    [Fact]
    public void RepetitionPenaltyDividesPositiveAndMultipliesNegativeLogitsOncePerToken()
    {
        var sampler = new Sampler(new SamplingOptions { Greedy = true, RepetitionPenalty = 2f }, 6);
        float[] logits = [3f, -1f, 2.5f, -4f, 1f, 0.5f];
        int[] context = [0, 1, 0, 0, 3, 1, 0];

        sampler.Sample(logits, context);
        Assert.Equal([1.5f, -2f, 2.5f, -8f, 1f, 0.5f], logits);

        // A second call penalizes again (the once-per-token bookkeeping is reset between calls).
        float[] again = [3f, -1f, 2.5f, -4f, 1f, 0.5f];
        sampler.Sample(again, context);
        Assert.Equal([1.5f, -2f, 2.5f, -8f, 1f, 0.5f], again);
    }

    [Fact]
    public void RepetitionPenaltyChangesTheChoice()
    {
        var sampler = new Sampler(new SamplingOptions { Greedy = true, RepetitionPenalty = 2f }, 3);
        // 3 / 2 = 1.5 > 1: token 0 stays on top even though it occurs three times (penalized once, not three times).
        Assert.Equal(0, sampler.Sample([3f, 1f, 0f], [0, 0, 0]));
        // 3 / 2 = 1.5 < 2.5.
        Assert.Equal(1, sampler.Sample([3f, 2.5f, 0f], [0]));
        // A negative logit is multiplied: -1 × 2 = -2 < -1.5.
        Assert.Equal(1, sampler.Sample([-1f, -1.5f, -3f], [0, 2]));
        // Off (1): nothing changes.
        var off = new Sampler(new SamplingOptions { Greedy = true }, 3);
        Assert.Equal(0, off.Sample([3f, 2.5f, 0f], [0]));
    }

    [Fact]
    public void TheSameSeedGivesTheSameDrawsAndOtherSeedsDiffer()
    {
        var logits = RandomLogits(100, 5);
        for (int i = 0; i < logits.Length; i++) logits[i] = logits[i] / 8;
        var options = new SamplingOptions { Temperature = 0.9f, TopK = 50, TopP = 0.95f, Seed = 1234 };

        int[] Draws(SamplingOptions o)
        {
            var sampler = new Sampler(o, logits.Length);
            return Enumerable.Range(0, 200).Select(_ => Draw(sampler, logits)).ToArray();
        }

        var first = Draws(options);
        Assert.Equal(first, Draws(options));
        Assert.True(first.Distinct().Count() > 10, "the draws should vary");
        Assert.NotEqual(first, Draws(options with { Seed = 1235 }));
        Assert.NotEqual(first, Draws(options with { Seed = 0 }));
    }

    [Theory]
    [InlineData(1.0f)]
    [InlineData(0.5f)]
    [InlineData(2.0f)]
    public void FrequenciesFollowTheSoftmaxAtTheTemperature(float temperature)
    {
        float[] logits = [1f, 0.5f, 0f, -0.5f, -1f, 2f, 1.5f];
        double[] scaled = logits.Select(l => Math.Exp(l / temperature)).ToArray();
        double total = scaled.Sum();
        double[] expected = scaled.Select(s => s / total).ToArray();

        const int draws = 40_000;
        var sampler = new Sampler(new SamplingOptions { Temperature = temperature, Seed = 77 }, logits.Length);
        var counts = Histogram(sampler, logits, draws);
        for (int i = 0; i < logits.Length; i++)
        {
            double frequency = counts[i] / (double)draws;
            Assert.True(Math.Abs(frequency - expected[i]) < 0.012,
                $"T={temperature}: token {i} drawn with frequency {frequency:F4}, softmax gives {expected[i]:F4}");
        }
    }

    public static TheoryData<string, SamplingOptions> InvalidOptions() => new()
    {
        { "temperature", new SamplingOptions { Temperature = -1f } },
        { "temperature", new SamplingOptions { Temperature = -0.001f } },
        { "temperature", new SamplingOptions { Temperature = float.NaN } },
        { "temperature", new SamplingOptions { Temperature = float.PositiveInfinity } },
        { "top-p", new SamplingOptions { TopP = 0f } },
        { "top-p", new SamplingOptions { TopP = 1.01f } },
        { "top-p", new SamplingOptions { TopP = -0.5f } },
        { "top-p", new SamplingOptions { TopP = float.NaN } },
        { "min-p", new SamplingOptions { MinP = 1f } },
        { "min-p", new SamplingOptions { MinP = -0.1f } },
        { "min-p", new SamplingOptions { MinP = float.NaN } },
        { "top-k", new SamplingOptions { TopK = -1 } },
        { "top-k", new SamplingOptions { TopK = -2 } },
        { "repetition penalty", new SamplingOptions { RepetitionPenalty = 0f } },
        { "repetition penalty", new SamplingOptions { RepetitionPenalty = -1f } },
        { "repetition penalty", new SamplingOptions { RepetitionPenalty = float.NaN } },
        { "repetition penalty", new SamplingOptions { RepetitionPenalty = float.PositiveInfinity } },
    };

    [Theory]
    [MemberData(nameof(InvalidOptions))]
    public void InvalidValuesAreRejectedWithAMessageNamingTheOption(string option, SamplingOptions options)
    {
        var validate = Assert.ThrowsAny<ArgumentException>(options.Validate);
        Assert.Contains(option, validate.Message);
        var construct = Assert.ThrowsAny<ArgumentException>(() => new Sampler(options, 10));
        Assert.Contains(option, construct.Message);
        // Greedy decoding does not excuse an invalid value.
        Assert.ThrowsAny<ArgumentException>(() => new Sampler(options with { Greedy = true }, 10));
    }

    [Fact]
    public void ValidEdgeValuesAreAccepted()
    {
        new SamplingOptions { Temperature = 0, TopK = 0, TopP = 1, MinP = 0, RepetitionPenalty = 1 }.Validate();
        new SamplingOptions { Temperature = 100, TopK = 1, TopP = 1e-6f, MinP = 0.999f, RepetitionPenalty = 0.5f }.Validate();
    }

    public static TheoryData<string, SamplingOptions> AllocationCases() => new()
    {
        { "greedy", SamplingOptions.GreedyDecoding },
        { "greedy with penalty", new SamplingOptions { Greedy = true, RepetitionPenalty = 1.3f } },
        { "temperature", new SamplingOptions { Temperature = 0.8f, Seed = 1 } },
        { "top-k top-p", new SamplingOptions { Temperature = 0.8f, TopK = 40, TopP = 0.95f, Seed = 1 } },
        { "everything", new SamplingOptions { Temperature = 0.7f, TopK = 100, TopP = 0.9f, MinP = 0.05f, RepetitionPenalty = 1.1f, Seed = 2 } },
        { "top-p only", new SamplingOptions { TopP = 0.5f, Seed = 3 } },
    };

    [Theory]
    [MemberData(nameof(AllocationCases))]
    public void SamplingAllocatesNothingAfterTheFirstCall(string name, SamplingOptions options)
    {
        const int vocabulary = 4096;
        var source = RandomLogits(vocabulary, 21);
        var logits = new float[vocabulary];
        int[] context = [5, 17, 5, 300, 4000, 17, 2];
        var sampler = new Sampler(options, vocabulary);
        source.CopyTo(logits);
        sampler.Sample(logits, context);
        source.CopyTo(logits);
        sampler.Sample(logits, context);

        var windows = new AllocationWindows();
        windows.Mark();
        for (int window = 0; window < AllocationWindows.Count; window++)
        {
            // 50 calls a window: a few ms, well under the test host's 100 ms tick.
            for (int i = 0; i < 50; i++)
            {
                source.CopyTo(logits);
                sampler.Sample(logits, context);
            }
            windows.Mark();
        }
        windows.AssertOneWindowAllocatedNothing($"{name}: a run of 50 calls to Sample");
    }
}
