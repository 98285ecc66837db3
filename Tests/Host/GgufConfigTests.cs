using GemmaGen.Kernels;
using Xunit;

namespace GemmaGen.Tests.Host;

/// <summary>
/// The config of a GGUF file, derived from its <c>gemma2.*</c> keys by the conventions of the fixtures README: the
/// demo files give the demo's own config.json; absent keys take llama.cpp's defaults; query_pre_attn_scalar follows
/// block_count; bad metadata is refused naming the file and the key; any layer count loads.
/// </summary>
public sealed class GgufConfigTests : IDisposable
{
    private readonly TempDirectory _temp = new();

    public void Dispose() => _temp.Dispose();

    public static TheoryData<string> Files() => new(GgufFixtures.Names);

    [Theory]
    [MemberData(nameof(Files))]
    public void EveryFixtureFileDerivesTheDemoConfig(string name)
    {
        // The demo checkpoint's config.json is the config the GGUF files were converted from (fixtures README).
        var expected = Checkpoint.LoadConfig(Path.Combine(AppContext.BaseDirectory, "Fixtures", "gemma2-demo", "config.json"));
        using var file = GgufFile.Open(GgufFixtures.Path(name));
        var config = GgufConfig.Read(file);
        Assert.Equal(expected, config);
        // The engine computes in float32: there the epsilon is exactly the stored float32 key.
        Assert.Equal((float)file.Metadata.GetFloat("gemma2.attention.layer_norm_rms_epsilon"), (float)config.RmsNormEps);
        Assert.Equal(9.99999997e-07f, (float)config.RmsNormEps);
    }

    [Theory]
    [InlineData("gemma-2-2b.json", "Gemma2_2B")]
    [InlineData("gemma-2-9b.json", "Gemma2_9B")]
    [InlineData("gemma-2-27b.json", "Gemma2_27B")]
    public void ThePublishedShapesRunOnTheirCompiledSpecs(string spec, string className)
    {
        // The keys llama.cpp's converter (Gemma2Model.set_gguf_parameters) writes for the published config.json.
        var c = Checkpoint.LoadConfig(GemmaGen.Tests.Generator.RepositoryFiles.Path("Specs", spec));
        var kvs = new List<KeyValuePair<string, GgufValue>>
        {
            new("general.architecture", new GgufValue(GgufValueType.String, "gemma2")),
            new("gemma2.context_length", new GgufValue(GgufValueType.UInt32, (uint)c.MaxPositionEmbeddings)),
            new("gemma2.embedding_length", new GgufValue(GgufValueType.UInt32, (uint)c.HiddenSize)),
            new("gemma2.block_count", new GgufValue(GgufValueType.UInt32, (uint)c.NumHiddenLayers)),
            new("gemma2.feed_forward_length", new GgufValue(GgufValueType.UInt32, (uint)c.IntermediateSize)),
            new("gemma2.attention.head_count", new GgufValue(GgufValueType.UInt32, (uint)c.NumAttentionHeads)),
            new("gemma2.attention.head_count_kv", new GgufValue(GgufValueType.UInt32, (uint)c.NumKeyValueHeads)),
            new("gemma2.attention.layer_norm_rms_epsilon", new GgufValue(GgufValueType.Float32, (float)c.RmsNormEps)),
            new("gemma2.attention.key_length", new GgufValue(GgufValueType.UInt32, (uint)c.HeadDim)),
            new("gemma2.attention.value_length", new GgufValue(GgufValueType.UInt32, (uint)c.HeadDim)),
            new("gemma2.attn_logit_softcapping", new GgufValue(GgufValueType.Float32, (float)c.AttnLogitSoftcapping!.Value)),
            new("gemma2.final_logit_softcapping", new GgufValue(GgufValueType.Float32, (float)c.FinalLogitSoftcapping!.Value)),
            new("gemma2.attention.sliding_window", new GgufValue(GgufValueType.UInt32, (uint)c.SlidingWindow)),
            new("tokenizer.ggml.tokens", GgufRewriter.Array(GgufValueType.String, Enumerable.Range(0, c.VocabSize).Select(i => $"t{i}").ToArray())),
            new("tokenizer.ggml.bos_token_id", new GgufValue(GgufValueType.UInt32, 2u)),
            new("tokenizer.ggml.eos_token_id", new GgufValue(GgufValueType.UInt32, 1u)),
            new("tokenizer.ggml.padding_token_id", new GgufValue(GgufValueType.UInt32, 0u)),
        };
        using var file = GgufFile.Open(GgufRewriter.Write(_temp.File(spec + ".gguf"), kvs));
        var derived = GgufConfig.Read(file);
        Assert.Equal(c.Shape, derived.Shape);
        Assert.Equal(c.VocabSize, derived.VocabSize);
        Assert.Equal(c.NumHiddenLayers, derived.NumHiddenLayers);
        Assert.Equal(className, CompiledModelRegistry.Find(derived.Shape)?.ClassName);
    }

    [Fact]
    public void AbsentKeysTakeLlamaCppDefaults()
    {
        string path = GgufRewriter.Rewrite(GgufFixtures.Path("q4_0"), _temp.File("defaults.gguf"), kvs =>
        {
            foreach (string key in new[]
            {
                "gemma2.attention.head_count_kv", "gemma2.attention.key_length", "gemma2.attention.value_length",
                "gemma2.attention.sliding_window", "gemma2.attn_logit_softcapping", "gemma2.final_logit_softcapping",
            })
                Assert.Equal(1, kvs.RemoveAll(kv => kv.Key == key));
        });
        using var file = GgufFile.Open(path);
        var c = GgufConfig.Read(file);
        Assert.Equal(4, c.NumKeyValueHeads);          // head_count
        Assert.Equal(256 / 4, c.HeadDim);             // embedding_length / head_count
        Assert.Equal(4096, c.SlidingWindow);
        Assert.Equal(50.0, c.AttnLogitSoftcapping);
        Assert.Equal(30.0, c.FinalLogitSoftcapping);
        Assert.Equal(10000.0, c.RopeTheta);           // no rope.freq_base in any fixture
    }

    [Fact]
    public void PresentOptionalKeysAreRead()
    {
        string path = GgufRewriter.Rewrite(GgufFixtures.Path("q4_0"), _temp.File("theta.gguf"), kvs =>
        {
            kvs.Add(new("gemma2.rope.freq_base", new GgufValue(GgufValueType.Float32, 500000f)));
            kvs.Add(new("tokenizer.ggml.eot_token_id", new GgufValue(GgufValueType.UInt32, 5u)));
            Replace(kvs, "gemma2.attention.sliding_window", new GgufValue(GgufValueType.UInt32, 64u));
        });
        using var file = GgufFile.Open(path);
        var c = GgufConfig.Read(file);
        Assert.Equal(500000.0, c.RopeTheta);
        Assert.Equal(64, c.SlidingWindow);
        Assert.Equal([1, 5], c.EosTokenIds.ToArray());
    }

    [Theory]
    [InlineData(6u, 32.0)]   // any count but 46: the head width (key_length)
    [InlineData(26u, 32.0)]  // 2B
    [InlineData(42u, 32.0)]  // 9B
    [InlineData(46u, 64.0)]  // 27B: embedding_length / head_count = 256 / 4
    public void QueryPreAttnScalarFollowsTheBlockCount(uint blockCount, double expected)
    {
        // key_length 32 makes the two rules differ (the demo's own key_length equals embedding_length / head_count).
        string path = GgufRewriter.Rewrite(GgufFixtures.Path("q4_0"), _temp.File($"blocks{blockCount}.gguf"), kvs =>
        {
            Replace(kvs, "gemma2.block_count", new GgufValue(GgufValueType.UInt32, blockCount));
            Replace(kvs, "gemma2.attention.key_length", new GgufValue(GgufValueType.UInt32, 32u));
            Replace(kvs, "gemma2.attention.value_length", new GgufValue(GgufValueType.UInt32, 32u));
        });
        using var file = GgufFile.Open(path);
        var c = GgufConfig.Read(file);
        Assert.Equal(expected, c.QueryPreAttnScalar);
        Assert.Equal((int)blockCount, c.NumHiddenLayers);
    }

    [Fact]
    public void AnotherArchitectureIsRefusedNamingIt()
    {
        string path = GgufRewriter.Rewrite(GgufFixtures.Path("q4_0"), _temp.File("llama.gguf"),
            kvs => Replace(kvs, "general.architecture", new GgufValue(GgufValueType.String, "llama")));
        var e = Assert.Throws<CheckpointException>(() => GemmaModel.Load(path));
        Assert.Contains(path, e.Message);
        Assert.Contains("general.architecture is 'llama'", e.Message);
        Assert.Contains("gemma2", e.Message);
    }

    [Theory]
    [InlineData("gemma2.embedding_length")]
    [InlineData("gemma2.block_count")]
    [InlineData("gemma2.attention.head_count")]
    [InlineData("gemma2.feed_forward_length")]
    [InlineData("gemma2.context_length")]
    [InlineData("gemma2.attention.layer_norm_rms_epsilon")]
    [InlineData("general.architecture")]
    [InlineData("tokenizer.ggml.bos_token_id")]
    public void AMissingRequiredKeyIsRefusedNamingIt(string key)
    {
        string path = GgufRewriter.Rewrite(GgufFixtures.Path("q4_0"), _temp.File("missing.gguf"), kvs => Assert.Equal(1, kvs.RemoveAll(kv => kv.Key == key)));
        var e = Assert.Throws<CheckpointException>(() => GgufCheckpoint.Open(path));
        Assert.Contains(path, e.Message);
        Assert.Contains($"'{key}'", e.Message);
    }

    [Theory]
    [InlineData("gemma2.embedding_length")]
    [InlineData("gemma2.attention.layer_norm_rms_epsilon")]
    [InlineData("gemma2.attn_logit_softcapping")]
    [InlineData("gemma2.attention.sliding_window")]
    public void AnIllTypedKeyIsRefusedNamingIt(string key)
    {
        string path = GgufRewriter.Rewrite(GgufFixtures.Path("q4_0"), _temp.File("typed.gguf"),
            kvs => Replace(kvs, key, new GgufValue(GgufValueType.String, "256")));
        var e = Assert.Throws<CheckpointException>(() => GgufCheckpoint.Open(path));
        Assert.Contains(path, e.Message);
        Assert.Contains($"'{key}'", e.Message);
        Assert.Contains("string", e.Message);
    }

    [Fact]
    public void InvalidValuesAreRefusedByTheConfigRulesNamingTheKey()
    {
        string path = GgufRewriter.Rewrite(GgufFixtures.Path("q4_0"), _temp.File("kv3.gguf"),
            kvs => Replace(kvs, "gemma2.attention.head_count_kv", new GgufValue(GgufValueType.UInt32, 3u)));
        var e = Assert.Throws<CheckpointException>(() => GgufCheckpoint.Open(path));
        Assert.Contains(path, e.Message);
        Assert.Contains("gemma2.attention.head_count_kv", e.Message);
        Assert.Contains("not a multiple", e.Message);

        string zero = GgufRewriter.Rewrite(GgufFixtures.Path("q4_0"), _temp.File("zero.gguf"),
            kvs => Replace(kvs, "gemma2.embedding_length", new GgufValue(GgufValueType.UInt32, 0u)));
        var z = Assert.Throws<CheckpointException>(() => GgufCheckpoint.Open(zero));
        Assert.Contains("'gemma2.embedding_length' is 0", z.Message);
    }

    [Fact]
    public void AnyLayerCountLoadsAndRuns()
    {
        // Three layers: the first three of the demo, the other tensors dropped (llama.cpp c392e509 refuses this).
        string path = GgufRewriter.Rewrite(GgufFixtures.Path("q4_k_m"), _temp.File("three.gguf"),
            kvs => Replace(kvs, "gemma2.block_count", new GgufValue(GgufValueType.UInt32, 3u)),
            keepTensor: t => !t.Name.StartsWith("blk.", StringComparison.Ordinal) || int.Parse(t.Name.Split('.')[1]) < 3);
        using var model = GemmaModel.Load(path, new GemmaModelOptions { Threads = 1 });
        Assert.Equal(3, model.Config.NumHiddenLayers);
        Assert.Equal("compiled Gemma2_Demo", model.ExecutionPath);
        var logits = model.ComputeLogits([2, 535, 451]);
        Assert.All(logits, l => Assert.True(float.IsFinite(l) && Math.Abs(l) <= 30));
        Assert.Empty(model.Warnings);
    }

    [Fact]
    public void ALayerTheBlockCountCallsForMustBeThere()
    {
        string path = GgufRewriter.Rewrite(GgufFixtures.Path("q4_0"), _temp.File("seven.gguf"),
            kvs => Replace(kvs, "gemma2.block_count", new GgufValue(GgufValueType.UInt32, 7u)));
        var e = Assert.Throws<CheckpointException>(() => GgufCheckpoint.Open(path));
        Assert.Contains(path, e.Message);
        Assert.Contains("'blk.6.attn_norm.weight'", e.Message);
        Assert.Contains("model.layers.6.input_layernorm.weight", e.Message);
    }

    [Fact]
    public void LayersPastTheBlockCountAreAWarning()
    {
        string path = GgufRewriter.Rewrite(GgufFixtures.Path("q4_0"), _temp.File("five.gguf"),
            kvs => Replace(kvs, "gemma2.block_count", new GgufValue(GgufValueType.UInt32, 5u)));
        using var model = GemmaModel.Load(path, new GemmaModelOptions { Threads = 1 });
        Assert.Equal(5, model.Config.NumHiddenLayers);
        Assert.Contains(model.Warnings, w => w.Contains("layer 5") && w.Contains(path));
    }

    internal static void Replace(List<KeyValuePair<string, GgufValue>> kvs, string key, GgufValue value)
    {
        int index = kvs.FindIndex(kv => kv.Key == key);
        Assert.True(index >= 0, $"no key {key}");
        kvs[index] = new(key, value);
    }
}

/// <summary>The GGUF fixtures (<c>Fixtures/gguf/</c>, copied byte for byte from the shared fixtures).</summary>
internal static class GgufFixtures
{
    /// <summary>The six files, by the suffix of <c>gemma2-demo-SUFFIX.gguf</c>.</summary>
    public static readonly string[] Names = ["f32", "f16", "q8_0", "q4_0", "q4_k_m", "q6_k"];

    public static string Path(string name) => Fixtures.Path("gguf", $"gemma2-demo-{name}.gguf");

    public static string GoldenPath(string name) => Fixtures.Path("gguf", $"gemma2-demo-{name}.golden.safetensors");
}

/// <summary>
/// Writes a copy of a GGUF file with edited metadata and a subset of its tensors, from the format's description
/// (header, key/values, tensor infos, padding to the 32-byte alignment, the data section copied unchanged, so every
/// kept tensor keeps its offset).
/// </summary>
internal static class GgufRewriter
{
    public static string Rewrite(string source, string target, Action<List<KeyValuePair<string, GgufValue>>> edit,
        Func<GgufTensor, bool>? keepTensor = null, Func<GgufTensor, uint>? typeOf = null, Func<GgufTensor, long[]?>? shapeOf = null)
    {
        byte[] data;
        List<KeyValuePair<string, GgufValue>> kvs;
        List<GgufTensor> tensors;
        using (var file = GgufFile.Open(source))
        {
            Assert.Equal(32u, file.Alignment);
            kvs = file.Metadata.Keys.Select(k => new KeyValuePair<string, GgufValue>(k, file.Metadata.GetValue(k))).ToList();
            tensors = file.Tensors.Where(t => keepTensor?.Invoke(t) ?? true).ToList();
            data = File.ReadAllBytes(source)[(int)file.DataOffset..];
        }
        edit(kvs);
        return Write(target, kvs, tensors, data, typeOf, shapeOf);
    }

    /// <summary>Writes a GGUF file of <paramref name="kvs"/>, <paramref name="tensors"/> (their infos, with the type and
    /// shape the functions give) and the data section <paramref name="data"/>.</summary>
    public static string Write(string target, List<KeyValuePair<string, GgufValue>> kvs, IReadOnlyList<GgufTensor>? tensors = null, byte[]? data = null,
        Func<GgufTensor, uint>? typeOf = null, Func<GgufTensor, long[]?>? shapeOf = null)
    {
        tensors ??= [];
        var bytes = new List<byte>();
        bytes.AddRange(RawGguf.U32(0x46554747));
        bytes.AddRange(RawGguf.U32(3));
        bytes.AddRange(RawGguf.U64((ulong)tensors.Count));
        bytes.AddRange(RawGguf.U64((ulong)kvs.Count));
        foreach (var (key, value) in kvs)
        {
            bytes.AddRange(RawGguf.Str(key));
            bytes.AddRange(RawGguf.U32((uint)value.Type));
            WriteValue(bytes, value.Type, value.Value);
        }
        foreach (var t in tensors)
        {
            bytes.AddRange(RawGguf.Str(t.Name));
            var shape = shapeOf?.Invoke(t) ?? [.. t.Shape];
            bytes.AddRange(RawGguf.U32((uint)shape.Length));
            foreach (long d in shape) bytes.AddRange(RawGguf.U64((ulong)d));
            bytes.AddRange(RawGguf.U32(typeOf?.Invoke(t) ?? t.TypeId));
            bytes.AddRange(RawGguf.U64((ulong)t.Offset));
        }
        while (bytes.Count % 32 != 0) bytes.Add(0);
        bytes.AddRange(data ?? []);
        File.WriteAllBytes(target, [.. bytes]);
        return target;
    }

    private static void WriteValue(List<byte> bytes, GgufValueType type, object value)
    {
        switch (type)
        {
            case GgufValueType.UInt8: bytes.Add((byte)value); break;
            case GgufValueType.Int8: bytes.Add((byte)(sbyte)value); break;
            case GgufValueType.UInt16: bytes.AddRange(RawGguf.U16((ushort)value)); break;
            case GgufValueType.Int16: bytes.AddRange(RawGguf.U16((ushort)(short)value)); break;
            case GgufValueType.UInt32: bytes.AddRange(RawGguf.U32((uint)value)); break;
            case GgufValueType.Int32: bytes.AddRange(RawGguf.U32((uint)(int)value)); break;
            case GgufValueType.Float32: bytes.AddRange(RawGguf.F32((float)value)); break;
            case GgufValueType.Bool: bytes.Add((bool)value ? (byte)1 : (byte)0); break;
            case GgufValueType.String: bytes.AddRange(RawGguf.Str((string)value)); break;
            case GgufValueType.UInt64: bytes.AddRange(RawGguf.U64((ulong)value)); break;
            case GgufValueType.Int64: bytes.AddRange(RawGguf.U64((ulong)(long)value)); break;
            case GgufValueType.Float64: bytes.AddRange(RawGguf.F64((double)value)); break;
            case GgufValueType.Array:
                var array = (GgufArray)value;
                bytes.AddRange(RawGguf.U32((uint)array.ElementType));
                bytes.AddRange(RawGguf.U64((ulong)array.Count));
                foreach (object element in array.Values) WriteValue(bytes, array.ElementType, element);
                break;
            default: throw new ArgumentOutOfRangeException(nameof(type));
        }
    }

    /// <summary>A GGUF array value.</summary>
    public static GgufValue Array(GgufValueType elementType, System.Array values) => new(GgufValueType.Array, new GgufArray(elementType, values));
}
