using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace GemmaGen.Kernels;

/// <summary>
/// ggml's K-quant super-blocks (<see cref="TensorDType.Q4_K"/>, <see cref="TensorDType.Q5_K"/>,
/// <see cref="TensorDType.Q6_K"/>; <c>block_q4_K</c>, <c>block_q5_K</c>, <c>block_q6_K</c> of ggml-common.h), the one
/// place their layout is read: each 256 values of a row are one block, little-endian.
/// <list type="bullet">
/// <item>Q4_K, 144 bytes: half d, half dmin, 12 bytes packing eight 6-bit sub-block scales sc_j and minimums m_j
/// (<see cref="UnpackScales"/>), 128 bytes of nibbles: byte 32g + l holds value 64g + l in its low nibble and value
/// 64g + 32 + l in its high one. Sub-block j is values 32j..32j+31; a value is (d·sc_j)·q − dmin·m_j.</item>
/// <item>Q5_K, 176 bytes: as Q4_K with 32 bytes of fifth bits between the scales and the nibbles: bit j of byte l is the
/// fifth bit (16) of value 32j + l.</item>
/// <item>Q6_K, 210 bytes: 128 bytes of low nibbles, 64 bytes of 2-bit high parts, 16 int8 scales sc_k (one per 16
/// values), half d. In half h (values 128h..128h+127), for l &lt; 32: byte 64h + l holds the low nibbles of values
/// 128h + l (low) and 128h + 64 + l (high), byte 64h + 32 + l those of 128h + 32 + l and 128h + 96 + l; byte
/// 128 + 32h + l holds their high parts in bits 0-1, 2-3, 4-5, 6-7 (values l, 32 + l, 64 + l, 96 + l). A value is
/// (d·sc_k)·(q − 32).</item>
/// </list>
/// Dequantized as ggml computes it in float32: d·sc (exact: a half times a small integer), times q (exact), minus the
/// exact dmin·m, rounded once. So the floats are the values the file stores, bit for bit (<c>dequantize_row_q*_K</c>).
/// </summary>
internal static unsafe class KQuantBlocks
{
    /// <summary>Values per super-block.</summary>
    public const int BlockSize = 256;

    /// <summary>Bytes of one super-block of <paramref name="dtype"/>.</summary>
    public static int BlockBytes(TensorDType dtype) => dtype switch
    {
        TensorDType.Q4_K => Q4_KBlock.Bytes,
        TensorDType.Q5_K => Q5_KBlock.Bytes,
        TensorDType.Q6_K => Q6_KBlock.Bytes,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "not a K-quant"),
    };

    /// <summary>Where a super-block of <paramref name="dtype"/> holds its half scales: d and dmin, or Q6_K's d.</summary>
    public static ReadOnlySpan<int> ScaleOffsets(TensorDType dtype) => dtype == TensorDType.Q6_K ? [Q6_KBlock.ScaleOffset] : [0, 2];

    /// <summary><paramref name="count"/> super-blocks of <paramref name="dtype"/> at <paramref name="blocks"/> dequantized
    /// into <paramref name="y"/> (256 values each).</summary>
    public static void Dequantize(TensorDType dtype, byte* blocks, int count, float* y)
    {
        switch (dtype)
        {
            case TensorDType.Q4_K: Dequantize<Q4_KBlock>(blocks, count, y); break;
            case TensorDType.Q5_K: Dequantize<Q5_KBlock>(blocks, count, y); break;
            case TensorDType.Q6_K: Dequantize<Q6_KBlock>(blocks, count, y); break;
            default: throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "not a K-quant");
        }
    }

    /// <summary><see cref="Dequantize(TensorDType, byte*, int, float*)"/> for one block type.</summary>
    public static void Dequantize<TBlock>(byte* blocks, int count, float* y)
        where TBlock : struct, IKQuantBlock
    {
        for (int b = 0; b < count; b++) TBlock.Dequantize(blocks + (long)b * TBlock.BlockBytes, y + (long)b * BlockSize);
    }

    /// <summary>
    /// The eight 6-bit scales and minimums of a Q4_K / Q5_K super-block from its 12 packed bytes, byte j of
    /// <paramref name="scales"/> and <paramref name="mins"/> being sub-block j's. Sub-blocks 0-3 are the low 6 bits of
    /// bytes 0-3 (scales) and 4-7 (minimums); sub-blocks 4-7 take their low 4 bits from bytes 8-11 (scale in the low
    /// nibble, minimum in the high one) and their top 2 bits from the top 2 bits of bytes 0-3 (scales) and 4-7
    /// (minimums). Four bytes at a time.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void UnpackScales(byte* packed, out ulong scales, out ulong mins)
    {
        uint a = Unsafe.ReadUnaligned<uint>(packed), b = Unsafe.ReadUnaligned<uint>(packed + 4), c = Unsafe.ReadUnaligned<uint>(packed + 8);
        const uint Six = 0x3F3F3F3F, Nibble = 0x0F0F0F0F, TopTwo = 0x30303030;
        scales = (a & Six) | (ulong)((c & Nibble) | ((a >> 2) & TopTwo)) << 32;
        mins = (b & Six) | (ulong)(((c >> 4) & Nibble) | ((b >> 2) & TopTwo)) << 32;
    }

    /// <summary>The inverse of <see cref="UnpackScales"/>: eight scales and minimums (each 0..63) into 12 bytes.</summary>
    public static void PackScales(ReadOnlySpan<byte> scales, ReadOnlySpan<byte> mins, byte* packed)
    {
        for (int j = 0; j < 4; j++)
        {
            packed[j] = (byte)(scales[j] | (scales[j + 4] >> 4) << 6);
            packed[j + 4] = (byte)(mins[j] | (mins[j + 4] >> 4) << 6);
            packed[j + 8] = (byte)((scales[j + 4] & 0xF) | (mins[j + 4] & 0xF) << 4);
        }
    }

    /// <summary>A half's value (exact; infinities and NaN as such).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float HalfAt(byte* bits) => (float)Unsafe.ReadUnaligned<Half>(bits);

    /// <summary>y[0..32) = d·q − m for the 32 unsigned values of <paramref name="q"/>, as ggml rounds it (d·q exact,
    /// one rounding).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Store32(Vector256<byte> q, float d, float m, float* y)
    {
        Store16(Vector256.WidenLower(q), d, m, y);
        Store16(Vector256.WidenUpper(q), d, m, y + 16);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store16(Vector256<ushort> q, float d, float m, float* y)
    {
        (Vector256.ConvertToSingle(Vector256.WidenLower(q).AsInt32()) * d - Vector256.Create(m)).Store(y);
        (Vector256.ConvertToSingle(Vector256.WidenUpper(q).AsInt32()) * d - Vector256.Create(m)).Store(y + 8);
    }

}

/// <summary>
/// What one K-quant super-block type provides as stored: its layout (<see cref="KQuantBlocks"/>), its exact
/// dequantization and a quantizer for synthetic weights (the kernels read the blocks rearranged at load:
/// <see cref="KQuantGroupFormat{TGroup}"/>). Specialized per type, so the calls inline.
/// </summary>
internal unsafe interface IKQuantBlock
{
    /// <summary>The GGUF block encoding.</summary>
    static abstract TensorDType SourceType { get; }

    /// <summary>Bytes of one super-block of 256 values.</summary>
    static abstract int BlockBytes { get; }

    /// <summary>The 256 values of the super-block at <paramref name="block"/> into <paramref name="y"/>, bit for bit as
    /// ggml dequantizes them.</summary>
    static abstract void Dequantize(byte* block, float* y);

    /// <summary>The super-block's 256 quantized values in order, each as stored (0..15 for Q4_K, 0..31 for Q5_K, 0..63
    /// for Q6_K), one byte each: what a layout that rearranges the blocks (<see cref="IKQuantGroup.Store"/>) reads.</summary>
    static abstract void Values(byte* block, byte* q);

    /// <summary>Quantizes 256 floats into a super-block. A simple, correct quantizer (the scales from each sub-block's
    /// range, each value rounded to nearest), not ggml's search for the best scales: for synthetic weights, whose
    /// kernel speed does not depend on the values.</summary>
    static abstract void Quantize(float* x, byte* block);
}
