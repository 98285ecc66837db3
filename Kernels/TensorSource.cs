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
    /// <summary>ggml's <c>block_q8_0</c> (GGUF): each 32 values of a row are 34 bytes, an IEEE half scale d then 32 int8
    /// q; the value is d·q.</summary>
    Q8_0,
    /// <summary>ggml's <c>block_q4_0</c> (GGUF): each 32 values of a row are 18 bytes, an IEEE half scale d then 16
    /// bytes whose low nibble j is value j and high nibble value j + 16, q; the value is d·(q − 8).</summary>
    Q4_0,
    /// <summary>ggml's <c>block_q4_K</c> (GGUF): each 256 values of a row are 144 bytes, an IEEE half scale d and
    /// minimum dmin, eight 6-bit sub-block scales and minimums packed in 12 bytes, then 128 bytes of 4-bit q; the value
    /// in sub-block j (32 values) is (d·sc_j)·q − dmin·m_j (<see cref="KQuantBlocks"/>).</summary>
    Q4_K,
    /// <summary>ggml's <c>block_q5_K</c> (GGUF): Q4_K with a fifth bit per value (32 bytes between the scales and the
    /// nibbles), 176 bytes per 256 values (<see cref="KQuantBlocks"/>).</summary>
    Q5_K,
    /// <summary>ggml's <c>block_q6_K</c> (GGUF): each 256 values of a row are 210 bytes, 6-bit q in 128 bytes of low
    /// nibbles and 64 bytes of 2-bit high parts, 16 int8 sub-block scales and an IEEE half d; the value in sub-block k
    /// (16 values) is (d·sc_k)·(q − 32) (<see cref="KQuantBlocks"/>).</summary>
    Q6_K,
}

/// <summary>A read-only view of one checkpoint tensor's bytes (row-major, little-endian; a block encoding's blocks run
/// along each row).</summary>
/// <param name="name">The checkpoint tensor name (<c>model.layers.0.self_attn.q_proj.weight</c>).</param>
/// <param name="dtype">Element type.</param>
/// <param name="shape">Dimensions, outermost first.</param>
/// <param name="data">Start of the first element.</param>
/// <param name="byteLength">Bytes from <paramref name="data"/>; equals <see cref="RowBytes"/> × the rows.</param>
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

    /// <summary>Bytes from <see cref="Data"/>: <see cref="RowBytes"/> of the last dimension × the other dimensions.</summary>
    public long ByteLength { get; } = byteLength;

    /// <summary>How many values the tensor holds: the product of the shape.</summary>
    public long ElementCount
    {
        get
        {
            long count = 1;
            foreach (long dim in Shape) count *= dim;
            return count;
        }
    }

    /// <summary>Where it came from (a file path, or "synthetic"), for messages.</summary>
    public string Origin { get; } = origin;

    /// <summary>Bytes of one element of <paramref name="dtype"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A block encoding (<see cref="IsBlocked"/>): see <see cref="RowBytes"/>.</exception>
    public static int ElementSize(TensorDType dtype) => dtype switch
    {
        TensorDType.F32 => 4,
        TensorDType.BF16 => 2,
        TensorDType.F16 => 2,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "a block encoding has no element size"),
    };

    /// <summary>Values per block of a block encoding (32 for Q8_0 and Q4_0, 256 for the K-quants), or 1 for an element
    /// type.</summary>
    public static int BlockSize(TensorDType dtype) => dtype switch
    {
        TensorDType.Q8_0 or TensorDType.Q4_0 => GgmlBlockSize,
        TensorDType.Q4_K or TensorDType.Q5_K or TensorDType.Q6_K => KQuantBlocks.BlockSize,
        _ => 1,
    };

    /// <summary>Bytes of one block of <paramref name="dtype"/> (for an element type, one element).</summary>
    public static int BlockBytes(TensorDType dtype) => dtype switch
    {
        TensorDType.Q8_0 => 2 + GgmlBlockSize,
        TensorDType.Q4_0 => 2 + GgmlBlockSize / 2,
        TensorDType.Q4_K or TensorDType.Q5_K or TensorDType.Q6_K => KQuantBlocks.BlockBytes(dtype),
        _ => ElementSize(dtype),
    };

    /// <summary>Where a block of <paramref name="dtype"/> holds its IEEE half scales (byte offsets): the values are
    /// small integers times them, so they are finite exactly when these are (<see cref="FiniteCheck"/>).</summary>
    /// <exception cref="ArgumentOutOfRangeException">An element type.</exception>
    public static ReadOnlySpan<int> ScaleOffsets(TensorDType dtype) => dtype switch
    {
        TensorDType.Q8_0 or TensorDType.Q4_0 => [0],
        TensorDType.Q4_K or TensorDType.Q5_K or TensorDType.Q6_K => KQuantBlocks.ScaleOffsets(dtype),
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "an element type has no block scales"),
    };

    /// <summary>Whether <paramref name="dtype"/> stores blocks of values with scales (Q8_0, Q4_0, the K-quants) rather
    /// than elements.</summary>
    public static bool IsBlocked(TensorDType dtype) => BlockSize(dtype) > 1;

    /// <summary>Bytes of a row of <paramref name="cols"/> values of <paramref name="dtype"/> (a block encoding needs a
    /// multiple of its block size).</summary>
    /// <exception cref="ArgumentException">A block encoding and a width that is not a multiple of its block size.</exception>
    public static long RowBytes(TensorDType dtype, long cols) => cols % BlockSize(dtype) == 0
        ? cols / BlockSize(dtype) * BlockBytes(dtype)
        : throw new ArgumentException($"{dtype} rows hold whole blocks of {BlockSize(dtype)} values, not {cols}", nameof(cols));

    /// <summary>Values per block of ggml's Q8_0 and Q4_0.</summary>
    private const int GgmlBlockSize = 32;

    /// <summary>Copies elements [<paramref name="start"/>, start + destination.Length) widened to float32; a block
    /// encoding is dequantized exactly (small integers times a half, which float32 holds; the K-quants as ggml
    /// computes them, <see cref="KQuantBlocks"/>), whole blocks only.</summary>
    /// <exception cref="ArgumentException">A block encoding and a range that does not start and end at block boundaries.</exception>
    public void ReadFloats(long start, Span<float> destination)
    {
        if (IsBlocked(DType))
        {
            int size = BlockSize(DType), bytes = BlockBytes(DType);
            if (start % size != 0 || destination.Length % size != 0)
                throw new ArgumentException($"{Name}: {DType} values are read in whole blocks of {size}, not [{start}, {start + destination.Length})");
            byte* block = Data + start / size * bytes;
            if (size == KQuantBlocks.BlockSize)
            {
                fixed (float* y = destination) KQuantBlocks.Dequantize(DType, block, destination.Length / size, y);
                return;
            }
            for (int b = 0; b < destination.Length / size; b++, block += bytes)
                DequantizeBlock(DType, block, destination.Slice(b * size, size));
            return;
        }
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

    /// <summary>One Q8_0 or Q4_0 block's 32 values.</summary>
    private static void DequantizeBlock(TensorDType dtype, byte* block, Span<float> values)
    {
        float d = (float)BitConverter.UInt16BitsToHalf(*(ushort*)block);
        byte* q = block + 2;
        if (dtype == TensorDType.Q8_0)
        {
            for (int i = 0; i < GgmlBlockSize; i++) values[i] = (sbyte)q[i] * d;
            return;
        }
        for (int i = 0; i < GgmlBlockSize / 2; i++)
        {
            values[i] = ((q[i] & 0xF) - 8) * d;
            values[i + GgmlBlockSize / 2] = ((q[i] >> 4) - 8) * d;
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

    /// <summary>The caller is done with the tensor (the loader calls it once the tensor is copied): a source that made
    /// it in memory may free it now, and a memory-mapped file gives its pages back to the system, or every page the
    /// loader read would stay resident beside the copy (a file's size again). The default does nothing.</summary>
    void Release(string name)
    {
    }
}

/// <summary>A checkpoint that does not fit the model: names the tensor and what was expected.</summary>
public sealed class WeightLoadException(string message) : Exception(message);
