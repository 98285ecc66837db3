namespace GemmaGen.Benchmarks;

/// <summary>The matrix shapes of one decode step of each published size, [rows, cols] as streamed by the kernels.</summary>
public static class Shapes
{
    /// <summary>Model, matrix, rows, cols.</summary>
    public static readonly (string Model, string Matrix, int Rows, int Cols)[] MatVec =
    [
        ("2B", "qkv", 4096, 2304), ("2B", "o", 2304, 2048), ("2B", "gate/up", 18432, 2304), ("2B", "down", 2304, 9216),
        ("9B", "qkv", 8192, 3584), ("9B", "o", 3584, 4096), ("9B", "gate/up", 28672, 3584), ("9B", "down", 3584, 14336),
        ("27B", "qkv", 8192, 4608), ("27B", "o", 4608, 4096), ("27B", "gate/up", 73728, 4608), ("27B", "down", 4608, 36864),
    ];
}
