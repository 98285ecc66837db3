using GemmaGen.Kernels;
using GemmaGen.Tests.Infrastructure;
using Xunit;

namespace GemmaGen.Tests.Kernels;

/// <summary>
/// The weight-format registration and the kernels every format provides, each through <see cref="WeightMatrix"/>
/// against float64 products of the rows the format reads back (<see cref="WeightMatrix.ReadRow"/>).
/// </summary>
[IsaSensitive]
public sealed unsafe class WeightFormatTests
{
    private const int Rows = 16, Cols = 96, Tokens = 5;

    public static TheoryData<string> Names() => new(WeightFormat.All.Select(f => f.Name));

    [Fact]
    public void The_registration_holds_the_four_formats_under_their_option_names()
    {
        Assert.Equal(["f32", "bf16", "q8_0", "q4_0"], WeightFormat.All.Select(f => f.Name));
        Assert.Same(WeightFormat.Q4_0, WeightFormat.Find("Q4_0"));
        Assert.Same(WeightFormat.BF16, WeightFormat.Find("bf16"));
        Assert.Null(WeightFormat.Find("q5_1"));
        Assert.Equal("Q8_0", WeightFormat.Q8_0.ToString());
        Assert.Equal("f32, bf16, q8_0 or q4_0", WeightFormat.ListNames(WeightFormat.All));
    }

    [Theory]
    [MemberData(nameof(Names))]
    public void MatVecRows_is_each_row_times_x_for_every_range(string name)
    {
        using var matrix = Matrix(name);
        var rows = ReadBack(matrix);
        var x = KernelTestData.RandomFloats(Cols, seed: 7, scale: 2f);
        foreach (var (start, end) in new[] { (0, Rows), (3, 13), (5, 6), (8, 8) })
        {
            var y = new float[Rows];
            fixed (float* px = x, py = y) matrix.MatVecRows(px, py, start, end);
            for (int r = 0; r < Rows; r++)
            {
                if (r < start || r >= end) Assert.Equal(0f, y[r]);
                else AssertClose(Dot(rows[r], x), y[r], Bound(rows[r], x), $"{name} row {r} of [{start}, {end})");
            }
        }
    }

    [Theory]
    [MemberData(nameof(Names))]
    public void GateUpRows_is_gelu_of_the_gate_row_times_the_up_row(string name)
    {
        using var matrix = Matrix(name);
        var rows = ReadBack(matrix);
        var x = KernelTestData.RandomFloats(Cols, seed: 8, scale: 0.5f);
        var y = new float[Rows / 2];
        fixed (float* px = x, py = y) matrix.GateUpRows(px, py, 1, 7);
        for (int i = 0; i < Rows / 2; i++)
        {
            if (i is < 1 or >= 7)
            {
                Assert.Equal(0f, y[i]);
                continue;
            }
            double gate = Dot(rows[2 * i], x), up = Dot(rows[2 * i + 1], x);
            double gelu = 0.5 * gate * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (gate + 0.044715 * gate * gate * gate)));
            // gelu' is at most 1.13 and the up factor's own error is scaled by gelu: bound both terms.
            double bound = 1.2 * Bound(rows[2 * i], x) * Math.Abs(up) + Bound(rows[2 * i + 1], x) * (Math.Abs(gelu) + 1e-3);
            AssertClose(gelu * up, y[i], bound, $"{name} output {i}");
        }
    }

    [Theory]
    [MemberData(nameof(Names))]
    public void MatMulRows_is_every_token_times_each_row(string name)
    {
        using var matrix = Matrix(name);
        var rows = ReadBack(matrix);
        const int xStride = Cols + 3, yStride = Rows + 2;
        var x = KernelTestData.RandomFloats(Tokens * xStride, seed: 9, scale: 2f);
        var y = new float[Tokens * yStride];
        fixed (float* px = x, py = y) matrix.MatMulRows(px, xStride, Tokens, py, yStride, 2, 15);
        for (int t = 0; t < Tokens; t++)
        {
            var xt = x.AsSpan(t * xStride, Cols).ToArray();
            for (int r = 0; r < yStride; r++)
            {
                float actual = y[t * yStride + r];
                if (r is < 2 or >= 15) Assert.Equal(0f, actual);
                else AssertClose(Dot(rows[r], xt), actual, Bound(rows[r], xt), $"{name} token {t} row {r}");
            }
        }
    }

    [Theory]
    [InlineData("f32")]
    [InlineData("bf16")]
    public void The_element_formats_decode_any_width_and_row_range_to_float_precision(string name)
    {
        // widths that leave columns past the last whole pair of vectors, ranges that leave rows past the last four
        foreach (int cols in new[] { 1, 17, 33, 100, 257 })
        {
            var matrix = new WeightMatrix("test.weight", 2 * 11, cols, WeightFormat.Find(name)!);
            using var _ = matrix;
            for (int r = 0; r < matrix.Rows; r++) matrix.WriteRow(r, KernelTestData.RandomFloats(cols, seed: 200 + r, scale: 1f));
            var rows = ReadBack(matrix);
            var x = KernelTestData.RandomFloats(cols, seed: 11, scale: 2f);
            var y = new float[matrix.Rows];
            var gated = new float[matrix.Rows / 2];
            fixed (float* px = x, py = y, pg = gated)
            {
                matrix.MatVecRows(px, py, 1, 20);
                matrix.GateUpRows(px, pg, 2, 9);
            }
            // float32 sums of at most 257 products: far within 1e-5 of Σ|w·x|
            double Tight(float[] w) => 1e-5 * w.Zip(x, (a, b) => Math.Abs((double)a * b)).Sum() + 1e-7;
            for (int r = 0; r < matrix.Rows; r++)
            {
                if (r is < 1 or >= 20) Assert.Equal(0f, y[r]);
                else AssertClose(Dot(rows[r], x), y[r], Tight(rows[r]), $"{name} width {cols} row {r}");
            }
            for (int i = 2; i < 9; i++)
            {
                double gate = Dot(rows[2 * i], x), up = Dot(rows[2 * i + 1], x);
                double gelu = 0.5 * gate * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (gate + 0.044715 * gate * gate * gate)));
                double bound = 1.2 * Tight(rows[2 * i]) * Math.Abs(up) + Tight(rows[2 * i + 1]) * Math.Abs(gelu) + 1e-5 * Math.Abs(gelu * up) + 1e-6;
                AssertClose(gelu * up, gated[i], bound, $"{name} width {cols} output {i}");
            }
        }
    }

    private static WeightMatrix Matrix(string name)
    {
        var matrix = new WeightMatrix("test.weight", Rows, Cols, WeightFormat.Find(name)!);
        for (int r = 0; r < Rows; r++) matrix.WriteRow(r, KernelTestData.RandomFloats(Cols, seed: 100 + r, scale: 1f));
        return matrix;
    }

    private static float[][] ReadBack(WeightMatrix matrix) => Enumerable.Range(0, matrix.Rows).Select(r =>
    {
        var row = new float[matrix.Cols];
        matrix.ReadRow(r, row);
        return row;
    }).ToArray();

    private static double Dot(float[] w, float[] x)
    {
        double sum = 0;
        for (int j = 0; j < w.Length; j++) sum += (double)w[j] * x[j];
        return sum;
    }

    /// <summary>The block formats round their inputs to int8 (prefill) or int16 (decode), at most max|x|/254 per
    /// element; float32 summation adds far less. Σ|w| · max|x| / 200 covers both.</summary>
    private static double Bound(float[] w, float[] x) =>
        w.Sum(v => Math.Abs((double)v)) * x.Max(v => Math.Abs(v)) / 200 + 1e-6;

    private static void AssertClose(double expected, float actual, double bound, string what) =>
        Assert.True(Math.Abs(expected - actual) <= bound, $"{what}: expected {expected}, got {actual} (bound {bound})");
}
