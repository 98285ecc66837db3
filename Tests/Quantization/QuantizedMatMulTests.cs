using GemmaGen.Kernels;
using GemmaGen.Tests.Infrastructure;
using System.Runtime.Intrinsics.X86;
using static GemmaGen.Tests.Quantization.QuantizedMatVecTests;

namespace GemmaGen.Tests.Quantization;

/// <summary>
/// <see cref="QuantizedMatMul"/>, the integer prefill kernels, both of them wherever this process can run them: AVX-VNNI
/// and AVX2 (Q4_0's byte pairs, Q8_0's magnitudes times sign-moved inputs), each with the 512-bit scaling (AVX-512)
/// and the 256-bit one; where
/// it cannot (the child runs with AVX-512, AVX2 or AVX-VNNI disabled) the tests check that the kernel refuses and that
/// <see cref="WeightMatrix.MatMulRows"/> takes the other path.
/// Against a float64 reference over the same integers (the stored weights and scales and the kernel's own int8
/// quantization of each token's input), which differs only by float32 rounding; against the dequantized matrix times
/// the float inputs within the bound of the input rounding; and the two kernels, and the two scalings, against each
/// other, bit for bit (they sum the same integers exactly and scale them alike).
/// </summary>
[IsaSensitive]
[Collection(AllocationCountingCollection.Name)]
public sealed unsafe class QuantizedMatMulTests
{
    public static TheoryData<WeightFormat, int, int, int, bool, bool> Shapes()
    {
        var data = new TheoryData<WeightFormat, int, int, int, bool, bool>();
        foreach (var format in BlockFormats.All)
        {
            foreach (bool vnni in new[] { true, false })
            {
                foreach (bool wide in new[] { true, false })
                {
                    // Groups of 16 rows and their tails, chunks of 32 blocks and theirs (1088 = 34 blocks, 2304 = 72),
                    // four-token steps and single tokens.
                    foreach (var (rows, cols, tokens) in new[] { (1, 32, 1), (3, 64, 4), (13, 160, 7), (8, 256, 9), (21, 2304, 5), (40, 1088, 6), (17, 9216, 32) })
                        data.Add(format, rows, cols, tokens, vnni, wide);
                }
            }
        }
        return data;
    }

    /// <summary>Whether this process runs the chosen kernel for <paramref name="format"/>: AVX-VNNI or AVX2 pairs, with
    /// the 512-bit scaling (<paramref name="wide"/>, AVX-512) or the 256-bit one.</summary>
    private static bool Runs(WeightFormat format, bool vnni, bool wide = false) =>
        (!wide || QuantizedMatMul.WideSupported) &&
        (vnni ? AvxVnni.IsSupported && QuantizedMatMul.IsSupported(format) && !Per16(format) : QuantizedMatMul.IsSupported(format));

    /// <summary>Whether the format rounds its prefill inputs per 16 values (GGUF's blocks), which only the AVX2 kernels do.</summary>
    private static bool Per16(WeightFormat format) => ((QuantizedFormat)format).InputsPer16;

    /// <summary>Values per input scale of the format's prefill: 16 or 32.</summary>
    private static int InputBlock(WeightFormat format) => Per16(format) ? 16 : 32;

    /// <summary>What a test needs that this process lacks.</summary>
    private static string Missing(WeightFormat format, bool vnni, bool wide) =>
        string.Join(" and ", new[]
        {
            wide && !QuantizedMatMul.WideSupported ? "AVX-512 (the 512-bit scaling)" : null,
            vnni && !AvxVnni.IsSupported ? "AVX-VNNI" : null,
            vnni && Per16(format) ? $"AVX-VNNI kernel for {format}'s per-16 inputs (they run the AVX2 kernels)" : null,
            !(Avx2.IsSupported && Fma.IsSupported) ? "AVX2" : null,
        }.OfType<string>().DefaultIfEmpty(vnni ? "AVX-VNNI" : "AVX2"));

    /// <summary>The kernel's int8 input of one token: x̂ [cols], the scale of each block of <paramref name="block"/>
    /// values (32, or 16: <see cref="QuantizedMatMul.QuantizeHalves"/>), and where each one's sum starts.</summary>
    private static (sbyte[] Values, float[] Scales, int[] Starts) QuantizedInput(float[] x, int offset, int block = 32)
    {
        int blocks = x.Length / 32;
        var values = new sbyte[x.Length];
        var scales = new float[x.Length / block];
        var starts = new int[x.Length / block];
        fixed (float* px = x, ps = scales)
        fixed (sbyte* pv = values)
        fixed (int* pc = starts)
        {
            if (block == 16) QuantizedMatMul.QuantizeHalves(px, blocks, offset, pv, ps, pc);
            else QuantizedMatMul.QuantizeInput(px, blocks, offset, pv, ps, pc);
        }
        return (values, scales, starts);
    }

    [SkippableTheory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(2)]
    public void Inputs_round_to_int8_within_half_a_step(int seed)
    {
        Skip.IfNot(Avx2.IsSupported, "no AVX2 in this process: QuantizeInput is only called by the integer kernels, which need it");
        foreach (int block in new[] { 32, 16 })
        {
            var x = Input(320, seed);
            // A zero half block and a zero block: all zero, scale 0.
            Array.Clear(x, 64, 16);
            Array.Clear(x, 128, 32);
            var (values, scales, starts) = QuantizedInput(x, offset: 128, block);
            // x̂ = round(x · (127 / max)) and s = max / 127: three float32 roundings move x / s by far less than 2⁻¹⁶.
            const double bound = 0.5 + 1.0 / 65536;
            Assert.Equal(320 / block, scales.Length);
            for (int b = 0; b < 320 / block; b++)
            {
                float max = 0;
                for (int i = 0; i < block; i++) max = Math.Max(max, Math.Abs(x[b * block + i]));
                Assert.Equal(max / 127, scales[b]);
                Assert.Equal(-128 * values.AsSpan(b * block, block).ToArray().Sum(v => v), starts[b]);
                Assert.Equal(max == 0 ? 0 : 127, values.AsSpan(b * block, block).ToArray().Max(v => Math.Abs((int)v)));
                for (int i = b * block; i < b * block + block; i++)
                    Assert.True(Math.Abs(x[i] - values[i] * (double)scales[b]) <= scales[b] * bound, $"per {block}: x[{i}] = {x[i]} quantized to {values[i]}·{scales[b]}");
            }
            Assert.Equal(0, scales[(block == 16 ? 64 : 128) / block]);
        }
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void Rows_match_the_integer_reference_for_every_range_and_token(WeightFormat format, int rows, int cols, int tokens, bool vnni, bool wide)
    {
        if (!Runs(format, vnni, wide))
        {
            Assert.Throws<PlatformNotSupportedException>(() => Run(format, rows, cols, tokens, 0, rows, vnni, wide, out _, out _));
            return;
        }
        int offset = BlockFormats.Offset(format);
        using var matrix = Matrix(format, rows, cols);
        foreach (var (start, end) in Ranges(rows))
        {
            var y = Run(format, rows, cols, tokens, start, end, vnni, wide, out var x, out int yStride);
            int block = InputBlock(format);
            for (int t = 0; t < tokens; t++)
            {
                var (xq, xs, _) = QuantizedInput(x[t], offset, block);
                for (int r = 0; r < yStride; r++)
                {
                    float actual = y[t * yStride + r];
                    if (r < start || r >= end)
                    {
                        Assert.True(float.IsNaN(actual), $"[{start}, {end}) token {t}: row {r} outside the range was written");
                        continue;
                    }
                    // Per input block (32 values, or 16 with per-16 inputs): the weight scale of its 32-block times its
                    // input scale, times the exact integer sum.
                    double dot = 0, magnitude = 0;
                    for (int b = 0; b < cols / block; b++)
                    {
                        long sum = 0, magnitudeSum = 0;
                        double scale = 0;
                        for (int j = 0; j < block; j++)
                        {
                            var (value, s) = Stored(matrix, r, b * block + j);
                            scale = s * xs[b];
                            sum += (long)value * xq[b * block + j];
                            // The kernel sums the unsigned weight (value + offset) and starts at −offset·Σ x̂: both parts count.
                            magnitudeSum += (long)(Math.Abs(value) + 2 * offset) * Math.Abs((int)xq[b * block + j]);
                        }
                        dot += scale * sum;
                        magnitude += Math.Abs(scale) * magnitudeSum;
                    }
                    double tolerance = (cols / block + 16) * Math.Pow(2, -23);
                    Assert.True(Math.Abs(actual - dot) <= tolerance * magnitude + 1e-30,
                        $"[{start}, {end}) token {t} row {r}: {actual} vs {dot} (terms of magnitude {magnitude})");
                }
            }
        }
    }

    [SkippableTheory]
    [MemberData(nameof(Shapes))]
    public void Rows_are_every_token_times_the_dequantized_rows_within_the_input_rounding(WeightFormat format, int rows, int cols, int tokens, bool vnni, bool wide)
    {
        Skip.IfNot(Runs(format, vnni, wide), $"no {Missing(format, vnni, wide)} in this process (the kernel's refusal is asserted above)");
        using var matrix = Matrix(format, rows, cols);
        var y = Run(format, rows, cols, tokens, 0, rows, vnni, wide, out var x, out int yStride);
        int block = InputBlock(format);
        for (int t = 0; t < tokens; t++)
        {
            var (_, xs, _) = QuantizedInput(x[t], 0, block);
            AssertWithinInputRounding(matrix, x[t], y.AsSpan(t * yStride, rows), i => xs[i / block] * (0.5 + 1.0 / 65536), $"token {t} ");
        }
    }

    [SkippableTheory]
    [InlineData(24, 2304, 13)]
    [InlineData(9, 9216, 6)]
    public void The_two_Q4_0_kernels_agree_bit_for_bit(int rows, int cols, int tokens)
    {
        Skip.IfNot(Runs(WeightFormat.Q4_0, vnni: true) && Runs(WeightFormat.Q4_0, vnni: false), "this process cannot run both Q4_0 kernels (AVX-VNNI and AVX2)");
        var viaVnni = Run(WeightFormat.Q4_0, rows, cols, tokens, 0, rows, vnni: true, wide: false, out _, out _);
        var viaPairs = Run(WeightFormat.Q4_0, rows, cols, tokens, 0, rows, vnni: false, wide: false, out _, out _);
        Assert.Equal(viaVnni, viaPairs);
    }

    /// <summary>The 512-bit scaling against the 256-bit one: the same integers in the same lanes, scaled by the same
    /// float operations, so bit for bit, for every range.</summary>
    [SkippableTheory]
    [InlineData("q8_0", true, 40, 2304, 9)]
    [InlineData("q8_0", true, 21, 1088, 4)]
    [InlineData("q4_0", true, 40, 2304, 9)]
    [InlineData("q4_0", false, 40, 2304, 9)]
    [InlineData("q4_0", false, 21, 9216, 6)]
    [InlineData("q8_0-f16", true, 40, 2304, 9)]
    [InlineData("q4_0-f16", true, 21, 1088, 4)]
    [InlineData("q4_0-f16", false, 40, 2304, 9)]
    public void The_512_bit_and_256_bit_scalings_agree_bit_for_bit(string formatName, bool vnni, int rows, int cols, int tokens)
    {
        var format = BlockFormats.Find(formatName);
        Skip.IfNot(Runs(format, vnni, wide: true) && Runs(format, vnni, wide: false), $"this process cannot run both scalings of the {(vnni ? "AVX-VNNI" : "AVX2")} kernel ({Missing(format, vnni, wide: true)})");
        foreach (var (start, end) in Ranges(rows))
        {
            var wide = Run(format, rows, cols, tokens, start, end, vnni, wide: true, out _, out _);
            var narrow = Run(format, rows, cols, tokens, start, end, vnni, wide: false, out _, out _);
            Assert.Equal(narrow, wide);
        }
    }

    [Theory]
    [InlineData("q8_0")]
    [InlineData("q4_0")]
    [InlineData("q8_0-f16")]
    [InlineData("q4_0-f16")]
    public void MatMulRows_takes_the_int8_kernels_where_the_CPU_has_them_and_the_decode_products_elsewhere(string formatName)
    {
        var format = BlockFormats.Find(formatName);
        // GGUF's blocks as stored (half scales) round per 16, and only batches of ByteTokensFrom tokens or more: smaller
        // ones compute as exactly as decoding (int16 inputs) even where the int8 kernels run.
        Assert.Equal(BlockFormats.HalfScales(format), Per16(format));
        Assert.Equal(QuantizedMatMul.IsSupported(format), format.RoundsPrefillInputs);
        Assert.Equal(Avx2.IsSupported && Fma.IsSupported, QuantizedMatMul.IsSupported(format));
        const int rows = 12, cols = 256;
        using var matrix = Matrix(format, rows, cols);
        foreach (int tokens in new[] { 6, WeightFormat.ByteTokensFrom - 1, WeightFormat.ByteTokensFrom, 21 })
        {
            var x = new float[tokens * cols];
            for (int t = 0; t < tokens; t++) Input(cols, seed: 7 + t).CopyTo(x, t * cols);
            float[] Product(Action<IntPtr, IntPtr> kernel)
            {
                var y = new float[tokens * rows];
                fixed (float* px = x, py = y) kernel((IntPtr)px, (IntPtr)py);
                return y;
            }
            var dispatched = Product((px, py) => matrix.MatMulRows((float*)px, cols, tokens, (float*)py, rows, 0, rows));
            bool int8 = format.RoundsPrefillInputs && (!Per16(format) || tokens >= WeightFormat.ByteTokensFrom);
            // Per-16 inputs run the AVX2 kernels on every CPU; per 32, AVX-VNNI where the CPU has it.
            var expected = int8
                ? Product((px, py) => QuantizedMatMul.Rows(matrix, (float*)px, cols, tokens, (float*)py, rows, 0, rows, AvxVnni.IsSupported && !Per16(format)))
                : Product((px, py) => ((QuantizedFormat)format).TokenRows(matrix, (float*)px, cols, tokens, (float*)py, rows, 0, rows));
            Assert.Equal(expected, dispatched);
            var other = int8
                ? Product((px, py) => ((QuantizedFormat)format).TokenRows(matrix, (float*)px, cols, tokens, (float*)py, rows, 0, rows))
                : null;
            if (other != null) Assert.NotEqual(other, dispatched);
        }
    }

    [SkippableFact]
    public void No_allocation_per_call_after_warm_up()
    {
        Skip.IfNot(QuantizedMatMul.IsSupported(WeightFormat.Q4_0), "this process has no integer prefill kernel (AVX2 or AVX-VNNI)");
        using var q8 = Matrix(WeightFormat.Q8_0, 16, 2304);
        using var q4 = Matrix(WeightFormat.Q4_0, 16, 9216);
        var x = new float[4 * 9216];
        var y = new float[4 * 16];
        fixed (float* px = x, py = y)
        {
            QuantizedMatMul.Rows(q4, px, 9216, 4, py, 16, 0, 16);
            var windows = new AllocationWindows();
            windows.Mark();
            for (int window = 0; window < AllocationWindows.Count; window++)
            {
                for (int i = 0; i < 4; i++)
                {
                    if (QuantizedMatMul.IsSupported(WeightFormat.Q8_0)) QuantizedMatMul.Rows(q8, px, 2304, 4, py, 16, 3, 13);
                    QuantizedMatMul.Rows(q4, px, 9216, 3, py, 16, 0, 16);
                }
                windows.Mark();
            }
            windows.AssertOneWindowAllocatedNothing("4 rounds of the integer matrix-matrix kernels");
        }
    }

    /// <summary>Runs the chosen kernel on a test matrix and inputs (strides padded), rows outside the range left NaN.</summary>
    private static float[] Run(WeightFormat format, int rows, int cols, int tokens, int start, int end, bool vnni, bool wide, out float[][] x, out int yStride)
    {
        using var matrix = Matrix(format, rows, cols);
        const int pad = 3;
        int xStride = cols + pad;
        yStride = rows + pad;
        x = Enumerable.Range(0, tokens).Select(t => Input(cols, seed: 40 + t)).ToArray();
        var packed = new float[tokens * xStride];
        for (int t = 0; t < tokens; t++) x[t].CopyTo(packed, t * xStride);
        var y = new float[tokens * yStride];
        Array.Fill(y, float.NaN);
        fixed (float* px = packed, py = y)
        {
            QuantizedMatMul.Rows(matrix, px, xStride, tokens, py, yStride, start, end, vnni, wide);
        }
        return y;
    }
}
