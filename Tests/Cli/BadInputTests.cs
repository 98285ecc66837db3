using System.Text.Json.Nodes;
using GemmaGen.Tests.Host;

namespace GemmaGen.Tests.Cli;

public static class CliAssert
{
    /// <summary>Exit code 2, nothing on stdout, exactly one <c>error:</c> line on stderr containing every fragment,
    /// no stack trace.</summary>
    public static void BadInput(CliRun run, params string[] fragments)
    {
        Assert.True(run.ExitCode == 2, $"expected exit code 2\n{run}");
        Assert.True(run.Stdout == "", $"expected nothing on stdout\n{run}");
        string line = Assert.Single(run.StderrLines);
        Assert.StartsWith("error: ", line);
        Assert.DoesNotContain("   at ", run.Stderr);
        Assert.DoesNotContain("Exception", run.Stderr);
        foreach (string fragment in fragments) Assert.True(line.Contains(fragment), $"'{fragment}' is not in: {line}");
    }
}

/// <summary>Bad input to the real process: exit code 2, one line naming the file and the problem, no stack trace.</summary>
public sealed class BadInputTests : IDisposable
{
    private readonly ScratchDirectory _temp = new();

    public void Dispose() => _temp.Dispose();

    private static CliRun Run(string model) => CliProcess.Run("run", "The jury said", "--model", model, "--max-tokens", "4");

    /// <summary>A copy of tiny-gqa's config.json with one field changed.</summary>
    private string TinyGqaWithConfig(string name, string field, int value)
    {
        string directory = _temp.CopyOf("tiny-gqa", name, "model.safetensors");
        var config = JsonNode.Parse(File.ReadAllText(CliFixtures.Path("tiny-gqa", "config.json")))!.AsObject();
        config[field] = value;
        File.WriteAllText(Path.Combine(directory, "config.json"), config.ToJsonString());
        return directory;
    }

    /// <summary>tiny-gqa's config.json and a hand-made model.safetensors.</summary>
    private string WithSafetensors(string name, string header, int dataBytes, ulong? declaredLength = null)
    {
        string directory = _temp.CopyOf("tiny-gqa", name, "config.json");
        RawSafetensors.Write(Path.Combine(directory, "model.safetensors"), header, dataBytes, declaredLength);
        return directory;
    }

    [Fact]
    public void MissingModelDirectory()
    {
        string missing = Path.Combine(_temp.Root, "no-such-model");
        CliAssert.BadInput(Run(missing), missing, "does not exist");
    }

    [Fact]
    public void MissingConfig()
    {
        string directory = _temp.CopyOf("tiny-gqa", "no-config", "model.safetensors");
        CliAssert.BadInput(Run(directory), directory, "no config.json");
    }

    [Fact]
    public void MissingTokenizerForRun()
    {
        string directory = _temp.NewDirectory("no-tokenizer");
        foreach (string file in new[] { "config.json", "model.safetensors" })
            File.Copy(Path.Combine(Generation.DemoModel.Directory, file), Path.Combine(directory, file));
        CliAssert.BadInput(Run(directory), Path.Combine(directory, "tokenizer.model"), "not found");
    }

    [Fact]
    public void MissingTokenizerForChat()
    {
        string directory = _temp.CopyOf("tiny-gqa", "no-tokenizer", "config.json", "model.safetensors");
        CliAssert.BadInput(CliProcess.Piped("hello\n", "chat", "--model", directory), Path.Combine(directory, "tokenizer.model"), "not found");
    }

    [Fact]
    public void MalformedConfig()
    {
        string directory = _temp.CopyOf("tiny-gqa", "bad-config", "model.safetensors");
        string config = Path.Combine(directory, "config.json");
        File.WriteAllText(config, "{ \"model_type\": ");
        CliAssert.BadInput(Run(directory), config + "(", "GEMMAGEN001");
    }

    [Fact]
    public void ConfigWithAnInvalidValue()
    {
        string directory = TinyGqaWithConfig("bad-value", "num_key_value_heads", 3);
        CliAssert.BadInput(Run(directory), Path.Combine(directory, "config.json"), "GEMMAGEN005");
    }

    [Fact]
    public void TruncatedSafetensors()
    {
        string directory = _temp.CopyOf("tiny-gqa", "truncated", "config.json");
        byte[] whole = File.ReadAllBytes(CliFixtures.Path("tiny-gqa", "model.safetensors"));
        string path = Path.Combine(directory, "model.safetensors");
        File.WriteAllBytes(path, whole[..(whole.Length / 2)]);
        CliAssert.BadInput(Run(directory), path, "past the end");
    }

    [Fact]
    public void SafetensorsShorterThanItsHeaderLength()
    {
        string directory = _temp.CopyOf("tiny-gqa", "tiny", "config.json");
        string path = Path.Combine(directory, "model.safetensors");
        File.WriteAllBytes(path, [1, 2, 3]);
        CliAssert.BadInput(Run(directory), path, "shorter than");
    }

    [Fact]
    public void HeaderLengthPastTheEnd()
    {
        string directory = WithSafetensors("long-header", "{}", 0, declaredLength: 4096);
        CliAssert.BadInput(Run(directory), Path.Combine(directory, "model.safetensors"), "header length 4096 runs past the end");
    }

    [Fact]
    public void HeaderNotJson()
    {
        string directory = WithSafetensors("not-json", "{ this is not json", 16);
        CliAssert.BadInput(Run(directory), Path.Combine(directory, "model.safetensors"), "header is not valid JSON");
    }

    [Fact]
    public void UnknownDType()
    {
        string directory = WithSafetensors("dtype", """{"model.norm.weight":{"dtype":"Q4","shape":[64],"data_offsets":[0,32]}}""", 32);
        CliAssert.BadInput(Run(directory), Path.Combine(directory, "model.safetensors"), "model.norm.weight", "unknown dtype 'Q4'");
    }

    [Fact]
    public void SizeMismatch()
    {
        string directory = WithSafetensors("size", """{"model.norm.weight":{"dtype":"F32","shape":[64],"data_offsets":[0,128]}}""", 128);
        CliAssert.BadInput(Run(directory), Path.Combine(directory, "model.safetensors"), "model.norm.weight", "128 bytes", "256 bytes");
    }

    [Fact]
    public void IndexNamingAMissingShard()
    {
        string directory = _temp.CopyOf("tiny-gqa", "sharded", "config.json");
        string index = Path.Combine(directory, "model.safetensors.index.json");
        File.WriteAllText(index, """{"metadata":{},"weight_map":{"model.embed_tokens.weight":"model-00001-of-00002.safetensors"}}""");
        CliAssert.BadInput(Run(directory), index, "model-00001-of-00002.safetensors", "does not exist");
    }

    [Fact]
    public void TensorMissing()
    {
        // Five layers in the config, four in the file.
        string directory = TinyGqaWithConfig("five-layers", "num_hidden_layers", 5);
        CliAssert.BadInput(Run(directory), "model.layers.4.", "is missing");
    }

    [Fact]
    public void TensorMisshapen()
    {
        // The file's MLP is 192 wide.
        string directory = TinyGqaWithConfig("narrow-mlp", "intermediate_size", 128);
        CliAssert.BadInput(Run(directory), Path.Combine(directory, "model.safetensors"), "model.layers.0.mlp.", "has shape", "expected [");
    }

    [Theory]
    [InlineData("--temperature", "-1")]
    [InlineData("--temperature", "NaN")]
    [InlineData("--top-p", "0")]
    [InlineData("--top-p", "1.5")]
    [InlineData("--min-p", "1")]
    [InlineData("--top-k", "-2")]
    [InlineData("--repeat-penalty", "0")]
    [InlineData("--max-tokens", "0")]
    public void InvalidSamplingValues(string option, string value)
    {
        CliAssert.BadInput(CliProcess.Run("run", "The jury said", option, value), option, value == "NaN" ? "NaN" : value);
        CliAssert.BadInput(CliProcess.Piped("hello\n", "chat", option, value), option);
    }

    [Fact]
    public void SystemWithoutChat() =>
        CliAssert.BadInput(CliProcess.Run("run", "The jury said", "--system", "Be brief."), "--system", "--chat");

    [Fact]
    public void UnparsableValue() =>
        CliAssert.BadInput(CliProcess.Run("run", "The jury said", "--max-tokens", "many"), "many");

    [Fact]
    public void TokenizeJsonlWithANonJsonLine()
    {
        var run = CliProcess.Piped("\"fine\"\nnot json\n", "tokenize", "--jsonl");
        // The first line was tokenized before the bad one was read.
        Assert.Equal(2, run.ExitCode);
        string line = Assert.Single(run.StderrLines);
        Assert.StartsWith("error: ", line);
        Assert.Contains("stdin line 2", line);
        Assert.Contains("JSON string", line);
        Assert.DoesNotContain("   at ", run.Stderr);
    }

    [Fact]
    public void TokenizeWithoutATokenizer()
    {
        string directory = _temp.CopyOf("tiny-gqa", "no-tokenizer", "config.json");
        CliAssert.BadInput(CliProcess.Piped("hi", "tokenize", "--model", directory), Path.Combine(directory, "tokenizer.model"));
    }

    [Fact]
    public void InfoOnAMissingDirectory()
    {
        string missing = Path.Combine(_temp.Root, "nothing-here");
        CliAssert.BadInput(CliProcess.Run("info", "--model", missing), missing, "does not exist");
    }
}
