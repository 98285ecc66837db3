using GemmaGen.Tests.Cli;
using Xunit;

namespace GemmaGen.Tests.Host;

/// <summary>
/// <c>--model FILE.gguf</c> (or a directory holding one) for every command, and <see cref="GemmaModel.Load(string,
/// GemmaModelOptions?)"/>'s choice between a GGUF file and a Hugging Face checkpoint, with a clear error for every
/// ambiguous or empty model path.
/// </summary>
public sealed class GgufCliTests : IDisposable
{
    private readonly TempDirectory _temp = new();

    public void Dispose() => _temp.Dispose();

    private static string Q4km => GgufFixtures.Path("q4_k_m");

    [Fact]
    public void InfoPrintsTheDerivedConfigTheTensorTypesAndTheCompiledSpec()
    {
        var run = CliProcess.Run("info", "--model", Q4km, "--tensors");
        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Contains("layers       6 (3 local with window 128, 3 global)", run.Stdout);
        Assert.Contains("hidden       256, intermediate 768, vocabulary 4096", run.Stdout);
        Assert.Contains("4 query heads / 2 kv heads of 64, query_pre_attn_scalar 64", run.Stdout);
        Assert.Contains("soft-caps    attention 50, final 30", run.Stdout);
        Assert.Contains("rms eps 1E-06, context 1024", run.Stdout);
        Assert.Matches(@"runs on +compiled Gemma2_Demo", run.Stdout);
        Assert.Contains("F32 x25, Q4_K x38, Q6_K x5", run.Stdout); // the fixture README's counts
        Assert.DoesNotContain("dequantized", run.Stdout);
        Assert.Contains("chat template: Gemma's", run.Stdout);
        Assert.Contains("blk.2.attn_v.weight", run.Stdout);
        Assert.Contains("model.layers.2.self_attn.v_proj.weight", run.Stdout);
        Assert.Equal("", run.Stderr);
    }

    [Theory]
    // q4_0: its Q4_0 tensors and its Q6_K embedding (the fixture README's one Q6_K tensor) are kept as stored; q8_0:
    // every matrix is Q8_0.
    [InlineData("q4_0", "(Q4_0-F16 and Q6_K)")]
    [InlineData("q8_0", "(Q8_0-F16)")]
    public void InfoNamesEveryFormatTheWeightsAreHeldIn(string file, string formats)
    {
        var run = CliProcess.Run("info", "--model", GgufFixtures.Path(file));
        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Matches(@"memory +weights [0-9.]+ MiB " + System.Text.RegularExpressions.Regex.Escape(formats), run.Stdout);
    }

    [Fact]
    public void RunLogitsAndTokenizeTakeAGgufFile()
    {
        using var golden = SafetensorsFile.Open(GgufFixtures.GoldenPath("q4_k_m"));
        long[] prompt = golden.GetI64("prompt_ids");

        var tokenize = CliProcess.Piped("The jury said", "tokenize", "--bos", "--model", Q4km);
        Assert.True(tokenize.ExitCode == 0, tokenize.ToString());
        Assert.Equal(string.Join(",", prompt) + "\n", tokenize.Stdout);

        string output = _temp.File("logits.safetensors");
        var logits = CliProcess.Run("logits", "--model", Q4km, "--tokens", string.Join(",", prompt), "--out", output);
        Assert.True(logits.ExitCode == 0, logits.ToString());
        using (var written = SafetensorsFile.Open(output))
        {
            var expected = golden.GetF32("prompt_logits");
            var actual = written.GetF32("logits");
            Assert.Equal(expected.Length, actual.Length);
            for (int i = 0; i < expected.Length; i++) Assert.True(Math.Abs(expected[i] - actual[i]) < 1.25e-2, $"logit {i}");
        }

        // The golden's decisive greedy steps (margins above 0.05 for the first 4 tokens of this file).
        var run = CliProcess.Run("run", "The jury said", "--model", Q4km, "--greedy", "--max-tokens", "4", "--no-stats");
        Assert.True(run.ExitCode == 0, run.ToString());
        var tokenizer = GemmaTokenizer.LoadGguf(Q4km);
        string expectedText = tokenizer.Decode(golden.GetI64("generated_ids").Take(4).Select(id => (int)id).ToArray());
        Assert.Equal(expectedText + "\n", run.Stdout);
    }

    [Fact]
    public void ADirectoryHoldingOneGgufFileIsThatFile()
    {
        string directory = _temp.Directory("one");
        File.Copy(Q4km, Path.Combine(directory, "Model.GGUF")); // the extension in any case
        File.Copy(Fixtures.Path("gemma2-tokenizer", "golden.json"), Path.Combine(directory, "notes.json"));
        using var model = GemmaModel.Load(directory, new GemmaModelOptions { Threads = 1 });
        Assert.Equal("compiled Gemma2_Demo", model.ExecutionPath);
        Assert.Equal(4096, model.Tokenizer!.VocabSize);
        var info = CliProcess.Run("info", "--model", directory);
        Assert.True(info.ExitCode == 0, info.ToString());
        Assert.Contains("Model.GGUF", info.Stdout);
    }

    [Fact]
    public void AmbiguousOrEmptyModelPathsAreClearErrors()
    {
        string two = _temp.Directory("two");
        File.Copy(Q4km, Path.Combine(two, "a.gguf"));
        File.Copy(GgufFixtures.Path("q4_0"), Path.Combine(two, "b.gguf"));
        CliAssert.BadInput(CliProcess.Run("run", "Hi", "--model", two), two, "2 GGUF files", "a.gguf", "b.gguf");

        string both = _temp.Directory("both");
        File.Copy(Q4km, Path.Combine(both, "a.gguf"));
        File.Copy(Fixtures.Path("tiny-gqa", "config.json"), Path.Combine(both, "config.json"));
        CliAssert.BadInput(CliProcess.Run("logits", "--model", both, "--tokens", "2", "--out", _temp.File("x.safetensors")), both, "config.json", "a.gguf");

        string empty = _temp.Directory("empty");
        var e = Assert.Throws<CheckpointException>(() => GemmaModel.Load(empty));
        Assert.Contains(empty, e.Message);
        Assert.Contains("no config.json and no .gguf file", e.Message);

        string missing = _temp.File("missing.gguf");
        CliAssert.BadInput(CliProcess.Run("info", "--model", missing), missing, "does not exist");

        string notGguf = _temp.File("weights.bin");
        File.WriteAllBytes(notGguf, [1, 2, 3]);
        CliAssert.BadInput(CliProcess.Run("generate", "--model", notGguf, "--tokens", "2", "--max-new-tokens", "2"), notGguf, "not a GGUF file");
    }

    /// <summary>A file whose tokenizer cannot be used (here: no <c>tokenizer.ggml.add_space_prefix</c>, which
    /// llama.cpp reads as a space prefix that Gemma's tokenizer does not add) is still described by <c>info</c>, with
    /// the reason as a warning, and runs on token ids; <c>run</c>, which needs the tokenizer, refuses it naming the key.</summary>
    [Fact]
    public void AnUnusableTokenizerIsAWarningForInfoAndAnErrorForText()
    {
        string path = GgufRewriter.Rewrite(GgufFixtures.Path("q4_0"), _temp.File("noprefix.gguf"),
            kvs => kvs.RemoveAll(kv => kv.Key == "tokenizer.ggml.add_space_prefix"));

        var info = CliProcess.Run("info", "--model", path);
        Assert.True(info.ExitCode == 0, info.ToString());
        Assert.Contains("tokenizer    tokenizer.ggml.*, unusable", info.Stdout);
        Assert.Matches(@"runs on +compiled Gemma2_Demo", info.Stdout);
        Assert.Contains("memory       weights", info.Stdout);
        Assert.Contains($"warning: {path}: tokenizer.ggml.add_space_prefix is absent", info.Stderr);

        var generate = CliProcess.Run("generate", "--model", path, "--tokens", "2,651", "--max-new-tokens", "2");
        Assert.True(generate.ExitCode == 0, generate.ToString());

        CliAssert.BadInput(CliProcess.Run("run", "Hi", "--model", path), path, "tokenizer.ggml.add_space_prefix");
    }

    [Fact]
    public void AMalformedGgufIsAnErrorForEveryCommand()
    {
        string truncated = _temp.File("truncated.gguf");
        File.WriteAllBytes(truncated, File.ReadAllBytes(Q4km)[..100_000]);
        CliAssert.BadInput(CliProcess.Run("info", "--model", truncated), truncated);
        CliAssert.BadInput(CliProcess.Run("run", "Hi", "--model", truncated), truncated);
        CliAssert.BadInput(CliProcess.Piped("Hi", "tokenize", "--model", truncated), truncated);
    }
}
