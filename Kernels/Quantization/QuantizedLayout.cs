using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace GemmaGen.Kernels;

/// <summary>
/// How the block formats (<see cref="WeightFormat.Q8_0"/>, <see cref="WeightFormat.Q4_0"/>, and GGUF's blocks as stored,
/// <see cref="WeightFormat.Q8_0F16"/>, <see cref="WeightFormat.Q4_0F16"/>) lay out a matrix, and the helpers their blocks
/// share (each format's own block code is an <see cref="IQuantizedBlock"/>).
/// <para>
/// A row is cut into blocks of <see cref="BlockSize"/> consecutive columns; each block holds its values as small
/// unsigned integers (the weight plus the format's offset) and one 16-bit scale (<see cref="IBlockScale"/>): in
/// GemmaGen's own formats a bfloat16 whose magnitude is rounded up (so the block's largest value always fits the integer
/// range), in the GGUF ones the file's IEEE half as stored. Q8_0: 32 bytes, the int8 value plus 128
/// (−127..127 stored as 1..255), and the scale: 34 bytes per 32 weights = 1.0625 bytes per weight. Q4_0: 16 bytes of
/// two four-bit values (the value plus 8, 0..15) and the scale: 18 bytes per 32 weights = 0.5625 bytes per weight.
/// </para>
/// <para>
/// Rows are stored in groups of <see cref="GroupRows"/>, laid out for the integer kernels so that they read the
/// weights as stored, with no repacking at run time. A group is <c>[scales][records]</c>: the 16-bit scales
/// <c>[blocks][16]</c> (row i of the group, block b at index 16b + i), padded to 64 bytes; then one record per block,
/// 16 × <see cref="IQuantizedBlock.QuantBytes"/> bytes each. A record is a run of 64-byte vectors, each holding one 4-byte chunk
/// of every row of the group, row i at bytes 4i..4i+3 (rows 0..7 in the lower 256 bits, 8..15 in the upper): vector
/// c holds bytes 4c..4c+3 of each row's block. Q8_0's bytes are its columns in order (8 vectors: vector g holds columns
/// 4g..4g+3); Q4_0's byte j holds column j in its low nibble and column j + 16 in its high nibble (4 vectors: the low
/// nibbles of vector g are columns 4g..4g+3, the high nibbles columns 16 + 4g..16 + 4g + 3). So a 256-bit half of a
/// vector of four columns of eight rows, met by a broadcast group of four input bytes, gives each row's sum in its own
/// lane (<c>vpdpbusd</c>), and widened to int16 it meets four int16 inputs (<c>vpmaddwd</c>). A matrix whose row
/// count is not a multiple of 16 has zero rows padding its last group. Only matrices whose width is a multiple of 32
/// can be stored this way.
/// </para>
/// </summary>
public static unsafe class QuantizedLayout
{
    /// <summary>Columns per block.</summary>
    public const int BlockSize = 32;

    /// <summary>Rows interleaved in one group.</summary>
    public const int GroupRows = 16;

    /// <summary>Bytes of one vector of a record: a 4-byte chunk of each of the <see cref="GroupRows"/> rows.</summary>
    public const int VectorBytes = GroupRows * 4;

    /// <summary>Largest magnitude of a Q8_0 value.</summary>
    public const int Q8Max = 127;

    /// <summary>The offset of a Q4_0 value: the stored nibble is the value plus 8.</summary>
    public const int Q4Offset = 8;

    /// <summary>Bytes of the scale region at the start of a group of <paramref name="cols"/> columns (64-byte aligned).</summary>
    public static int ScaleBytes(int cols) => (cols / BlockSize * GroupRows * sizeof(ushort) + 63) & ~63;

    /// <summary>Bytes of one group of <see cref="GroupRows"/> rows of a block format.</summary>
    /// <exception cref="ArgumentException"><paramref name="format"/> is not a block format laid out here.</exception>
    public static long GroupBytes(WeightFormat format, int cols) => format is QuantizedFormat quantized
        ? quantized.GroupBytes(cols)
        : throw new ArgumentException($"{format} is not a block format", nameof(format));

    /// <summary>
    /// A block scale as bf16 bits: <paramref name="scale"/> rounded to bf16 away from zero, so that no value of the
    /// block divided by it exceeds the integer bound the scale was computed for.
    /// </summary>
    internal static ushort ScaleBits(float scale)
    {
        uint bits = BitConverter.SingleToUInt32Bits(scale);
        if ((bits & 0xFFFF) != 0 && float.IsFinite(scale)) bits += 0x10000;
        return (ushort)(bits >> 16);
    }

    /// <summary>The largest of the eight lanes.</summary>
    internal static float MaxAcross(Vector256<float> v)
    {
        var m = Vector128.Max(v.GetLower(), v.GetUpper());
        m = Vector128.Max(m, Vector128.Shuffle(m, Vector128.Create(2, 3, 0, 1)));
        return MathF.Max(m.ToScalar(), m.GetElement(1));
    }

    /// <summary>y[0..32) = v·d.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Widen(Vector256<sbyte> v, float d, float* y)
    {
        if (Avx512F.IsSupported)
        {
            (Avx512F.ConvertToVector512Single(Avx512F.ConvertToVector512Int32(v.GetLower())) * d).Store(y);
            (Avx512F.ConvertToVector512Single(Avx512F.ConvertToVector512Int32(v.GetUpper())) * d).Store(y + 16);
            return;
        }
        var lo = Vector256.WidenLower(v);
        var hi = Vector256.WidenUpper(v);
        (Vector256.ConvertToSingle(Vector256.WidenLower(lo)) * d).Store(y);
        (Vector256.ConvertToSingle(Vector256.WidenUpper(lo)) * d).Store(y + 8);
        (Vector256.ConvertToSingle(Vector256.WidenLower(hi)) * d).Store(y + 16);
        (Vector256.ConvertToSingle(Vector256.WidenUpper(hi)) * d).Store(y + 24);
    }
}
