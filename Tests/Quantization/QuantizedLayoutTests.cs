using GemmaGen.Kernels;
using GemmaGen.Tests.Infrastructure;

namespace GemmaGen.Tests.Quantization;

/// <summary>
/// Quantizing rows into <see cref="WeightFormat.Q8_0"/> and <see cref="WeightFormat.Q4_0"/> (and GGUF's block formats,
/// <see cref="WeightFormat.Q8_0F16"/>, <see cref="WeightFormat.Q4_0F16"/>, whose scales are IEEE halves) and reading them back:
/// the worst-case error of every element against the exact bound of its block, the panel layout, and the storage
/// size. Quantization uses Vector256 code where it is accelerated and scalar code otherwise, so the class runs on
/// every ISA.
/// </summary>
[IsaSensitive]
public sealed unsafe class QuantizedLayoutTests
{
    /// <summary>Relative slack for the rounding of x / d in float32 (|x / d| ≤ 127, so at most 127·2⁻²⁴ of d).</summary>
    private const float DivisionSlack = 1e-5f;

    public static TheoryData<WeightFormat, int, int> Shapes()
    {
        var data = new TheoryData<WeightFormat, int, int>();
        foreach (var format in BlockFormats.All)
        {
            foreach (var (rows, cols) in new[] { (1, 32), (3, 64), (4, 96), (5, 160), (9, 2304) }) data.Add(format, rows, cols);
        }
        return data;
    }

    /// <summary>Rows whose blocks span many magnitudes, with all-zero blocks, constant blocks, single outliers and
    /// ties between the largest positive and negative value.</summary>
    internal static float[] TestRow(int cols, int seed)
    {
        var random = new Random(seed);
        var row = new float[cols];
        for (int b = 0; b < cols / 32; b++)
        {
            var block = row.AsSpan(b * 32, 32);
            float magnitude = MathF.Pow(10, random.Next(-6, 3));
            switch ((b + seed) % 6)
            {
                case 0:
                    break;
                case 1:
                    block.Fill(magnitude * (random.Next(2) == 0 ? -1 : 1));
                    break;
                case 2:
                    for (int i = 0; i < 32; i++) block[i] = (float)(random.NextDouble() * 2 - 1) * magnitude * 0.01f;
                    block[random.Next(32)] = magnitude * (random.Next(2) == 0 ? -1 : 1);
                    break;
                case 3:
                    for (int i = 0; i < 32; i++) block[i] = (float)(random.NextDouble() * 2 - 1) * magnitude;
                    block[3] = magnitude;
                    block[17] = -magnitude;
                    break;
                default:
                    for (int i = 0; i < 32; i++) block[i] = (float)(random.NextDouble() * 2 - 1) * magnitude;
                    break;
            }
        }
        return row;
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void Every_element_reads_back_within_the_bound_of_its_block(WeightFormat format, int rows, int cols)
    {
        using var matrix = new WeightMatrix("test.weight", rows, cols, format);
        var written = Enumerable.Range(0, rows).Select(r => TestRow(cols, seed: r + cols)).ToArray();
        for (int r = 0; r < rows; r++) matrix.WriteRow(r, written[r]);

        var read = new float[cols];
        for (int r = 0; r < rows; r++)
        {
            matrix.ReadRow(r, read);
            for (int b = 0; b < cols / 32; b++)
            {
                var x = written[r].AsSpan(b * 32, 32);
                var y = read.AsSpan(b * 32, 32);
                ushort bits = ScaleBits(matrix, r, b);
                float d = BlockFormats.Scale(format, bits);
                if (BlockFormats.IsQ8(format)) AssertQ8Block(format, x, y, bits, $"row {r} block {b}");
                else AssertQ4Block(format, x, y, bits, $"row {r} block {b}");
            }
        }
    }

    /// <summary>
    /// Q8_0: d = max|x| / 127 rounded up to the scale encoding (bf16: max|x| / 127 ≤ d ≤ max|x| / 127 · (1 + 2⁻⁷);
    /// either: the encoding's value before d is below max|x| / 127); every element is q·d with |q| ≤ 127 and
    /// |x − q·d| ≤ d/2.
    /// </summary>
    private static void AssertQ8Block(WeightFormat format, ReadOnlySpan<float> x, ReadOnlySpan<float> y, ushort bits, string where)
    {
        float d = BlockFormats.Scale(format, bits);
        float max = 0;
        foreach (float v in x) max = Math.Max(max, Math.Abs(v));
        if (max == 0)
        {
            Assert.Equal(0, d);
            Assert.True(y.IndexOfAnyExcept(0f) < 0, $"{where}: an all-zero block reads back nonzero");
            return;
        }
        AssertRoundedUp(format, bits, max / 127, where);
        if (!BlockFormats.HalfScales(format)) Assert.True(d >= max / 127 && d <= max / 127 * (1 + 1f / 128), $"{where}: step {d} for max {max}");
        for (int i = 0; i < 32; i++)
        {
            float q = y[i] / d;
            Assert.True(q == MathF.Round(q) && Math.Abs(q) <= 127, $"{where}[{i}]: {y[i]} is not a multiple k·{d} with |k| ≤ 127");
            Assert.True(Math.Abs(x[i] - y[i]) <= d * (0.5f + DivisionSlack), $"{where}[{i}]: {x[i]} read back as {y[i]} (step {d})");
        }
    }

    /// <summary>
    /// Q4_0: m is the element of largest magnitude (the positive one on a tie) and d = m / −8, its magnitude rounded
    /// up to bf16 (m / d ∈ [−8, −8 / (1 + 2⁻⁷)], so m reads back as −8·d). Every element is
    /// k·d with −8 ≤ k ≤ 7, and |x − k·d| ≤ |d|/2, except an element with x / d > 7.5 (opposite in sign to m),
    /// which reads back as 7·d, off by (x / d − 7)·|d| ≤ |d|. (With half scales the same, except that a subnormal half
    /// may be too coarse for m to read back as −8·d; it still reads back within |d|/2.)
    /// </summary>
    private static void AssertQ4Block(WeightFormat format, ReadOnlySpan<float> x, ReadOnlySpan<float> y, ushort bits, string where)
    {
        float d = BlockFormats.Scale(format, bits);
        float max = float.MinValue, min = float.MaxValue;
        foreach (float v in x)
        {
            max = Math.Max(max, v);
            min = Math.Min(min, v);
        }
        float m = max >= -min ? max : min;
        if (m == 0)
        {
            Assert.Equal(0, d);
            Assert.True(y.IndexOfAnyExcept(0f) < 0, $"{where}: an all-zero block reads back nonzero");
            return;
        }
        float magnitude = Math.Abs(m) / 8;
        Assert.True(Math.Sign(d) == -Math.Sign(m), $"{where}: step {d} has the sign of the extreme {m}");
        AssertRoundedUp(format, bits, magnitude, where);
        if (!BlockFormats.HalfScales(format)) Assert.True(Math.Abs(d) >= magnitude && Math.Abs(d) <= magnitude * (1 + 1f / 128), $"{where}: step {d} for extreme {m}");
        if (!BlockFormats.HalfScales(format) || Math.Abs(m / d) >= 7.5f) Assert.Equal(-8 * d, y[x.IndexOf(m)]);
        for (int i = 0; i < 32; i++)
        {
            float k = y[i] / d, t = x[i] / d;
            Assert.True(k == MathF.Round(k) && k >= -8 && k <= 7, $"{where}[{i}]: {y[i]} is not k·{d} with −8 ≤ k ≤ 7");
            float bound = t > 7.5f ? (t - 7) * Math.Abs(d) : Math.Abs(d) * 0.5f;
            Assert.True(Math.Abs(x[i] - y[i]) <= bound + Math.Abs(d) * DivisionSlack, $"{where}[{i}]: {x[i]} read back as {y[i]} (step {d})");
        }
    }

    /// <summary>The scale bits of row <paramref name="row"/>, block <paramref name="block"/>, as the group stores them.</summary>
    private static ushort ScaleBits(WeightMatrix matrix, int row, int block)
    {
        byte* group = (byte*)matrix.Data + row / 16 * QuantizedLayout.GroupBytes(matrix.Format, matrix.Cols);
        return ((ushort*)group)[block * 16 + row % 16];
    }

    /// <summary>The scale is <paramref name="needed"/>'s magnitude rounded up in the format's encoding: at least it, and
    /// the encoding's next smaller magnitude (the bits minus one) below it.</summary>
    private static void AssertRoundedUp(WeightFormat format, ushort bits, float needed, string where)
    {
        float d = Math.Abs(BlockFormats.Scale(format, bits)), before = Math.Abs(BlockFormats.Scale(format, (ushort)(bits - 1)));
        Assert.True(d >= needed && before < needed, $"{where}: step {d} is not {needed} rounded up (the one below is {before})");
    }

    [Theory]
    [InlineData("q8_0", 1, 32, 1.0625)]
    [InlineData("q8_0", 16, 2304, 1.0625)]
    [InlineData("q8_0", 9216, 2304, 1.0625)]
    [InlineData("q4_0", 16, 2304, 0.5625)]
    [InlineData("q4_0", 2304, 9216, 0.5625)]
    [InlineData("q4_0", 5, 64, 0.5625)]
    public void Bytes_per_weight_are_those_of_the_block_format(string formatName, int rows, int cols, double bytesPerWeight)
    {
        var format = WeightFormat.Find(formatName)!;
        long groups = (rows + 15) / 16;
        long padding = (64 - cols / 32 * 32 % 64) % 64;
        long expected = (long)(groups * 16 * cols * bytesPerWeight) + groups * padding;
        Assert.Equal(expected, WeightMatrix.ByteLengthOf(format, rows, cols));
        using var matrix = new WeightMatrix("test.weight", rows, cols, format);
        Assert.Equal(expected, matrix.ByteLength);
        if (cols % 64 == 0) Assert.Equal(bytesPerWeight, (double)matrix.ByteLength / (groups * 16 * cols));
    }

    [Fact]
    public void Groups_interleave_sixteen_rows_in_four_byte_chunks_block_by_block()
    {
        const int cols = 64;
        using var matrix = new WeightMatrix("test.weight", 17, cols, WeightFormat.Q8_0);
        // Row r: column i is (r + 1)·(i − 16 for the first block, 127 − i for the second), the largest magnitude 127·(r+1)
        // at column 32 sets the scale r + 1 for both blocks where possible.
        float Value(int r, int i) => (r + 1) * (i < 32 ? (i % 2 == 0 ? 127 - i : -(127 - i)) : 127 - (i - 32));
        for (int r = 0; r < 17; r++) matrix.WriteRow(r, Enumerable.Range(0, cols).Select(i => Value(r, i)).ToArray());
        long group = QuantizedLayout.GroupBytes(WeightFormat.Q8_0, cols);
        Assert.Equal(64 + 2 * 16 * 32, group);
        byte* data = (byte*)matrix.Data;
        for (int r = 0; r < 17; r++)
        {
            byte* g = data + r / 16 * group;
            int lane = r % 16;
            for (int b = 0; b < 2; b++)
            {
                Assert.Equal(BFloat16.FromSingle(r + 1), ((ushort*)g)[b * 16 + lane]);
                byte* record = g + 64 + b * 16 * 32;
                for (int j = 0; j < 32; j++)
                {
                    int expected = (int)(Value(r, b * 32 + j) / (r + 1)) + 128;
                    Assert.Equal(expected, record[j / 4 * 64 + 4 * lane + j % 4]);
                }
            }
        }
        // The last group's fifteen missing rows are zeros (zero scales).
        byte* last = data + group;
        for (int lane = 1; lane < 16; lane++)
        {
            Assert.Equal(0, ((ushort*)last)[lane]);
            Assert.Equal(0, ((ushort*)last)[16 + lane]);
            for (int k = 0; k < 8; k++) Assert.Equal(0u, *(uint*)(last + 64 + k * 64 + 4 * lane));
        }
    }

    [Fact]
    public void Q4_0_packs_columns_0_to_15_in_low_nibbles_and_16_to_31_in_high_nibbles()
    {
        using var matrix = new WeightMatrix("test.weight", 1, 32, WeightFormat.Q4_0);
        // The extreme is -8 (so d = 1): value v is stored as v + 8.
        var row = Enumerable.Range(0, 32).Select(i => (float)(i % 16 - 8)).ToArray();
        row[16] = 7;
        matrix.WriteRow(0, row);
        byte* q = (byte*)matrix.Data + QuantizedLayout.ScaleBytes(32);
        Assert.Equal(BFloat16.FromSingle(1), *(ushort*)matrix.Data);
        for (int j = 0; j < 16; j++)
        {
            // Byte j of row 0 is byte j % 4 of the record's vector j / 4 (row 0 is lane 0 of each vector).
            byte packed = q[j / 4 * 64 + j % 4];
            Assert.Equal(j, packed & 0xF);
            Assert.Equal(j == 0 ? 15 : j, packed >> 4);
        }
    }

    [Fact]
    public void Scales_round_away_from_zero_to_bf16()
    {
        Assert.Equal(BFloat16.FromSingle(1f), QuantizedLayout.ScaleBits(1f));
        Assert.True(BFloat16.ToSingle(QuantizedLayout.ScaleBits(1.001f)) > 1.001f);
        Assert.True(BFloat16.ToSingle(QuantizedLayout.ScaleBits(-1.001f)) < -1.001f);
        Assert.Equal(0, QuantizedLayout.ScaleBits(0f));
    }

    [Theory]
    [InlineData("q8_0")]
    [InlineData("q4_0")]
    public void Widths_that_are_not_a_multiple_of_32_are_refused(string formatName)
    {
        var format = WeightFormat.Find(formatName)!;
        Assert.False(WeightMatrix.CanStore(format, 48));
        Assert.True(WeightMatrix.CanStore(format, 64));
        Assert.True(WeightMatrix.CanStore(WeightFormat.BF16, 48));
        var e = Assert.Throws<ArgumentException>(() => new WeightMatrix("odd.weight", 2, 48, format));
        Assert.Contains("odd.weight", e.Message);
    }

    [Theory]
    [InlineData("q8_0")]
    [InlineData("q4_0")]
    public void Rows_of_a_quantized_matrix_have_no_raw_bytes_and_no_element_size(string formatName)
    {
        var format = WeightFormat.Find(formatName)!;
        using var matrix = new WeightMatrix("test.weight", 4, 32, format);
        Assert.Throws<NotSupportedException>(() => matrix.RowBytes(0));
        Assert.Throws<ArgumentOutOfRangeException>(() => WeightMatrix.ElementSize(format));
        Assert.Throws<ArgumentOutOfRangeException>(() => matrix.ReadRow(4, new float[32]));
        Assert.Throws<ArgumentException>(() => matrix.WriteRow(0, new float[31]));
    }
}
