using GemmaGen.Kernels;
using GemmaGen.Tests.Infrastructure;

namespace GemmaGen.Tests.Golden;

/// <summary>
/// Converting at load (<c>--quant bf16</c>, <see cref="GemmaModelOptions.Format"/>) against the fixtures: tiny-gqa-bf16
/// is tiny-gqa with every tensor rounded to bf16 by torch (to nearest, ties to even). Loading the float32 tiny-gqa as
/// BF16 must give exactly its matrices, byte for byte; the norm vectors stay float32 here (they are always float32 at
/// run time), so the logits differ from the twin's goldens only by the twin's rounded norms (2⁻⁹ relative; measured
/// 0.0065), hence 0.02 rather than the 1e-3 of the golden tests.
/// </summary>
[IsaSensitive]
public sealed class ConvertedWeightsGoldenTests
{
    [Fact]
    public void F32_checkpoint_loaded_as_BF16_has_exactly_the_matrices_of_its_BF16_twin()
    {
        using var f32 = Checkpoint.Open(GoldenCheckpoint.FixturePath("tiny-gqa"));
        using var bf16 = Checkpoint.Open(GoldenCheckpoint.FixturePath("tiny-gqa-bf16"));
        Assert.True(f32.TryGetTensor("model.layers.0.mlp.gate_proj.weight", out var stored));
        Assert.Equal(TensorDType.F32, stored.DType);
        using var converted = ModelWeights.Load(f32.Config, f32, WeightFormat.BF16);
        using var twin = ModelWeights.Load(bf16.Config, bf16);

        AssertSameBytes(twin.Embed, converted.Embed);
        for (int l = 0; l < twin.Layers.Length; l++)
        {
            AssertSameBytes(twin.Layers[l].Qkv, converted.Layers[l].Qkv);
            AssertSameBytes(twin.Layers[l].O, converted.Layers[l].O);
            AssertSameBytes(twin.Layers[l].GateUp, converted.Layers[l].GateUp);
            AssertSameBytes(twin.Layers[l].Down, converted.Layers[l].Down);
        }
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void F32_checkpoint_loaded_as_BF16_stays_close_to_the_goldens_of_its_BF16_twin(bool compiled)
    {
        using var checkpoint = Checkpoint.Open(GoldenCheckpoint.FixturePath("tiny-gqa"));
        using var golden = SafetensorsFile.Open(Path.Combine(GoldenCheckpoint.FixturePath("tiny-gqa-bf16"), "golden.safetensors"));
        var prompt = golden.GetI64("prompt_ids").Select(id => (int)id).ToArray();
        var expected = golden.GetF32("prompt_logits");
        using var weights = ModelWeights.Load(checkpoint.Config, checkpoint, WeightFormat.BF16);
        using var pool = new WorkerPool(2);
        var logits = new float[expected.Length];

        Decoders.Create(weights, compiled, pool, prompt.Length).Forward(prompt, 0, logits);

        float delta = 0;
        for (int i = 0; i < expected.Length; i++) delta = Math.Max(delta, Math.Abs(logits[i] - expected[i]));
        Assert.True(delta <= 0.02f, $"max |Δlogit| {delta} against tiny-gqa-bf16's goldens ({(compiled ? "compiled" : "reference")})");
    }

    private static unsafe void AssertSameBytes(WeightMatrix expected, WeightMatrix actual)
    {
        Assert.Equal(WeightFormat.BF16, actual.Format);
        Assert.Equal(expected.ByteLength, actual.ByteLength);
        var a = new ReadOnlySpan<byte>(expected.Data, checked((int)expected.ByteLength));
        var b = new ReadOnlySpan<byte>(actual.Data, checked((int)actual.ByteLength));
        Assert.True(a.SequenceEqual(b), $"{actual.Name}: the converted bytes differ from the BF16 checkpoint's");
    }
}
