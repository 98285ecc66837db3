using GemmaGen.Kernels;
using GemmaGen.Tests.Generation;
using GemmaGen.Tests.Infrastructure;

namespace GemmaGen.Tests.Golden;

/// <summary>
/// The trained demo model (BF16) against its golden greedy continuations, computed in float64 from the same
/// weights. Some reference margins are tiny (~0.01), so the continuation is checked with teacher forcing: the
/// reference tokens are fed back, and at every step our top token must be the reference's wherever its margin is
/// at least 0.05 — and free-running greedy decoding must agree token for token up to the first smaller margin.
/// </summary>
[IsaSensitive]
public sealed class DemoGoldenTests
{
    private const double DecisiveMargin = 0.05;

    public static TheoryData<int, bool> Cases()
    {
        var data = new TheoryData<int, bool>();
        for (int i = 0; i < 3; i++)
        {
            data.Add(i, true);
            data.Add(i, false);
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Demo_continuation_matches_the_reference(int index, bool compiled)
    {
        string directory = DemoModel.Directory;
        var (prompt, expected, margins) = (DemoModel.Cases[index].PromptIds, DemoModel.Cases[index].GreedyIds, DemoModel.Cases[index].Margins);
        using var checkpoint = Checkpoint.Open(directory);
        using var weights = ModelWeights.Load(checkpoint.Config, checkpoint);
        using var pool = new WorkerPool(2);
        var v = checkpoint.Config.VocabSize;
        var logits = new float[v];

        // Teacher forcing over the whole continuation.
        var forced = Decoders.Create(weights, compiled, pool, prompt.Length + expected.Length);
        if (compiled) Assert.Equal("compiled Gemma2_Demo", forced.ExecutionPath);
        forced.Forward(prompt, 0, logits);
        for (int step = 0; step < expected.Length; step++)
        {
            int top = GemmaModel.ArgMax(logits);
            if (margins[step] >= DecisiveMargin)
                Assert.True(top == expected[step], $"step {step}: top token {top}, reference {expected[step]} (margin {margins[step]})");
            else
                Assert.True(logits[top] - logits[expected[step]] <= margins[step] + 1e-3,
                    $"step {step}: reference token {expected[step]} is {logits[top] - logits[expected[step]]} below the top");
            if (step + 1 < expected.Length) forced.Step(expected[step], forced.Length, logits);
        }

        // Free-running greedy decoding up to the first close call.
        int decisive = Array.FindIndex(margins, m => m < DecisiveMargin);
        if (decisive < 0) decisive = expected.Length;
        var greedy = Decoders.Create(weights, compiled, pool, prompt.Length + expected.Length);
        greedy.Forward(prompt, 0, logits);
        for (int step = 0; step < decisive; step++)
        {
            int next = GemmaModel.ArgMax(logits);
            Assert.Equal(expected[step], next);
            greedy.Step(next, greedy.Length, logits);
        }
    }
}
