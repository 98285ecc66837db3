using GemmaGen.Kernels;
using GemmaGen.Tests.Generation;
using Xunit;

namespace GemmaGen.Tests.Host;

/// <summary>Contexts and token counts the model cannot hold are refused with the parameter and the numbers.</summary>
public sealed class ContextLimitTests(DemoModelFixture fixture) : IClassFixture<DemoModelFixture>
{
    private readonly GemmaModel _model = fixture.Model;

    private static GenerationOptions Greedy(int maxTokens) =>
        new() { MaxTokens = maxTokens, Sampling = SamplingOptions.GreedyDecoding, IgnoreEndTokens = true };

    [Theory]
    [InlineData(1_000_000_000)]
    [InlineData(int.MaxValue)]
    public void AContextWhoseBuffersOverflowIsRefusedBeforeAllocating(int maxContext)
    {
        long before = GC.GetAllocatedBytesForCurrentThread();
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => _model.CreateSession(maxContext));
        Assert.Equal("maxContext", e.ParamName);
        Assert.Contains($"a context of {maxContext} positions needs a buffer of", e.Message);
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 1 << 20, "buffers were allocated before the refusal");
    }

    [Theory]
    [InlineData(0)]
    [InlineData(-1)]
    [InlineData(int.MinValue)]
    public void AContextOfNoPositionIsRefused(int maxContext)
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => _model.CreateSession(maxContext));
        Assert.Equal("maxContext", e.ParamName);
        e = Assert.Throws<ArgumentOutOfRangeException>(() => _model.CreateDecoder(maxContext));
        Assert.Equal("maxContext", e.ParamName);
    }

    [Fact]
    public void AContextLargerThanMemoryIsRefused()
    {
        // 200 layers of the demo's shape: 16M positions keep every buffer under the array limit (2 kv heads × 64 ×
        // 16M = 2.05e9 floats), but the 100 global layers' keys and values take 100 × 2 × 8.2 GB.
        var config = _model.Config with { NumHiddenLayers = 200 };
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => Sequence.CheckContext(config, 16_000_000));
        Assert.Equal("maxContext", e.ParamName);
        Assert.Contains("a context of 16000000 positions needs 16", e.Message);
        Assert.Contains("GB of memory is available", e.Message);
    }

    [Fact]
    public void ComputeLogitsRefusesMoreTokensThanTheContext()
    {
        using var model = DemoModel.Load(maxContext: 8);
        int[] tokens = DemoModel.Cases[0].PromptIds.Concat(DemoModel.Cases[0].GreedyIds).Take(9).ToArray();

        var e = Assert.Throws<ArgumentOutOfRangeException>(() => model.ComputeLogits(tokens));

        Assert.Equal("tokens", e.ParamName);
        Assert.Contains("9 positions are needed, more than the model's context of 8", e.Message);
        Assert.Equal(8 * model.Config.VocabSize, model.ComputeLogits(tokens[..8]).Length);
    }

    [Theory]
    [InlineData(5, 7)]
    [InlineData(int.MaxValue, 2147483649L)]
    public void GreedyGenerationRefusesMoreTokensThanTheContext(int maxNewTokens, long positions)
    {
        using var model = DemoModel.Load(maxContext: 6);
        int[] prompt = DemoModel.Cases[0].PromptIds[..3];

        var e = Assert.Throws<ArgumentOutOfRangeException>(() => model.GenerateGreedy(prompt, maxNewTokens));

        Assert.Equal("maxNewTokens", e.ParamName);
        Assert.Contains($"{positions} positions are needed, more than the model's context of 6", e.Message);
        Assert.Equal(DemoModel.Cases[0].GreedyIds[..0], model.GenerateGreedy(prompt, 0));
    }

    [Fact]
    public void ASessionRefusesAPromptLongerThanItsContextNamingBothNumbers()
    {
        var session = _model.CreateSession(4);
        int[] prompt = DemoModel.Cases[0].PromptIds;

        var e = Assert.Throws<ArgumentOutOfRangeException>(() => session.Generate(prompt, Greedy(1)));

        Assert.Equal("input", e.ParamName);
        Assert.Contains($"the input is {prompt.Length} tokens; 4 of the context's 4 positions are free", e.Message);
        Assert.Empty(session.Tokens);
        e = Assert.Throws<ArgumentOutOfRangeException>(() => session.Append(prompt));
        Assert.Equal("input", e.ParamName);
    }
}
