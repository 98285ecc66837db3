using System.Text.Json.Nodes;
using GemmaGen.Kernels;
using GemmaGen.Tests.Host;
using Xunit;
using CliProgram = GemmaGen.Cli.Program;

namespace GemmaGen.Tests.KQuant;

/// <summary>
/// <c>gemmagen bench</c> with the K-quant formats on synthetic weights (<c>--format q4_k|q5_k|q6_k</c>, each read at its
/// own bytes per weight) and on a real file's weights (<c>--model FILE.gguf</c>: its blocks as stored, every format it
/// is held in named), and the one-line errors of a missing or malformed file and of conflicting options.
/// </summary>
public sealed class BenchKQuantCommandTests
{
    private static (int Exit, string Stdout, string Stderr) Run(params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int exit = CliProgram.Run(args, stdout, stderr);
        return (exit, stdout.ToString(), stderr.ToString());
    }

    [Theory]
    [InlineData("q4_k", 152)] // in groups of eight rows: the 144 stored, the scales and minimums unpacked
    [InlineData("q5_k", 184)] // in groups of eight rows: the 176 stored, the scales and minimums unpacked
    [InlineData("q6_k", 212)] // in groups of eight rows: the 210 stored, d widened
    public void Synthetic_weights_are_held_in_a_K_quant_format_at_its_bytes_per_weight(string format, int blockBytes)
    {
        var (exit, stdout, stderr) = Run("bench", "--spec", "gemma-2-demo", "--format", format, "--layers", "1", "--prompt", "4", "--tokens", "2",
            "--threads", "1", "--repeat", "1", "--json");

        Assert.True(exit == 0, stderr);
        var json = JsonNode.Parse(stdout)!.AsObject();
        Assert.Equal(format, (string?)json["format"]);
        Assert.Equal([format], json["formats"]!.AsArray().Select(n => (string?)n));
        // The demo's six layers and its tied embedding, each 256 weights one super-block.
        long perLayer = (long)blockBytes * ((4 + 2 * 2) * 64 * 256 + 256 * 4 * 64 + 2 * 768 * 256 + 256 * 768) / 256;
        Assert.Equal((long)blockBytes * 4096 * 256 / 256 + 6 * perLayer, (long)json["weight_bytes_per_token"]!);
        Assert.True((double)json["decode_tok_s"]! > 0);
    }

    [Fact]
    public void A_GGUF_files_own_weights_are_measured_as_stored()
    {
        string path = GgufFixtures.Path("q4_k_m");
        var (exit, stdout, stderr) = Run("bench", "--model", path, "--prompt", "4", "--tokens", "2", "--threads", "1", "--repeat", "1", "--json");

        Assert.True(exit == 0, stderr);
        var json = JsonNode.Parse(stdout)!.AsObject();
        Assert.Equal("gemma2-demo-q4_k_m", (string?)json["spec"]);
        Assert.Equal("compiled Gemma2_Demo", (string?)json["path"]);
        Assert.False((bool)json["extrapolated"]!);
        // Q4_K layers and the Q6_K embedding; the stacks that mix Q4_K and Q6_K parts keep both (nothing is F32).
        var formats = json["formats"]!.AsArray().Select(n => (string?)n).ToArray();
        Assert.Equal(["q4_k", "q6_k"], formats.Order());
        Assert.Equal(formats[0], (string?)json["format"]);
        using var gguf = GgufCheckpoint.Open(path);
        using var weights = ModelWeights.Load(gguf.Config, gguf);
        long layers = weights.ByteLength - weights.Embed.ByteLength;
        Assert.Equal(weights.Embed.ByteLength + layers / 6 * 6, (long)json["weight_bytes_per_token"]!);
        Assert.Contains(path, stderr); // the progress lines name the file
    }

    [Fact]
    public void The_table_of_a_file_names_every_format_it_is_held_in()
    {
        var (exit, stdout, stderr) = Run("bench", "--model", GgufFixtures.Path("q6_k"), "--layers", "2", "--prompt", "4", "--tokens", "2", "--threads", "1", "--repeat", "1");

        Assert.True(exit == 0, stderr);
        Assert.StartsWith("gemma2-demo-q6_k, Q6_K, 1 threads, 2 of 6 layers run", stdout);
    }

    [Theory]
    [InlineData("missing")]
    [InlineData("not-gguf")]
    [InlineData("both")]
    [InlineData("neither")]
    [InlineData("k-conversion")]
    public void A_bad_model_or_conflicting_options_are_one_line_errors(string what)
    {
        using var temp = new TempDirectory();
        string garbage = temp.File("garbage.gguf");
        File.WriteAllText(garbage, "this is not a GGUF file at all, just text long enough to read a header from");
        string[] options = what switch
        {
            "missing" => ["--model", temp.File("absent.gguf")],
            "not-gguf" => ["--model", garbage],
            "both" => ["--model", GgufFixtures.Path("q6_k"), "--spec", "gemma-2-demo"],
            "neither" => [],
            _ => ["--model", GgufFixtures.Path("f16"), "--format", "q4_k"],
        };
        var (exit, _, stderr) = Run(["bench", .. options, "--prompt", "4", "--tokens", "2", "--repeat", "1"]);

        Assert.Equal(2, exit);
        var line = Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.StartsWith("error: ", line);
        switch (what)
        {
            case "missing": Assert.Contains("absent.gguf: GGUF file does not exist", line); break;
            case "not-gguf": Assert.Contains(garbage, line); break;
            case "both" or "neither": Assert.Contains("either --spec SPEC", line); break;
            default: Assert.Contains("--format q4_k: expected f32, bf16, q8_0 or q4_0", line); break;
        }
    }
}
