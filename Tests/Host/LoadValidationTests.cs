using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json.Nodes;
using GemmaGen.Specs;
using Xunit;

namespace GemmaGen.Tests.Host;

/// <summary>What loading checks before it allocates: the tokenizer against vocab_size, the memory needed, layers
/// the config leaves unused, files that are not regular files or not UTF-8.</summary>
public sealed class LoadValidationTests : IDisposable
{
    private readonly TempDirectory _temp = new();

    public void Dispose() => _temp.Dispose();

    /// <summary>A copy of a fixture folder's files, with <paramref name="edit"/> applied to its config.json.</summary>
    private string Copy(string name, string fixtureDirectory, Action<JsonObject>? edit = null)
    {
        string directory = _temp.Directory(name);
        foreach (string file in Directory.GetFiles(fixtureDirectory))
        {
            if (Path.GetFileName(file) is "config.json" or "model.safetensors" or "tokenizer.model")
                File.Copy(file, Path.Combine(directory, Path.GetFileName(file)));
        }
        if (edit != null)
        {
            var config = JsonNode.Parse(File.ReadAllText(Path.Combine(directory, "config.json")))!.AsObject();
            edit(config);
            File.WriteAllText(Path.Combine(directory, "config.json"), config.ToJsonString());
        }
        return directory;
    }

    private static Gemma2Config TinyGqaConfig(Action<JsonObject> edit)
    {
        var config = JsonNode.Parse(File.ReadAllText(Fixtures.Path("tiny-gqa", "config.json")))!.AsObject();
        edit(config);
        var result = SpecParser.Parse(config.ToJsonString());
        Assert.Empty(result.Errors);
        return result.Config!;
    }

    [Fact]
    public void ATokenizerLargerThanTheVocabularyIsRefusedAtLoad()
    {
        // tiny-gqa's weights and config agree on 1000 ids; the demo tokenizer has 4096 pieces.
        string directory = Copy("larger-tokenizer", Fixtures.Path("tiny-gqa"));
        File.Copy(Path.Combine(Generation.DemoModel.Directory, "tokenizer.model"), Path.Combine(directory, "tokenizer.model"));

        var e = Assert.Throws<TokenizerException>(() => GemmaModel.Load(directory));

        Assert.Equal(
            $"{Path.Combine(directory, "tokenizer.model")}: the tokenizer has 4096 pieces, but the config's vocab_size is 1000; " +
            "a model runs only with its own tokenizer, whose pieces are its vocabulary", e.Message);
    }

    [Fact]
    public void AVocabularyLargerThanTheTokenizerIsRefusedAtLoad()
    {
        // Weights of 5000 ids (consistent with the config) and a tokenizer of 4096: ids 4096 to 4999 could be
        // sampled but not decoded.
        var config = TinyGqaConfig(c => c["vocab_size"] = 5000);
        using var weights = new SyntheticWeights(config);
        var tokenizer = GemmaTokenizer.Load(Path.Combine(Generation.DemoModel.Directory, "tokenizer.model"));

        var e = Assert.Throws<TokenizerException>(() => GemmaModel.Load(config, weights, tokenizer: tokenizer));

        Assert.Contains("tokenizer.model: the tokenizer has 4096 pieces, but the config's vocab_size is 5000", e.Message);
    }

    [Fact]
    public void AConfigWithABillionLayersIsRefusedBeforeAnythingIsAllocated()
    {
        string config = Path.Combine(Copy("billion-layers", Fixtures.Path("tiny-gqa"), c => c["num_hidden_layers"] = 1_000_000_000), "config.json");

        var e = Assert.Throws<CheckpointException>(() => GemmaModel.LoadSynthetic(config));

        Assert.StartsWith("synthetic weights: the model needs ", e.Message);
        Assert.Matches(@"needs [\d,]+\.\d GB of memory \(weights [\d,]+\.\d GB as F32, KV cache [\d,]+\.\d GB for 512 positions, buffers [\d,]+\.\d GB\), but [\d,]+\.\d GB is available", e.Message);
        Assert.Contains("--quant bf16, q8_0 or q4_0", e.Message);
        Assert.Contains("--context N", e.Message);
    }

    [Fact]
    public void APlanRefusesWhatExceedsTheMemoryAvailableAndNamesBothFigures()
    {
        // tiny-gqa in F32: the 1000 × 64 embedding, and 4 layers of q/k/v [128, 64], o [64, 64], gate/up [384, 64],
        // down [64, 192]: 4 × (256,000 + 4 × 49,152) = 1,042,432 bytes.
        var config = TinyGqaConfig(_ => { });
        using var checkpoint = Checkpoint.Open(Fixtures.Path("tiny-gqa"));

        var plan = LoadPlan.Create(config, checkpoint, new GemmaModelOptions { MaxContext = 16 }, available: 1_000_000);

        Assert.Equal(1_042_432, plan.WeightBytes);
        Assert.True(plan.RequiredBytes > plan.WeightBytes + plan.KvCacheBytes);
        Assert.Equal(1_000_000, plan.AvailableBytes);
        var e = Assert.Throws<CheckpointException>(plan.RequireMemory);
        Assert.StartsWith($"{Fixtures.Path("tiny-gqa")}: the model needs 0.0 GB of memory (weights 0.0 GB as F32, KV cache 0.0 GB for 16 positions", e.Message);
        Assert.Contains("but 0.0 GB is available", e.Message);
        Assert.Null(LoadPlan.Create(config, checkpoint, new GemmaModelOptions { MaxContext = 16 }, available: 1_000_000_000).MemoryShortfall);
    }

    [Fact]
    public void AnAbsurdContextIsSizedWithoutOverflow()
    {
        var config = TinyGqaConfig(c =>
        {
            c["num_hidden_layers"] = int.MaxValue;
            c["num_key_value_heads"] = 1024;
            c["num_attention_heads"] = 1024;
            c["head_dim"] = 1024;
            c["max_position_embeddings"] = int.MaxValue;
        });
        using var weights = new SyntheticWeights(config);

        var plan = LoadPlan.Create(config, weights, new GemmaModelOptions { MaxContext = int.MaxValue }, available: 1L << 40);

        Assert.Equal(long.MaxValue, plan.KvCacheBytes);
        Assert.Equal(long.MaxValue, plan.RequiredBytes);
        Assert.Throws<CheckpointException>(plan.RequireMemory);
    }

    [Fact]
    public void LayersBeyondTheConfigAreAWarningNamingThem()
    {
        // tiny-gqa holds 4 layers of 11 tensors; a config of 2 leaves layers 2 and 3 unused.
        string directory = Copy("fewer-layers", Fixtures.Path("tiny-gqa"), c => c["num_hidden_layers"] = 2);

        using var model = GemmaModel.Load(directory);

        Assert.Equal([$"{directory}: layers 2–3 (22 tensors) unused: the config has num_hidden_layers 2"], model.Warnings);
    }

    [Fact]
    public void ACheckpointWithExactlyTheConfigsLayersHasNoWarnings()
    {
        using var model = GemmaModel.Load(Fixtures.Path("tiny-gqa"));

        Assert.Empty(model.Warnings);
    }

    [Fact]
    public void InvalidUtf8InConfigJsonIsRefusedWithItsByteOffset()
    {
        string directory = Copy("bad-utf8-config", Fixtures.Path("tiny-gqa"));
        string path = Path.Combine(directory, "config.json");
        byte[] text = Encoding.UTF8.GetBytes("{\"note\": \"x\",\n" + File.ReadAllText(path).TrimStart('{'));
        text[10] = 0xFF; // the x
        File.WriteAllBytes(path, text);

        var e = Assert.Throws<CheckpointException>(() => GemmaModel.Load(directory));

        Assert.Equal($"{path}: invalid UTF-8 at byte offset 10 (byte 0xFF); the file must be UTF-8 text", e.Message);
    }

    [Fact]
    public void InvalidUtf8InASafetensorsHeaderIsRefusedWithItsByteOffset()
    {
        string path = _temp.File("bad-name.safetensors");
        RawSafetensors.Write(path, "{\"w\u00E9\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}", 4);
        byte[] bytes = File.ReadAllBytes(path);
        // Encoding.UTF8 wrote é as C3 A9; a lone C3 followed by '"' is not UTF-8.
        Assert.Equal(0xC3, bytes[8 + 3]);
        bytes[8 + 4] = (byte)'x';
        File.WriteAllBytes(path, bytes);

        var e = Assert.Throws<CheckpointException>(() => SafetensorsFile.Open(path));

        Assert.Equal($"{path}: invalid UTF-8 at byte offset 11 (byte 0xC3); the file must be UTF-8 text", e.Message);
    }

    [Fact]
    public void InvalidUtf8InAShardIndexIsRefusedWithItsByteOffset()
    {
        string directory = _temp.Directory("bad-index");
        File.Copy(Fixtures.Path("tiny-gqa", "config.json"), Path.Combine(directory, "config.json"));
        string index = Path.Combine(directory, "model.safetensors.index.json");
        byte[] text = Encoding.UTF8.GetBytes("{\"weight_map\": {\"x\": \"model-1.safetensors\"}}");
        text[17] = 0x80; // the x: a continuation byte with nothing before it
        File.WriteAllBytes(index, text);

        var e = Assert.Throws<CheckpointException>(() => Checkpoint.Open(directory));

        Assert.Equal($"{index}: invalid UTF-8 at byte offset 17 (byte 0x80); the file must be UTF-8 text", e.Message);
    }

    [SkippableTheory]
    [InlineData("config.json")]
    [InlineData("model.safetensors")]
    [InlineData("model.safetensors.index.json")]
    public void ANamedPipeInPlaceOfACheckpointFileIsRefusedNotOpened(string file)
    {
        Skip.IfNot(OperatingSystem.IsLinux(), "the file type is read with Linux's statx (Linux only)");
        string directory = _temp.Directory("fifo");
        foreach (string fixture in new[] { "config.json", "model.safetensors" })
        {
            if (fixture != file) File.Copy(Fixtures.Path("tiny-gqa", fixture), Path.Combine(directory, fixture));
        }
        if (file.EndsWith("index.json", StringComparison.Ordinal)) File.Delete(Path.Combine(directory, "model.safetensors"));
        string path = Path.Combine(directory, file);
        MakeFifo(path);

        var e = Assert.Throws<CheckpointException>(() => GemmaModel.Load(directory));

        Assert.StartsWith($"{path}: is a named pipe (FIFO), not a regular file", e.Message);
    }

    [SkippableFact]
    public void ATokenizerThatLinksToACharacterDeviceIsRefusedNotRead()
    {
        Skip.IfNot(OperatingSystem.IsLinux(), "the file type is read with Linux's statx (Linux only)");
        string directory = Copy("zero-tokenizer", Fixtures.Path("tiny-gqa"));
        string path = Path.Combine(directory, "tokenizer.model");
        File.CreateSymbolicLink(path, "/dev/zero");

        var e = Assert.Throws<TokenizerException>(() => GemmaModel.Load(directory));

        Assert.StartsWith($"{path}: is a character device, not a regular file", e.Message);
    }

    private static void MakeFifo(string path) => SpecialFiles.MakeFifo(path);
}

/// <summary>Special files in place of checkpoint files.</summary>
internal static partial class SpecialFiles
{
    /// <summary>Creates a named pipe (Linux).</summary>
    public static void MakeFifo(string path)
    {
        Assert.True(Mkfifo(path, Convert.ToUInt32("600", 8)) == 0, $"mkfifo {path} failed: errno {Marshal.GetLastPInvokeError()}");
    }

    [LibraryImport("libc", EntryPoint = "mkfifo", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int Mkfifo(string path, uint mode);
}
