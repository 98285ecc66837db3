using GemmaGen.Kernels;
using GemmaGen.Specs;
using GemmaGen.Tests.Infrastructure;
using Xunit;

namespace GemmaGen.Tests.Kernels;

/// <summary><see cref="ModelWeights.Load"/> over a tiny checkpoint in memory, every tensor filled with distinct values.</summary>
[IsaSensitive]
public sealed class ModelWeightsTests : IDisposable
{
    /// <summary>V 11, D 8, I 6, 2 layers, H 4, K 2, d 4: H·d = 16 differs from D, as in the published models.</summary>
    private static readonly Gemma2Config Config = KernelTestData.Config();

    private static readonly int V = Config.VocabSize, D = Config.HiddenSize, I = Config.IntermediateSize;
    private static readonly int Qd = Config.NumAttentionHeads * Config.HeadDim, Kd = Config.NumKeyValueHeads * Config.HeadDim;

    private readonly InMemoryTensorSource _source = new();

    /// <summary>Each tensor's values as the checkpoint holds them, widened to float32.</summary>
    private readonly Dictionary<string, float[]> _stored = [];

    public void Dispose() => _source.Dispose();

    /// <summary>Every tensor of <see cref="Config"/> in the Hugging Face layout, with its shape.</summary>
    private static IEnumerable<(string Name, long[] Shape)> Checkpoint()
    {
        yield return ("model.embed_tokens.weight", [V, D]);
        yield return ("model.norm.weight", [D]);
        for (int l = 0; l < Config.NumHiddenLayers; l++)
        {
            string p = $"model.layers.{l}.";
            yield return (p + "input_layernorm.weight", [D]);
            yield return (p + "self_attn.q_proj.weight", [Qd, D]);
            yield return (p + "self_attn.k_proj.weight", [Kd, D]);
            yield return (p + "self_attn.v_proj.weight", [Kd, D]);
            yield return (p + "self_attn.o_proj.weight", [D, Qd]);
            yield return (p + "post_attention_layernorm.weight", [D]);
            yield return (p + "pre_feedforward_layernorm.weight", [D]);
            yield return (p + "mlp.gate_proj.weight", [I, D]);
            yield return (p + "mlp.up_proj.weight", [I, D]);
            yield return (p + "mlp.down_proj.weight", [D, I]);
            yield return (p + "post_feedforward_layernorm.weight", [D]);
        }
    }

    private void AddCheckpoint(Func<string, TensorDType> dtypeOf)
    {
        foreach (var (name, shape) in Checkpoint()) Add(name, dtypeOf(name), shape);
    }

    private void Add(string name, TensorDType dtype, long[] shape)
    {
        int count = (int)shape.Aggregate(1L, (a, b) => a * b);
        _stored[name] = _source.Add(name, dtype, shape, KernelTestData.RandomFloats(count, seed: _stored.Count + 1, scale: 2f));
    }

    /// <summary>A Hugging Face norm weight w as the model holds it: the multiplier 1 + w, added in float32.</summary>
    private static float[] OnePlus(float[] w) => w.Select(v => 1f + v).ToArray();

    [Fact]
    public void NormsOfASourceThatStoresOnePlusWeightAreKeptAsStored()
    {
        AddCheckpoint(_ => TensorDType.F32);
        var stored = new StoresOnePlusWeight(_source);

        using var weights = ModelWeights.Load(Config, stored, checkFinite: false);

        // GGUF stores 1 + w: adding 1 again would double every norm's scale.
        Assert.Equal(_stored["model.norm.weight"], weights.FinalNorm);
        Assert.Equal(_stored["model.layers.1.post_feedforward_layernorm.weight"], weights.Layers[1].PostFeedforwardNorm);
    }

    /// <summary>The test tensors, declared to hold norms as 1 + w (as a GGUF file does).</summary>
    private sealed class StoresOnePlusWeight(ITensorSource inner) : ITensorSource
    {
        public string Description => inner.Description;
        public bool TryGetTensor(string name, out TensorView tensor) => inner.TryGetTensor(name, out tensor);
        public bool NormsIncludeOne => true;
    }

    /// <summary><paramref name="value"/> as a matrix of <paramref name="format"/> holds it.</summary>
    private static float Rounded(WeightFormat format, float value) =>
        format == WeightFormat.BF16 ? BFloat16.ToSingle(BFloat16.FromSingle(value)) : value;

    private static IEnumerable<(string Tensor, int Row)> RowsOf(string tensor, int count) =>
        Enumerable.Range(0, count).Select(r => (tensor, r));

    /// <summary>Asserts that row r of <paramref name="matrix"/> is the source row <paramref name="rows"/>[r], in <paramref name="format"/>.</summary>
    private void AssertRows(WeightMatrix matrix, WeightFormat format, IEnumerable<(string Tensor, int Row)> rows)
    {
        var expected = rows.ToArray();
        Assert.Equal(format, matrix.Format);
        Assert.Equal(expected.Length, matrix.Rows);
        var actual = new float[matrix.Cols];
        for (int r = 0; r < expected.Length; r++)
        {
            var (tensor, row) = expected[r];
            var want = _stored[tensor].AsSpan(row * matrix.Cols, matrix.Cols).ToArray().Select(v => Rounded(format, v));
            matrix.ReadRow(r, actual);
            if (!want.SequenceEqual(actual)) Assert.Fail($"row {r} of {matrix.Name} is not row {row} of {tensor}");
        }
    }

    private ModelWeights LoadF32() => LoadAll(TensorDType.F32, format: null);

    private ModelWeights LoadAll(TensorDType dtype, WeightFormat? format)
    {
        AddCheckpoint(_ => dtype);
        return ModelWeights.Load(Config, _source, format);
    }

    [Theory]
    [InlineData(TensorDType.F32, null, "f32")]
    [InlineData(TensorDType.BF16, null, "bf16")]
    [InlineData(TensorDType.F16, null, "f32")]
    [InlineData(TensorDType.BF16, "f32", "f32")]
    [InlineData(TensorDType.F32, "bf16", "bf16")]
    [InlineData(TensorDType.F16, "bf16", "bf16")]
    public void EveryTensorLandsInItsSlot(TensorDType dtype, string? formatName, string expectedName)
    {
        var format = formatName == null ? null : WeightFormat.Find(formatName)!;
        var expected = WeightFormat.Find(expectedName)!;
        using var weights = LoadAll(dtype, format);

        Assert.Same(Config, weights.Config);
        AssertRows(weights.Embed, expected, RowsOf("model.embed_tokens.weight", V));
        Assert.Null(weights.LmHead);
        Assert.Same(weights.Embed, weights.Output);
        Assert.Equal(OnePlus(_stored["model.norm.weight"]), weights.FinalNorm);
        Assert.Equal(Config.NumHiddenLayers, weights.Layers.Length);
        for (int l = 0; l < Config.NumHiddenLayers; l++)
        {
            string p = $"model.layers.{l}.";
            var layer = weights.Layers[l];
            Assert.Equal(OnePlus(_stored[p + "input_layernorm.weight"]), layer.InputNorm);
            Assert.Equal(OnePlus(_stored[p + "post_attention_layernorm.weight"]), layer.PostAttentionNorm);
            Assert.Equal(OnePlus(_stored[p + "pre_feedforward_layernorm.weight"]), layer.PreFeedforwardNorm);
            Assert.Equal(OnePlus(_stored[p + "post_feedforward_layernorm.weight"]), layer.PostFeedforwardNorm);
            AssertRows(layer.Qkv, expected, RowsOf(p + "self_attn.q_proj.weight", Qd)
                .Concat(RowsOf(p + "self_attn.k_proj.weight", Kd))
                .Concat(RowsOf(p + "self_attn.v_proj.weight", Kd)));
            AssertRows(layer.O, expected, RowsOf(p + "self_attn.o_proj.weight", D));
            AssertRows(layer.GateUp, expected, Enumerable.Range(0, I)
                .SelectMany(i => new[] { (p + "mlp.gate_proj.weight", i), (p + "mlp.up_proj.weight", i) }));
            AssertRows(layer.Down, expected, RowsOf(p + "mlp.down_proj.weight", D));
        }
        long perLayer = (long)(Qd + 2 * Kd) * D + D * Qd + 2 * I * D + D * I;
        Assert.Equal(WeightMatrix.ElementSize(expected) * (V * D + Config.NumHiddenLayers * perLayer), weights.ByteLength);
    }

    [Fact]
    public void QkvStacksQueryThenKeyThenValueRows()
    {
        using var weights = LoadF32();
        var qkv = weights.Layers[1].Qkv;
        var row = new float[D];

        Assert.Equal(Qd + 2 * Kd, qkv.Rows);
        Assert.Equal(D, qkv.Cols);
        qkv.ReadRow(0, row);
        Assert.Equal(_stored["model.layers.1.self_attn.q_proj.weight"][..D], row);
        qkv.ReadRow(Qd, row);
        Assert.Equal(_stored["model.layers.1.self_attn.k_proj.weight"][..D], row);
        qkv.ReadRow(Qd + Kd + 1, row);
        Assert.Equal(_stored["model.layers.1.self_attn.v_proj.weight"][D..(2 * D)], row);
    }

    [Fact]
    public void GateUpInterleavesGateAndUpRows()
    {
        using var weights = LoadF32();
        var gateUp = weights.Layers[0].GateUp;
        var row = new float[D];

        Assert.Equal(2 * I, gateUp.Rows);
        for (int i = 0; i < I; i++)
        {
            gateUp.ReadRow(2 * i, row);
            Assert.Equal(_stored["model.layers.0.mlp.gate_proj.weight"][(i * D)..((i + 1) * D)], row);
            gateUp.ReadRow(2 * i + 1, row);
            Assert.Equal(_stored["model.layers.0.mlp.up_proj.weight"][(i * D)..((i + 1) * D)], row);
        }
    }

    [Fact]
    public void MixedDtypesInAQkvStackKeepTheirOwnFormatsAndInAGateUpStackBecomeF32()
    {
        AddCheckpoint(name => name.EndsWith("q_proj.weight", StringComparison.Ordinal) || name.EndsWith("gate_proj.weight", StringComparison.Ordinal)
            ? TensorDType.BF16 : TensorDType.F32);
        using var weights = ModelWeights.Load(Config, _source);

        var p = "model.layers.0.";
        var qkv = weights.Layers[0].Qkv;
        Assert.Equal("stacked", qkv.Format.Name);
        Assert.Equal([(WeightFormat.BF16, 0), (WeightFormat.F32, Qd), (WeightFormat.F32, Qd + Kd)], qkv.Parts.Select(x => (x.Part.Format, x.Start)));
        AssertRows(qkv.Parts[0].Part, WeightFormat.BF16, RowsOf(p + "self_attn.q_proj.weight", Qd));
        AssertRows(qkv.Parts[1].Part, WeightFormat.F32, RowsOf(p + "self_attn.k_proj.weight", Kd));
        AssertRows(qkv.Parts[2].Part, WeightFormat.F32, RowsOf(p + "self_attn.v_proj.weight", Kd));
        var row = new float[D];
        qkv.ReadRow(Qd + 1, row);
        Assert.Equal(_stored[p + "self_attn.k_proj.weight"][D..(2 * D)], row);
        Assert.Equal(Qd + 2 * Kd, qkv.Rows);
        // Bytes: each part's own, and what the plan predicts.
        Assert.Equal(WeightMatrix.StackByteLength(D, [("q", Qd, WeightFormat.BF16), ("k", Kd, WeightFormat.F32), ("v", Kd, WeightFormat.F32)]), qkv.ByteLength);
        Assert.Equal(weights.ByteLength, ModelWeights.ByteLengthOf(Config, _source, null));
        Assert.Equal([WeightFormat.F32, WeightFormat.BF16], ModelWeights.WeightsOf(Config, _source, null).Formats);

        AssertRows(weights.Layers[0].GateUp, WeightFormat.F32, Enumerable.Range(0, I)
            .SelectMany(i => new[] { (p + "mlp.gate_proj.weight", i), (p + "mlp.up_proj.weight", i) }));
    }

    [Theory]
    [InlineData("f32", false)]
    [InlineData("bf16", true)]
    [InlineData("q8_0", false)]
    [InlineData("q4_0", true)]
    public void ByteLengthOfPredictsWhatLoadAllocates(string formatName, bool lmHead)
    {
        var format = WeightFormat.Find(formatName)!;
        // Widths 8, 16 and 6: the quantized formats fall back to BF16 for every matrix here.
        AddCheckpoint(_ => TensorDType.F32);
        if (lmHead) Add("lm_head.weight", TensorDType.F32, [V, D]);

        using var weights = ModelWeights.Load(Config, _source, format);

        Assert.Equal(weights.ByteLength, ModelWeights.ByteLengthOf(Config, format, lmHead));
    }

    [Theory]
    [InlineData("f32")]
    [InlineData("bf16")]
    [InlineData("q8_0")]
    [InlineData("q4_0")]
    public void ByteLengthOfPredictsWhatLoadAllocatesForAFixtureThatQuantizes(string formatName)
    {
        var format = WeightFormat.Find(formatName)!;
        using var checkpoint = GemmaGen.Checkpoint.Open(GemmaGen.Tests.Golden.GoldenCheckpoint.FixturePath("tiny-gqa"));

        using var weights = ModelWeights.Load(checkpoint.Config, checkpoint, format);

        Assert.Equal(format, weights.Layers[0].GateUp.Format);
        Assert.Equal(weights.ByteLength, ModelWeights.ByteLengthOf(checkpoint.Config, format, lmHead: false));
    }

    [Fact]
    public void LmHeadIsUsedWhenPresent()
    {
        AddCheckpoint(_ => TensorDType.BF16);
        Add("lm_head.weight", TensorDType.BF16, [V, D]);

        using var weights = ModelWeights.Load(Config, _source);

        Assert.NotNull(weights.LmHead);
        Assert.Same(weights.LmHead, weights.Output);
        AssertRows(weights.LmHead, WeightFormat.BF16, RowsOf("lm_head.weight", V));
        AssertRows(weights.Embed, WeightFormat.BF16, RowsOf("model.embed_tokens.weight", V));
    }

    [Theory]
    [InlineData("model.embed_tokens.weight")]
    [InlineData("model.norm.weight")]
    [InlineData("model.layers.0.input_layernorm.weight")]
    [InlineData("model.layers.1.self_attn.v_proj.weight")]
    [InlineData("model.layers.0.mlp.up_proj.weight")]
    [InlineData("model.layers.1.post_feedforward_layernorm.weight")]
    public void MissingTensorThrowsNamingIt(string name)
    {
        AddCheckpoint(_ => TensorDType.BF16);
        _source.Remove(name);

        var e = Assert.Throws<WeightLoadException>(() => ModelWeights.Load(Config, _source));

        Assert.Contains($"'{name}'", e.Message);
        Assert.Contains("missing", e.Message);
    }

    [Theory]
    [InlineData("model.embed_tokens.weight", new long[] { 8, 11 })]
    [InlineData("lm_head.weight", new long[] { 10, 8 })]
    [InlineData("model.norm.weight", new long[] { 9 })]
    [InlineData("model.layers.0.input_layernorm.weight", new long[] { 1, 8 })]
    [InlineData("model.layers.1.self_attn.q_proj.weight", new long[] { 8, 16 })]
    [InlineData("model.layers.0.self_attn.o_proj.weight", new long[] { 16, 8 })]
    [InlineData("model.layers.1.mlp.gate_proj.weight", new long[] { 6, 9 })]
    [InlineData("model.layers.1.mlp.down_proj.weight", new long[] { 6, 8 })]
    public void MisshapenTensorThrowsNamingIt(string name, long[] shape)
    {
        AddCheckpoint(_ => TensorDType.F32);
        Add(name, TensorDType.F32, shape);

        var e = Assert.Throws<WeightLoadException>(() => ModelWeights.Load(Config, _source));

        Assert.Contains($"'{name}' has shape [{string.Join(", ", shape)}]", e.Message);
    }
}
