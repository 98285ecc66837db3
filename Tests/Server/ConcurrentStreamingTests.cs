using System.Text;
using System.Text.Json;
using OpenAI.Chat;

namespace GemmaGen.Tests.Server;

#pragma warning disable OPENAI001 // ChatCompletionOptions.Seed is marked experimental

/// <summary>Many clients at once through the official OpenAI client: continuous batching gives each request what it
/// gets alone, and a client that leaves frees its slot.</summary>
[Collection(ServerCollection.Name)]
public sealed class ConcurrentStreamingTests(ServerFixture fixture)
{
    private static readonly string[] Prompts =
    [
        "Tell me a story about a dog.",
        "What did the jury say?",
        "Once upon a time",
        "Write about the sea.",
        "Where is the court?",
        "The old man and the river",
        "Describe a quiet morning.",
        "Who won the game?",
    ];

    /// <summary>One request: a user message, greedy (temperature 0) or sampled with a seed.</summary>
    private sealed record Ask(string Prompt, bool Greedy, long Seed)
    {
        public ChatCompletionOptions Options() => new()
        {
            MaxOutputTokenCount = 12,
            Temperature = Greedy ? 0f : 0.9f,
            Seed = Greedy ? null : Seed,
        };
    }

    private sealed record Streamed(string Text, ChatFinishReason? Finish, int OutputTokens, int Updates);

    private async Task<Streamed> StreamAsync(Ask ask)
    {
        var text = new StringBuilder();
        ChatFinishReason? finish = null;
        int output = -1, updates = 0;
        await foreach (var update in fixture.Chat().CompleteChatStreamingAsync([new UserChatMessage(ask.Prompt)], ask.Options()))
        {
            updates++;
            foreach (var part in update.ContentUpdate) text.Append(part.Text);
            if (update.FinishReason is { } reason) finish = reason;
            if (update.Usage is { } usage) output = usage.OutputTokenCount;
        }
        return new Streamed(text.ToString(), finish, output, updates);
    }

    [Fact]
    public async Task ThirtyTwoConcurrentStreams_EachGivesWhatItGivesAlone()
    {
        Ask[] asks = [.. Enumerable.Range(0, 32).Select(i => new Ask(Prompts[i % Prompts.Length], Greedy: i % 2 == 0, Seed: 1000 + i))];

        // Each request served alone, one after the other.
        var alone = new List<Streamed>();
        foreach (var ask in asks) alone.Add(await StreamAsync(ask));

        // All 32 at once: 8 decode together, the others wait their turn.
        Streamed[] together = await Task.WhenAll(asks.Select(ask => Task.Run(() => StreamAsync(ask))));

        for (int i = 0; i < asks.Length; i++)
        {
            Assert.True(alone[i].Finish != null, $"request {i} alone had no finish reason");
            Assert.True(alone[i].OutputTokens > 0, $"request {i} alone reported no usage");
            Assert.Equal(alone[i], together[i]);
        }
        // The greedy requests of one prompt agree; sampling with different seeds is not all alike.
        for (int i = 0; i + Prompts.Length < asks.Length; i += 2) Assert.Equal(alone[i].Text, alone[(i + Prompts.Length) % asks.Length].Text);
        Assert.True(asks.Select((a, i) => (a, i)).Where(x => !x.a.Greedy).Select(x => alone[x.i].Text).Distinct().Count() > 1);
        Assert.True(await ServerFixture.EventuallyAsync(() => fixture.Server.Scheduler!.Running == 0 && fixture.Server.Scheduler.Waiting == 0));
    }

    [Fact]
    public async Task GreedyCompletion_IsTheModelsOwnGreedyContinuation()
    {
        // The independent reference: the single-sequence decoder's greedy tokens, decoded.
        const string prompt = "The jury said";
        var tokenizer = fixture.Model.RequireTokenizer();
        int[] reference = fixture.Model.GenerateGreedy(tokenizer.Encode(prompt, addBos: true), 24, stopAtEos: true);
        var end = GenerationSession.EndTokensOf(fixture.Model);
        string expected = tokenizer.Decode([.. reference.Where(t => !end.Contains(t))]);

        using var response = await fixture.PostAsync("/v1/completions", $$"""{"prompt": "{{prompt}}", "max_tokens": 24, "temperature": 0}""");
        Assert.Equal(200, (int)response.StatusCode);
        using var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        var choice = body.RootElement.GetProperty("choices")[0];
        Assert.Equal(expected, choice.GetProperty("text").GetString());
        Assert.Equal(reference.Length, body.RootElement.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        Assert.Equal(end.Contains(reference[^1]) ? "stop" : "length", choice.GetProperty("finish_reason").GetString());

        // A stop sequence taken from the middle of that text cuts the reply before it.
        string stop = expected.Trim().Split(' ')[2];
        using var stopped = await fixture.PostAsync("/v1/completions", $$"""{"prompt": "{{prompt}}", "max_tokens": 24, "temperature": 0, "stop": ["{{stop}}"]}""");
        using var stoppedBody = JsonDocument.Parse(await stopped.Content.ReadAsStringAsync());
        var stoppedChoice = stoppedBody.RootElement.GetProperty("choices")[0];
        Assert.Equal(expected[..expected.IndexOf(stop, StringComparison.Ordinal)], stoppedChoice.GetProperty("text").GetString());
        Assert.Equal("stop", stoppedChoice.GetProperty("finish_reason").GetString());
    }

    [Fact]
    public async Task StreamsClosedEarly_FreeTheirSlots()
    {
        var scheduler = fixture.Server.Scheduler!;
        const int streams = 6, maxTokens = 480;
        double before = await MetricAsync("gemmagen_generated_tokens_total");
        double cancelledBefore = await MetricAsync("gemmagen_generations_total{finish_reason=\"cancelled\"}", orZero: true);
        using var leave = new CancellationTokenSource();
        var started = new TaskCompletionSource[streams];
        var tasks = new Task[streams];
        for (int i = 0; i < streams; i++)
        {
            var first = started[i] = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            var options = new ChatCompletionOptions { MaxOutputTokenCount = maxTokens, Temperature = 1.5f, Seed = 7 + i };
            tasks[i] = Task.Run(async () =>
            {
                try
                {
                    int updates = 0;
                    await foreach (var update in fixture.Chat().CompleteChatStreamingAsync([new UserChatMessage(Prompts[0])], options, leave.Token))
                    {
                        if (++updates == 3) first.TrySetResult();
                    }
                }
                catch (OperationCanceledException)
                {
                }
                first.TrySetResult();
            });
        }
        await Task.WhenAll(started.Select(s => s.Task)).WaitAsync(TimeSpan.FromSeconds(60));
        Assert.True(scheduler.Running > 0, "no stream was generating");
        leave.Cancel();
        await Task.WhenAll(tasks).WaitAsync(TimeSpan.FromSeconds(60));

        Assert.True(await ServerFixture.EventuallyAsync(() => scheduler.Running == 0 && scheduler.Waiting == 0), $"running {scheduler.Running}, waiting {scheduler.Waiting}");
        double generated = await MetricAsync("gemmagen_generated_tokens_total") - before;
        Assert.True(generated < streams * maxTokens / 2, $"{generated} tokens generated: the streams went on after their clients left");
        Assert.True(await MetricAsync("gemmagen_generations_total{finish_reason=\"cancelled\"}") > cancelledBefore, "no generation was cancelled");

        // The slots serve again.
        var after = await StreamAsync(new Ask(Prompts[1], Greedy: true, 0));
        Assert.NotNull(after.Finish);
    }

    private Task<double> MetricAsync(string name, bool orZero = false) => MetricAsync(fixture, name, orZero);

    /// <summary>The value of one sample (name and labels as exported) of the shared server's <c>/metrics</c>.</summary>
    internal static async Task<double> MetricAsync(ServerFixture fixture, string name, bool orZero = false)
    {
        string text = await fixture.Http.GetStringAsync(new Uri(fixture.BaseAddress, "/metrics"));
        string? line = text.Split('\n').SingleOrDefault(l => l.StartsWith(name + " ", StringComparison.Ordinal));
        if (line == null && orZero) return 0;
        Assert.True(line != null, $"no sample {name} in /metrics:\n{text}");
        return double.Parse(line[(name.Length + 1)..], System.Globalization.CultureInfo.InvariantCulture);
    }
}
