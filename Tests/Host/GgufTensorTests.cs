using System.Buffers.Binary;
using System.Text.Json;
using GemmaGen.Kernels;
using Xunit;

namespace GemmaGen.Tests.Host;

/// <summary>
/// The tensors of a GGUF file as the loader sees them: Hugging Face names and shapes, every type as a view of the file
/// (F32/F16/BF16 and the Q8_0/Q4_0/K-quant blocks as stored), every quantized tensor of every fixture dequantized bit
/// for bit as an independent scalar reference (written here from the block layouts, element by element) computes it, the types of <c>tensor_types.json</c>, and unsupported types
/// refused naming the tensor.
/// </summary>
public sealed unsafe class GgufTensorTests : IDisposable
{
    private readonly TempDirectory _temp = new();

    public void Dispose() => _temp.Dispose();

    public static TheoryData<string> Files() => new(GgufFixtures.Names);

    [Theory]
    [MemberData(nameof(Files))]
    public void EveryTensorHasItsHuggingFaceNameShapeAndTheTypeTheFixtureListsForIt(string name)
    {
        using var types = JsonDocument.Parse(File.ReadAllText(Fixtures.Path("gguf", "tensor_types.json")));
        var expected = types.RootElement.GetProperty($"gemma2-demo-{name}.gguf");
        using var gguf = GgufCheckpoint.Open(GgufFixtures.Path(name));
        Assert.Equal(68, gguf.TensorNames.Count());
        Assert.Empty(gguf.UnmappedTensors);
        Assert.True(gguf.NormsIncludeOne);
        foreach (var tensor in gguf.File.Tensors)
        {
            Assert.Equal(expected.GetProperty(tensor.Name).GetString(), tensor.TypeName);
            string hf = GgufCheckpoint.HuggingFaceName(tensor.Name)!;
            Assert.True(gguf.TryGetTensor(hf, out var view));
            Assert.Equal(tensor.Shape.Reverse(), view.Shape);
            var dtype = tensor.TypeName switch
            {
                "F16" => TensorDType.F16, "BF16" => TensorDType.BF16, "Q8_0" => TensorDType.Q8_0, "Q4_0" => TensorDType.Q4_0,
                "Q4_K" => TensorDType.Q4_K, "Q6_K" => TensorDType.Q6_K, "F32" => TensorDType.F32, _ => throw new InvalidDataException(tensor.TypeName),
            };
            Assert.Equal(dtype, view.DType);
            Assert.Equal(dtype, gguf.DTypeOf(hf));
            // Every type is served as a view of the file: its blocks as stored.
            Assert.Equal(tensor.ByteLength, view.ByteLength);
            Assert.True(view.Data == (byte*)gguf.File.GetAddress(tensor.Name));
        }
        // README convention 1 and 2: the names and shapes of the fixture, spelled out.
        Assert.True(gguf.TryGetTensor("model.layers.0.self_attn.k_proj.weight", out var k));
        Assert.Equal([128L, 256L], k.Shape);
        Assert.True(gguf.TryGetTensor("model.layers.5.mlp.down_proj.weight", out var down));
        Assert.Equal([256L, 768L], down.Shape);
        Assert.True(gguf.TryGetTensor(CheckpointNames.Embed, out var embed));
        Assert.Equal([4096L, 256L], embed.Shape);
        Assert.True(gguf.TryGetTensor(CheckpointNames.FinalNorm, out var norm));
        Assert.Equal([256L], norm.Shape);
        Assert.False(gguf.TryGetTensor(CheckpointNames.LmHead, out _));
    }

    [Theory]
    [MemberData(nameof(Files))]
    public void EveryTensorServesExactlyTheValuesTheScalarReferenceReadsFromTheFile(string name)
    {
        using var gguf = GgufCheckpoint.Open(GgufFixtures.Path(name));
        byte[] file = File.ReadAllBytes(GgufFixtures.Path(name));
        int checkedValues = 0;
        foreach (var tensor in gguf.File.Tensors)
        {
            string hf = GgufCheckpoint.HuggingFaceName(tensor.Name)!;
            Assert.True(gguf.TryGetTensor(hf, out var view));
            var stored = file.AsSpan((int)(gguf.File.DataOffset + tensor.Offset), (int)tensor.ByteLength);
            float[] expected = ScalarReference.Dequantize(tensor.TypeName, stored, (int)tensor.ElementCount);
            var actual = new float[expected.Length];
            view.ReadFloats(0, actual);
            for (int i = 0; i < expected.Length; i++)
            {
                if (BitConverter.SingleToInt32Bits(expected[i]) != BitConverter.SingleToInt32Bits(actual[i]))
                    Assert.Fail($"{name}: {tensor.Name} ({tensor.TypeName}) value {i}: reference {expected[i]:R}, loader {actual[i]:R}");
            }
            checkedValues += expected.Length;
        }
        Assert.True(checkedValues > 1_400_000);
    }

    [Fact]
    public void ABf16TensorIsServedAsAView()
    {
        // No fixture holds BF16: read the bytes of an F16 tensor as BF16 (same size) and compare with the reference.
        string path = GgufRewriter.Rewrite(GgufFixtures.Path("f16"), _temp.File("bf16.gguf"), _ => { },
            typeOf: t => t.Name == "blk.0.attn_q.weight" ? GgmlType.BF16.Id : t.TypeId);
        using var gguf = GgufCheckpoint.Open(path);
        Assert.True(gguf.TryGetTensor("model.layers.0.self_attn.q_proj.weight", out var view));
        Assert.Equal(TensorDType.BF16, view.DType);
        Assert.Equal(TensorDType.BF16, gguf.DTypeOf("model.layers.0.self_attn.q_proj.weight"));
        var actual = new float[256 * 256];
        view.ReadFloats(0, actual);
        var expected = ScalarReference.Dequantize("BF16", gguf.File.GetBytes("blk.0.attn_q.weight"), actual.Length);
        for (int i = 0; i < actual.Length; i++)
            Assert.Equal(BitConverter.SingleToInt32Bits(expected[i]), BitConverter.SingleToInt32Bits(actual[i]));
    }

    [Fact]
    public void PlanningALoadOfKQuantsCountsTheirBlocksAsStored()
    {
        // The memory check comes before any weight is made: the plan asks for the tensor types only.
        using var gguf = GgufCheckpoint.Open(GgufFixtures.Path("q6_k"));
        var plan = LoadPlan.Create(gguf.Config, gguf, tokenizer: gguf.LoadTokenizer());
        Assert.Same(WeightFormat.Q6_K, plan.Format);
        Assert.Equal(TensorDType.Q6_K, gguf.DTypeOf(CheckpointNames.Embed));
        // 212 bytes per 256 weights (the 210 stored and d widened, in groups of eight rows; every matrix of the demo has
        // a multiple of eight rows): the demo's 4096 × 256 embedding and 6 layers of 786,432 weights.
        Assert.Equal((4096L * 256 + 6L * 786_432) / 256 * 212, plan.WeightBytes);
        using var f16 = GgufCheckpoint.Open(GgufFixtures.Path("f16"));
        Assert.Equal(TensorDType.F16, f16.DTypeOf(CheckpointNames.Embed));
        Assert.Null(f16.DTypeOf(CheckpointNames.LmHead));
    }

    [Theory]
    [InlineData("q8_0", "Q8_0")]
    [InlineData("q4_0", "Q4_0")]
    [InlineData("q4_k_m", "Q4_K")]
    [InlineData("q6_k", "Q6_K")]
    [InlineData("q4_k_m", "Q6_K")]
    public void TheDequantizerMatchesTheScalarReferenceOnRealBlocks(string name, string typeName)
    {
        using var file = GgufFile.Open(GgufFixtures.Path(name));
        var type = GgmlType.All.Values.Single(t => t.Name == typeName);
        int blocks = 0;
        foreach (var tensor in file.Tensors.Where(t => t.Type == type))
        {
            var bytes = file.GetBytes(tensor.Name);
            var actual = new float[tensor.ElementCount];
            GgmlDequantizer.Dequantize(type, bytes, actual);
            AssertBitEqual(ScalarReference.Dequantize(typeName, bytes, actual.Length), actual, tensor.Name);
            blocks += bytes.Length / type.BytesPerBlock;
        }
        Assert.True(blocks > 0);
    }

    [Fact]
    public void Q5KMatchesTheScalarReferenceOnBlocksBuiltFromRealOnesAndOnRandomOnes()
    {
        // No fixture holds Q5_K. A Q5_K block is a Q4_K block (d, dmin, 12 scale bytes, 128 nibble bytes) with 32 bytes
        // of fifth bits between the scales and the nibbles: take both from real Q4_K blocks and the high bits from
        // real Q6_K bytes, then add random blocks (fixed seed) with finite scales.
        using var file = GgufFile.Open(GgufFixtures.Path("q4_k_m"));
        var q4 = file.GetBytes("blk.0.attn_q.weight");
        var q6 = file.GetBytes("token_embd.weight");
        const int Blocks = 200;
        var q5 = new byte[Blocks * 176];
        for (int b = 0; b < Blocks; b++)
        {
            var source = q4.Slice(b * 144, 144);
            var block = q5.AsSpan(b * 176, 176);
            source[..16].CopyTo(block);
            q6.Slice(b * 210 + 128 + (b % 2) * 32, 32).CopyTo(block[16..]);
            source[16..].CopyTo(block[48..]);
        }
        var random = new Random(11);
        var more = new byte[Blocks * 176];
        random.NextBytes(more);
        for (int b = 0; b < Blocks; b++)
        {
            BinaryPrimitives.WriteHalfLittleEndian(more.AsSpan(b * 176), (Half)(random.NextDouble() * 0.01));
            BinaryPrimitives.WriteHalfLittleEndian(more.AsSpan(b * 176 + 2), (Half)(random.NextDouble() * 0.01));
        }
        foreach (var blocks in new[] { q5, more })
        {
            var actual = new float[Blocks * 256];
            GgmlDequantizer.Dequantize(GgmlType.Q5_K, blocks, actual);
            AssertBitEqual(ScalarReference.Dequantize("Q5_K", blocks, actual.Length), actual, "Q5_K");
        }
    }

    [Fact]
    public void Q5KDecodesAHandWrittenBlock()
    {
        // d = 1, dmin = 0.5; every sub-block scale 1 and minimum 2 (bytes 0-3: scale 1, bytes 4-7: minimum 2, bytes
        // 8-11: low nibble scale 1, high nibble minimum 2 for sub-blocks 4-7, no high bits); nibble byte l of each
        // 64-value group: low l % 16, high 15 - l % 16; fifth bits 0x55 at even l (sub-blocks 0, 2, 4, 6), 0xAA at odd.
        var block = new byte[176];
        BinaryPrimitives.WriteHalfLittleEndian(block, (Half)1);
        BinaryPrimitives.WriteHalfLittleEndian(block.AsSpan(2), (Half)0.5);
        for (int j = 0; j < 4; j++)
        {
            block[4 + j] = 1;
            block[8 + j] = 2;
            block[12 + j] = 0x21;
        }
        for (int l = 0; l < 32; l++) block[16 + l] = l % 2 == 0 ? (byte)0x55 : (byte)0xAA;
        for (int g = 0; g < 4; g++)
            for (int l = 0; l < 32; l++) block[48 + 32 * g + l] = (byte)((l % 16) | ((15 - l % 16) << 4));
        var values = new float[256];
        GgmlDequantizer.Dequantize(GgmlType.Q5_K, block, values);
        for (int i = 0; i < 256; i++)
        {
            int l = i % 32;
            bool first = i % 64 < 32;
            int q = first ? l % 16 + (l % 2 == 0 ? 16 : 0) : 15 - l % 16 + (l % 2 == 1 ? 16 : 0);
            Assert.Equal(q - 1f, values[i]); // 1·1·q − 0.5·2
        }
    }

    [Fact]
    public void AnUnsupportedTypeIsRefusedNamingTheTensorAndTheType()
    {
        // blk.0.attn_norm.weight is 256 F32 values; as I32 it has the same size, and no Gemma loader reads I32.
        string path = GgufRewriter.Rewrite(GgufFixtures.Path("q4_0"), _temp.File("i32.gguf"), _ => { },
            typeOf: t => t.Name == "blk.0.attn_norm.weight" ? GgmlType.I32.Id : t.TypeId);
        var e = Assert.Throws<WeightLoadException>(() => GemmaModel.Load(path));
        Assert.Contains(path, e.Message);
        Assert.Contains("'blk.0.attn_norm.weight'", e.Message);
        Assert.Contains("I32", e.Message);
        Assert.Contains("Q4_K", e.Message); // the supported types are listed
    }

    [Fact]
    public void AMisshapenTensorIsRefusedNamingIt()
    {
        // ffn_norm of layer 1 (256 F32 values) read as [128, 2]: same bytes, wrong shape.
        string path = GgufRewriter.Rewrite(GgufFixtures.Path("f32"), _temp.File("shape.gguf"), _ => { },
            shapeOf: t => t.Name == "blk.1.ffn_norm.weight" ? [128, 2] : null);
        var e = Assert.Throws<WeightLoadException>(() => GemmaModel.Load(path));
        Assert.Contains("blk.1.ffn_norm.weight", e.Message);
        Assert.Contains("[2, 128]", e.Message);
        Assert.Contains("expected [256]", e.Message);
    }

    private static void AssertBitEqual(float[] expected, float[] actual, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
        {
            if (BitConverter.SingleToInt32Bits(expected[i]) != BitConverter.SingleToInt32Bits(actual[i]))
                Assert.Fail($"{what} value {i}: reference {expected[i]:R}, dequantizer {actual[i]:R}");
        }
    }
}

/// <summary>
/// ggml's block formats decoded one value at a time, straight from their description (fixtures README item 12 and
/// ggml's block structs): the arithmetic in double (every product is exact, so one rounding to float32 at the end
/// gives ggml's float32 result).
/// </summary>
internal static class ScalarReference
{
    public static float[] Dequantize(string type, ReadOnlySpan<byte> data, int count)
    {
        var values = new float[count];
        for (int i = 0; i < count; i++) values[i] = Value(type, data, i);
        return values;
    }

    private static double Half(ReadOnlySpan<byte> data, int at) => (double)BitConverter.UInt16BitsToHalf(BinaryPrimitives.ReadUInt16LittleEndian(data[at..]));

    private static float Value(string type, ReadOnlySpan<byte> data, int i)
    {
        switch (type)
        {
            case "F32": return BinaryPrimitives.ReadSingleLittleEndian(data[(4 * i)..]);
            case "F16": return (float)Half(data, 2 * i);
            case "BF16": return BitConverter.Int32BitsToSingle(BinaryPrimitives.ReadUInt16LittleEndian(data[(2 * i)..]) << 16);
            case "Q8_0":
            {
                var block = data.Slice(i / 32 * 34, 34);
                return (float)(Half(block, 0) * (sbyte)block[2 + i % 32]);
            }
            case "Q4_0":
            {
                // 16 bytes after d: byte k holds value k in its low nibble and value k + 16 in its high nibble.
                var block = data.Slice(i / 32 * 18, 18);
                int k = i % 32;
                int q = k < 16 ? block[2 + k] & 0xF : block[2 + k - 16] >> 4;
                return (float)(Half(block, 0) * (q - 8));
            }
            case "Q4_K":
            case "Q5_K":
            {
                bool five = type == "Q5_K";
                var block = five ? data.Slice(i / 256 * 176, 176) : data.Slice(i / 256 * 144, 144);
                int k = i % 256, sub = k / 32;
                // Nibbles: 32 bytes per 64 values, the low nibbles the first 32 of them, the high nibbles the next 32.
                int qsAt = five ? 48 : 16;
                byte packed = block[qsAt + 32 * (k / 64) + k % 32];
                int q = k % 64 < 32 ? packed & 0xF : packed >> 4;
                if (five) q += ((block[16 + k % 32] >> sub) & 1) * 16;
                var (scale, min) = SixBit(block.Slice(4, 12), sub);
                return (float)(Half(block, 0) * scale * q - Half(block, 2) * min);
            }
            case "Q6_K":
            {
                // 128 bytes of low nibbles, 64 bytes of 2-bit high parts, 16 int8 scales (one per 16 values), d.
                var block = data.Slice(i / 256 * 210, 210);
                int k = i % 256, half = k / 128, quarter = k % 128 / 32, l = k % 32;
                byte low = block[64 * half + l + (quarter % 2 == 1 ? 32 : 0)];
                int lowBits = quarter < 2 ? low & 0xF : low >> 4;
                int highBits = (block[128 + 32 * half + l] >> (2 * quarter)) & 3;
                int q = (lowBits | highBits << 4) - 32;
                return (float)(Half(block, 208) * (sbyte)block[192 + k / 16] * q);
            }
            default:
                throw new NotSupportedException(type);
        }
    }

    /// <summary>The 6-bit scale and minimum of sub-block j from the 12 packed bytes: bytes 0-3 hold scales 0-3 in
    /// their low 6 bits, bytes 4-7 minimums 0-3; sub-blocks 4-7 take their low 4 bits from bytes 8-11 (scale in the
    /// low nibble, minimum in the high one) and their top 2 bits from the top 2 bits of bytes 0-3 (scale) and 4-7
    /// (minimum).</summary>
    private static (int Scale, int Min) SixBit(ReadOnlySpan<byte> s, int j)
    {
        if (j < 4) return (s[j] % 64, s[4 + j] % 64);
        int scale = (s[8 + j - 4] % 16) + (s[j - 4] / 64) * 16;
        int min = (s[8 + j - 4] / 16) + (s[4 + j - 4] / 64) * 16;
        return (scale, min);
    }
}
