using System.Buffers.Binary;
using System.Text;
using Xunit;

namespace GemmaGen.Tests.Host;

public sealed class GgufFileTests : IDisposable
{
    private const string FixtureName = "gemma2-demo-q4_0.gguf";
    private readonly TempDirectory _temp = new();

    public void Dispose() => _temp.Dispose();

    private static string FixturePath => Fixtures.Path("gguf", FixtureName);

    [Fact]
    public void ReadsTheFixtureMetadataAsTheFixtureReadmeStatesIt()
    {
        using var file = GgufFile.Open(FixturePath);
        var m = file.Metadata;
        Assert.True(file.Version is 2 or 3);
        Assert.Equal(GgufFile.DefaultAlignment, file.Alignment);
        Assert.False(m.Contains("general.alignment"));
        Assert.Equal("gemma2", m.GetString("general.architecture"));
        Assert.Equal("model", m.GetString("general.type"));
        Assert.Equal("Gemma2 Demo", m.GetString("general.name"));
        Assert.Equal(2, m.GetInteger("general.file_type"));
        Assert.Equal(2, m.GetInteger("general.quantization_version"));
        Assert.Equal(6u, m.GetUInt32("gemma2.block_count"));
        Assert.Equal(1024, m.GetInteger("gemma2.context_length"));
        Assert.Equal(256, m.GetInteger("gemma2.embedding_length"));
        Assert.Equal(768, m.GetInteger("gemma2.feed_forward_length"));
        Assert.Equal(4, m.GetInteger("gemma2.attention.head_count"));
        Assert.Equal(2, m.GetInteger("gemma2.attention.head_count_kv"));
        Assert.Equal(64, m.GetInteger("gemma2.attention.key_length"));
        Assert.Equal(64, m.GetInteger("gemma2.attention.value_length"));
        Assert.Equal(128, m.GetInteger("gemma2.attention.sliding_window"));
        Assert.Equal((double)1e-6f, m.GetFloat("gemma2.attention.layer_norm_rms_epsilon"));
        Assert.Equal(50.0, m.GetFloat("gemma2.attn_logit_softcapping"));
        Assert.Equal(30.0, m.GetFloat("gemma2.final_logit_softcapping"));
        Assert.False(m.Contains("gemma2.rope.freq_base"));
        Assert.Equal("llama", m.GetString("tokenizer.ggml.model"));
        Assert.Equal("default", m.GetString("tokenizer.ggml.pre"));
        var tokens = m.GetStringArray("tokenizer.ggml.tokens");
        Assert.Equal(4096, tokens.Length);
        Assert.Equal(["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"], tokens[..6]);
        Assert.Equal("<0x00>", tokens[6]);
        Assert.Equal(4096, m.GetArray<float>("tokenizer.ggml.scores", GgufValueType.Float32).Length);
        var types = m.GetArray<int>("tokenizer.ggml.token_type", GgufValueType.Int32);
        Assert.Equal(4096, types.Length);
        Assert.All(types[..6], t => Assert.Equal(3, t));
        Assert.Equal(6, types[6]);
        Assert.Equal(2, m.GetInteger("tokenizer.ggml.bos_token_id"));
        Assert.Equal(1, m.GetInteger("tokenizer.ggml.eos_token_id"));
        Assert.Equal(3, m.GetInteger("tokenizer.ggml.unknown_token_id"));
        Assert.Equal(0, m.GetInteger("tokenizer.ggml.padding_token_id"));
        Assert.True(m.GetBool("tokenizer.ggml.add_bos_token"));
        Assert.False(m.GetBool("tokenizer.ggml.add_eos_token"));
        Assert.False(m.GetBool("tokenizer.ggml.add_space_prefix"));
        Assert.Contains("<start_of_turn>", m.GetString("tokenizer.chat_template"));
        Assert.True(m.TryGetString("general.architecture", out string arch) && arch == "gemma2");
        Assert.False(m.TryGetString("no.such.key", out _));
        var wrongType = Assert.Throws<CheckpointException>(() => m.GetString("gemma2.block_count"));
        Assert.Contains("gemma2.block_count", wrongType.Message);
        Assert.Contains(FixtureName, Assert.Throws<CheckpointException>(() => m.GetUInt32("no.such.key")).Message);
    }

    [Fact]
    public void ReadsTheFixtureTensorsAsTheFixtureReadmeStatesThem()
    {
        using var file = GgufFile.Open(FixturePath);
        Assert.Equal(68, file.Tensors.Count);
        Assert.Equal(0, file.DataOffset % 32);
        var counts = file.Tensors.GroupBy(t => t.TypeName).ToDictionary(g => g.Key, g => g.Count());
        Assert.Equal(new Dictionary<string, int> { ["F32"] = 25, ["Q4_0"] = 42, ["Q6_K"] = 1 }, counts);

        var embed = file.GetTensor("token_embd.weight");
        Assert.Equal(GgmlType.Q6_K, embed.Type);
        Assert.Equal(14u, embed.TypeId);
        Assert.Equal([256L, 4096L], embed.Shape);
        Assert.Equal(4096L * 256 / 256 * 210, embed.ByteLength);

        var q = file.GetTensor("blk.0.attn_q.weight");
        Assert.Equal("Q4_0", q.TypeName);
        Assert.Equal([256L, 256L], q.Shape);
        Assert.Equal(256L * 256 / 32 * 18, q.ByteLength);
        Assert.Equal([256L, 128L], file.GetTensor("blk.5.attn_k.weight").Shape);
        Assert.Equal([768L, 256L], file.GetTensor("blk.3.ffn_down.weight").Shape);
        Assert.Equal([256L, 768L], file.GetTensor("blk.3.ffn_gate.weight").Shape);
        Assert.False(file.TryGetTensor("output.weight", out _));

        foreach (string norm in new[] { "attn_norm", "post_attention_norm", "ffn_norm", "post_ffw_norm" })
            for (int layer = 0; layer < 6; layer++)
            {
                var t = file.GetTensor($"blk.{layer}.{norm}.weight");
                Assert.Equal(GgmlType.F32, t.Type);
                Assert.Equal([256L], t.Shape);
            }
        var outputNorm = file.GetBytes("output_norm.weight");
        Assert.Equal(1024, outputNorm.Length);
        // Norms are stored as float32(w) + 1, w the demo checkpoint's BF16 model.norm.weight.
        using (var source = SafetensorsFile.Open(Fixtures.Path("gemma2-demo", "model.safetensors")))
        {
            var bf16 = source.GetBytes("model.norm.weight");
            Assert.Equal(512, bf16.Length);
            for (int i = 0; i < 256; i++)
            {
                float w = BitConverter.Int32BitsToSingle(BinaryPrimitives.ReadUInt16LittleEndian(bf16[(i * 2)..]) << 16);
                Assert.Equal(w + 1f, BinaryPrimitives.ReadSingleLittleEndian(outputNorm[(i * 4)..]));
            }
        }
        Assert.True(file.Tensors.All(t => t.Offset % 32 == 0 && t.Offset + t.ByteLength <= file.DataLength));
        Assert.Equal(file.DataOffset + file.DataLength, new FileInfo(FixturePath).Length);
        Assert.NotEqual(0, file.GetAddress("token_embd.weight"));
    }

    [Fact]
    public void ReadsEveryValueTypeAndNestedArraysInVersions2And3()
    {
        foreach (uint version in new uint[] { 2, 3 })
        {
            var g = new RawGguf { Version = version };
            g.Kv("u8", 0, [200]);
            g.Kv("i8", 1, [0xFF]);
            g.Kv("u16", 2, RawGguf.U16(60000));
            g.Kv("i16", 3, RawGguf.U16(0xFFFE));
            g.Kv("u32", 4, RawGguf.U32(4_000_000_000));
            g.Kv("i32", 5, RawGguf.U32(unchecked((uint)-7)));
            g.Kv("f32", 6, RawGguf.F32(1.5f));
            g.Kv("bool", 7, [1]);
            g.Kv("str", 8, RawGguf.Str("héllo"));
            g.Kv("u64", 10, RawGguf.U64(ulong.MaxValue));
            g.Kv("i64", 11, RawGguf.U64(unchecked((ulong)-9L)));
            g.Kv("f64", 12, RawGguf.F64(2.25));
            g.Kv("strs", 9, [.. RawGguf.U32(8), .. RawGguf.U64(2), .. RawGguf.Str("a"), .. RawGguf.Str("bc")]);
            byte[] inner1 = [.. RawGguf.U32(5), .. RawGguf.U64(2), .. RawGguf.U32(1), .. RawGguf.U32(2)];
            byte[] inner2 = [.. RawGguf.U32(5), .. RawGguf.U64(0)];
            g.Kv("nested", 9, [.. RawGguf.U32(9), .. RawGguf.U64(2), .. inner1, .. inner2]);
            g.Tensor("t", [32, 2], 0, 0);
            g.DataBytes = 256;
            string path = g.Write(_temp.File($"v{version}.gguf"));

            using var file = GgufFile.Open(path);
            var m = file.Metadata;
            Assert.Equal(version, file.Version);
            Assert.Equal(200, m.GetInteger("u8"));
            Assert.Equal(-1, m.GetInteger("i8"));
            Assert.Equal(60000, m.GetInteger("u16"));
            Assert.Equal(-2, m.GetInteger("i16"));
            Assert.Equal(4_000_000_000u, m.GetUInt32("u32"));
            Assert.Equal(-7, m.GetInteger("i32"));
            Assert.Equal(1.5, m.GetFloat("f32"));
            Assert.True(m.GetBool("bool"));
            Assert.Equal("héllo", m.GetString("str"));
            Assert.Equal(ulong.MaxValue, (ulong)m.GetValue("u64").Value);
            Assert.Throws<CheckpointException>(() => m.GetInteger("u64"));
            Assert.Equal(-9, m.GetInteger("i64"));
            Assert.Equal(2.25, m.GetFloat("f64"));
            Assert.Equal(["a", "bc"], m.GetStringArray("strs"));
            var nested = m.GetArray("nested");
            Assert.Equal(GgufValueType.Array, nested.ElementType);
            var arrays = Assert.IsType<GgufArray[]>(nested.Values);
            Assert.Equal([1, 2], Assert.IsType<int[]>(arrays[0].Values));
            Assert.Empty(arrays[1].Values);
            Assert.Equal(["u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "str", "u64", "i64", "f64", "strs", "nested"], m.Keys);
            Assert.Equal([32L, 2L], file.GetTensor("t").Shape);
            Assert.Equal(256, file.GetBytes("t").Length);
        }
    }

    [Fact]
    public void HonoursGeneralAlignment()
    {
        var g = new RawGguf { Alignment = 64 };
        g.Kv("general.alignment", 4, RawGguf.U32(64));
        g.Tensor("a", [32], 0, 0);
        g.Tensor("b", [32], 0, 192);
        g.DataBytes = 320;
        using var file = GgufFile.Open(g.Write(_temp.File("a64.gguf")));
        Assert.Equal(64u, file.Alignment);
        Assert.Equal(0, file.DataOffset % 64);
        Assert.Equal(192, file.GetTensor("b").Offset);
    }

    // ---- one test per malformed class ----

    [Fact]
    public void RefusesATruncatedFile()
    {
        byte[] fixture = File.ReadAllBytes(FixturePath);
        foreach (int length in new[] { 0, 5, 20, 1000, 60_000 })
        {
            string path = _temp.File($"cut{length}.gguf");
            File.WriteAllBytes(path, fixture[..length]);
            var e = Assert.Throws<CheckpointException>(() => GgufFile.Open(path));
            Assert.Contains(path, e.Message);
        }
        string cutData = _temp.File("cutdata.gguf");
        File.WriteAllBytes(cutData, fixture[..^100]);
        Assert.Contains("past its end", Refused(cutData));
    }

    [Fact]
    public void RefusesBadMagic()
    {
        var g = Valid();
        g.Magic = 0x46554746;
        Assert.Contains("bad magic", Refused(g, "magic"));
    }

    [Theory]
    [InlineData(1u)]
    [InlineData(4u)]
    [InlineData(0xFFFFFFFFu)]
    public void RefusesUnsupportedVersions(uint version)
    {
        var g = Valid();
        g.Version = version;
        Assert.Contains($"version {version} is not supported", Refused(g, "version"));
    }

    [Fact]
    public void RefusesAStringLengthPastTheEnd()
    {
        var g = Valid();
        g.Kv("general.name", 8, [.. RawGguf.U64(1UL << 40), .. "abc"u8]);
        Assert.Contains("general.name", Refused(g, "strlen"));
        var key = new RawGguf();
        key.RawKv([.. RawGguf.U64(ulong.MaxValue), .. "k"u8]);
        Assert.Contains("length", Refused(key, "keylen"));
    }

    [Fact]
    public void RefusesAnArrayCountPastTheEnd()
    {
        var g = Valid();
        g.Kv("tokens", 9, [.. RawGguf.U32(8), .. RawGguf.U64(1UL << 60)]);
        Assert.Contains("tokens", Refused(g, "arraylen"));
        var ints = Valid();
        ints.Kv("scores", 9, [.. RawGguf.U32(6), .. RawGguf.U64(1000), .. new byte[100]]);
        Assert.Contains("past the end", Refused(ints, "arraylen2"));
    }

    [Fact]
    public void RefusesHugeKeyValueAndTensorCounts()
    {
        var kv = Valid();
        kv.KvCountOverride = 1UL << 50;
        Assert.Contains("metadata key/value pairs", Refused(kv, "kvcount"));
        var tensors = Valid();
        tensors.TensorCountOverride = ulong.MaxValue;
        Assert.Contains("tensor infos", Refused(tensors, "tcount"));
    }

    [Fact]
    public void RefusesInvalidUtf8InAKeyOrAString()
    {
        var key = Valid();
        key.RawKv([.. RawGguf.U64(2), 0xC3, 0x28, .. RawGguf.U32(0), 1]);
        Assert.Contains("invalid UTF-8", Refused(key, "utf8key"));
        var value = Valid();
        value.Kv("general.name", 8, [.. RawGguf.U64(3), (byte)'a', 0xFF, (byte)'b']);
        string message = Refused(value, "utf8value");
        Assert.Contains("invalid UTF-8", message);
        Assert.Contains("general.name", message);
    }

    [Fact]
    public void RefusesADuplicateKey()
    {
        var g = Valid();
        g.Kv("general.name", 8, RawGguf.Str("a"));
        g.Kv("general.name", 8, RawGguf.Str("b"));
        Assert.Contains("'general.name' appears twice", Refused(g, "dupkey"));
    }

    [Fact]
    public void RefusesADuplicateTensorName()
    {
        var g = Valid();
        g.Tensor("t", [32], 0, 256);
        g.DataBytes = 512;
        Assert.Contains("'t' is listed twice", Refused(g, "duptensor"));
    }

    [Fact]
    public void RefusesAnUnknownValueType()
    {
        var g = Valid();
        g.Kv("odd", 13, [0, 0, 0, 0]);
        Assert.Contains("unknown value type 13", Refused(g, "vtype"));
        var element = Valid();
        element.Kv("odd", 9, [.. RawGguf.U32(77), .. RawGguf.U64(1), 0, 0, 0, 0]);
        Assert.Contains("unknown value type 77", Refused(element, "etype"));
    }

    [Fact]
    public void RefusesAMisalignedTensorOffset()
    {
        var g = new RawGguf { DataBytes = 512 };
        g.Tensor("t", [32], 0, 4);
        Assert.Contains("not a multiple of the alignment 32", Refused(g, "misaligned"));
    }

    [Fact]
    public void RefusesATensorOffsetPastTheEnd()
    {
        var g = new RawGguf { DataBytes = 256 };
        g.Tensor("t", [32], 0, 1UL << 62);
        Assert.Contains("runs past its end", Refused(g, "pastend"));
        var tail = new RawGguf { DataBytes = 256 };
        tail.Tensor("t", [32, 2], 0, 32);
        Assert.Contains("runs past its end", Refused(tail, "pastend2"));
    }

    [Fact]
    public void RefusesOverlappingTensors()
    {
        var g = new RawGguf { DataBytes = 512 };
        g.Tensor("a", [32, 2], 0, 0);
        g.Tensor("b", [32], 0, 128);
        string message = Refused(g, "overlap");
        Assert.Contains("overlaps", message);
        Assert.Contains("'a'", message);
        Assert.Contains("'b'", message);
    }

    [Fact]
    public void RefusesDimensionsThatOverflowOrAreNotPositive()
    {
        var product = new RawGguf { DataBytes = 256 };
        product.Tensor("t", [1UL << 32, 1UL << 32], 0, 0);
        Assert.Contains("overflows", Refused(product, "overflow"));
        var bytes = new RawGguf { DataBytes = 256 };
        bytes.Tensor("t", [1UL << 61], 0, 0); // elements fit a long, 4 bytes each do not
        Assert.Contains("overflows", Refused(bytes, "overflowbytes"));
        var zero = new RawGguf { DataBytes = 256 };
        zero.Tensor("t", [32, 0], 0, 0);
        Assert.Contains("expected a positive size", Refused(zero, "zero"));
        var negative = new RawGguf { DataBytes = 256 };
        negative.Tensor("t", [ulong.MaxValue], 0, 0);
        Assert.Contains("expected a positive size", Refused(negative, "negative"));
        var dims = new RawGguf { DataBytes = 256 };
        dims.Tensor("t", [1, 1, 1, 1, 1], 0, 0);
        Assert.Contains("5 dimensions", Refused(dims, "dims"));
    }

    [Fact]
    public void RefusesAnUnknownGgmlTypeNamingTheTensorAndTheId()
    {
        foreach (uint id in new uint[] { 4, 99 })
        {
            var g = new RawGguf { DataBytes = 256 };
            g.Tensor("blk.0.attn_q.weight", [32], id, 0);
            string message = Refused(g, $"type{id}");
            Assert.Contains("'blk.0.attn_q.weight'", message);
            Assert.Contains($"unknown ggml type {id}", message);
        }
    }

    [Fact]
    public void RefusesARowWidthNotAMultipleOfTheBlockSize()
    {
        var g = new RawGguf { DataBytes = 4096 };
        g.Tensor("w", [100, 2], 14, 0); // Q6_K: 256-value blocks
        string message = Refused(g, "block");
        Assert.Contains("not a multiple of the 256-value blocks of type Q6_K", message);
    }

    [Fact]
    public void RefusesAnAlignmentThatIsNotAPowerOfTwo()
    {
        var g = Valid();
        g.Kv("general.alignment", 4, RawGguf.U32(48));
        Assert.Contains("power of two", Refused(g, "align"));
    }

    [Fact]
    public void RefusesABoolThatIsNeitherZeroNorOne()
    {
        var g = Valid();
        g.Kv("flag", 7, [2]);
        Assert.Contains("expected 0 or 1", Refused(g, "bool"));
    }

    [Fact]
    public async Task FuzzedFixtureHeadersOpenOrFailWithACheckpointException()
    {
        byte[] fixture = File.ReadAllBytes(FixturePath);
        string path = _temp.File("fuzz.gguf");
        var run = Task.Run(() =>
        {
            var random = new Random(1234);
            int window = Math.Min(64 * 1024, fixture.Length);
            int opened = 0, refused = 0;
            for (int i = 0; i < 300; i++)
            {
                byte[] bytes = (byte[])fixture.Clone();
                int edits = 1 + random.Next(4);
                for (int e = 0; e < edits; e++)
                {
                    int at = random.Next(window - 8);
                    switch (random.Next(3))
                    {
                        case 0: bytes[at] = (byte)random.Next(256); break;
                        case 1: BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan(at), (ulong)random.NextInt64() << random.Next(40)); break;
                        default: BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(at), (uint)random.Next(16)); break;
                    }
                }
                // Early mutations go to the first fields, where lengths and counts live.
                if (i < 60) bytes[random.Next(24)] ^= (byte)(1 << random.Next(8));
                File.WriteAllBytes(path, bytes);
                try
                {
                    using var file = GgufFile.Open(path);
                    _ = file.Tensors.Count;
                    opened++;
                }
                catch (CheckpointException e)
                {
                    Assert.Contains(path, e.Message);
                    refused++;
                }
            }
            return (opened, refused);
        });
        // A safety net against a hang only (WaitAsync throws TimeoutException), not a timing assertion.
        var (opened, refused) = await run.WaitAsync(TimeSpan.FromMinutes(5));
        Assert.Equal(300, opened + refused);
        Assert.True(refused > 0);
    }

    // ---- helpers ----

    /// <summary>A valid file: one F32 tensor [32, 2] at offset 0, no metadata.</summary>
    private static RawGguf Valid()
    {
        var g = new RawGguf { DataBytes = 256 };
        g.Tensor("t", [32, 2], 0, 0);
        return g;
    }

    private string Refused(RawGguf g, string name) => Refused(g.Write(_temp.File(name + ".gguf")));

    private static string Refused(string path)
    {
        var e = Assert.Throws<CheckpointException>(() => GgufFile.Open(path));
        Assert.Contains(path, e.Message);
        return e.Message;
    }
}

/// <summary>
/// Writes GGUF files byte by byte from the format's description (little-endian: u32 magic "GGUF", u32 version, u64
/// tensor count, u64 key/value count, key/values as u64-length string + u32 type + value, tensor infos as name + u32
/// dimension count + u64 dims + u32 ggml type + u64 offset, zero padding to the alignment, data), including the
/// malformed files a real writer never produces.
/// </summary>
internal sealed class RawGguf
{
    private readonly List<byte[]> _kvs = [];
    private readonly List<byte[]> _tensors = [];

    public uint Magic { get; set; } = 0x46554747;

    public uint Version { get; set; } = 3;

    public ulong? TensorCountOverride { get; set; }

    public ulong? KvCountOverride { get; set; }

    public int Alignment { get; set; } = 32;

    public int DataBytes { get; set; }

    public static byte[] U16(ushort v) { var b = new byte[2]; BinaryPrimitives.WriteUInt16LittleEndian(b, v); return b; }

    public static byte[] U32(uint v) { var b = new byte[4]; BinaryPrimitives.WriteUInt32LittleEndian(b, v); return b; }

    public static byte[] U64(ulong v) { var b = new byte[8]; BinaryPrimitives.WriteUInt64LittleEndian(b, v); return b; }

    public static byte[] F32(float v) { var b = new byte[4]; BinaryPrimitives.WriteSingleLittleEndian(b, v); return b; }

    public static byte[] F64(double v) { var b = new byte[8]; BinaryPrimitives.WriteDoubleLittleEndian(b, v); return b; }

    public static byte[] Str(string s) { var text = Encoding.UTF8.GetBytes(s); return [.. U64((ulong)text.Length), .. text]; }

    /// <summary>A key/value pair: the key, the u32 type, then <paramref name="value"/> as given.</summary>
    public void Kv(string key, uint type, byte[] value) => _kvs.Add([.. Str(key), .. U32(type), .. value]);

    /// <summary>A key/value pair written exactly as given.</summary>
    public void RawKv(byte[] bytes) => _kvs.Add(bytes);

    public void Tensor(string name, ulong[] dims, uint type, ulong offset)
    {
        var bytes = new List<byte>([.. Str(name), .. U32((uint)dims.Length)]);
        foreach (ulong d in dims) bytes.AddRange(U64(d));
        bytes.AddRange(U32(type));
        bytes.AddRange(U64(offset));
        _tensors.Add([.. bytes]);
    }

    public string Write(string path)
    {
        var bytes = new List<byte>();
        bytes.AddRange(U32(Magic));
        bytes.AddRange(U32(Version));
        bytes.AddRange(U64(TensorCountOverride ?? (ulong)_tensors.Count));
        bytes.AddRange(U64(KvCountOverride ?? (ulong)_kvs.Count));
        foreach (var kv in _kvs) bytes.AddRange(kv);
        foreach (var tensor in _tensors) bytes.AddRange(tensor);
        while (bytes.Count % Alignment != 0) bytes.Add(0);
        bytes.AddRange(new byte[DataBytes]);
        File.WriteAllBytes(path, [.. bytes]);
        return path;
    }
}
