using System.Runtime.InteropServices;
using GemmaGen.Kernels;
using GemmaGen.Tests.Infrastructure;
using Xunit;

namespace GemmaGen.Tests.Kernels;

/// <summary><see cref="WeightMatrix"/> row access in each storage format.</summary>
[IsaSensitive]
public sealed unsafe class WeightMatrixTests
{
    private const int Rows = 3;

    public static TheoryData<WeightFormat, int> FormatsAndWidths()
    {
        var data = new TheoryData<WeightFormat, int>();
        foreach (var format in new[] { WeightFormat.F32, WeightFormat.BF16 })
            foreach (int cols in KernelTestData.LengthValues) data.Add(format, cols);
        return data;
    }

    /// <summary>What a matrix of <paramref name="format"/> holds after <paramref name="value"/> is written.</summary>
    private static float Stored(WeightFormat format, float value) =>
        format == WeightFormat.BF16 ? BFloat16.ToSingle(BFloat16.FromSingle(value)) : value;

    [Theory]
    [MemberData(nameof(FormatsAndWidths))]
    public void WrittenRowsReadBackRoundedToTheFormat(WeightFormat format, int cols)
    {
        using var matrix = new WeightMatrix("test.weight", Rows, cols, format);
        var rows = Enumerable.Range(0, Rows).Select(r => KernelTestData.RandomFloats(cols, seed: 10 * cols + r, scale: 3f)).ToArray();

        for (int r = 0; r < Rows; r++) matrix.WriteRow(r, rows[r]);

        for (int r = 0; r < Rows; r++)
        {
            var read = new float[cols + 2];
            read[cols] = read[cols + 1] = -7f;
            matrix.ReadRow(r, read);
            Assert.Equal(rows[r].Select(v => Stored(format, v)), read[..cols]);
            Assert.Equal([-7f, -7f], read[cols..]);
        }
    }

    [Theory]
    [MemberData(nameof(FormatsAndWidths))]
    public void RowBytesAreTheRowInTheFormat(WeightFormat format, int cols)
    {
        using var matrix = new WeightMatrix("test.weight", Rows, cols, format);
        var row = KernelTestData.RandomFloats(cols, seed: cols, scale: 3f);
        matrix.WriteRow(1, row);

        var bytes = matrix.RowBytes(1);

        Assert.Equal(cols * WeightMatrix.ElementSize(format), bytes.Length);
        Assert.True(new ReadOnlySpan<byte>(matrix.Data, (int)matrix.ByteLength).Overlaps(bytes, out int offset));
        Assert.Equal(cols * WeightMatrix.ElementSize(format), offset);
        if (format == WeightFormat.BF16)
            Assert.Equal(row.Select(BFloat16.FromSingle), MemoryMarshal.Cast<byte, ushort>(bytes).ToArray());
        else
            Assert.Equal(row, MemoryMarshal.Cast<byte, float>(bytes).ToArray());
    }

    [Fact]
    public void RowBytesWriteThroughToTheMatrix()
    {
        using var matrix = new WeightMatrix("test.weight", Rows, 5, WeightFormat.BF16);
        ushort[] bits = [0x3F80, 0xC000, 0x0000, 0x7F80, 0x3E80];

        MemoryMarshal.AsBytes(bits.AsSpan()).CopyTo(matrix.RowBytes(2));

        var read = new float[5];
        matrix.ReadRow(2, read);
        Assert.Equal([1f, -2f, 0f, float.PositiveInfinity, 0.25f], read);
    }

    [Theory]
    [InlineData("f32", 4)]
    [InlineData("bf16", 2)]
    public void DescribesItsStorage(string formatName, int elementSize)
    {
        var format = WeightFormat.Find(formatName)!;
        using var matrix = new WeightMatrix("model.layers.0.mlp.down_proj.weight", 7, 33, format);

        Assert.Equal("model.layers.0.mlp.down_proj.weight", matrix.Name);
        Assert.Equal(7, matrix.Rows);
        Assert.Equal(33, matrix.Cols);
        Assert.Equal(format, matrix.Format);
        Assert.Equal(elementSize, WeightMatrix.ElementSize(format));
        Assert.Equal(7L * 33 * elementSize, matrix.ByteLength);
        Assert.Equal(0, (long)matrix.Data % 64);
    }

    [Fact]
    public void RowIndexAndLengthAreChecked()
    {
        using var matrix = new WeightMatrix("test.weight", Rows, 8, WeightFormat.BF16);

        Assert.Throws<ArgumentOutOfRangeException>(() => matrix.ReadRow(-1, new float[8]));
        Assert.Throws<ArgumentOutOfRangeException>(() => matrix.ReadRow(Rows, new float[8]));
        Assert.Throws<ArgumentOutOfRangeException>(() => matrix.WriteRow(Rows, new float[8]));
        Assert.Throws<ArgumentOutOfRangeException>(() => matrix.RowBytes(Rows));
        Assert.Throws<ArgumentException>(() => matrix.ReadRow(0, new float[7]));
        Assert.Throws<ArgumentException>(() => matrix.WriteRow(0, new float[7]));
        Assert.Throws<ArgumentException>(() => matrix.WriteRow(0, new float[9]));
    }
}
