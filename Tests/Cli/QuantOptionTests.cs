using GemmaGen.Kernels;

namespace GemmaGen.Tests.Cli;

/// <summary><c>--quant</c> on <c>run</c>: the command runs the model converted at load, as the library does.</summary>
public sealed class QuantOptionTests
{
    [Theory]
    [InlineData("bf16")]
    [InlineData("q8_0")]
    [InlineData("q4_0")]
    public void Run_with_quant_continues_as_the_library_does_with_that_format(string option)
    {
        var format = WeightFormat.Find(option)!;
        string demo = Path.Combine(AppContext.BaseDirectory, "Fixtures", "gemma2-demo");
        using var model = GemmaModel.Load(demo, new GemmaModelOptions { Format = format, Threads = 2 });
        var tokenizer = model.RequireTokenizer();
        int[] generated = model.GenerateGreedy(tokenizer.Encode("The jury said", addBos: true), 16);
        string expected = tokenizer.Decode(generated);

        var run = CliProcess.Run("run", "The jury said", "--greedy", "--max-tokens", "16", "--ignore-eos", "--quant", option, "--threads", "2");

        Assert.True(run.ExitCode == 0, run.Stderr);
        Assert.Equal(expected, run.Stdout.TrimEnd('\n'));
        Assert.Equal(format, model.Weights.Layers[0].GateUp.Format);
    }

    [Fact]
    public void An_unknown_quant_format_is_a_one_line_error()
    {
        var run = CliProcess.Run("run", "x", "--quant", "q5_1");

        Assert.Equal(2, run.ExitCode);
        Assert.Equal("error: --quant q5_1: expected f32, bf16, q8_0 or q4_0", run.Stderr.Trim());
    }

    [Fact]
    public void Run_with_a_bf16_kv_cache_continues_as_the_library_does()
    {
        string demo = Path.Combine(AppContext.BaseDirectory, "Fixtures", "gemma2-demo");
        using var model = GemmaModel.Load(demo, new GemmaModelOptions { KvCache = KvPrecision.BF16, Threads = 2 });
        var tokenizer = model.RequireTokenizer();
        string expected = tokenizer.Decode(model.GenerateGreedy(tokenizer.Encode("The jury said", addBos: true), 16));

        var run = CliProcess.Run("run", "The jury said", "--max-tokens", "16", "--ignore-eos", "--temperature", "0", "--kv", "bf16", "--threads", "2");

        Assert.True(run.ExitCode == 0, run.Stderr);
        Assert.Equal(expected, run.Stdout.TrimEnd('\n'));
        Assert.Equal(KvPrecision.BF16, model.CreateDecoder(8).Sequence.Cache.Precision);
    }

    [Fact]
    public void An_unknown_kv_precision_is_a_one_line_error()
    {
        var run = CliProcess.Run("run", "x", "--kv", "f16");

        Assert.Equal(2, run.ExitCode);
        Assert.Equal("error: --kv f16: expected f32 or bf16", run.Stderr.Trim());
    }
}
