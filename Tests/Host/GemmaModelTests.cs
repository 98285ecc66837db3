using GemmaGen.Specs;
using Xunit;

namespace GemmaGen.Tests.Host;

public sealed class GemmaModelTests
{
    [Fact]
    public void ArgMaxTakesTheLowestIndexOfATie()
    {
        Assert.Equal(1, GemmaModel.ArgMax([0f, 3f, 1f, 3f]));
        Assert.Equal(0, GemmaModel.ArgMax([5f]));
        Assert.Equal(2, GemmaModel.ArgMax([float.NaN, -1f, 2f, float.NaN]));
    }

    [Fact]
    public void OpensACheckpointWithTheDefaultContext()
    {
        using var engine = GemmaModel.Load(Fixtures.Path("tiny-gqa"), new GemmaModelOptions { ForceReference = true, Threads = 2 });
        Assert.Equal("reference", engine.ExecutionPath);
        Assert.Equal(512, engine.MaxContext);
        Assert.Equal(2, engine.Threads);
        Assert.Null(engine.Tokenizer);
        var error = Assert.Throws<TokenizerException>(() => engine.RequireTokenizer());
        Assert.Contains(Path.Combine(Fixtures.Path("tiny-gqa"), "tokenizer.model"), error.Message);
    }

    [Fact]
    public void OpensAConfigWithSyntheticWeights()
    {
        using var engine = GemmaModel.LoadSynthetic(Fixtures.Path("tiny-softcap", "config.json"), new GemmaModelOptions { MaxContext = 16 });
        Assert.Equal(16, engine.MaxContext);
        Assert.Equal(1f + SyntheticWeights.Value("model.norm.weight", SyntheticWeights.NormScaleLog2, 0), engine.Weights.FinalNorm[0]);
        Assert.Equal(3 * engine.Config.VocabSize, engine.ComputeLogits([2, 5, 7]).Length);
    }

    [Fact]
    public void GreedyGenerationStopsAtEosOnlyWhenAsked()
    {
        using var golden = Fixtures.Golden("tiny-gqa");
        int[] prompt = golden.GetI64("prompt_ids").Select(id => (int)id).ToArray();
        int[] expected = golden.GetI64("generated_ids").Select(id => (int)id).ToArray();
        using var checkpoint = Checkpoint.Open(Fixtures.Path("tiny-gqa"));
        var config = checkpoint.Config with { EosTokenIds = EquatableArray<int>.Create(expected[5]) };
        using var engine = GemmaModel.Load(config, checkpoint, new GemmaModelOptions { ForceReference = true, MaxContext = 64 });

        int stop = Array.IndexOf(expected, expected[5]);
        Assert.Equal(expected[..(stop + 1)], engine.GenerateGreedy(prompt, expected.Length, stopAtEos: true));
        Assert.Equal(expected, engine.GenerateGreedy(prompt, expected.Length));
        Assert.Empty(engine.GenerateGreedy(prompt, 0));
    }
}
