using GemmaGen.Specs;
using GemmaGen.Tests.Infrastructure;

namespace GemmaGen.Tests.Generation;

/// <summary>Generation sessions on the demo model, against its golden greedy continuations.</summary>
[Collection(AllocationCountingCollection.Name)]
public sealed class GenerationSessionTests(DemoModelFixture fixture) : IClassFixture<DemoModelFixture>
{
    private readonly GemmaModel _model = fixture.Model;

    private static GenerationOptions Greedy(int maxTokens, bool ignoreEnd = true) =>
        new() { MaxTokens = maxTokens, Sampling = SamplingOptions.GreedyDecoding, IgnoreEndTokens = ignoreEnd };

    public static TheoryData<int> CaseIndices() => [0, 1, 2];

    [Theory]
    [MemberData(nameof(CaseIndices))]
    public void GreedyGenerationReproducesTheGolden(int index)
    {
        var golden = DemoModel.Cases[index];
        var session = _model.CreateSession();

        var result = session.Generate(golden.PromptIds, Greedy(golden.GreedyIds.Length));

        Assert.Equal(golden.GreedyIds, result.Tokens);
        Assert.Equal(StopReason.MaxTokens, result.StopReason);
        Assert.Equal(golden.PromptIds.Length, result.Stats.PromptTokens);
        Assert.Equal(golden.GreedyIds.Length, result.Stats.GeneratedTokens);
        Assert.Equal([.. golden.PromptIds, .. golden.GreedyIds], session.Tokens);
        Assert.Equal(1, session.PendingTokens);
    }

    [Theory]
    [MemberData(nameof(CaseIndices))]
    public void StreamingCallbackSeesEveryTokenInOrder(int index)
    {
        var golden = DemoModel.Cases[index];
        var seen = new List<int>();
        var result = _model.CreateSession().Generate(golden.PromptIds, Greedy(golden.GreedyIds.Length), seen.Add);
        Assert.Equal(golden.GreedyIds, seen);
        Assert.Equal(golden.GreedyIds, result.Tokens);
    }

    [Theory]
    [MemberData(nameof(CaseIndices))]
    public void StopsAtTheFirstEndTokenAndIncludesIt(int index)
    {
        var golden = DemoModel.Cases[index];
        int stop = Array.FindIndex(golden.GreedyIds, id => id is DemoModel.Eos or DemoModel.EndOfTurn);
        Assert.True(stop >= 0 || index == 1, "cases 0 and 2 of the golden contain <eos>");

        var result = _model.CreateSession().Generate(golden.PromptIds, Greedy(golden.GreedyIds.Length, ignoreEnd: false));

        if (stop < 0)
        {
            Assert.Equal(golden.GreedyIds, result.Tokens);
            Assert.Equal(StopReason.MaxTokens, result.StopReason);
        }
        else
        {
            Assert.Equal(golden.GreedyIds[..(stop + 1)], result.Tokens);
            Assert.Equal(StopReason.EndToken, result.StopReason);
            Assert.Equal(stop + 1, result.Stats.GeneratedTokens);
        }
    }

    [Fact]
    public void StopsAtTheConfigsEosIds()
    {
        var golden = DemoModel.Cases[1];
        int stopToken = golden.GreedyIds[4]; // 4043, first at index 4
        int stop = Array.IndexOf(golden.GreedyIds, stopToken);
        using var checkpoint = Checkpoint.Open(DemoModel.Directory);
        var config = checkpoint.Config with { EosTokenIds = EquatableArray<int>.Create(stopToken) };
        using var model = GemmaModel.Load(config, checkpoint, new GemmaModelOptions { Threads = 2 }, _model.Tokenizer);
        var session = model.CreateSession();
        Assert.Contains(stopToken, session.EndTokens);
        Assert.Contains(DemoModel.Eos, session.EndTokens);
        Assert.Contains(DemoModel.EndOfTurn, session.EndTokens);

        var result = session.Generate(golden.PromptIds, Greedy(32, ignoreEnd: false));

        Assert.Equal(golden.GreedyIds[..(stop + 1)], result.Tokens);
        Assert.Equal(StopReason.EndToken, result.StopReason);
    }

    [Fact]
    public void EndTokensAreEosEndOfTurnAndTheConfigs()
    {
        var session = _model.CreateSession();
        Assert.Equal(new HashSet<int> { DemoModel.Eos, DemoModel.EndOfTurn }, session.EndTokens.ToHashSet());
    }

    [Theory]
    [MemberData(nameof(CaseIndices))]
    public void ContinuingWithNoInputPicksUpWhereTheLastCallStopped(int index)
    {
        var golden = DemoModel.Cases[index];
        var session = _model.CreateSession();

        var first = session.Generate(golden.PromptIds, Greedy(10));
        var second = session.Generate([], Greedy(golden.GreedyIds.Length - 10));

        Assert.Equal(golden.GreedyIds[..10], first.Tokens);
        Assert.Equal(golden.GreedyIds[10..], second.Tokens);
        Assert.Equal(1, second.Stats.PromptTokens); // only the pending token is fed
        Assert.Equal([.. golden.PromptIds, .. golden.GreedyIds], session.Tokens);
    }

    [Theory]
    [MemberData(nameof(CaseIndices))]
    public void ContinuingWithMoreInputEqualsOneCallOverTheConcatenation(int index)
    {
        var golden = DemoModel.Cases[index];
        int[] more = DemoModel.Cases[(index + 1) % 3].PromptIds[1..]; // another prompt's text, without BOS
        var session = _model.CreateSession();

        var first = session.Generate(golden.PromptIds, Greedy(7));
        var second = session.Generate(more, Greedy(12));

        Assert.Equal(golden.GreedyIds[..7], first.Tokens);
        Assert.Equal(more.Length + 1, second.Stats.PromptTokens); // the new input and the pending token, not the history
        Assert.Equal(12, second.Tokens.Length);

        var fresh = _model.CreateSession();
        int[] concatenated = [.. golden.PromptIds, .. first.Tokens, .. more];
        var once = fresh.Generate(concatenated, Greedy(12));
        Assert.Equal(concatenated.Length, once.Stats.PromptTokens);
        Assert.Equal(once.Tokens, second.Tokens);
        Assert.Equal(fresh.Tokens, session.Tokens);
    }

    [Fact]
    public void TheSameSeedGivesTheSameTokens()
    {
        var prompt = DemoModel.Cases[0].PromptIds;
        GenerationOptions Sampled(int seed) => new()
        {
            MaxTokens = 32,
            IgnoreEndTokens = true,
            Sampling = new SamplingOptions { Temperature = 0.9f, TopK = 40, TopP = 0.95f, Seed = seed },
        };

        var a = _model.CreateSession().Generate(prompt, Sampled(5)).Tokens;
        var b = _model.CreateSession().Generate(prompt, Sampled(5)).Tokens;
        var c = _model.CreateSession().Generate(prompt, Sampled(6)).Tokens;

        Assert.Equal(32, a.Length);
        Assert.Equal(a, b);
        Assert.NotEqual(a, c);
        Assert.NotEqual(DemoModel.Cases[0].GreedyIds, a);
    }

    [Fact]
    public void AFullContextStopsGenerationAndRefusesMoreInput()
    {
        var golden = DemoModel.Cases[0];
        const int context = 12;
        var session = _model.CreateSession(context);
        Assert.Equal(context, session.MaxContext);

        var result = session.Generate(golden.PromptIds, Greedy(32));

        // Positions 0..11 hold the prompt and the first 7 generated tokens; the 8th is chosen but cannot be fed.
        int generated = context - golden.PromptIds.Length + 1;
        Assert.Equal(StopReason.ContextFull, result.StopReason);
        Assert.Equal(golden.GreedyIds[..generated], result.Tokens);
        Assert.False(session.Fits(0));
        Assert.Throws<ArgumentOutOfRangeException>(() => session.Generate([266], Greedy(1)));

        session.Reset();
        Assert.Empty(session.Tokens);
        Assert.Equal(golden.GreedyIds[..4], session.Generate(golden.PromptIds, Greedy(4)).Tokens);
    }

    [Fact]
    public void AnInputThatDoesNotFitIsRefusedBeforeAnythingRuns()
    {
        var session = _model.CreateSession(4);
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => session.Generate(DemoModel.Cases[0].PromptIds, Greedy(1)));
        Assert.Contains("positions are free", error.Message);
        Assert.Empty(session.Tokens);
    }

    [Fact]
    public void CancellationStopsGeneration()
    {
        var golden = DemoModel.Cases[1];
        var session = _model.CreateSession();
        using var cancellation = new CancellationTokenSource();
        int count = 0;

        var result = session.Generate(golden.PromptIds, Greedy(32), _ =>
        {
            if (++count == 3) cancellation.Cancel();
        }, cancellation.Token);

        Assert.Equal(StopReason.Cancelled, result.StopReason);
        Assert.Equal(golden.GreedyIds[..3], result.Tokens);

        // The session goes on from where it stopped.
        var rest = session.Generate([], Greedy(5));
        Assert.Equal(golden.GreedyIds[3..8], rest.Tokens);
    }

    [Fact]
    public void AnAlreadyCancelledTokenGeneratesNothingAndTheSessionGoesOn()
    {
        var golden = DemoModel.Cases[0];
        var session = _model.CreateSession();
        var result = session.Generate(golden.PromptIds, Greedy(8), cancellationToken: new CancellationToken(canceled: true));
        Assert.Equal(StopReason.Cancelled, result.StopReason);
        Assert.Empty(result.Tokens);
        Assert.Equal(golden.PromptIds, session.Tokens);

        // The prompt is in the cache with its logits: a call with no input continues from them.
        var rest = session.Generate([], Greedy(6));
        Assert.Equal(golden.GreedyIds[..6], rest.Tokens);
        Assert.Equal(0, rest.Stats.PromptTokens);
    }

    [Fact]
    public void ZeroMaxTokensOrAppendThenContinueWithNoInput()
    {
        var golden = DemoModel.Cases[2];
        var session = _model.CreateSession();
        Assert.Empty(session.Generate(golden.PromptIds, Greedy(0)).Tokens);
        Assert.Equal(golden.GreedyIds[..5], session.Generate([], Greedy(5)).Tokens);

        var appended = _model.CreateSession();
        appended.Append(golden.PromptIds[..3]);
        appended.Append(golden.PromptIds[3..]);
        Assert.Equal(golden.GreedyIds[..5], appended.Generate([], Greedy(5)).Tokens);
    }

    [Fact]
    public void RejectsBadArguments()
    {
        var session = _model.CreateSession();
        Assert.Throws<ArgumentException>(() => session.Generate([], Greedy(4)));
        Assert.Throws<ArgumentOutOfRangeException>(() => session.Generate([2], Greedy(-1)));
        Assert.ThrowsAny<ArgumentException>(() => session.Generate([2], new GenerationOptions { Sampling = new SamplingOptions { TopP = 0 } }));
    }

    public static TheoryData<string> AllocationCases() => ["greedy", "sampled"];

    [Theory]
    [MemberData(nameof(AllocationCases))]
    public void DecodingAllocatesNothingPerToken(string kind)
    {
        var options = new GenerationOptions
        {
            MaxTokens = 80,
            IgnoreEndTokens = true,
            Sampling = kind == "greedy"
                ? SamplingOptions.GreedyDecoding
                : new SamplingOptions { Temperature = 0.8f, TopK = 40, TopP = 0.95f, MinP = 0.02f, RepetitionPenalty = 1.1f, Seed = 3 },
        };
        var session = _model.CreateSession(256);
        var windows = new AllocationWindows();
        int count = 0;

        // Windows of 3 tokens from the 6th on (a few ms each); the worker pool's threads count too.
        var result = session.Generate(DemoModel.Cases[2].PromptIds, options, _ =>
        {
            count++;
            if (count >= 5 && (count - 5) % 3 == 0) windows.Mark();
        });

        Assert.Equal(80, result.Tokens.Length);
        windows.AssertOneWindowAllocatedNothing($"{kind}: a run of 3 decoded tokens");
    }
}
