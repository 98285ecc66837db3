using GemmaGen.Kernels;

namespace GemmaGen.Tests.Kernels;

/// <summary>An <see cref="ITensorSource"/> over tensors built in native memory by a test.</summary>
public sealed unsafe class InMemoryTensorSource : ITensorSource, IDisposable
{
    private readonly Dictionary<string, (TensorView View, NativeBuffer Buffer)> _tensors = [];

    public string Description => "in-memory test tensors";

    /// <summary>
    /// Stores <paramref name="values"/> as tensor <paramref name="name"/> in <paramref name="dtype"/> (rounded to it),
    /// replacing a tensor of that name. Returns the values as the tensor holds them, widened to float32.
    /// </summary>
    public float[] Add(string name, TensorDType dtype, long[] shape, ReadOnlySpan<float> values)
    {
        Remove(name);
        var buffer = new NativeBuffer((long)values.Length * TensorView.ElementSize(dtype));
        var stored = new float[values.Length];
        for (int i = 0; i < values.Length; i++)
        {
            switch (dtype)
            {
                case TensorDType.F32:
                    buffer.AsSpan<float>()[i] = stored[i] = values[i];
                    break;
                case TensorDType.BF16:
                    ushort bits = BFloat16.FromSingle(values[i]);
                    buffer.AsSpan<ushort>()[i] = bits;
                    stored[i] = BitConverter.UInt32BitsToSingle((uint)bits << 16);
                    break;
                case TensorDType.F16:
                    var half = (Half)values[i];
                    buffer.AsSpan<Half>()[i] = half;
                    stored[i] = (float)half;
                    break;
            }
        }
        _tensors.Add(name, (new TensorView(name, dtype, shape, (byte*)buffer.Pointer, buffer.ByteLength, "memory"), buffer));
        return stored;
    }

    public void Remove(string name)
    {
        if (_tensors.Remove(name, out var tensor)) tensor.Buffer.Dispose();
    }

    public bool TryGetTensor(string name, out TensorView tensor)
    {
        bool found = _tensors.TryGetValue(name, out var entry);
        tensor = entry.View;
        return found;
    }

    public void Dispose()
    {
        foreach (var (_, buffer) in _tensors.Values) buffer.Dispose();
        _tensors.Clear();
    }
}
