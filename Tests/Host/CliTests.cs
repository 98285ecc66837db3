using Xunit;
using CliProgram = GemmaGen.Cli.Program;

namespace GemmaGen.Tests.Host;

public sealed class CliTests : IDisposable
{
    private readonly TempDirectory _temp = new();

    public void Dispose() => _temp.Dispose();

    [Fact]
    public void LogitsOnTheReferencePathMatchTheGolden()
    {
        using var golden = Fixtures.Golden("tiny-gqa");
        string output = _temp.File("logits.safetensors");
        var run = Run("logits", "--model", Fixtures.Path("tiny-gqa"), "--tokens", Fixtures.TokenList(golden.GetI64("prompt_ids")), "--out", output, "--reference");

        Assert.Equal((0, "", "path: reference\n"), run);
        AssertLogits(golden, output);
    }

    [Fact]
    public void LogitsRunTheCompiledSpecWhenOneMatches()
    {
        using var golden = Fixtures.Golden("tiny-gqa");
        string output = _temp.File("logits.safetensors");
        var run = Run("logits", "--model", Fixtures.Path("tiny-gqa"), "--tokens", Fixtures.TokenList(golden.GetI64("prompt_ids")), "--out", output);

        // The ClassName of tiny-gqa's GemmaSpec item in GemmaGen.Tests.csproj, the one compiled class of its shape.
        const string TinyGqaClass = "TinyGqa";
        Assert.Equal((0, "", $"path: compiled {TinyGqaClass}\n"), run);
        AssertLogits(golden, output);
    }

    [Fact]
    public void LogitsOfSyntheticWeightsMatchTheRealShapeGolden()
    {
        using var golden = Fixtures.Golden("synth-2b");
        string output = _temp.File("logits.safetensors");
        var run = Run("logits", "--config", Fixtures.Path("synth-2b", "config.json"), "--synthetic",
            "--tokens", Fixtures.TokenList(golden.GetI64("prompt_ids")), "--out", output, "--reference");

        Assert.Equal((0, "", "path: reference\n"), run);
        AssertLogits(golden, output);
    }

    [Fact]
    public void GenerateReproducesTheGreedyGolden()
    {
        using var golden = Fixtures.Golden("tiny-gqa");
        long[] expected = golden.GetI64("generated_ids");
        var run = Run("generate", "--model", Fixtures.Path("tiny-gqa"), "--tokens", Fixtures.TokenList(golden.GetI64("prompt_ids")),
            "--max-new-tokens", expected.Length.ToString(), "--greedy", "--ids", "--reference");

        Assert.Equal((0, string.Join(",", expected) + "\n", "path: reference\n"), run);
    }

    [Fact]
    public void GenerateRunsTheDemoModelGreedilyByDefault()
    {
        var golden = GemmaGen.Tests.Generation.DemoModel.Cases[0];
        var run = Run("generate", "--tokens", string.Join(",", golden.PromptIds), "--max-new-tokens", golden.GreedyIds.Length.ToString());

        Assert.Equal((0, string.Join(",", golden.GreedyIds) + "\n", "path: compiled Gemma2_Demo\n"), run);
    }

    [Fact]
    public void LogitsRunTheDemoModelByDefault()
    {
        var golden = GemmaGen.Tests.Generation.DemoModel.Cases[1];
        string output = _temp.File("logits.safetensors");
        var run = Run("logits", "--tokens", string.Join(",", golden.PromptIds), "--out", output);

        Assert.Equal((0, "", "path: compiled Gemma2_Demo\n"), run);
        using var file = SafetensorsFile.Open(output);
        Assert.Equal([golden.PromptIds.Length, 4096], file.GetShape("logits"));
        // The most likely token after the prompt is the first greedy token.
        var logits = file.GetF32("logits");
        int best = 0;
        for (int i = 1, last = (golden.PromptIds.Length - 1) * 4096; i < 4096; i++)
            if (logits[last + i] > logits[last + best]) best = i;
        Assert.Equal(golden.GreedyIds[0], best);
    }

    [Fact]
    public void RefusesNoNewTokens() =>
        AssertBadInput(Run("generate", "--tokens", "2,3", "--max-new-tokens", "0"), "--max-new-tokens 0: expected an integer, 1 or more");

    [Fact]
    public void RefusesAMissingModelDirectory()
    {
        string missing = _temp.File("no-such-model");
        AssertBadInput(Run("logits", "--model", missing, "--tokens", "2,3", "--out", _temp.File("x")), missing, "does not exist");
    }

    [Theory]
    [InlineData("2,,3", "item 2 ('')")]
    [InlineData("2,abc", "item 2 ('abc')")]
    [InlineData("2,-5", "item 2 ('-5')")]
    [InlineData("2;3", "item 1 ('2;3')")]
    [InlineData("", "item 1 ('')")]
    [InlineData("2,99999999999", "item 2 ('99999999999')")]
    public void RefusesAMalformedTokenList(string tokens, string fragment) =>
        AssertBadInput(Run("logits", "--model", Fixtures.Path("tiny-gqa"), "--tokens", tokens, "--out", _temp.File("x")), "--tokens", fragment, "not a token id");

    [Fact]
    public void RefusesATokenOutsideTheVocabulary()
    {
        var run = Run("generate", "--model", Fixtures.Path("tiny-gqa"), "--tokens", "2,999,1000", "--max-new-tokens", "2", "--greedy", "--ids");
        AssertBadInput(run, "item 3 is token id 1000", "vocabulary of 1000");
    }

    [Fact]
    public void RefusesAContextLongerThanTheModels()
    {
        var run = Run("generate", "--model", Fixtures.Path("tiny-gqa"), "--tokens", "2,3", "--max-new-tokens", "600", "--greedy", "--ids");
        AssertBadInput(run, "need 601 positions", "512");
    }

    [Fact]
    public void RefusesAMalformedCheckpoint()
    {
        string dir = _temp.Directory("broken");
        File.Copy(Fixtures.Path("tiny-gqa", "config.json"), Path.Combine(dir, "config.json"));
        File.WriteAllBytes(Path.Combine(dir, "model.safetensors"), [1, 2, 3]);
        AssertBadInput(Run("logits", "--model", dir, "--tokens", "2", "--out", _temp.File("x")), Path.Combine(dir, "model.safetensors"), "shorter than");
    }

    [Fact]
    public void RefusesACheckpointThatDoesNotFitItsConfig()
    {
        string dir = _temp.Directory("wrong-config");
        File.Copy(Fixtures.Path("tiny-softcap", "config.json"), Path.Combine(dir, "config.json"));
        File.Copy(Fixtures.Path("tiny-gqa", "model.safetensors"), Path.Combine(dir, "model.safetensors"));
        AssertBadInput(Run("logits", "--model", dir, "--tokens", "2", "--out", _temp.File("x")), "model.embed_tokens.weight", "expected [512, 64]");
    }

    [Fact]
    public void RefusesABadConfig()
    {
        string config = _temp.File("config.json");
        File.WriteAllText(config, "{ \"model_type\": ");
        AssertBadInput(Run("logits", "--config", config, "--synthetic", "--tokens", "2", "--out", _temp.File("x")), config + "(", "GEMMAGEN");
    }

    [Fact]
    public void RefusesBothModelAndConfig() =>
        AssertBadInput(Run("logits", "--model", Fixtures.Path("tiny-gqa"), "--config", Fixtures.Path("tiny-gqa", "config.json"), "--synthetic",
            "--tokens", "2", "--out", _temp.File("x")), "not both");

    [Fact]
    public void RefusesConfigWithoutSynthetic() =>
        AssertBadInput(Run("logits", "--config", Fixtures.Path("tiny-gqa", "config.json"), "--tokens", "2", "--out", _temp.File("x")), "add --synthetic");

    [Fact]
    public void RefusesSyntheticWithoutConfig() =>
        AssertBadInput(Run("logits", "--synthetic", "--tokens", "2", "--out", _temp.File("x")), "--synthetic goes with --config");

    [Fact]
    public void RefusesAnOutputInAMissingFolder()
    {
        string folder = _temp.File("no-such-dir");
        string output = Path.Combine(folder, "logits.safetensors");
        AssertBadInput(Run("logits", "--model", Fixtures.Path("tiny-gqa"), "--tokens", "2,3", "--out", output, "--reference"),
            $"--out {output}: the folder {folder} does not exist");
    }

    [Fact]
    public void RefusesAnOutputThatIsAFolder()
    {
        string folder = _temp.Directory("a-folder");
        AssertBadInput(Run("logits", "--tokens", "2,3", "--out", folder), $"--out {folder}: names a folder");
        AssertBadInput(Run("logits", "--tokens", "2,3", "--out", _temp.File("not-yet") + Path.DirectorySeparatorChar), "names a folder");
    }

    [Fact]
    public void RefusesAnEmptyOutput() =>
        AssertBadInput(Run("logits", "--tokens", "2,3", "--out", ""), "--out '': expected the name of a file to write");

    [Theory]
    [InlineData("logits", "--model", "x", "--tokens", "2", "--out", "y", "--bogus")]
    [InlineData("logits", "--model", "x", "--tokens", "2")]
    [InlineData("generate", "--model", "x", "--tokens", "2", "--max-new-tokens", "many", "--greedy", "--ids")]
    [InlineData("nonsense")]
    public void ReportsParseErrors(params string[] args)
    {
        var (exit, stdout, stderr) = Run(args);
        Assert.Equal(CliProgram.BadInput, exit);
        Assert.Equal("", stdout);
        Assert.NotEmpty(stderr);
        Assert.All(stderr.TrimEnd('\n').Split('\n'), line => Assert.StartsWith("error: ", line));
    }

    [Fact]
    public void WithoutACommandPrintsTheUsageOnStderr()
    {
        var (exit, stdout, stderr) = Run();
        Assert.Equal(CliProgram.BadInput, exit);
        Assert.Equal("", stdout);
        Assert.Contains("Usage:", stderr);
        foreach (string command in new[] { "run", "chat", "tokenize", "info", "bench", "logits", "generate" })
            Assert.Contains($"  {command} ", stderr);
        Assert.DoesNotContain("error", stderr);
    }

    [Fact]
    public void PrintsHelp()
    {
        var (exit, stdout, _) = Run("logits", "--help");
        Assert.Equal(0, exit);
        Assert.Contains("--tokens", stdout);
    }

    private static (int Exit, string Stdout, string Stderr) Run(params string[] args)
    {
        var stdout = new StringWriter { NewLine = "\n" };
        var stderr = new StringWriter { NewLine = "\n" };
        int exit = CliProgram.Run(args, stdout, stderr);
        return (exit, stdout.ToString(), stderr.ToString());
    }

    private static void AssertBadInput((int Exit, string Stdout, string Stderr) run, params string[] fragments)
    {
        Assert.Equal(CliProgram.BadInput, run.Exit);
        Assert.Equal("", run.Stdout);
        Assert.StartsWith("error: ", run.Stderr);
        Assert.Single(run.Stderr.TrimEnd('\n').Split('\n'));
        Assert.DoesNotContain("   at ", run.Stderr);
        foreach (string fragment in fragments) Assert.Contains(fragment, run.Stderr);
    }

    private static void AssertLogits(SafetensorsFile golden, string output)
    {
        using var file = SafetensorsFile.Open(output);
        Assert.Equal(["logits"], file.TensorNames);
        Assert.Equal(golden.GetShape("prompt_logits"), file.GetShape("logits"));
        var expected = golden.GetF32("prompt_logits");
        var actual = file.GetF32("logits");
        float worst = 0;
        for (int i = 0; i < expected.Length; i++) worst = Math.Max(worst, Math.Abs(expected[i] - actual[i]));
        Assert.True(worst <= 1e-3f, $"max |logit difference| {worst} > 1e-3");
    }
}
