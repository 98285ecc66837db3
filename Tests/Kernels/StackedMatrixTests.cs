using GemmaGen.Kernels;
using GemmaGen.Tests.Infrastructure;
using Xunit;

namespace GemmaGen.Tests.Kernels;

/// <summary>
/// <see cref="WeightMatrix.Stack"/>: rows stacked from parts in formats of their own. Every row, product and range of
/// the stack is checked against a matrix of the part's format holding the same rows alone, bit for bit (the stack
/// runs each part's own kernels), under every ISA child run.
/// </summary>
[IsaSensitive]
[Collection(AllocationCountingCollection.Name)]
public sealed unsafe class StackedMatrixTests
{
    public static TheoryData<string, int> Stacks() => new()
    {
        // A *_K_M q/k/v stack: Q4_K q and k, Q6_K v.
        { "q4_k:48 q4_k:16 q6_k:16", 512 },
        // Block formats with a part whose last group is not full, and an element format.
        { "q8_0:40 q4_0-f16:16 bf16:9", 96 },
        { "f32:3 q8_0-f16:33", 64 },
    };

    private static WeightFormat Format(string name) =>
        WeightFormat.Find(name, WeightFormat.All.Concat(WeightFormat.AsStored)) ?? throw new ArgumentException(name);

    /// <summary>The stack, and each part alone (same rows, same format).</summary>
    private static (WeightMatrix Stack, WeightMatrix[] Alone, int[] Starts) Make(string spec, int cols)
    {
        var parts = spec.Split(' ').Select((p, i) => (Name: $"part{i}", Rows: int.Parse(p.Split(':')[1]), Format: Format(p.Split(':')[0]))).ToArray();
        var stack = WeightMatrix.Stack("stack", cols, parts);
        var alone = parts.Select(p => new WeightMatrix(p.Name, p.Rows, cols, p.Format)).ToArray();
        var starts = new int[parts.Length];
        for (int i = 1; i < parts.Length; i++) starts[i] = starts[i - 1] + parts[i - 1].Rows;
        for (int i = 0; i < parts.Length; i++)
        {
            for (int r = 0; r < parts[i].Rows; r++)
            {
                var row = KernelTestData.RandomFloats(cols, seed: 1000 * i + r, scale: 0.1f);
                stack.WriteRow(starts[i] + r, row);
                alone[i].WriteRow(r, row);
            }
        }
        return (stack, alone, starts);
    }

    [Theory]
    [MemberData(nameof(Stacks))]
    public void Every_row_and_product_of_a_stack_is_its_parts_alone(string spec, int cols)
    {
        var (stack, alone, starts) = Make(spec, cols);
        try
        {
            Assert.Equal("stacked", stack.Format.Name);
            Assert.Equal(alone.Sum(a => a.Rows), stack.Rows);
            Assert.Equal(alone.Select((a, i) => (a.Format, starts[i])), stack.Parts.Select(p => (p.Part.Format, p.Start)));
            Assert.Equal(alone.Sum(a => (a.ByteLength + 63) / 64 * 64), stack.ByteLength);

            // Every row reads back as the part alone holds it.
            var row = new float[cols];
            var expectedRow = new float[cols];
            for (int i = 0; i < alone.Length; i++)
            {
                for (int r = 0; r < alone[i].Rows; r++)
                {
                    stack.ReadRow(starts[i] + r, row);
                    alone[i].ReadRow(r, expectedRow);
                    Assert.Equal(expectedRow, row);
                }
            }

            // Products over ranges that start, end and cross inside parts.
            const int tokens = 3, pad = 2;
            int rows = stack.Rows, xStride = cols + pad, yStride = rows + pad;
            var x = KernelTestData.RandomFloats(tokens * xStride, seed: 7);
            // Block 0 of yStride floats: token 0's decode product; block t + 1: token t's batched product.
            var expected = new float[(tokens + 1) * yStride];
            fixed (float* px = x, pe = expected)
            {
                for (int i = 0; i < alone.Length; i++)
                {
                    alone[i].MatVecRows(px, pe + starts[i], 0, alone[i].Rows);
                    alone[i].MatMulRows(px, xStride, tokens, pe + yStride + starts[i], yStride, 0, alone[i].Rows);
                }
            }
            foreach (var (start, end) in new[] { (0, rows), (1, rows - 1), (starts[1] - 1, starts[1] + 1), (starts[^1], rows), (2, 3), (0, 0) })
            {
                var y = new float[(tokens + 1) * yStride];
                Array.Fill(y, float.NaN);
                fixed (float* px = x, py = y)
                {
                    stack.MatVecRows(px, py, start, end);
                    stack.MatMulRows(px, xStride, tokens, py + yStride, yStride, start, end);
                }
                for (int r = 0; r < yStride; r++)
                {
                    bool inside = r >= start && r < end;
                    for (int b = 0; b <= tokens; b++)
                    {
                        float actual = y[b * yStride + r], want = expected[b * yStride + r];
                        string what = b == 0 ? "decode" : $"token {b - 1}";
                        if (!inside) Assert.True(float.IsNaN(actual), $"[{start}, {end}) {what}: row {r} outside the range was written");
                        else Assert.True(BitConverter.SingleToInt32Bits(want) == BitConverter.SingleToInt32Bits(actual), $"[{start}, {end}) {what} row {r}: {actual:R}, the part alone {want:R}");
                    }
                }
            }
        }
        finally
        {
            stack.Dispose();
            foreach (var a in alone) a.Dispose();
        }
    }

    [Fact]
    public void A_stack_refuses_what_its_parts_cannot_hold_and_is_no_gate_up_matrix()
    {
        Assert.Throws<ArgumentException>(() => WeightMatrix.Stack("s", 64, []));
        var e = Assert.Throws<ArgumentException>(() => WeightMatrix.Stack("s", 100, [("q", 16, WeightFormat.Q8_0), ("k", 16, WeightFormat.F32)]));
        Assert.Contains("q", e.Message);
        Assert.Contains("100 columns", e.Message);
        using var stack = WeightMatrix.Stack("s", 64, [("q", 16, WeightFormat.Q8_0), ("k", 16, WeightFormat.F32)]);
        var x = new float[64];
        var y = new float[16];
        Assert.Throws<NotSupportedException>(() =>
        {
            fixed (float* px = x, py = y) stack.GateUpRows(px, py, 0, 8);
        });
        Assert.Throws<NotSupportedException>(() => stack.RowBytes(0));
    }

    [Fact]
    public void No_allocation_per_product_after_warm_up()
    {
        var (stack, alone, _) = Make("q4_k:32 q6_k:16", 256);
        try
        {
            var x = KernelTestData.RandomFloats(4 * 256, seed: 3);
            var y = new float[4 * 48];
            fixed (float* px = x, py = y)
            {
                stack.MatVecRows(px, py, 0, 48);
                stack.MatMulRows(px, 256, 4, py, 48, 0, 48);
                var windows = new AllocationWindows();
                windows.Mark();
                for (int window = 0; window < AllocationWindows.Count; window++)
                {
                    for (int i = 0; i < 5; i++)
                    {
                        stack.MatVecRows(px, py, 10, 40);
                        stack.MatMulRows(px, 256, 4, py, 48, 20, 48);
                    }
                    windows.Mark();
                }
                windows.AssertOneWindowAllocatedNothing("5 rounds of a stack's products");
            }
        }
        finally
        {
            stack.Dispose();
            foreach (var a in alone) a.Dispose();
        }
    }
}
