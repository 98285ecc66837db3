using System.Runtime.Intrinsics;

namespace GemmaGen.Kernels;

/// <summary>
/// What one block format of <see cref="QuantizedLayout"/> provides: a row's block of 32 columns as
/// <see cref="QuantBytes"/> bytes of small unsigned integers (the weight plus <see cref="Offset"/>) and a 16-bit scale
/// (bf16 in GemmaGen's own formats, IEEE half in GGUF's, <see cref="IBlockScale"/>), how it is quantized and
/// dequantized, how its scales widen to float32, and where a group's record holds each four columns of eight rows. The shared
/// code (<see cref="QuantizedFormat{TBlock}"/>, <see cref="QuantizedMatVec"/>, <see cref="QuantizedMatMul"/>) is
/// specialized per block type, so these calls inline.
/// </summary>
internal unsafe interface IQuantizedBlock
{
    /// <summary>Bytes of one row's block of quantized values (a multiple of 4: the record stores them in 4-byte chunks).</summary>
    static abstract int QuantBytes { get; }

    /// <summary>What the stored integers exceed the weights by: a block's integer sum against x̂ is corrected by
    /// −offset·Σ x̂.</summary>
    static abstract int Offset { get; }

    /// <summary>The largest stored integer.</summary>
    static abstract int MaxUnsigned { get; }

    /// <summary>Quantizes 32 floats at <paramref name="x"/> into a row's block as stored at <paramref name="q"/>
    /// (<see cref="QuantBytes"/> bytes); returns the scale's bits.</summary>
    static abstract ushort Quantize(float* x, byte* q);

    /// <summary>y[0..32) = (the stored integers at <paramref name="q"/> − <see cref="Offset"/>) times <paramref name="d"/>
    /// (exact: a small integer times a 16-bit float).</summary>
    static abstract void Dequantize(byte* q, float d, float* y);

    /// <summary>A block scale as float32 (exact).</summary>
    static abstract float Scale(ushort bits);

    /// <summary>The scales of a group's sixteen rows (one block) as float32 (exact; AVX-512 F).</summary>
    static abstract Vector512<float> Scales512(ushort* scales);

    /// <summary>The scales of eight rows as float32 (exact; AVX2).</summary>
    static abstract Vector256<float> Scales256(ushort* scales);

    /// <summary>The checkpoint block encoding this block type stores as is (<see cref="CopyBlock"/>), or null.</summary>
    static abstract TensorDType? SourceType { get; }

    /// <summary>One block of <see cref="SourceType"/> at <paramref name="source"/> as stored here: its quantized values
    /// into <paramref name="q"/> (<see cref="QuantBytes"/> bytes) and its scale's bits returned, nothing rounded.</summary>
    static abstract ushort CopyBlock(byte* source, byte* q);

    /// <summary>Columns 4<paramref name="g"/>..4g+3 (g = 0..7) of rows 8<paramref name="half"/>..8·half+7 of the block
    /// whose record is at <paramref name="record"/>, as stored (unsigned): byte 4i + j is row 8·half + i, column 4g + j.</summary>
    static abstract Vector256<byte> Columns(byte* record, int g, int half);

    /// <summary><see cref="Columns"/> of groups <paramref name="g"/> and g + 4 (g = 0..3) widened to int16: rows
    /// 8·<paramref name="half"/>..+3 into <paramref name="low"/> and <paramref name="laterLow"/>, the next four into
    /// <paramref name="high"/> and <paramref name="laterHigh"/> (what the 256-bit matrix-vector kernels multiply with
    /// int16 inputs; a block type whose groups g and g + 4 share bytes widens them once). Needs AVX2.</summary>
    static abstract void Widened256(byte* record, int g, int half, out Vector256<short> low, out Vector256<short> high,
        out Vector256<short> laterLow, out Vector256<short> laterHigh);

    /// <summary>Whether the 256-bit one-token kernel (<see cref="QuantizedMatVec"/>) takes a half block's four groups
    /// unrolled by hand rather than in a loop (the JIT keeps a loop of four): measured per block type, because it pays
    /// where splitting the widened bytes is the work (Q4_0's nibbles) and not where the widening loads are (Q8_0).</summary>
    static abstract bool DecodeUnrolled { get; }

    /// <summary><see cref="Columns"/> for groups <paramref name="g"/> and g + 4 (g = 0..3) of the same rows, widened to int16
    /// (what the 512-bit matrix-vector kernel multiplies with int16 inputs). Needs AVX-512 BW.</summary>
    static abstract void Widened512(byte* record, int g, int half, out Vector512<short> first, out Vector512<short> second);
}
