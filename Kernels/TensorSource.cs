namespace GemmaGen.Kernels;

/// <summary>Element type of a checkpoint tensor.</summary>
public enum TensorDType
{
    /// <summary>IEEE float32.</summary>
    F32,
    /// <summary>bfloat16: the upper 16 bits of a float32.</summary>
    BF16,
    /// <summary>IEEE float16.</summary>
    F16,
}

/// <summary>A read-only view of one checkpoint tensor's bytes (row-major, little-endian).</summary>
/// <param name="name">The checkpoint tensor name (<c>model.layers.0.self_attn.q_proj.weight</c>).</param>
/// <param name="dtype">Element type.</param>
/// <param name="shape">Dimensions, outermost first.</param>
/// <param name="data">Start of the first element.</param>
/// <param name="byteLength">Bytes from <paramref name="data"/>; equals element size × product of the shape.</param>
/// <param name="origin">Where it came from (a file path, or "synthetic"), for messages.</param>
public readonly unsafe struct TensorView(string name, TensorDType dtype, long[] shape, byte* data, long byteLength, string origin)
{
    /// <summary>The checkpoint tensor name.</summary>
    public string Name { get; } = name;

    /// <summary>Element type.</summary>
    public TensorDType DType { get; } = dtype;

    /// <summary>Dimensions, outermost first.</summary>
    public long[] Shape { get; } = shape;

    /// <summary>Start of the first element.</summary>
    public byte* Data { get; } = data;

    /// <summary>Bytes from <see cref="Data"/>: element size × product of the shape.</summary>
    public long ByteLength { get; } = byteLength;

    /// <summary>Where it came from (a file path, or "synthetic"), for messages.</summary>
    public string Origin { get; } = origin;

    /// <summary>Bytes of one element of <paramref name="dtype"/>.</summary>
    public static int ElementSize(TensorDType dtype) => dtype switch
    {
        TensorDType.F32 => 4,
        TensorDType.BF16 => 2,
        TensorDType.F16 => 2,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype)),
    };

    /// <summary>Copies elements [<paramref name="start"/>, start + destination.Length) widened to float32.</summary>
    public void ReadFloats(long start, Span<float> destination)
    {
        switch (DType)
        {
            case TensorDType.F32:
                new ReadOnlySpan<float>((float*)Data + start, destination.Length).CopyTo(destination);
                break;
            case TensorDType.BF16:
                BFloat16.Widen(new ReadOnlySpan<ushort>((ushort*)Data + start, destination.Length), destination);
                break;
            case TensorDType.F16:
                var half = new ReadOnlySpan<Half>((Half*)Data + start, destination.Length);
                for (int i = 0; i < half.Length; i++) destination[i] = (float)half[i];
                break;
        }
    }
}

/// <summary>Where weights come from: a checkpoint on disk or the synthetic-weight formula.</summary>
public interface ITensorSource
{
    /// <summary>Describes the source in messages (a directory, a file, "synthetic weights").</summary>
    string Description { get; }

    /// <summary>Finds a tensor by its checkpoint name; the view stays valid while the source is alive, or until
    /// <see cref="Release"/> names it.</summary>
    bool TryGetTensor(string name, out TensorView tensor);

    /// <summary>The element type <see cref="TryGetTensor"/> would serve a tensor in, or null when the source has no such
    /// tensor; a source that makes tensors in memory (GGUF dequantizes them) answers without making it.</summary>
    TensorDType? DTypeOf(string name) => TryGetTensor(name, out var tensor) ? tensor.DType : null;

    /// <summary>Every tensor name the source holds, for reporting what a config leaves unused; empty when the source
    /// cannot list them.</summary>
    IEnumerable<string> TensorNames => [];

    /// <summary>True when norm vectors hold the multiplier 1 + w (as GGUF files store them) rather than Hugging Face's
    /// w; the loader then keeps them as stored instead of adding 1.</summary>
    bool NormsIncludeOne => false;

    /// <summary>The caller is done with the tensor: a source that made it in memory may free it now (a memory-mapped
    /// file has nothing to free).</summary>
    void Release(string name)
    {
    }
}

/// <summary>A checkpoint that does not fit the model: names the tensor and what was expected.</summary>
public sealed class WeightLoadException(string message) : Exception(message);
