using GemmaGen.Kernels;
using GemmaGen.Tests.Infrastructure;

namespace GemmaGen.Tests.Golden;

/// <summary>
/// Both decoders, compiled and reference, against the goldens of Hugging Face transformers (float64): prompt
/// logits within 1e-3, every hidden state within 1e-4 of its tensor's largest magnitude, and greedy generation
/// through the KV cache (the prompt at once, then one token per step) reproducing the reference exactly.
/// </summary>
[IsaSensitive]
public sealed class GoldenTests
{
    private const float LogitTolerance = 1e-3f;
    private const float HiddenTolerance = 1e-4f;

    public static TheoryData<string, bool> Checkpoints()
    {
        var data = new TheoryData<string, bool>();
        foreach (var folder in new[] { "tiny-gqa", "tiny-gqa-bf16", "tiny-softcap", "tiny-27b-like", "tiny-long" })
        {
            data.Add(folder, true);
            data.Add(folder, false);
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(Checkpoints))]
    public void Prompt_logits_and_every_hidden_state_match_the_reference(string folder, bool compiled)
    {
        using var fixture = new GoldenCheckpoint(folder);
        using var pool = new WorkerPool(2);
        int length = fixture.PromptIds.Length, width = fixture.Weights.Config.HiddenSize;
        var decoder = fixture.CreateDecoder(compiled, pool, length);
        var recorder = new ActivationRecorder(length, width);
        decoder.Observer = recorder;
        var logits = new float[length * fixture.VocabSize];

        decoder.Forward(fixture.PromptIds, 0, logits);

        AssertClose(fixture.Golden.GetF32("prompt_logits"), logits, LogitTolerance, "prompt_logits");
        var names = new List<string> { "embed", "final_norm" };
        names.AddRange(Enumerable.Range(0, fixture.Weights.Layers.Length).Select(i => $"layer_out.{i}"));
        foreach (var name in names)
        {
            var expected = fixture.Golden.GetF32(name);
            float scale = TensorMax(expected);
            AssertClose(expected, recorder.Values[name], HiddenTolerance * scale, name);
        }
    }

    [Theory]
    [MemberData(nameof(Checkpoints))]
    public void Greedy_generation_through_the_kv_cache_reproduces_the_reference(string folder, bool compiled)
    {
        using var fixture = new GoldenCheckpoint(folder);
        using var pool = new WorkerPool(2);
        var expected = fixture.Golden.GetI64("generated_ids").Select(id => (int)id).ToArray();
        var expectedLogits = fixture.Golden.GetF32("generated_logits");
        int v = fixture.VocabSize;
        var decoder = fixture.CreateDecoder(compiled, pool, fixture.PromptIds.Length + expected.Length);
        var logits = new float[v];

        decoder.Forward(fixture.PromptIds, 0, logits);
        var generated = new List<int>();
        for (int step = 0; step < expected.Length; step++)
        {
            AssertClose(expectedLogits.Slice(step * v, v), logits, LogitTolerance, $"generated_logits[{step}]");
            int next = GemmaModel.ArgMax(logits);
            generated.Add(next);
            if (step + 1 < expected.Length) decoder.Step(next, decoder.Length, logits);
        }

        Assert.Equal(expected, generated);
    }

    [Theory]
    [InlineData("tiny-long", true)]
    [InlineData("tiny-long", false)]
    [InlineData("tiny-gqa", true)]
    public void Prompt_fed_in_uneven_chunks_and_single_steps_matches_the_reference(string folder, bool compiled)
    {
        using var fixture = new GoldenCheckpoint(folder);
        using var pool = new WorkerPool(2);
        int length = fixture.PromptIds.Length, v = fixture.VocabSize;
        var decoder = fixture.CreateDecoder(compiled, pool, length);
        var logits = new float[length * v];
        // Chunk lengths that straddle prefill batches and, on tiny-long, the sliding window's ring.
        int[] cuts = new[] { 0, 3, 4, length / 3, length / 2 + 1, length - 2, length - 1, length }.Distinct().Order().ToArray();
        for (int i = 0; i + 1 < cuts.Length; i++)
        {
            int start = cuts[i], n = cuts[i + 1] - cuts[i];
            if (n == 1) decoder.Step(fixture.PromptIds[start], start, logits.AsSpan(start * v, v));
            else decoder.Forward(fixture.PromptIds.AsSpan(start, n), start, logits.AsSpan(start * v, n * v));
        }

        AssertClose(fixture.Golden.GetF32("prompt_logits"), logits, LogitTolerance, "prompt_logits");
    }

    internal static float TensorMax(ReadOnlySpan<float> values)
    {
        float max = 0;
        foreach (var x in values) max = Math.Max(max, Math.Abs(x));
        return max;
    }

    internal static void AssertClose(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual, float tolerance, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        int worst = 0;
        float worstDiff = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            float diff = Math.Abs(expected[i] - actual[i]);
            if (!(diff <= worstDiff)) (worst, worstDiff) = (i, diff);
        }
        Assert.True(worstDiff <= tolerance,
            $"{what}: element {worst} is {actual[worst]}, expected {expected[worst]} (difference {worstDiff:G3} > {tolerance:G3})");
    }
}
