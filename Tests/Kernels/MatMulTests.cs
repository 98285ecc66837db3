using GemmaGen.Kernels;
using GemmaGen.Tests.Infrastructure;

namespace GemmaGen.Tests.Kernels;

/// <summary>The batched prefill kernels against a float64 product, for shapes that exercise the register blocks
/// (4×4 dot products; 32 rows × 12 and × 4 tokens blocked), the leftover rows and tokens, vector tails and columns
/// that are not a multiple of 16, and row ranges split as the worker pool splits them. <see cref="MatMul.Rows{TW}"/>
/// is tested as dispatched, and each kernel on its own (the blocked one refuses where neither AVX-512 nor AVX2 is on).</summary>
[IsaSensitive]
public sealed unsafe class MatMulTests
{
    public static TheoryData<int, int, int, bool, string> Shapes()
    {
        var data = new TheoryData<int, int, int, bool, string>();
        foreach (string kernel in new[] { "Rows", "Dots", "Blocked" })
        {
            data.Add(1, 1, 1, false, kernel);
            data.Add(4, 4, 16, false, kernel);
            data.Add(7, 5, 33, true, kernel);
            data.Add(16, 32, 64, true, kernel);
            data.Add(13, 3, 100, false, kernel);
            data.Add(64, 9, 2304, true, kernel);
            data.Add(37, 13, 72, true, kernel);
            data.Add(70, 64, 24, false, kernel);
            data.Add(33, 17, 2048, true, kernel);
        }
        return data;
    }

    private delegate void Kernel(void* w, int cols, float* x, int xStride, int tokens, float* y, int yStride, int start, int end);

    [Theory]
    [MemberData(nameof(Shapes))]
    public void Rows_equal_the_float64_product_for_every_range(int rows, int tokens, int cols, bool bf16, string kernel)
    {
        Kernel run = (kernel, bf16) switch
        {
            ("Rows", true) => MatMul.Rows<BF16Elements>,
            ("Rows", false) => MatMul.Rows<F32Elements>,
            ("Dots", true) => MatMul.Dots<BF16Elements>,
            ("Dots", false) => MatMul.Dots<F32Elements>,
            (_, true) => MatMul.Blocked<BF16Elements>,
            (_, false) => MatMul.Blocked<F32Elements>,
        };
        if (kernel == "Blocked" && !MatMul.BlockedSupported)
        {
            Assert.Throws<PlatformNotSupportedException>(() =>
            {
                var none = new float[1];
                fixed (float* p = none) MatMul.Blocked<F32Elements>(p, 1, p, 1, 1, p, 1, 0, 1);
            });
            return;
        }
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
        Array.Fill(y, float.NaN);
        int middle = rows / 2 / 16 * 16;

        fixed (float* px = x, py = y)
        {
            run(matrix.Data, cols, px, xStride, tokens, py, yStride, 0, middle);
            run(matrix.Data, cols, px, xStride, tokens, py, yStride, middle, rows);
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
            for (int r = rows; r < yStride; r++) Assert.True(float.IsNaN(y[t * yStride + r]), $"token {t}: padding {r} was written");
        }
    }
}
