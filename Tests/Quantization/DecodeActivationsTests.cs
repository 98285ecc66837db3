using GemmaGen.Kernels;
using GemmaGen.Tests.Infrastructure;
using System.Runtime.Intrinsics.X86;
using static GemmaGen.Tests.Quantization.QuantizedMatVecTests;

namespace GemmaGen.Tests.Quantization;

/// <summary>
/// <see cref="DecodeActivations.Int8"/>: the Q4_0 blocks' decode (<see cref="WeightMatrix.MatVecRows"/>, the fused
/// gate/up) and batches of every size round activations to int8 per 16 values. Decoding a token is that token of any
/// batch, bit for bit (so a sequence decodes alike alone and among others); it lies within the input rounding of the
/// dequantized rows times the float input; the other formats, and CPUs without AVX2 (the child processes), compute as
/// with int16 activations.
/// </summary>
[IsaSensitive]
[Collection(AllocationCountingCollection.Name)]
public sealed unsafe class DecodeActivationsTests
{
    public static TheoryData<string, int, int> Shapes() => new()
    {
        // Group tails, a chunk and its tail (1088 = 34 blocks), the 2B width and the 2B down projection's.
        { "q4_0", 1, 32 }, { "q4_0", 21, 2304 }, { "q4_0", 40, 1088 }, { "q4_0", 17, 9216 },
        { "q4_0-f16", 13, 160 }, { "q4_0-f16", 21, 2304 }, { "q4_0-f16", 40, 1088 },
    };

    private static bool Runs => Avx2.IsSupported && Fma.IsSupported;

    [SkippableTheory]
    [MemberData(nameof(Shapes))]
    public void Decoding_a_token_is_that_token_of_any_batch_bit_for_bit(string formatName, int rows, int cols)
    {
        Skip.IfNot(Runs, "no AVX2 in this process: int8 activations fall back to int16 (asserted by Without_AVX2_the_setting_changes_nothing)");
        using var matrix = Matrix(BlockFormats.Find(formatName), rows, cols);
        matrix.DecodeActivations = DecodeActivations.Int8;
        foreach (int tokens in new[] { 1, 3, WeightFormat.ByteTokensFrom - 1, WeightFormat.ByteTokensFrom, 21 })
        {
            var x = new float[tokens * cols];
            for (int t = 0; t < tokens; t++) Input(cols, seed: 11 + t).CopyTo(x, t * cols);
            var batch = new float[tokens * rows];
            fixed (float* px = x, py = batch) matrix.MatMulRows(px, cols, tokens, py, rows, 0, rows);
            for (int t = 0; t < tokens; t++)
            {
                foreach (var (start, end) in Ranges(rows))
                {
                    var y = Enumerable.Repeat(float.NaN, rows).ToArray();
                    fixed (float* px = x, py = y) matrix.MatVecRows(px + t * cols, py, start, end);
                    for (int r = 0; r < rows; r++)
                    {
                        float expected = r >= start && r < end ? batch[t * rows + r] : float.NaN;
                        Assert.True(expected.Equals(y[r]), $"{tokens} tokens, token {t}, rows [{start}, {end}), row {r}: decode {y[r]}, batch {expected}");
                    }
                }
            }
        }
    }

    [SkippableTheory]
    [MemberData(nameof(Shapes))]
    public void Int8_decode_is_the_dequantized_rows_times_the_input_within_its_rounding(string formatName, int rows, int cols)
    {
        Skip.IfNot(Runs, "no AVX2 in this process: int8 activations fall back to int16");
        using var matrix = Matrix(BlockFormats.Find(formatName), rows, cols);
        matrix.DecodeActivations = DecodeActivations.Int8;
        var x = Input(cols, seed: 5);
        var y = new float[rows];
        fixed (float* px = x, py = y) matrix.MatVecRows(px, py, 0, rows);

        // The scale of each 16 inputs, computed here: max |x| / 127 over the half block.
        var scales = new double[cols / 16];
        for (int h = 0; h < scales.Length; h++)
        {
            for (int i = 0; i < 16; i++) scales[h] = Math.Max(scales[h], Math.Abs(x[16 * h + i]));
            scales[h] /= 127;
        }
        AssertWithinInputRounding(matrix, x, y, i => scales[i / 16] * (0.5 + 1.0 / 65536), "");

        // Coarser than int16: the same product with int16 activations differs (the setting is not ignored).
        matrix.DecodeActivations = DecodeActivations.Int16;
        var int16 = new float[rows];
        fixed (float* px = x, py = int16) matrix.MatVecRows(px, py, 0, rows);
        Assert.NotEqual(int16, y);
    }

    [SkippableTheory]
    [InlineData("q4_0", 24, 2304)]
    [InlineData("q4_0-f16", 40, 1088)]
    public void The_fused_gate_up_gates_the_int8_products_of_its_rows(string formatName, int outputs, int cols)
    {
        Skip.IfNot(Runs, "no AVX2 in this process: int8 activations fall back to int16");
        using var matrix = Matrix(BlockFormats.Find(formatName), 2 * outputs, cols);
        matrix.DecodeActivations = DecodeActivations.Int8;
        var x = Input(cols, seed: 9);
        var products = new float[2 * outputs];
        fixed (float* px = x, py = products) matrix.MatVecRows(px, py, 0, 2 * outputs);
        foreach (var (start, end) in Ranges(outputs))
        {
            var expected = Enumerable.Repeat(float.NaN, outputs).ToArray();
            fixed (float* pp = products, pe = expected) Activations.GeluTanhGated(pp + 2 * start, pe + start, end - start);
            var y = Enumerable.Repeat(float.NaN, outputs).ToArray();
            fixed (float* px = x, py = y) matrix.GateUpRows(px, py, start, end);
            Assert.Equal(expected, y);
        }
    }

    [Theory]
    [InlineData("q8_0")]
    [InlineData("q8_0-f16")]
    [InlineData("bf16")]
    [InlineData("q4_k")]
    public void Other_formats_compute_as_with_int16_activations(string formatName)
    {
        var format = WeightFormat.Find(formatName, [.. WeightFormat.All, .. WeightFormat.AsStored])!;
        const int rows = 32, cols = 256;
        using var matrix = new WeightMatrix("test.weight", rows, cols, format);
        for (int r = 0; r < rows; r++) matrix.WriteRow(r, Input(cols, seed: 50 + r));
        Assert.Equal(Products(matrix, DecodeActivations.Int16, 5), Products(matrix, DecodeActivations.Int8, 5));
        Assert.Equal(Products(matrix, DecodeActivations.Int16, 1), Products(matrix, DecodeActivations.Int8, 1));
    }

    [SkippableFact]
    public void Without_AVX2_the_setting_changes_nothing()
    {
        Skip.If(Runs, "this process has AVX2: the int8 products run (the child processes without AVX2 run this test)");
        using var matrix = Matrix(WeightFormat.Q4_0, 24, 256);
        Assert.Equal(Products(matrix, DecodeActivations.Int16, 1), Products(matrix, DecodeActivations.Int8, 1));
        Assert.Equal(Products(matrix, DecodeActivations.Int16, 3), Products(matrix, DecodeActivations.Int8, 3));
    }

    [Fact]
    public void A_stack_passes_the_setting_to_its_parts()
    {
        using var stack = WeightMatrix.Stack("qkv", 256, [("q", 16, WeightFormat.Q4_0), ("k", 16, WeightFormat.Q8_0)]);
        stack.DecodeActivations = DecodeActivations.Int8;
        Assert.All(stack.Parts, p => Assert.Equal(DecodeActivations.Int8, p.Part.DecodeActivations));
    }

    [SkippableFact]
    public void No_allocation_per_token_after_warm_up()
    {
        Skip.IfNot(Runs, "no AVX2 in this process: int8 activations fall back to int16, whose kernels the decode tests count");
        using var q4 = Matrix(WeightFormat.Q4_0, 64, 2304);
        q4.DecodeActivations = DecodeActivations.Int8;
        var x = Input(2304, seed: 3);
        var y = new float[64];
        fixed (float* px = x, py = y)
        {
            q4.MatVecRows(px, py, 0, 64);
            q4.GateUpRows(px, py, 0, 32);
            var windows = new AllocationWindows();
            windows.Mark();
            for (int window = 0; window < AllocationWindows.Count; window++)
            {
                for (int i = 0; i < 4; i++)
                {
                    q4.MatVecRows(px, py, 3, 61);
                    q4.GateUpRows(px, py, 1, 30);
                }
                windows.Mark();
            }
            windows.AssertOneWindowAllocatedNothing("4 rounds of int8 decode products");
        }
    }

    /// <summary>The matrix times <paramref name="tokens"/> inputs (decode for one) with the setting given.</summary>
    private static float[] Products(WeightMatrix matrix, DecodeActivations activations, int tokens)
    {
        matrix.DecodeActivations = activations;
        int rows = matrix.Rows, cols = matrix.Cols;
        var x = new float[tokens * cols];
        for (int t = 0; t < tokens; t++) Input(cols, seed: 21 + t).CopyTo(x, t * cols);
        var y = new float[tokens * rows];
        fixed (float* px = x, py = y)
        {
            if (tokens == 1) matrix.MatVecRows(px, py, 0, rows);
            else matrix.MatMulRows(px, cols, tokens, py, rows, 0, rows);
        }
        return y;
    }
}
