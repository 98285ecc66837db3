using System.Text.Json;
using GemmaGen.Kernels;
using Xunit;

namespace GemmaGen.Tests.Host;

public sealed class SyntheticWeightsTests
{
    [Fact]
    public unsafe void MatchesTheFixtureCheckVector()
    {
        using var json = JsonDocument.Parse(File.ReadAllText(Fixtures.Path("synth-2b", "synthetic.json")));
        var check = json.RootElement.GetProperty("check");
        string name = check.GetProperty("tensor").GetString()!;
        int scale = check.GetProperty("scale_log2").GetInt32();
        float[] expected = check.GetProperty("first8").EnumerateArray().Select(v => (float)v.GetDouble()).ToArray();

        Assert.Equal(expected, Enumerable.Range(0, 8).Select(i => SyntheticWeights.Value(name, scale, i)));
        var filled = new float[8];
        SyntheticWeights.Fill(name, scale, 0, filled);
        Assert.Equal(expected, filled);

        using var weights = new SyntheticWeights(Checkpoint.LoadConfig(Fixtures.Path("synth-2b", "config.json")));
        Assert.True(weights.TryGetTensor(name, out var view));
        Assert.Equal(expected, new ReadOnlySpan<float>(view.Data, 8).ToArray());
    }

    [Theory]
    [InlineData("synth-2b")]
    [InlineData("synth-9b")]
    public void DescribesEveryTensorTheFixtureLists(string model)
    {
        using var json = JsonDocument.Parse(File.ReadAllText(Fixtures.Path(model, "synthetic.json")));
        var listed = json.RootElement.GetProperty("tensors").EnumerateObject().ToDictionary(
            t => t.Name,
            t => (Shape: string.Join(",", t.Value.GetProperty("shape").EnumerateArray().Select(d => d.GetInt64())), Scale: t.Value.GetProperty("scale_log2").GetInt32()));
        using var weights = new SyntheticWeights(Checkpoint.LoadConfig(Fixtures.Path(model, "config.json")));
        var described = weights.Tensors.ToDictionary(t => t.Name, t => (Shape: string.Join(",", t.Shape), Scale: t.ScaleLog2));
        Assert.Equal(listed.OrderBy(p => p.Key), described.OrderBy(p => p.Key));
    }

    [Fact]
    public unsafe void GeneratesTensorsLazilyOnTheFormulaGrid()
    {
        using var weights = new SyntheticWeights(Checkpoint.LoadConfig(Fixtures.Path("tiny-gqa", "config.json")));
        Assert.False(weights.TryGetTensor("lm_head.weight", out _));
        Assert.True(weights.TryGetTensor("model.layers.3.mlp.down_proj.weight", out var down));
        Assert.Equal([64L, 192L], down.Shape);
        Assert.Equal(TensorDType.F32, down.DType);
        Assert.Equal("synthetic weights", down.Origin);
        int scale = SyntheticWeights.ProjectionScaleLog2(192);
        Assert.Equal(-3, scale);
        var values = new ReadOnlySpan<float>(down.Data, 64 * 192).ToArray();
        Assert.All(values, v =>
        {
            Assert.InRange(v, -MathF.ScaleB(1f, scale), MathF.ScaleB(1f, scale));
            float k = MathF.ScaleB(v, 23 - scale);
            Assert.Equal(MathF.Round(k), k);
        });
        Assert.Equal(SyntheticWeights.Value(down.Name, scale, 12_000), values[12_000]);
        Assert.True(weights.TryGetTensor("model.layers.3.mlp.down_proj.weight", out var again));
        Assert.True(down.Data == again.Data);
    }

    [Theory]
    [InlineData(2304, -5)]
    [InlineData(3584, -5)]
    [InlineData(2048, -5)]
    [InlineData(4096, -6)]
    [InlineData(9216, -6)]
    [InlineData(14336, -6)]
    [InlineData(36864, -7)]
    [InlineData(1, 0)]
    public void ScalesProjectionsByTheirInputWidth(int inputWidth, int scaleLog2) =>
        Assert.Equal(scaleLog2, SyntheticWeights.ProjectionScaleLog2(inputWidth));

    [Fact]
    public void LoadsAsModelWeights()
    {
        var config = Checkpoint.LoadConfig(Fixtures.Path("tiny-softcap", "config.json"));
        using var source = new SyntheticWeights(config);
        using var weights = ModelWeights.Load(config, source);
        // The synthetic value is the Hugging Face weight w; the model holds the multiplier 1 + w.
        Assert.Equal(1f + SyntheticWeights.Value("model.norm.weight", SyntheticWeights.NormScaleLog2, 7), weights.FinalNorm[7]);
    }
}
