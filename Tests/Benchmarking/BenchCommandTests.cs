using System.Text.Json.Nodes;
using CliProgram = GemmaGen.Cli.Program;

namespace GemmaGen.Tests.Benchmarking;

/// <summary>
/// <c>gemmagen bench</c> on the demo shape with two of its six layers: the JSON has every field the issue names,
/// consistent with each other (timings themselves are not asserted: this machine is shared).
/// </summary>
public sealed class BenchCommandTests
{
    private static (int Exit, string Stdout, string Stderr) Run(params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int exit = CliProgram.Run(args, stdout, stderr);
        return (exit, stdout.ToString(), stderr.ToString());
    }

    [Fact]
    public void Json_report_has_the_measurements_extrapolation_and_reference_comparison()
    {
        var (exit, stdout, stderr) = Run("bench", "--spec", "gemma-2-demo", "--layers", "2", "--prompt", "8", "--tokens", "4",
            "--threads", "2", "--compare", "reference", "--json");

        Assert.True(exit == 0, stderr);
        var json = JsonNode.Parse(stdout)!.AsObject();
        Assert.Equal("gemma-2-demo", (string?)json["spec"]);
        Assert.Equal("bf16", (string?)json["format"]);
        Assert.Equal(2, (int)json["threads"]!);
        Assert.Equal(2, (int)json["layers_run"]!);
        Assert.True((bool)json["extrapolated"]!);
        Assert.Equal("compiled Gemma2_Demo", (string?)json["path"]);
        foreach (var field in new[] { "prefill_tok_s", "decode_tok_s", "decode_gb_s", "bandwidth_gb_s", "bandwidth_fraction" })
            Assert.True((double)json[field]! > 0, field);
        Assert.True((long)json["peak_rss_bytes"]! > 0);
        Assert.Equal(3, (int)json["repeats"]!);
        Assert.Equal((double)json["decode_gb_s"]! / (double)json["bandwidth_gb_s"]!, (double)json["bandwidth_fraction"]!, 1e-9);

        var reference = json["reference"]!.AsObject();
        Assert.Equal("reference", (string?)reference["path"]);
        Assert.Equal((double)json["decode_tok_s"]! / (double)reference["decode_tok_s"]!, (double)json["speedup_vs_reference"]!, 1e-9);
        // Weights read per token: six layers and the tied embedding of the demo shape in BF16.
        long perLayer = 2L * ((4 + 2 * 2) * 64 * 256 + 256 * 4 * 64 + 2 * 768 * 256 + 256 * 768);
        Assert.Equal(2L * 4096 * 256 + 6 * perLayer, (long)json["weight_bytes_per_token"]!);
    }

    [Theory]
    [InlineData("--format")]
    [InlineData("--quant")]
    public void Quantized_formats_are_chosen_with_format_or_quant(string option)
    {
        var (exit, stdout, stderr) = Run("bench", "--spec", "gemma-2-demo", option, "q4_0", "--layers", "1", "--prompt", "4", "--tokens", "2",
            "--threads", "1", "--repeat", "1", "--json");

        Assert.True(exit == 0, stderr);
        var json = JsonNode.Parse(stdout)!.AsObject();
        Assert.Equal("q4_0", (string?)json["format"]);
        // Q4_0 is 18 bytes per 32 weights: the demo's six layers and its tied embedding read at that rate.
        long perLayer = 18L * ((4 + 2 * 2) * 64 * 256 + 256 * 4 * 64 + 2 * 768 * 256 + 256 * 768) / 32;
        Assert.Equal(18L * 4096 * 256 / 32 + 6 * perLayer, (long)json["weight_bytes_per_token"]!);
    }

    [Fact]
    public void Table_names_the_scope_of_the_figures()
    {
        var (exit, stdout, stderr) = Run("bench", "--spec", "gemma-2-demo", "--prompt", "4", "--tokens", "2", "--threads", "1");

        Assert.True(exit == 0, stderr);
        Assert.Contains("all 6 layers", stdout);
        Assert.Contains("compiled Gemma2_Demo", stdout);
        Assert.Contains("bandwidth probe", stdout);
    }

    [Theory]
    [InlineData("--spec", "no-such-spec")]
    [InlineData("--spec", "gemma-2-demo", "--format", "fp8")]
    [InlineData("--spec", "gemma-2-demo", "--layers", "0")]
    [InlineData("--spec", "gemma-2-demo", "--compare", "llama")]
    [InlineData("--spec", "gemma-2-demo", "--threads", "0")]
    [InlineData("--spec", "gemma-2-demo", "--repeat", "0")]
    public void Bad_options_are_one_line_errors(params string[] options)
    {
        var (exit, _, stderr) = Run(["bench", .. options]);

        Assert.Equal(2, exit);
        var line = Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.StartsWith("error: ", line);
    }

    [Fact]
    public void A_shape_too_large_for_memory_is_refused_before_its_weights_are_made()
    {
        // The demo shape with a billion layers: more memory than any machine has, refused by the loader's check.
        var config = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(Generation.DemoModel.Directory, "config.json")))!.AsObject();
        config["num_hidden_layers"] = 1_000_000_000;
        string path = Path.Combine(Path.GetTempPath(), $"gemmagen-bench-{Guid.NewGuid():N}.json");
        File.WriteAllText(path, config.ToJsonString());
        try
        {
            var (exit, _, stderr) = Run("bench", "--spec", path, "--repeat", "1");

            Assert.Equal(2, exit);
            // Progress lines come first; the error is the last line, and the only one.
            string[] lines = stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            string line = Assert.Single(lines, l => l.StartsWith("error: ", StringComparison.Ordinal));
            Assert.Equal(line, lines[^1]);
            Assert.StartsWith("error: synthetic weights: the model needs ", line);
            Assert.Contains("GB is available", line);
        }
        finally
        {
            File.Delete(path);
        }
    }
}
