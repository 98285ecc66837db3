using GemmaGen.Kernels;

namespace GemmaGen.Benchmarks;

/// <summary>The inputs every kernel suite builds: a matrix of uniform random weights and a pinned input vector.</summary>
public static class BenchmarkData
{
    /// <summary>A <paramref name="rows"/> × <paramref name="cols"/> matrix in <paramref name="format"/>, weights uniform in
    /// [−0.5, 0.5) from <paramref name="seed"/>.</summary>
    public static WeightMatrix RandomMatrix(string name, int rows, int cols, WeightFormat format, int seed)
    {
        var matrix = new WeightMatrix(name, rows, cols, format);
        var random = new Random(seed);
        var row = new float[cols];
        for (int r = 0; r < rows; r++)
        {
            for (int c = 0; c < cols; c++) row[c] = (float)(random.NextDouble() - 0.5);
            matrix.WriteRow(r, row);
        }
        return matrix;
    }

    /// <summary>A pinned array of sin(i), i = 0..length − 1.</summary>
    public static float[] Wave(int length)
    {
        var x = GC.AllocateArray<float>(length, pinned: true);
        for (int i = 0; i < length; i++) x[i] = (float)Math.Sin(i);
        return x;
    }
}
