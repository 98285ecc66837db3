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
        Assert.Equal("error: --kv f16: expected f32, bf16 or q8_0", run.Stderr.Trim());
    }

    [Fact]
    public void Run_with_a_q8_0_kv_cache_continues_as_the_library_does()
    {
        string demo = Path.Combine(AppContext.BaseDirectory, "Fixtures", "gemma2-demo");
        using var model = GemmaModel.Load(demo, new GemmaModelOptions { KvCache = KvPrecision.Q8_0, Threads = 2 });
        var tokenizer = model.RequireTokenizer();
        string expected = tokenizer.Decode(model.GenerateGreedy(tokenizer.Encode("The jury said", addBos: true), 16));

        var run = CliProcess.Run("run", "The jury said", "--max-tokens", "16", "--ignore-eos", "--temperature", "0", "--kv", "Q8_0", "--threads", "2");

        Assert.True(run.ExitCode == 0, run.Stderr);
        Assert.Equal(expected, run.Stdout.TrimEnd('\n'));
        Assert.Equal(KvPrecision.Q8_0, model.CreateDecoder(8).Sequence.Cache.Precision);
    }

    [Fact]
    public void A_q8_0_kv_cache_of_a_head_dim_not_a_multiple_of_32_is_a_one_line_error()
    {
        string config = Path.Combine(AppContext.BaseDirectory, "Fixtures", "tiny-gqa", "config.json");

        var run = CliProcess.Run("bench", "--spec", config, "--kv", "q8_0", "--prompt", "4", "--tokens", "2", "--threads", "1");

        Assert.Equal(2, run.ExitCode);
        string error = run.Stderr.Trim().Split('\n')[^1];  // after the progress lines
        Assert.StartsWith("error: synthetic weights: a q8_0 KV cache stores each head in blocks of 32 values", error);
        Assert.Contains("head_dim is 16 (not a multiple of 32)", error);
    }

    [Fact]
    public void Run_with_int8_activations_continues_as_the_library_does()
    {
        string demo = Path.Combine(AppContext.BaseDirectory, "Fixtures", "gemma2-demo");
        using var model = GemmaModel.Load(demo, new GemmaModelOptions { Format = WeightFormat.Q4_0, Activations = DecodeActivations.Int8, Threads = 2 });
        var tokenizer = model.RequireTokenizer();
        string expected = tokenizer.Decode(model.GenerateGreedy(tokenizer.Encode("The jury said", addBos: true), 16));

        var run = CliProcess.Run("run", "The jury said", "--greedy", "--max-tokens", "16", "--ignore-eos", "--quant", "q4_0", "--activations", "int8", "--threads", "2");

        Assert.True(run.ExitCode == 0, run.Stderr);
        Assert.Equal(expected, run.Stdout.TrimEnd('\n'));
        Assert.Equal(DecodeActivations.Int8, model.Weights.Layers[0].GateUp.DecodeActivations);
    }

    [Fact]
    public void An_unknown_activation_rounding_is_a_one_line_error()
    {
        var run = CliProcess.Run("run", "x", "--activations", "int4");

        Assert.Equal(2, run.ExitCode);
        Assert.Equal("error: --activations int4: expected int16 or int8", run.Stderr.Trim());
    }

    [Fact]
    public void Bench_reports_the_activation_rounding()
    {
        string config = Path.Combine(AppContext.BaseDirectory, "Fixtures", "tiny-gqa", "config.json");

        var run = CliProcess.Run("bench", "--spec", config, "--format", "q4_0", "--activations", "int8", "--prompt", "4", "--tokens", "2", "--threads", "1", "--repeat", "1", "--json");

        Assert.True(run.ExitCode == 0, run.Stderr);
        using var json = System.Text.Json.JsonDocument.Parse(run.Stdout);
        Assert.Equal("int8", json.RootElement.GetProperty("activations").GetString());
    }
}
