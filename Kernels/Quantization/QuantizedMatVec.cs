namespace GemmaGen.Kernels;

/// <summary>Matrix-vector products over quantized weight formats. (Placeholder: dequantizes row by row.)</summary>
public static unsafe class QuantizedMatVec
{
    /// <summary>y[r] = W[r]·x for rows [start, end).</summary>
    public static void Rows(WeightMatrix matrix, float* x, float* y, int start, int end)
    {
        var row = new float[matrix.Cols];
        var input = new ReadOnlySpan<float>(x, matrix.Cols);
        for (int r = start; r < end; r++)
        {
            matrix.ReadRow(r, row);
            y[r] = System.Numerics.Tensors.TensorPrimitives.Dot(row, input);
        }
    }

    /// <summary>y[i] = gelu_tanh(W[2i]·x)·(W[2i+1]·x) for outputs [start, end) of an interleaved gate/up matrix.</summary>
    public static void GateUpRows(WeightMatrix matrix, float* x, float* y, int start, int end)
    {
        var row = new float[matrix.Cols];
        var input = new ReadOnlySpan<float>(x, matrix.Cols);
        for (int i = start; i < end; i++)
        {
            matrix.ReadRow(2 * i, row);
            float gate = System.Numerics.Tensors.TensorPrimitives.Dot(row, input);
            matrix.ReadRow(2 * i + 1, row);
            y[i] = Activations.GeluTanh(gate) * System.Numerics.Tensors.TensorPrimitives.Dot(row, input);
        }
    }
}
