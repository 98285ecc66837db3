using GemmaGen.Kernels;
using GemmaGen.Tests.Infrastructure;

namespace GemmaGen.Tests.Golden;

/// <summary>
/// The real 2B and 9B layer shapes (two layers, a 4096-token vocabulary) with weights made by the fixture formula:
/// they run on the built-in Gemma2_2B and Gemma2_9B kernels and must match the reference implementation's logits.
/// </summary>
[IsaSensitive]
public sealed class SyntheticGoldenTests
{
    public static TheoryData<string, string, bool> Shapes() => new()
    {
        { "synth-2b", "Gemma2_2B", true },
        { "synth-2b", "Gemma2_2B", false },
        { "synth-9b", "Gemma2_9B", true },
        { "synth-9b", "Gemma2_9B", false },
    };

    [Theory]
    [MemberData(nameof(Shapes))]
    public void Real_shape_logits_and_hidden_states_match_the_reference(string folder, string className, bool compiled)
    {
        string directory = GoldenCheckpoint.FixturePath(folder);
        var config = Checkpoint.LoadConfig(Path.Combine(directory, "config.json"));
        using var golden = SafetensorsFile.Open(Path.Combine(directory, "golden.safetensors"));
        using var source = new SyntheticWeights(config);
        using var weights = ModelWeights.Load(config, source);
        using var pool = new WorkerPool(2);
        var prompt = golden.GetI64("prompt_ids").Select(id => (int)id).ToArray();
        var decoder = Decoders.Create(weights, compiled, pool, prompt.Length);
        if (compiled) Assert.Equal("compiled " + className, decoder.ExecutionPath);
        var recorder = new ActivationRecorder(prompt.Length, config.HiddenSize);
        decoder.Observer = recorder;
        var logits = new float[prompt.Length * config.VocabSize];

        decoder.Forward(prompt, 0, logits);

        GoldenTests.AssertClose(golden.GetF32("prompt_logits"), logits, 1e-3f, "prompt_logits");
        foreach (var name in new[] { "embed", "layer_out.0", "layer_out.1", "final_norm" })
        {
            var expected = golden.GetF32(name);
            GoldenTests.AssertClose(expected, recorder.Values[name], 1e-4f * GoldenTests.TensorMax(expected), name);
        }
    }
}
