using GemmaGen.Kernels;
using GemmaGen.Tests.Infrastructure;
using Xunit;

namespace GemmaGen.Tests.Host;

/// <summary>
/// GGUF's Q8_0 and Q4_0 tensors kept as stored (<see cref="WeightFormat.Q8_0F16"/>, <see cref="WeightFormat.Q4_0F16"/>):
/// the fixtures load into those formats at their block sizes (the Q6_K embedding of the Q4_0 file as stored too),
/// every weight reads back bit for bit as ggml's dequantization of the file (<see cref="GgmlDequantizer"/>), the plan
/// counts the same bytes, <c>--quant</c> still converts through float, stacked parts of different types fall back to
/// F32, and a non-finite block scale is refused naming the tensor.
/// </summary>
[IsaSensitive]
public sealed unsafe class GgufBlockWeightsTests : IDisposable
{
    private readonly TempDirectory _temp = new();

    public void Dispose() => _temp.Dispose();

    /// <summary>Every matrix of a loaded model with the GGUF tensors of its rows: (tensor, rows of the matrix it fills,
    /// first row, row step).</summary>
    private static IEnumerable<(WeightMatrix Matrix, string Tensor, int First, int Step)> Parts(ModelWeights weights, int layers)
    {
        yield return (weights.Embed, "token_embd.weight", 0, 1);
        for (int l = 0; l < layers; l++)
        {
            var layer = weights.Layers[l];
            int q = (int)(layer.Qkv.Rows - 2 * 128);
            yield return (layer.Qkv, $"blk.{l}.attn_q.weight", 0, 1);
            yield return (layer.Qkv, $"blk.{l}.attn_k.weight", q, 1);
            yield return (layer.Qkv, $"blk.{l}.attn_v.weight", q + 128, 1);
            yield return (layer.O, $"blk.{l}.attn_output.weight", 0, 1);
            yield return (layer.GateUp, $"blk.{l}.ffn_gate.weight", 0, 2);
            yield return (layer.GateUp, $"blk.{l}.ffn_up.weight", 1, 2);
            yield return (layer.Down, $"blk.{l}.ffn_down.weight", 0, 1);
        }
    }

    [Theory]
    [InlineData("q8_0", "q8_0-f16", 1.0625, "q8_0-f16")]
    [InlineData("q4_0", "q4_0-f16", 0.5625, "q6_k")]
    public void Q8_0_and_Q4_0_tensors_load_into_their_blocks_as_stored(string name, string formatName, double bytesPerWeight, string embedFormat)
    {
        using var gguf = GgufCheckpoint.Open(GgufFixtures.Path(name));
        using var weights = ModelWeights.Load(gguf.Config, gguf);
        Assert.Equal(embedFormat, weights.Embed.Format.Name);
        Assert.Null(weights.LmHead);
        foreach (var layer in weights.Layers)
        {
            foreach (var m in layer.Matrices)
            {
                Assert.Equal(formatName, m.Format.Name);
                // Groups of 16 rows, each with its scales padded to 64 bytes.
                long groups = (m.Rows + 15) / 16, padding = (64 - m.Cols / 32 * 32 % 64) % 64;
                Assert.Equal((long)(groups * 16 * m.Cols * bytesPerWeight) + groups * padding, m.ByteLength);
            }
        }
        // The plan, made before loading from the tensor types alone, counts what was allocated.
        var plan = LoadPlan.Create(gguf.Config, gguf, tokenizer: gguf.LoadTokenizer());
        Assert.Equal(weights.ByteLength, plan.WeightBytes);
    }

    [Theory]
    [InlineData("q8_0")]
    [InlineData("q4_0")]
    public void Every_weight_reads_back_bit_for_bit_as_ggml_dequantizes_the_file(string name)
    {
        using var gguf = GgufCheckpoint.Open(GgufFixtures.Path(name));
        using var weights = ModelWeights.Load(gguf.Config, gguf);
        long compared = 0;
        foreach (var (matrix, tensorName, first, step) in Parts(weights, gguf.Config.NumHiddenLayers))
        {
            var tensor = gguf.File.Tensors.Single(t => t.Name == tensorName);
            int cols = (int)tensor.Shape[0], rows = (int)(tensor.ElementCount / cols);
            var expected = new float[tensor.ElementCount];
            GgmlDequantizer.Dequantize(tensor.Type, gguf.File.GetBytes(tensorName), expected);
            var row = new float[cols];
            for (int r = 0; r < rows; r++)
            {
                matrix.ReadRow(first + r * step, row);
                for (int c = 0; c < cols; c++)
                {
                    if (BitConverter.SingleToInt32Bits(row[c]) != BitConverter.SingleToInt32Bits(expected[(long)r * cols + c]))
                        Assert.Fail($"{name}: {tensorName} ({tensor.TypeName} in {matrix.Format}) row {r} column {c}: {row[c]:R}, ggml {expected[(long)r * cols + c]:R}");
                }
            }
            compared += expected.Length;
        }
        Assert.Equal(4096L * 256 + 6L * (256 * 256 + 2 * 128 * 256 + 256 * 256 + 3 * 768 * 256), compared);
    }

    [Fact]
    public void A_format_asked_for_converts_through_float()
    {
        using var gguf = GgufCheckpoint.Open(GgufFixtures.Path("q8_0"));
        using var weights = ModelWeights.Load(gguf.Config, gguf, WeightFormat.Q4_0);
        var down = weights.Layers[2].Down;
        Assert.Same(WeightFormat.Q4_0, down.Format);
        var tensor = gguf.File.Tensors.Single(t => t.Name == "blk.2.ffn_down.weight");
        var values = new float[tensor.ElementCount];
        GgmlDequantizer.Dequantize(tensor.Type, gguf.File.GetBytes(tensor.Name), values);
        // The same rows quantized from ggml's float values by GemmaGen's own Q4_0.
        using var expected = new WeightMatrix("expected", down.Rows, down.Cols, WeightFormat.Q4_0);
        for (int r = 0; r < down.Rows; r++) expected.WriteRow(r, values.AsSpan(r * down.Cols, down.Cols));
        Assert.True(new ReadOnlySpan<byte>(down.Data, (int)down.ByteLength).SequenceEqual(new ReadOnlySpan<byte>(expected.Data, (int)expected.ByteLength)));
    }

    [Fact]
    public void Stacked_parts_of_different_types_keep_their_own_formats_with_every_value_exact()
    {
        // Layer 0's attn_k of the Q8_0 file relabelled Q4_0 (its first 128 × 8 × 18 bytes read as Q4_0 blocks; their
        // scales are the file's int8 bytes, some not finite, so the check is off): a q/k/v stack of Q8_0, Q4_0, Q8_0.
        string path = GgufRewriter.Rewrite(GgufFixtures.Path("q8_0"), _temp.File("mixed.gguf"), _ => { },
            typeOf: t => t.Name == "blk.0.attn_k.weight" ? GgmlType.Q4_0.Id : t.TypeId);
        using var gguf = GgufCheckpoint.Open(path);
        using var weights = ModelWeights.Load(gguf.Config, gguf, checkFinite: false);
        Assert.Equal([WeightFormat.Q8_0F16, WeightFormat.Q4_0F16, WeightFormat.Q8_0F16], weights.Layers[0].Qkv.Parts.Select(p => p.Part.Format));
        Assert.Same(WeightFormat.Q8_0F16, weights.Layers[1].Qkv.Format);
        Assert.Same(WeightFormat.Q8_0F16, weights.Layers[0].O.Format);
        foreach (var (tensorName, first) in new[] { ("blk.0.attn_q.weight", 0), ("blk.0.attn_k.weight", 256) })
        {
            var tensor = gguf.File.Tensors.Single(t => t.Name == tensorName);
            var expected = new float[tensor.ElementCount];
            GgmlDequantizer.Dequantize(tensor.Type, gguf.File.GetBytes(tensorName), expected);
            var row = new float[256];
            for (int r = 0; r < expected.Length / 256; r++)
            {
                weights.Layers[0].Qkv.ReadRow(first + r, row);
                for (int c = 0; c < 256; c++)
                {
                    float e = expected[r * 256 + c];
                    // A block whose half scale is not finite (ggml gives NaN or infinities) is one the loader refuses
                    // when it checks; the part's kernels assume finite scales, so those blocks are not compared.
                    if (!float.IsFinite(e)) continue;
                    Assert.True(BitConverter.SingleToInt32Bits(row[c]) == BitConverter.SingleToInt32Bits(e),
                        $"{tensorName} row {r} column {c}: {row[c]:R}, ggml {e:R}");
                }
            }
        }
    }

    [Theory]
    [InlineData("q8_0", 34, (ushort)0x7C00, "+infinity")]
    [InlineData("q4_0", 18, (ushort)0xFE00, "NaN")]
    public void A_non_finite_block_scale_is_refused_naming_the_tensor_and_the_block(string name, int blockBytes, ushort scale, string kind)
    {
        byte[] bytes = File.ReadAllBytes(GgufFixtures.Path(name));
        long at;
        using (var file = GgufFile.Open(GgufFixtures.Path(name)))
            at = file.DataOffset + file.Tensors.Single(t => t.Name == "blk.3.ffn_up.weight").Offset;
        // Row 5, block 2 (columns 64..95) of the [768, 256] tensor: 8 blocks per row.
        BitConverter.TryWriteBytes(bytes.AsSpan((int)(at + (5 * 8 + 2) * blockBytes)), scale);
        string path = _temp.File($"{name}-bad.gguf");
        File.WriteAllBytes(path, bytes);
        using var gguf = GgufCheckpoint.Open(path);
        var e = Assert.Throws<WeightLoadException>(() => ModelWeights.Load(gguf.Config, gguf).Dispose());
        Assert.Equal(
            $"{path} (GGUF tensor 'blk.3.ffn_up.weight', {name.ToUpperInvariant()}): tensor 'model.layers.3.mlp.up_proj.weight' has 1 non-finite {name.ToUpperInvariant()} block scale (first {kind}, the block at row 5, column 64)",
            e.Message);
        using var unchecked_ = ModelWeights.Load(gguf.Config, gguf, checkFinite: false);
    }

    [Fact]
    public void The_formats_of_blocks_as_stored_are_registered_apart_from_the_conversion_targets()
    {
        Assert.Equal(["q8_0-f16", "q4_0-f16", "q4_k", "q5_k", "q6_k"], WeightFormat.AsStored.Select(f => f.Name));
        Assert.Empty(WeightFormat.AsStored.Intersect(WeightFormat.All));
        Assert.Null(WeightFormat.Find("q8_0-f16"));
        Assert.Same(WeightFormat.Q8_0F16, WeightFormat.ForStored(TensorDType.Q8_0));
        Assert.Same(WeightFormat.Q4_0F16, WeightFormat.ForStored(TensorDType.Q4_0));
        Assert.Same(WeightFormat.Q4_K, WeightFormat.ForStored(TensorDType.Q4_K));
        Assert.Same(WeightFormat.Q5_K, WeightFormat.ForStored(TensorDType.Q5_K));
        Assert.Same(WeightFormat.Q6_K, WeightFormat.ForStored(TensorDType.Q6_K));
        Assert.Null(WeightFormat.Find("q4_k"));
        Assert.Null(WeightFormat.ForStored(TensorDType.F16));
        Assert.Equal(34, TensorView.RowBytes(TensorDType.Q8_0, 32));
        Assert.Equal(18 * 8, TensorView.RowBytes(TensorDType.Q4_0, 256));
        Assert.Throws<ArgumentException>(() => TensorView.RowBytes(TensorDType.Q4_0, 48));
        Assert.Equal(144 * 9, TensorView.RowBytes(TensorDType.Q4_K, 2304));
        Assert.Equal(176, TensorView.RowBytes(TensorDType.Q5_K, 256));
        Assert.Equal(210 * 2, TensorView.RowBytes(TensorDType.Q6_K, 512));
        Assert.Throws<ArgumentException>(() => TensorView.RowBytes(TensorDType.Q6_K, 288));
    }
}
