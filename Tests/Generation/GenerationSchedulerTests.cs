using System.Text.Json;

namespace GemmaGen.Tests.Generation;

/// <summary>
/// Continuous batching on the demo model: sequences of different lengths join and leave while others decode, and
/// each one's output is what it gives alone — and, greedy, what the golden reference gives.
/// </summary>
public sealed class GenerationSchedulerTests(DemoModelFixture fixture) : IClassFixture<DemoModelFixture>
{
    private static readonly GenerationOptions Greedy32 = new() { MaxTokens = 32, Sampling = SamplingOptions.GreedyDecoding, IgnoreEndTokens = true };

    /// <summary>The golden margins of each case (top-1 minus top-2 of the float64 reference at each step).</summary>
    private static double[] Margins(int index)
    {
        using var golden = JsonDocument.Parse(File.ReadAllText(Path.Combine(DemoModel.Directory, "golden.json")));
        return golden.RootElement.GetProperty("cases")[index].GetProperty("margins").EnumerateArray().Select(e => e.GetDouble()).ToArray();
    }

    /// <summary>Steps of the golden continuation before the first margin under 0.05, where a float32 engine may
    /// legitimately pick the other token.</summary>
    private static int Decisive(int index) => Array.FindIndex(Margins(index), m => m < 0.05) is int i and >= 0 ? i : 32;

    [Fact]
    public async Task SequencesJoiningAndLeavingMidwayEachGiveWhatTheyGiveAloneAndTheGolden()
    {
        var model = fixture.Model;
        var cases = DemoModel.Cases;
        // Alone: one sequence at a time, through the same model.
        var alone = cases.Select(c => model.GenerateGreedy(c.PromptIds, 32)).ToArray();
        for (int i = 0; i < cases.Count; i++)
        {
            int decisive = Decisive(i);
            Assert.Equal(cases[i].GreedyIds[..decisive], alone[i][..decisive]);
        }

        // Together: case 0 starts; case 1 joins after case 0 has 5 tokens, case 2 after case 1 has 3; a short request
        // (case 2's prompt, 6 tokens) joins and leaves while the others decode; case 1 stops at 20 tokens.
        using var scheduler = model.CreateScheduler(new GenerationSchedulerOptions { MaxSequences = 4 });
        var joined1 = new TaskCompletionSource();
        var joined2 = new TaskCompletionSource();
        var tasks = new Task<GenerationResult>[4];
        var counts = new int[4];
        tasks[0] = scheduler.GenerateAsync(cases[0].PromptIds, Greedy32, _ =>
        {
            if (++counts[0] == 5) joined1.TrySetResult();
        });
        await joined1.Task;
        tasks[1] = scheduler.GenerateAsync(cases[1].PromptIds, Greedy32 with { MaxTokens = 20 }, _ =>
        {
            if (++counts[1] == 3) joined2.TrySetResult();
        });
        await joined2.Task;
        tasks[2] = scheduler.GenerateAsync(cases[2].PromptIds, Greedy32);
        tasks[3] = scheduler.GenerateAsync(cases[2].PromptIds, Greedy32 with { MaxTokens = 6 });
        var results = await Task.WhenAll(tasks);

        Assert.Equal(alone[0], results[0].Tokens);
        Assert.Equal(alone[1][..20], results[1].Tokens);
        Assert.Equal(alone[2], results[2].Tokens);
        Assert.Equal(alone[2][..6], results[3].Tokens);
        Assert.Equal(StopReason.MaxTokens, results[1].StopReason);
        // They really overlapped: case 0 was still running when case 2 started.
        Assert.True(counts[0] == 32 && counts[1] == 20);
    }

    [Fact]
    public void GenerateBatchGivesEachPromptWhatItGivesAlone()
    {
        var model = fixture.Model;
        var prompts = DemoModel.Cases.Select(c => c.PromptIds).ToArray();
        var options = Greedy32 with { MaxTokens = 12 };

        var together = model.GenerateBatch(prompts, options);

        for (int i = 0; i < prompts.Length; i++) Assert.Equal(model.GenerateGreedy(prompts[i], 12), together[i].Tokens);
    }

    [Fact]
    public async Task SampledRequestsWithASeedAreReproducibleTogetherAndAlone()
    {
        var sampled = new GenerationOptions { MaxTokens = 16, Sampling = new SamplingOptions { Temperature = 1f, TopK = 40, Seed = 7 }, IgnoreEndTokens = true };
        var prompt = DemoModel.Cases[0].PromptIds;
        using var scheduler = fixture.Model.CreateScheduler();

        var alone = await scheduler.GenerateAsync(prompt, sampled);
        var together = await Task.WhenAll(
            scheduler.GenerateAsync(prompt, sampled),
            scheduler.GenerateAsync(DemoModel.Cases[1].PromptIds, sampled with { Sampling = sampled.Sampling with { Seed = 8 } }),
            scheduler.GenerateAsync(prompt, sampled));

        Assert.Equal(alone.Tokens, together[0].Tokens);
        Assert.Equal(alone.Tokens, together[2].Tokens);
    }

    [Fact]
    public async Task APromptThatExtendsAFinishedSequenceReusesItsCache()
    {
        var model = fixture.Model;
        var prompt = DemoModel.Cases[1].PromptIds;
        using var scheduler = model.CreateScheduler(new GenerationSchedulerOptions { MaxSequences = 2 });
        var first = await scheduler.GenerateAsync(prompt, Greedy32 with { MaxTokens = 8 });

        // The conversation goes on: the prompt, the reply, three more tokens.
        int[] longer = [.. prompt, .. first.Tokens, 300, 301, 302];
        var second = await scheduler.GenerateAsync(longer, Greedy32 with { MaxTokens = 8 });

        // Everything fed before: the prompt and the reply less its last token, which was never run.
        Assert.Equal(prompt.Length + first.Tokens.Length - 1, second.Stats.CachedTokens);
        Assert.Equal(longer.Length - second.Stats.CachedTokens, second.Stats.PromptTokens);
        Assert.Equal(model.GenerateGreedy(longer, 8), second.Tokens);
    }

    [Fact]
    public async Task WaitingRequestsAreQueuedInOrderAndRefusedBeyondTheQueue()
    {
        using var scheduler = fixture.Model.CreateScheduler(new GenerationSchedulerOptions { MaxSequences = 1, MaxQueue = 1 });
        var started = new TaskCompletionSource();
        using var hold = new CancellationTokenSource();
        var prompt = DemoModel.Cases[0].PromptIds;
        var running = scheduler.GenerateAsync(prompt, Greedy32 with { MaxTokens = 10_000 }, _ => started.TrySetResult(), hold.Token);
        await started.Task;
        var waiting = scheduler.GenerateAsync(prompt, Greedy32 with { MaxTokens = 2 });

        var e = Assert.Throws<SchedulerFullException>(() => { _ = scheduler.GenerateAsync(prompt, Greedy32); });
        Assert.Contains("MaxQueue 1", e.Message);
        Assert.Equal(1, scheduler.Waiting);

        await hold.CancelAsync();
        var stopped = await running;
        Assert.Equal(StopReason.Cancelled, stopped.StopReason);
        Assert.NotEmpty(stopped.Tokens);
        Assert.Equal(fixture.Model.GenerateGreedy(prompt, 2), (await waiting).Tokens);
    }

    [Fact]
    public async Task ACancelledWaitingRequestEndsWithoutRunning()
    {
        using var scheduler = fixture.Model.CreateScheduler(new GenerationSchedulerOptions { MaxSequences = 1 });
        var started = new TaskCompletionSource();
        using var hold = new CancellationTokenSource();
        var prompt = DemoModel.Cases[0].PromptIds;
        var running = scheduler.GenerateAsync(prompt, Greedy32 with { MaxTokens = 10_000 }, _ => started.TrySetResult(), hold.Token);
        await started.Task;
        using var cancel = new CancellationTokenSource();
        var waiting = scheduler.GenerateAsync(prompt, Greedy32, cancellationToken: cancel.Token);

        await cancel.CancelAsync();
        var result = await waiting.WaitAsync(TimeSpan.FromSeconds(30));

        Assert.Equal(StopReason.Cancelled, result.StopReason);
        Assert.Empty(result.Tokens);
        await hold.CancelAsync();
        await running;
    }

    [Fact]
    public void BadRequestsAreRefusedBeforeTheyQueue()
    {
        using var scheduler = fixture.Model.CreateScheduler(new GenerationSchedulerOptions { MaxContext = 16 });
        var tooLong = Enumerable.Repeat(DemoModel.Bos, 17).ToArray();

        var e = Assert.Throws<ArgumentOutOfRangeException>(() => { _ = scheduler.GenerateAsync(tooLong, Greedy32); });
        Assert.Equal("prompt", e.ParamName);
        Assert.Throws<ArgumentException>(() => { _ = scheduler.GenerateAsync(Array.Empty<int>(), Greedy32); });
        Assert.Throws<ArgumentOutOfRangeException>(() => { _ = scheduler.GenerateAsync(new[] { fixture.Model.Config.VocabSize }, Greedy32); });
        Assert.Throws<ArgumentOutOfRangeException>(() => fixture.Model.CreateScheduler(new GenerationSchedulerOptions { MaxSequences = 0 }));
        Assert.Equal(0, scheduler.Waiting);
    }

    [Fact]
    public void ASchedulerWhoseCachesCannotAllBeHeldIsRefusedAtOnce()
    {
        // 64 sequences of a million positions: about 3 GB of KV cache each on the demo shape, far more than this
        // machine (or any test machine) has.
        var e = Assert.Throws<ArgumentOutOfRangeException>(() =>
            fixture.Model.CreateScheduler(new GenerationSchedulerOptions { MaxSequences = 64, MaxContext = 1_000_000 }));

        Assert.Contains("64 sequences of 1000000 positions need", e.Message);
        Assert.Contains("MaxSequences", e.Message);
    }

    [Fact]
    public async Task ASequenceThatReachesTheContextStopsThere()
    {
        using var scheduler = fixture.Model.CreateScheduler(new GenerationSchedulerOptions { MaxContext = 12 });
        var prompt = DemoModel.Cases[0].PromptIds;

        var result = await scheduler.GenerateAsync(prompt, Greedy32);

        // As a session: the last position holds the token before the last generated one.
        Assert.Equal(StopReason.ContextFull, result.StopReason);
        Assert.Equal(12 - prompt.Length + 1, result.Tokens.Length);
        Assert.Equal(fixture.Model.GenerateGreedy(prompt, result.Tokens.Length), result.Tokens);
    }

    [Fact]
    public async Task DisposingEndsRunningRequestsAsCancelled()
    {
        var scheduler = fixture.Model.CreateScheduler();
        var started = new TaskCompletionSource();
        var running = scheduler.GenerateAsync(DemoModel.Cases[0].PromptIds, Greedy32 with { MaxTokens = 10_000 }, _ => started.TrySetResult());
        await started.Task;

        scheduler.Dispose();

        Assert.Equal(StopReason.Cancelled, (await running.WaitAsync(TimeSpan.FromSeconds(30))).StopReason);
        Assert.Throws<ObjectDisposedException>(() => { _ = scheduler.GenerateAsync(DemoModel.Cases[0].PromptIds, Greedy32); });
    }
}
