using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace GemmaGen.Kernels;

/// <summary>
/// How the block formats (<see cref="WeightFormat.Q8_0"/>, <see cref="WeightFormat.Q4_0"/>) lay out a matrix, and the
/// helpers their blocks share (each format's own block code is an <see cref="IQuantizedBlock"/>).
/// <para>
/// A row is cut into blocks of <see cref="BlockSize"/> consecutive columns; each block holds its values as small
/// integers and one scale, a bfloat16 whose magnitude is rounded up (so the block's largest value always fits
/// the integer range). Q8_0: 32 int8 (−127..127) and the scale, 34 bytes per 32 weights = 1.0625 bytes per
/// weight. Q4_0: 32 four-bit values stored with an offset of 8 (the weight is (q − 8)·scale, −8..7) and the
/// scale, 18 bytes per 32 weights = 0.5625 bytes per weight.
/// </para>
/// <para>
/// Rows are interleaved in panels of <see cref="PanelRows"/>, so that a kernel streams one contiguous run of
/// memory while it computes four dot products that share each load of the input. A panel is
/// <c>[scales][quants]</c>: the scales as bf16 <c>[blocks][4]</c> (scale of row <c>4p + i</c>, block b at
/// index <c>4b + i</c>), padded to 64 bytes; then the quants <c>[blocks][4][bytes per block]</c>, the 32 int8 of
/// each row's block in column order (Q8_0), or 16 bytes whose low nibbles are columns 0..15 of the block and
/// whose high nibbles are columns 16..31 (Q4_0). A matrix whose row count is not a multiple of 4 has zero rows
/// padding its last panel. Only matrices whose width is a multiple of 32 can be stored this way.
/// </para>
/// </summary>
public static unsafe class QuantizedLayout
{
    /// <summary>Columns per block.</summary>
    public const int BlockSize = 32;

    /// <summary>Rows interleaved in one panel.</summary>
    public const int PanelRows = 4;

    /// <summary>Largest magnitude of a Q8_0 value.</summary>
    public const int Q8Max = 127;

    /// <summary>The offset of a Q4_0 value: the stored nibble is the value plus 8.</summary>
    public const int Q4Offset = 8;

    /// <summary>Bytes of the scale region at the start of a panel of <paramref name="cols"/> columns (64-byte aligned).</summary>
    public static int ScaleBytes(int cols) => (cols / BlockSize * PanelRows * sizeof(ushort) + 63) & ~63;

    /// <summary>Bytes of one panel of <see cref="PanelRows"/> rows of a block format.</summary>
    /// <exception cref="ArgumentException"><paramref name="format"/> is not a block format laid out here.</exception>
    public static long PanelBytes(WeightFormat format, int cols) => format is QuantizedFormat quantized
        ? quantized.PanelBytes(cols)
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
