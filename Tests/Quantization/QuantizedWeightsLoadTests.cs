using GemmaGen.Kernels;
using GemmaGen.Tests.Golden;
using GemmaGen.Tests.Kernels;

namespace GemmaGen.Tests.Quantization;

/// <summary><see cref="ModelWeights.Load"/> with a quantized format: every matrix (the embedding, which is also the tied
/// output matrix, included) quantized at load, packing (stacked q/k/v, interleaved gate/up) preserved, norms float32,
/// and matrices whose width is not a multiple of 32 kept in BF16.</summary>
public sealed class QuantizedWeightsLoadTests
{
    [Theory]
    [InlineData("q8_0")]
    [InlineData("q4_0")]
    public void Every_matrix_of_tiny_gqa_is_quantized_row_by_row_in_its_packed_place(string formatName)
    {
        var format = WeightFormat.Find(formatName)!;
        using var checkpoint = Checkpoint.Open(GoldenCheckpoint.FixturePath("tiny-gqa"));
        var config = checkpoint.Config;
        using var weights = ModelWeights.Load(config, checkpoint, format);
        int d = config.HiddenSize, qd = config.NumAttentionHeads * config.HeadDim, kd = config.NumKeyValueHeads * config.HeadDim;
        int inter = config.IntermediateSize;

        Assert.Null(weights.LmHead);
        Assert.Same(weights.Embed, weights.Output);
        AssertQuantized(checkpoint, format, weights.Embed, [("model.embed_tokens.weight", r => r)]);
        long expectedBytes = WeightMatrix.ByteLengthOf(format, config.VocabSize, d);
        for (int l = 0; l < config.NumHiddenLayers; l++)
        {
            var layer = weights.Layers[l];
            string p = $"model.layers.{l}.";
            AssertQuantized(checkpoint, format, layer.Qkv,
            [
                (p + "self_attn.q_proj.weight", r => r < qd ? r : -1),
                (p + "self_attn.k_proj.weight", r => r >= qd && r < qd + kd ? r - qd : -1),
                (p + "self_attn.v_proj.weight", r => r >= qd + kd ? r - qd - kd : -1),
            ]);
            AssertQuantized(checkpoint, format, layer.O, [(p + "self_attn.o_proj.weight", r => r)]);
            AssertQuantized(checkpoint, format, layer.GateUp,
            [
                (p + "mlp.gate_proj.weight", r => r % 2 == 0 ? r / 2 : -1),
                (p + "mlp.up_proj.weight", r => r % 2 == 1 ? r / 2 : -1),
            ]);
            AssertQuantized(checkpoint, format, layer.Down, [(p + "mlp.down_proj.weight", r => r)]);
            Assert.Equal(d, layer.InputNorm.Length);
            expectedBytes += WeightMatrix.ByteLengthOf(format, qd + 2 * kd, d) + WeightMatrix.ByteLengthOf(format, d, qd) +
                             WeightMatrix.ByteLengthOf(format, 2 * inter, d) + WeightMatrix.ByteLengthOf(format, d, inter);
        }
        Assert.Equal(expectedBytes, weights.ByteLength);
    }

    /// <summary>Each row of <paramref name="matrix"/> reads back exactly as its source row quantized on its own does;
    /// a part's map gives the source row of a packed row, or −1 where the row belongs to another part.</summary>
    private static void AssertQuantized(Checkpoint checkpoint, WeightFormat format, WeightMatrix matrix, (string Name, Func<int, int> SourceRow)[] parts)
    {
        Assert.Equal(format, matrix.Format);
        using var single = new WeightMatrix("single", 1, matrix.Cols, format);
        var source = new float[matrix.Cols];
        var expected = new float[matrix.Cols];
        var actual = new float[matrix.Cols];
        for (int r = 0; r < matrix.Rows; r++)
        {
            var (name, sourceRow) = parts.Select(p => (p.Name, Row: p.SourceRow(r))).Single(p => p.Row >= 0);
            Assert.True(checkpoint.TryGetTensor(name, out var tensor));
            tensor.ReadFloats((long)sourceRow * matrix.Cols, source);
            single.WriteRow(0, source);
            single.ReadRow(0, expected);
            matrix.ReadRow(r, actual);
            Assert.True(expected.AsSpan().SequenceEqual(actual), $"{matrix.Name} row {r} ({name} row {sourceRow})");
        }
    }

    [Theory]
    [InlineData("q8_0")]
    [InlineData("q4_0")]
    public void Matrices_whose_width_is_not_a_multiple_of_32_stay_bf16(string formatName)
    {
        var format = WeightFormat.Find(formatName)!;
        // D 64 (a multiple of 32) but I 40 and H·d 48 (not): the embedding, q/k/v and gate/up are quantized, o and down are not.
        var config = KernelTestData.Config(vocab: 20, hidden: 64, intermediate: 40, heads: 4, kvHeads: 2, headDim: 12);
        using var source = new InMemoryTensorSource();
        int seed = 1;
        foreach (var (name, shape) in Tensors(config)) source.Add(name, TensorDType.BF16, shape, KernelTestData.RandomFloats((int)shape.Aggregate(1L, (a, b) => a * b), seed++));
        using var weights = ModelWeights.Load(config, source, format);

        Assert.Equal(format, weights.Embed.Format);
        foreach (var layer in weights.Layers)
        {
            Assert.Equal(format, layer.Qkv.Format);
            Assert.Equal(format, layer.GateUp.Format);
            Assert.Equal(WeightFormat.BF16, layer.O.Format);
            Assert.Equal(WeightFormat.BF16, layer.Down.Format);
        }
    }

    private static IEnumerable<(string Name, long[] Shape)> Tensors(GemmaGen.Specs.Gemma2Config c)
    {
        int v = c.VocabSize, d = c.HiddenSize, inter = c.IntermediateSize, qd = c.NumAttentionHeads * c.HeadDim, kd = c.NumKeyValueHeads * c.HeadDim;
        yield return ("model.embed_tokens.weight", [v, d]);
        yield return ("model.norm.weight", [d]);
        for (int l = 0; l < c.NumHiddenLayers; l++)
        {
            string p = $"model.layers.{l}.";
            foreach (var norm in new[] { "input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm", "post_feedforward_layernorm" })
                yield return (p + norm + ".weight", [d]);
            yield return (p + "self_attn.q_proj.weight", [qd, d]);
            yield return (p + "self_attn.k_proj.weight", [kd, d]);
            yield return (p + "self_attn.v_proj.weight", [kd, d]);
            yield return (p + "self_attn.o_proj.weight", [d, qd]);
            yield return (p + "mlp.gate_proj.weight", [inter, d]);
            yield return (p + "mlp.up_proj.weight", [inter, d]);
            yield return (p + "mlp.down_proj.weight", [d, inter]);
        }
    }
}
