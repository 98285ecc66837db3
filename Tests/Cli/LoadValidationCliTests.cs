using System.Text.Json.Nodes;
using GemmaGen.Tests.Host;

namespace GemmaGen.Tests.Cli;

/// <summary>The checks made before a model loads, as every command that reads a checkpoint reports them.</summary>
public sealed class LoadValidationCliTests : IDisposable
{
    private readonly ScratchDirectory _temp = new();

    public void Dispose() => _temp.Dispose();

    /// <summary>A copy of <paramref name="fixture"/>'s files, with one config field changed when given.</summary>
    private string Copy(string fixture, string name, string[] files, string? field = null, int value = 0)
    {
        string directory = _temp.NewDirectory(name);
        string source = fixture == "demo" ? Generation.DemoModel.Directory : CliFixtures.Path(fixture);
        foreach (string file in files) File.Copy(Path.Combine(source, file), Path.Combine(directory, file));
        if (field != null)
        {
            var config = JsonNode.Parse(File.ReadAllText(Path.Combine(directory, "config.json")))!.AsObject();
            config[field] = value;
            File.WriteAllText(Path.Combine(directory, "config.json"), config.ToJsonString());
        }
        return directory;
    }

    /// <summary>tiny-gqa (1000 ids) with the demo model's tokenizer (4096 pieces).</summary>
    private string MismatchedTokenizer()
    {
        string directory = Copy("tiny-gqa", "mismatch", ["config.json", "model.safetensors"]);
        File.Copy(Path.Combine(Generation.DemoModel.Directory, "tokenizer.model"), Path.Combine(directory, "tokenizer.model"));
        return directory;
    }

    public static TheoryData<string[]> CommandsThatReadATokenizer => new()
    {
        new[] { "run", "The jury said", "--max-tokens", "4" },
        new[] { "chat" },
        new[] { "info" },
        new[] { "tokenize" },
    };

    [Theory]
    [MemberData(nameof(CommandsThatReadATokenizer))]
    public void ATokenizerThatIsNotTheConfigsVocabularyIsRefused(string[] command)
    {
        string directory = MismatchedTokenizer();

        var run = CliProcess.Piped("hello\n", [.. command, "--model", directory]);

        CliAssert.BadInput(run, Path.Combine(directory, "tokenizer.model"), "4096 pieces", "vocab_size is 1000");
    }

    [Fact]
    public void CheckpointLayersTheConfigDoesNotUseAreAWarning()
    {
        // The demo checkpoint holds 6 layers of 11 tensors; a config of 4 leaves layers 4 and 5.
        string directory = Copy("demo", "fewer-layers", ["config.json", "model.safetensors", "tokenizer.model"], "num_hidden_layers", 4);
        string warning = $"warning: {directory}: layers 4–5 (22 tensors) unused: the config has num_hidden_layers 4";

        var run = CliProcess.Run("run", "The jury said", "--model", directory, "--max-tokens", "2", "--greedy", "--no-stats");
        var info = CliProcess.Run("info", "--model", directory);

        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Equal([warning], run.StderrLines);
        Assert.True(info.ExitCode == 0, info.ToString());
        Assert.Equal([warning], info.StderrLines);
    }

    [Fact]
    public void ASyntheticModelTooLargeForMemoryIsRefusedBeforeItIsMade()
    {
        string directory = Copy("tiny-gqa", "billion-layers", ["config.json"], "num_hidden_layers", 1_000_000_000);

        var run = CliProcess.Run("logits", "--config", Path.Combine(directory, "config.json"), "--synthetic", "--tokens", "2", "--out", Path.Combine(directory, "logits.safetensors"));

        CliAssert.BadInput(run, "synthetic weights: the model needs", "GB is available", "--quant bf16, q8_0 or q4_0", "--context N");
    }

    [Fact]
    public void ACheckpointTooLargeForMemoryIsRefusedByRunAndReportedByInfo()
    {
        // The config asks for a billion layers: more memory than any machine, whatever the checkpoint holds.
        string directory = Copy("demo", "too-large", ["config.json", "model.safetensors", "tokenizer.model"], "num_hidden_layers", 1_000_000_000);

        var run = CliProcess.Run("run", "The jury said", "--model", directory, "--max-tokens", "2");
        var info = CliProcess.Run("info", "--model", directory);

        CliAssert.BadInput(run, $"{directory}: the model needs", "GB is available", "--quant");
        Assert.True(info.ExitCode == 0, info.ToString());
        Assert.Matches(@"available +[\d.]+ GiB", info.Stdout);
        string warning = Assert.Single(info.StderrLines);
        Assert.StartsWith($"warning: {directory}: the model needs ", warning);
        Assert.Contains("--quant", warning);
    }

    [SkippableFact]
    public void ANamedPipeForConfigJsonIsAnErrorNotAHang()
    {
        Skip.IfNot(OperatingSystem.IsLinux(), "the file type is read with Linux's statx (Linux only)");
        string directory = Copy("tiny-gqa", "fifo-config", ["model.safetensors"]);
        SpecialFiles.MakeFifo(Path.Combine(directory, "config.json"));

        CliAssert.BadInput(CliProcess.Run("info", "--model", directory), Path.Combine(directory, "config.json"), "is a named pipe (FIFO), not a regular file");
    }

    [SkippableFact]
    public void ANamedPipeForTokenizerModelIsAnErrorNotAHang()
    {
        Skip.IfNot(OperatingSystem.IsLinux(), "the file type is read with Linux's statx (Linux only)");
        string directory = _temp.NewDirectory("fifo-tokenizer");
        SpecialFiles.MakeFifo(Path.Combine(directory, "tokenizer.model"));

        CliAssert.BadInput(CliProcess.Piped("hello", "tokenize", "--model", directory), Path.Combine(directory, "tokenizer.model"), "is a named pipe (FIFO)");
    }
}
