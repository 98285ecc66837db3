using GemmaGen.Kernels;
using Xunit;

namespace GemmaGen.Tests.Host;

public sealed class CheckpointTests : IDisposable
{
    private readonly TempDirectory _temp = new();

    public void Dispose() => _temp.Dispose();

    [Fact]
    public void OpensASingleFileCheckpoint()
    {
        using var checkpoint = Checkpoint.Open(Fixtures.Path("tiny-gqa"));
        Assert.Equal(1000, checkpoint.Config.VocabSize);
        Assert.Equal(4, checkpoint.Config.NumHiddenLayers);
        Assert.Single(checkpoint.Files);
        Assert.Equal(2 + 4 * 11, checkpoint.TensorNames.Count());
        Assert.True(checkpoint.TryGetTensor("model.embed_tokens.weight", out var embed));
        Assert.Equal([1000L, 64L], embed.Shape);
        Assert.False(checkpoint.TryGetTensor("lm_head.weight", out _));
    }

    [Fact]
    public void LoadsShardsLikeTheSingleFile()
    {
        string sharded = _temp.Directory("sharded");
        File.Copy(Fixtures.Path("tiny-gqa", "config.json"), Path.Combine(sharded, "config.json"));
        using (var single = SafetensorsFile.Open(Fixtures.Path("tiny-gqa", "model.safetensors")))
        {
            var shards = new[] { new SafetensorsWriter(), new SafetensorsWriter() };
            var weightMap = new List<string>();
            for (int i = 0; i < single.Tensors.Count; i++)
            {
                var tensor = single.Tensors[i];
                int shard = i < single.Tensors.Count / 2 ? 0 : 1;
                shards[shard].Add(tensor.Name, tensor.DType, single.GetBytes(tensor.Name).ToArray(), [.. tensor.Shape]);
                weightMap.Add($"\"{tensor.Name}\": \"model-0000{shard + 1}-of-00002.safetensors\"");
            }
            shards[0].Save(Path.Combine(sharded, "model-00001-of-00002.safetensors"));
            shards[1].Save(Path.Combine(sharded, "model-00002-of-00002.safetensors"));
            File.WriteAllText(Path.Combine(sharded, Checkpoint.IndexFileName),
                $"{{\"metadata\": {{\"total_size\": {single.BufferLength}}}, \"weight_map\": {{{string.Join(", ", weightMap)}}}}}");
        }

        using var expectedCheckpoint = Checkpoint.Open(Fixtures.Path("tiny-gqa"));
        using var actualCheckpoint = Checkpoint.Open(sharded);
        Assert.Equal(2, actualCheckpoint.Files.Count);
        Assert.Equal(expectedCheckpoint.Config, actualCheckpoint.Config);
        Assert.Equal(expectedCheckpoint.TensorNames.Order(), actualCheckpoint.TensorNames.Order());
        using var expected = ModelWeights.Load(expectedCheckpoint.Config, expectedCheckpoint);
        using var actual = ModelWeights.Load(actualCheckpoint.Config, actualCheckpoint);
        WeightAssert.Equal(expected, actual, v => v);
    }

    [Fact]
    public void RefusesAMissingShard()
    {
        string dir = _temp.Directory("missing-shard");
        File.Copy(Fixtures.Path("tiny-gqa", "config.json"), Path.Combine(dir, "config.json"));
        new SafetensorsWriter().AddF32("model.norm.weight", new float[64], 64).Save(Path.Combine(dir, "model-00001-of-00002.safetensors"));
        File.WriteAllText(Path.Combine(dir, Checkpoint.IndexFileName), """
            {"metadata": {}, "weight_map": {
              "model.norm.weight": "model-00001-of-00002.safetensors",
              "model.embed_tokens.weight": "model-00002-of-00002.safetensors"}}
            """);
        var e = Assert.Throws<CheckpointException>(() => Checkpoint.Open(dir));
        Assert.Contains(Checkpoint.IndexFileName, e.Message);
        Assert.Contains("shard 'model-00002-of-00002.safetensors'", e.Message);
        Assert.Contains("does not exist", e.Message);
    }

    [Fact]
    public void RefusesAnIndexEntryWhoseShardLacksTheTensor()
    {
        string dir = _temp.Directory("wrong-shard");
        File.Copy(Fixtures.Path("tiny-gqa", "config.json"), Path.Combine(dir, "config.json"));
        new SafetensorsWriter().AddF32("model.norm.weight", new float[64], 64).Save(Path.Combine(dir, "shard.safetensors"));
        File.WriteAllText(Path.Combine(dir, Checkpoint.IndexFileName), """{"weight_map": {"model.embed_tokens.weight": "shard.safetensors"}}""");
        var e = Assert.Throws<CheckpointException>(() => Checkpoint.Open(dir));
        Assert.Contains("tensor 'model.embed_tokens.weight'", e.Message);
        Assert.Contains("shard.safetensors has no such tensor", e.Message);
    }

    [Theory]
    [InlineData("[1]")]
    [InlineData("""{"metadata": {}}""")]
    [InlineData("""{"weight_map": {"model.norm.weight": "../elsewhere.safetensors"}}""")]
    [InlineData("""{"weight_map": {"model.norm.weight": 3}}""")]
    [InlineData("""{"weight_map": {}}""")]
    [InlineData("""{"weight_map": """)]
    public void RefusesAMalformedIndex(string index)
    {
        string dir = _temp.Directory("bad-index");
        File.Copy(Fixtures.Path("tiny-gqa", "config.json"), Path.Combine(dir, "config.json"));
        File.WriteAllText(Path.Combine(dir, Checkpoint.IndexFileName), index);
        var e = Assert.Throws<CheckpointException>(() => Checkpoint.Open(dir));
        Assert.StartsWith(Path.Combine(dir, Checkpoint.IndexFileName) + ": ", e.Message);
    }

    [Fact]
    public void RefusesAMissingDirectory()
    {
        string dir = _temp.File("nowhere");
        var e = Assert.Throws<CheckpointException>(() => Checkpoint.Open(dir));
        Assert.Equal($"{dir}: checkpoint directory does not exist", e.Message);
    }

    [Fact]
    public void RefusesAFileGivenAsTheDirectory()
    {
        string file = Fixtures.Path("tiny-gqa", "config.json");
        var e = Assert.Throws<CheckpointException>(() => Checkpoint.Open(file));
        Assert.StartsWith($"{file}: is a file; expected a checkpoint directory", e.Message);
    }

    [Fact]
    public void RefusesADirectoryWithoutConfig()
    {
        string dir = _temp.Directory("no-config");
        File.Copy(Fixtures.Path("tiny-gqa", "model.safetensors"), Path.Combine(dir, "model.safetensors"));
        var e = Assert.Throws<CheckpointException>(() => Checkpoint.Open(dir));
        Assert.StartsWith($"{dir}: no config.json", e.Message);
    }

    [Fact]
    public void RefusesADirectoryWithoutWeights()
    {
        string dir = _temp.Directory("no-weights");
        File.Copy(Fixtures.Path("tiny-gqa", "config.json"), Path.Combine(dir, "config.json"));
        var e = Assert.Throws<CheckpointException>(() => Checkpoint.Open(dir));
        Assert.StartsWith($"{dir}: no model.safetensors or model.safetensors.index.json", e.Message);
    }

    [Fact]
    public void RefusesAnInvalidConfigWithItsPosition()
    {
        string dir = _temp.Directory("bad-config");
        File.WriteAllText(Path.Combine(dir, "config.json"), "{\n  \"model_type\": \"gemma2\",\n  \"hidden_size\": \n}");
        File.Copy(Fixtures.Path("tiny-gqa", "model.safetensors"), Path.Combine(dir, "model.safetensors"));
        var e = Assert.Throws<CheckpointException>(() => Checkpoint.Open(dir));
        Assert.Matches(@"^" + System.Text.RegularExpressions.Regex.Escape(Path.Combine(dir, "config.json")) + @"\(\d+,\d+\): GEMMAGEN\d{3}: .+", e.Message);
    }

    [Fact]
    public void RefusesAMissingTensorNamingIt()
    {
        string dir = CopyTinyGqa("missing-tensor", t => t.Name == "model.layers.2.mlp.up_proj.weight" ? null : [.. t.Shape]);
        using var checkpoint = Checkpoint.Open(dir);
        var e = Assert.Throws<WeightLoadException>(() => ModelWeights.Load(checkpoint.Config, checkpoint).Dispose());
        Assert.Contains("'model.layers.2.mlp.up_proj.weight' is missing", e.Message);
        Assert.Contains("[192, 64]", e.Message);
    }

    [Fact]
    public void RefusesAMisshapenTensorNamingIt()
    {
        string dir = CopyTinyGqa("misshapen", t => t.Name == "model.layers.1.self_attn.k_proj.weight" ? [64, 32] : [.. t.Shape]);
        using var checkpoint = Checkpoint.Open(dir);
        var e = Assert.Throws<WeightLoadException>(() => ModelWeights.Load(checkpoint.Config, checkpoint).Dispose());
        Assert.Contains("'model.layers.1.self_attn.k_proj.weight' has shape [64, 32], expected [32, 64]", e.Message);
        Assert.Contains(Path.Combine(dir, "model.safetensors"), e.Message);
    }

    [Fact]
    public void LoadsF16WeightsWithinF16Rounding()
    {
        string dir = _temp.Directory("f16");
        File.Copy(Fixtures.Path("tiny-gqa", "config.json"), Path.Combine(dir, "config.json"));
        using (var single = SafetensorsFile.Open(Fixtures.Path("tiny-gqa", "model.safetensors")))
        {
            var writer = new SafetensorsWriter();
            foreach (var tensor in single.Tensors)
            {
                var halves = single.GetF32(tensor.Name).ToArray().Select(v => (Half)v).ToArray();
                writer.Add(tensor.Name, SafetensorsDType.F16, halves, [.. tensor.Shape]);
            }
            writer.Save(Path.Combine(dir, "model.safetensors"));
        }

        using var f32 = Checkpoint.Open(Fixtures.Path("tiny-gqa"));
        using var f16 = Checkpoint.Open(dir);
        Assert.True(f16.TryGetTensor("model.norm.weight", out var norm));
        Assert.Equal(TensorDType.F16, norm.DType);
        using var expected = ModelWeights.Load(f32.Config, f32);
        using var actual = ModelWeights.Load(f16.Config, f16);
        WeightAssert.Equal(expected, actual, v => (float)(Half)v, norms: false);
        // A norm is held as 1 + w: the F16 file rounds w, and the 1 is added to the rounded value.
        float[] Held(string name)
        {
            Assert.True(f32.TryGetTensor(name, out var t));
            var w = new float[t.Shape[0]];
            t.ReadFloats(0, w);
            return w.Select(v => 1f + (float)(Half)v).ToArray();
        }
        Assert.Equal(Held(CheckpointNames.FinalNorm), actual.FinalNorm);
        for (int l = 0; l < actual.Layers.Length; l++)
        {
            var n = CheckpointNames.Layer(l);
            var a = actual.Layers[l];
            Assert.Equal(Held(n.InputNorm), a.InputNorm);
            Assert.Equal(Held(n.PostAttentionNorm), a.PostAttentionNorm);
            Assert.Equal(Held(n.PreFeedforwardNorm), a.PreFeedforwardNorm);
            Assert.Equal(Held(n.PostFeedforwardNorm), a.PostFeedforwardNorm);
        }
    }

    /// <summary>A copy of tiny-gqa whose tensors get the shape <paramref name="shape"/> gives (same bytes), or are
    /// left out where it gives null.</summary>
    private string CopyTinyGqa(string name, Func<SafetensorsTensor, long[]?> shape)
    {
        string dir = _temp.Directory(name);
        File.Copy(Fixtures.Path("tiny-gqa", "config.json"), Path.Combine(dir, "config.json"));
        using var single = SafetensorsFile.Open(Fixtures.Path("tiny-gqa", "model.safetensors"));
        var writer = new SafetensorsWriter();
        foreach (var tensor in single.Tensors)
        {
            if (shape(tensor) is { } newShape)
                writer.Add(tensor.Name, tensor.DType, single.GetBytes(tensor.Name).ToArray(), newShape);
        }
        writer.Save(Path.Combine(dir, "model.safetensors"));
        return dir;
    }
}
