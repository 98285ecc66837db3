using GemmaGen.Kernels;
using GemmaGen.Tests.Infrastructure;

namespace GemmaGen.Tests.Kernels;

/// <summary>The batched prefill kernel against a float64 product, for shapes that exercise the 4×4 register
/// blocks, the leftover rows and tokens, vector tails, and row ranges split as the worker pool splits them.</summary>
[IsaSensitive]
public sealed unsafe class MatMulTests
{
    public static TheoryData<int, int, int, bool> Shapes() => new()
    {
        { 1, 1, 1, false },
        { 4, 4, 16, false },
        { 7, 5, 33, true },
        { 16, 32, 64, true },
        { 13, 3, 100, false },
        { 64, 9, 2304, true },
    };

    [Theory]
    [MemberData(nameof(Shapes))]
    public void Rows_equal_the_float64_product_for_every_range(int rows, int tokens, int cols, bool bf16)
    {
        var random = new Random(rows * 1000 + cols);
        using var matrix = new WeightMatrix("w", rows, cols, bf16 ? WeightFormat.BF16 : WeightFormat.F32);
        var weights = new float[rows][];
        for (int r = 0; r < rows; r++)
        {
            var row = Enumerable.Range(0, cols).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
            matrix.WriteRow(r, row);
            weights[r] = new float[cols];
            matrix.ReadRow(r, weights[r]);
        }
        int xStride = cols + 3, yStride = rows + 5;
        var x = Enumerable.Range(0, tokens * xStride).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        var y = new float[tokens * yStride];
        int middle = rows / 2;

        fixed (float* px = x, py = y)
        {
            if (bf16)
            {
                MatMul.Rows<BF16Elements>(matrix.Data, cols, px, xStride, tokens, py, yStride, 0, middle);
                MatMul.Rows<BF16Elements>(matrix.Data, cols, px, xStride, tokens, py, yStride, middle, rows);
            }
            else
            {
                MatMul.Rows<F32Elements>(matrix.Data, cols, px, xStride, tokens, py, yStride, 0, middle);
                MatMul.Rows<F32Elements>(matrix.Data, cols, px, xStride, tokens, py, yStride, middle, rows);
            }
        }

        for (int t = 0; t < tokens; t++)
        {
            for (int r = 0; r < rows; r++)
            {
                double expected = 0, magnitude = 0;
                for (int c = 0; c < cols; c++)
                {
                    expected += (double)weights[r][c] * x[t * xStride + c];
                    magnitude += Math.Abs((double)weights[r][c] * x[t * xStride + c]);
                }
                Assert.True(Math.Abs(y[t * yStride + r] - expected) <= 1e-5 * magnitude + 1e-6,
                    $"token {t}, row {r}: {y[t * yStride + r]} vs {expected}");
            }
        }
    }
}
