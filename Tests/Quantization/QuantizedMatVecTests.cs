using GemmaGen.Kernels;
using GemmaGen.Tests.Infrastructure;

namespace GemmaGen.Tests.Quantization;

/// <summary>
/// <see cref="QuantizedMatVec"/> (Avx512BW, Avx2 or scalar, whichever this process runs) against a float64 reference
/// over the same integers: the matrix's stored values and scales, and the kernel's own int16 quantization of the
/// input. The two sum the same integer products, so they differ only by float32 rounding of the per-block terms
/// and of their sum. Separately, the input quantization's bound, and the product against the dequantized matrix
/// times the float input within that bound; and the batched products of prefill against the dequantized matrix times
/// each token's input.
/// </summary>
[IsaSensitive]
[Collection(AllocationCountingCollection.Name)]
public sealed unsafe class QuantizedMatVecTests
{
    public static TheoryData<WeightFormat, int, int> Shapes()
    {
        var data = new TheoryData<WeightFormat, int, int>();
        foreach (var format in BlockFormats.All)
        {
            foreach (var (rows, cols) in new[] { (1, 32), (3, 64), (8, 96), (13, 160), (64, 256), (21, 2304), (8, 9216) })
                data.Add(format, rows, cols);
        }
        return data;
    }

    /// <summary>A matrix of <paramref name="rows"/> test rows, quantized.</summary>
    internal static WeightMatrix Matrix(WeightFormat format, int rows, int cols)
    {
        var matrix = new WeightMatrix("test.weight", rows, cols, format);
        for (int r = 0; r < rows; r++)
        {
            var row = KernelRow(cols, seed: 100 * r + cols);
            matrix.WriteRow(r, row);
        }
        return matrix;
    }

    /// <summary>Weights like a model's (uniform, a few outliers), or the layout tests' extreme blocks every seventh row.</summary>
    private static float[] KernelRow(int cols, int seed)
    {
        if (seed % 7 == 3) return QuantizedLayoutTests.TestRow(cols, seed);
        var row = GemmaGen.Tests.Kernels.KernelTestData.RandomFloats(cols, seed, scale: 0.05f);
        var random = new Random(seed);
        for (int i = 0; i < cols / 64 + 1; i++) row[random.Next(cols)] *= 20;
        return row;
    }

    /// <summary>An input with blocks of very different magnitudes, one of them all zero.</summary>
    internal static float[] Input(int cols, int seed)
    {
        var x = GemmaGen.Tests.Kernels.KernelTestData.RandomFloats(cols, seed, scale: 3f);
        for (int b = 0; b < cols / 32; b++)
        {
            float magnitude = b % 5 == 4 ? 0 : MathF.Pow(10, b % 4 - 2);
            for (int i = 0; i < 32; i++) x[b * 32 + i] *= magnitude;
        }
        return x;
    }

    /// <summary>The kernel's int16 input: x̂ [cols] and the scale of each block.</summary>
    private static (short[] Values, float[] Scales) QuantizedInput(float[] x)
    {
        int blocks = x.Length / 32;
        var values = new short[x.Length];
        var scales = new float[blocks];
        var sums = new int[blocks];
        fixed (float* px = x, ps = scales)
        fixed (int* pu = sums)
        fixed (short* pv = values)
        {
            QuantizedMatVec.QuantizeInput(px, blocks, pv, ps, pu);
        }
        for (int b = 0; b < blocks; b++) Assert.Equal(values.AsSpan(b * 32, 32).ToArray().Sum(v => v), sums[b]);
        return (values, scales);
    }

    /// <summary>The value of row r, column c (Q8_0: −127..127, Q4_0: −8..7) and the scale of its block (bf16 or IEEE
    /// half, <see cref="BlockFormats.Scale"/>), read from the bytes as the layout documents them: groups of 16 rows,
    /// [scales: blocks × 16, 64-byte aligned][records],
    /// a record's 64-byte vector k holding bytes 4k..4k+3 of every row's block (row i at 4i), stored unsigned.</summary>
    internal static (int Value, double Scale) Stored(WeightMatrix m, int r, int c)
    {
        bool q8 = BlockFormats.IsQ8(m.Format);
        int quantBytes = q8 ? 32 : 16;
        byte* group = (byte*)m.Data + r / 16 * QuantizedLayout.GroupBytes(m.Format, m.Cols);
        int lane = r % 16, b = c / 32, j = c % 32;
        double scale = BlockFormats.Scale(m.Format, ((ushort*)group)[b * 16 + lane]);
        byte* record = group + QuantizedLayout.ScaleBytes(m.Cols) + b * 16 * quantBytes;
        int k = q8 ? j : j % 16;
        byte stored = record[k / 4 * 64 + 4 * lane + k % 4];
        if (q8) return (stored - 128, scale);
        return ((j < 16 ? stored & 0xF : stored >> 4) - 8, scale);
    }

    /// <summary>Σ over blocks of d·s·Σ q·x̂ in float64, and the magnitude of its terms (what float32 rounding is relative to).</summary>
    private static (double Dot, double Magnitude) Reference(WeightMatrix m, int r, short[] x, float[] inputScales)
    {
        double dot = 0, magnitude = 0;
        for (int b = 0; b < m.Cols / 32; b++)
        {
            long sum = 0, magnitudeSum = 0;
            double scale = 0;
            for (int j = 0; j < 32; j++)
            {
                var (value, s) = Stored(m, r, b * 32 + j);
                scale = s * inputScales[b];
                sum += (long)value * x[b * 32 + j];
                // The kernels sum the stored integer (value + offset) and take offset·Σ x̂ off: both parts count.
                int offset = BlockFormats.Offset(m.Format);
                magnitudeSum += (long)(value + 2 * offset) * Math.Abs((int)x[b * 32 + j]);
            }
            dot += scale * sum;
            magnitude += Math.Abs(scale) * magnitudeSum;
        }
        return (dot, magnitude);
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void Rows_match_the_integer_reference_for_every_range(WeightFormat format, int rows, int cols)
    {
        using var matrix = Matrix(format, rows, cols);
        var x = Input(cols, seed: rows);
        var (xq, xs) = QuantizedInput(x);
        var expected = Enumerable.Range(0, rows).Select(r => Reference(matrix, r, xq, xs)).ToArray();
        double tolerance = (cols / 32 + 16) * Math.Pow(2, -23);

        foreach (var (start, end) in Ranges(rows))
        {
            var y = new float[rows + 1];
            Array.Fill(y, float.NaN);
            fixed (float* px = x, py = y)
            {
                matrix.MatVecRows(px, py, start, end);
            }
            for (int r = 0; r < rows + 1; r++)
            {
                if (r < start || r >= end)
                {
                    Assert.True(float.IsNaN(y[r]), $"[{start}, {end}): row {r} outside the range was written");
                    continue;
                }
                var (dot, magnitude) = expected[r];
                Assert.True(Math.Abs(y[r] - dot) <= tolerance * magnitude + 1e-30,
                    $"[{start}, {end}) row {r}: {y[r]} vs {dot} (terms of magnitude {magnitude})");
            }
        }
    }

    /// <summary>Whole, empty, single-row and unaligned ranges, and the halves a two-thread pool would take.</summary>
    internal static IEnumerable<(int Start, int End)> Ranges(int rows)
    {
        yield return (0, rows);
        yield return (0, 0);
        yield return (rows - 1, rows);
        yield return (rows / 2, rows);
        yield return (0, rows / 2);
        if (rows > 2) yield return (1, rows - 1);
        if (rows > 6) yield return (2, 7);
        if (rows > 5) yield return (5, rows);
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void Rows_are_the_dequantized_rows_times_x_within_the_input_rounding(WeightFormat format, int rows, int cols)
    {
        using var matrix = Matrix(format, rows, cols);
        var x = Input(cols, seed: rows + 1);
        var (xq, xs) = QuantizedInput(x);
        // x̂ = round(x · (32767 / max)) and s = max / 32767: three float32 roundings (the inverse, the product, s) move
        // x / s by at most 3·2⁻²⁴·32767 < 2⁻⁷ from the value that is rounded to an integer.
        const double inputBound = 0.5 + 1.0 / 128;
        for (int i = 0; i < cols; i++)
            Assert.True(Math.Abs(x[i] - xq[i] * (double)xs[i / 32]) <= xs[i / 32] * inputBound, $"x[{i}] = {x[i]} quantized to {xq[i]}·{xs[i / 32]}");

        var y = new float[rows];
        fixed (float* px = x, py = y)
        {
            matrix.MatVecRows(px, py, 0, rows);
        }
        AssertWithinInputRounding(matrix, x, y, i => xs[i / 32] * inputBound, "");
    }

    /// <summary>Each row of <paramref name="y"/> is the dequantized row times <paramref name="x"/> within Σ |w[i]| ·
    /// <paramref name="error"/>(i) (the most input i's rounding moves it) and float32 summation's 1e-5 of Σ |w[i]·x[i]|.</summary>
    internal static void AssertWithinInputRounding(WeightMatrix matrix, float[] x, ReadOnlySpan<float> y, Func<int, double> error, string what)
    {
        var w = new float[matrix.Cols];
        for (int r = 0; r < matrix.Rows; r++)
        {
            matrix.ReadRow(r, w);
            double exact = 0, bound = 0, magnitude = 0;
            for (int i = 0; i < w.Length; i++)
            {
                exact += (double)w[i] * x[i];
                bound += Math.Abs(w[i]) * error(i);
                magnitude += Math.Abs((double)w[i] * x[i]);
            }
            Assert.True(Math.Abs(y[r] - exact) <= bound + 1e-5 * magnitude + 1e-30, $"{what}row {r}: {y[r]} vs {exact}, bound {bound}");
        }
    }

    [Theory]
    [InlineData("q8_0", 8, 64)]
    [InlineData("q8_0", 36, 2304)]
    [InlineData("q4_0", 8, 64)]
    [InlineData("q4_0", 36, 2304)]
    [InlineData("q4_0", 10, 96)]
    [InlineData("q8_0-f16", 36, 2304)]
    [InlineData("q4_0-f16", 10, 96)]
    public void GateUpRows_is_gelu_of_the_gate_row_times_the_up_row(string formatName, int rows, int cols)
    {
        var format = BlockFormats.Find(formatName);
        using var matrix = Matrix(format, rows, cols);
        var x = Input(cols, seed: 5);
        var dots = new float[rows];
        fixed (float* px = x, pd = dots)
        {
            matrix.MatVecRows(px, pd, 0, rows);
        }
        int outputs = rows / 2;
        foreach (var (start, end) in new[] { (0, outputs), (1, outputs), (0, 1), (outputs / 2, outputs), (3, 4) })
        {
            var y = new float[outputs];
            fixed (float* px = x, py = y)
            {
                matrix.GateUpRows(px, py, start, end);
            }
            for (int i = start; i < end; i++)
                Assert.Equal(Activations.GeluTanh(dots[2 * i]) * dots[2 * i + 1], y[i]);
            for (int i = 0; i < outputs; i++)
            {
                if (i < start || i >= end) Assert.Equal(0, y[i]);
            }
        }
    }

    [Theory]
    [InlineData("q8_0", 13, 160, 7)]
    [InlineData("q8_0", 64, 2304, 32)]
    [InlineData("q4_0", 13, 160, 5)]
    [InlineData("q4_0", 20, 9216, 9)]
    [InlineData("q8_0-f16", 64, 2304, 32)]
    [InlineData("q4_0-f16", 13, 160, 5)]
    public void FloatMatMulRows_is_every_token_times_the_dequantized_rows(string formatName, int rows, int cols, int tokens)
    {
        var format = BlockFormats.Find(formatName);
        using var matrix = Matrix(format, rows, cols);
        const int pad = 3;
        int xStride = cols + pad, yStride = rows + pad;
        var x = new float[tokens * xStride];
        for (int t = 0; t < tokens; t++) Input(cols, seed: 40 + t).CopyTo(x, t * xStride);
        var w = Enumerable.Range(0, rows).Select(r =>
        {
            var row = new float[cols];
            matrix.ReadRow(r, row);
            return row;
        }).ToArray();

        foreach (var (start, end) in Ranges(rows))
        {
            var y = new float[tokens * yStride];
            Array.Fill(y, float.NaN);
            fixed (float* px = x, py = y)
            {
                QuantizedMatVec.FloatMatMulRows(matrix, px, xStride, tokens, py, yStride, start, end);
            }
            for (int t = 0; t < tokens; t++)
            {
                for (int r = 0; r < yStride; r++)
                {
                    float actual = y[t * yStride + r];
                    if (r < start || r >= end)
                    {
                        Assert.True(float.IsNaN(actual), $"[{start}, {end}) token {t}: row {r} outside the range was written");
                        continue;
                    }
                    double exact = 0, magnitude = 0;
                    for (int i = 0; i < cols; i++)
                    {
                        exact += (double)w[r][i] * x[t * xStride + i];
                        magnitude += Math.Abs((double)w[r][i] * x[t * xStride + i]);
                    }
                    Assert.True(Math.Abs(actual - exact) <= 1e-5 * magnitude + 1e-30, $"[{start}, {end}) token {t} row {r}: {actual} vs {exact}");
                }
            }
        }
    }

    [Theory]
    [InlineData("q8_0", 13, 160)]
    [InlineData("q8_0", 37, 2304)]
    [InlineData("q4_0", 21, 96)]
    [InlineData("q4_0", 16, 1088)]
    [InlineData("q8_0-f16", 40, 1056)]
    [InlineData("q4_0-f16", 13, 160)]
    public void TokenRows_give_every_token_the_integer_sums_of_decoding(string formatName, int rows, int cols)
    {
        var format = BlockFormats.Find(formatName);
        using var matrix = Matrix(format, rows, cols);
        const int pad = 3;
        int xStride = cols + pad, yStride = rows + pad;
        // One to nine tokens: every pass width (4, 3, 2, 1) and several passes; blocks past one chunk of 32.
        foreach (int tokens in new[] { 1, 2, 3, 4, 5, 9 })
        {
            var x = new float[tokens * xStride];
            for (int t = 0; t < tokens; t++) Input(cols, seed: 60 + 7 * t + tokens).CopyTo(x, t * xStride);
            var inputs = Enumerable.Range(0, tokens).Select(t => QuantizedInput(x.AsSpan(t * xStride, cols).ToArray())).ToArray();
            var alone = new float[tokens][];
            for (int t = 0; t < tokens; t++)
            {
                alone[t] = new float[rows];
                fixed (float* px = &x[t * xStride], py = alone[t]) matrix.MatVecRows(px, py, 0, rows);
            }
            double tolerance = (cols / 32 + 16) * Math.Pow(2, -23);
            foreach (var (start, end) in Ranges(rows))
            {
                var y = new float[tokens * yStride];
                Array.Fill(y, float.NaN);
                fixed (float* px = x, py = y)
                {
                    ((QuantizedFormat)format).TokenRows(matrix, px, xStride, tokens, py, yStride, start, end);
                }
                for (int t = 0; t < tokens; t++)
                {
                    for (int r = 0; r < yStride; r++)
                    {
                        float actual = y[t * yStride + r];
                        if (r < start || r >= end)
                        {
                            Assert.True(float.IsNaN(actual), $"{tokens} tokens [{start}, {end}) token {t}: row {r} outside the range was written");
                            continue;
                        }
                        var (dot, magnitude) = Reference(matrix, r, inputs[t].Values, inputs[t].Scales);
                        if (QuantizedMatVec.TokensSupported)
                        {
                            Assert.True(Math.Abs(actual - dot) <= tolerance * magnitude + 1e-30,
                                $"{tokens} tokens [{start}, {end}) token {t} row {r}: {actual} vs {dot} (terms of magnitude {magnitude})");
                        }
                        // Where decoding runs the 256-bit kernel, the same floats bit for bit as that token alone.
                        if (QuantizedMatVec.TokensSupported && !System.Runtime.Intrinsics.X86.Avx512BW.IsSupported)
                            Assert.Equal(alone[t][r], actual);
                    }
                }
            }
            if (!QuantizedMatVec.TokensSupported)
            {
                // Without AVX2 it is the float fallback, bit for bit.
                var y = new float[tokens * yStride];
                var expected = new float[tokens * yStride];
                fixed (float* px = x, py = y, pe = expected)
                {
                    ((QuantizedFormat)format).TokenRows(matrix, px, xStride, tokens, py, yStride, 0, rows);
                    QuantizedMatVec.FloatMatMulRows(matrix, px, xStride, tokens, pe, yStride, 0, rows);
                }
                Assert.Equal(expected, y);
            }
        }
    }

    [Fact]
    public void No_allocation_per_call_after_warm_up()
    {
        using var q8 = Matrix(WeightFormat.Q8_0, 16, 2304);
        using var q4 = Matrix(WeightFormat.Q4_0, 16, 9216);
        var x = Input(9216, seed: 1);
        var y = new float[16];
        fixed (float* px = x, py = y)
        {
            q4.MatVecRows(px, py, 0, 16);
            q8.MatVecRows(px, py, 0, 16);
            q8.GateUpRows(px, py, 0, 8);
            q4.MatMulRows(px, 0, 2, py, 8, 0, 8);
            QuantizedMatVec.FloatMatMulRows(q4, px, 0, 2, py, 8, 0, 8);
            ((QuantizedFormat)q8.Format).TokenRows(q8, px, 0, 5, py, 0, 0, 8);
            var windows = new AllocationWindows();
            windows.Mark();
            for (int window = 0; window < AllocationWindows.Count; window++)
            {
                for (int i = 0; i < 20; i++)
                {
                    q8.MatVecRows(px, py, 0, 16);
                    q4.MatVecRows(px, py, 4, 12);
                    q8.GateUpRows(px, py, 0, 8);
                    q4.GateUpRows(px, py, 2, 6);
                    q8.MatMulRows(px, 0, 2, py, 8, 1, 7);
                    QuantizedMatVec.FloatMatMulRows(q4, px, 0, 2, py, 8, 1, 7);
                    ((QuantizedFormat)q8.Format).TokenRows(q8, px, 0, 5, py, 0, 1, 7);
                }
                windows.Mark();
            }
            windows.AssertOneWindowAllocatedNothing("20 rounds of the quantized kernels");
        }
    }

    [Fact]
    public void Concurrent_calls_on_different_ranges_agree_with_one_call()
    {
        using var matrix = Matrix(WeightFormat.Q8_0, 256, 2304);
        var x = Input(2304, seed: 9);
        var whole = new float[256];
        var split = new float[256];
        fixed (float* px = x, pw = whole)
        {
            matrix.MatVecRows(px, pw, 0, 256);
        }
        using var pool = new WorkerPool(4);
        fixed (float* px = x, ps = split)
        {
            pool.Run(new RowsJob(matrix, px, ps), 256, grain: 16);
        }
        Assert.Equal(whole, split);
    }

    private sealed class RowsJob(WeightMatrix matrix, float* x, float* y) : IRowJob
    {
        public void Execute(int start, int end) => matrix.MatVecRows(x, y, start, end);
    }

    [Fact]
    public void The_float_fallback_refuses_element_formats_and_bad_ranges_are_refused()
    {
        using var bf16 = new WeightMatrix("bf16.weight", 4, 32, WeightFormat.BF16);
        using var q8 = new WeightMatrix("q8.weight", 4, 32, WeightFormat.Q8_0);
        var x = new float[32];
        var y = new float[4];
        fixed (float* px = x, py = y)
        {
            float* a = px, b = py;
            Assert.Throws<ArgumentException>(() => QuantizedMatVec.FloatMatMulRows(bf16, a, 32, 1, b, 4, 0, 4));
            Assert.Throws<ArgumentOutOfRangeException>(() => q8.MatVecRows(a, b, 0, 5));
            Assert.Throws<ArgumentOutOfRangeException>(() => q8.GateUpRows(a, b, 0, 3));
        }
    }
}
