using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace GemmaGen.Kernels;

/// <summary>
/// How <see cref="WeightFormat.Q8_0"/> and <see cref="WeightFormat.Q4_0"/> matrices are laid out, and how a row is
/// quantized and dequantized.
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

    /// <summary>Whether <paramref name="format"/> is one of the block formats laid out here.</summary>
    public static bool IsQuantized(WeightFormat format) => format is WeightFormat.Q8_0 or WeightFormat.Q4_0;

    /// <summary>Bytes of quantized values of one row's block (32 for Q8_0, 16 for Q4_0).</summary>
    public static int QuantBytes(WeightFormat format) => format switch
    {
        WeightFormat.Q8_0 => BlockSize,
        WeightFormat.Q4_0 => BlockSize / 2,
        _ => throw new ArgumentOutOfRangeException(nameof(format), format, "not a quantized format"),
    };

    /// <summary>Bytes of the scale region at the start of a panel of <paramref name="cols"/> columns (64-byte aligned).</summary>
    public static int ScaleBytes(int cols) => (cols / BlockSize * PanelRows * sizeof(ushort) + 63) & ~63;

    /// <summary>Bytes of one panel of <see cref="PanelRows"/> rows.</summary>
    public static long PanelBytes(WeightFormat format, int cols) =>
        ScaleBytes(cols) + (long)(cols / BlockSize) * PanelRows * QuantBytes(format);

    /// <summary>Bytes of a <paramref name="rows"/> × <paramref name="cols"/> matrix, the last panel padded.</summary>
    public static long MatrixBytes(WeightFormat format, int rows, int cols) =>
        (long)((rows + PanelRows - 1) / PanelRows) * PanelBytes(format, cols);

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

    /// <summary>
    /// Quantizes one row into panel <paramref name="panel"/>, lane <paramref name="lane"/> (its row index mod 4).
    /// Q8_0: scale d = max|x| / 127 rounded up to bf16, q = round(x / d), ties to even; |x − q·d| ≤ d/2 (up to the
    /// float32 rounding of x / d).
    /// Q4_0: m is the value of largest magnitude (the positive one on a tie), d = m / −8 rounded away from zero to
    /// bf16, q = clamp(round(x / d), −8, 7); |x − q·d| ≤ |d|/2, except where x / d rounds to 8 (values of the sign
    /// opposite to m, beyond 7.5·|d|): those become 7·d, off by at most |d|.
    /// </summary>
    internal static void QuantizeRow(WeightFormat format, ReadOnlySpan<float> source, byte* panel, int lane)
    {
        int cols = source.Length, blocks = cols / BlockSize;
        ushort* scales = (ushort*)panel;
        byte* quants = panel + ScaleBytes(cols);
        int quantBytes = QuantBytes(format);
        fixed (float* x = source)
        {
            for (int b = 0; b < blocks; b++)
            {
                float* v = x + b * BlockSize;
                byte* q = quants + (b * PanelRows + lane) * quantBytes;
                if (format == WeightFormat.Q8_0) scales[b * PanelRows + lane] = QuantizeQ8Block(v, (sbyte*)q);
                else scales[b * PanelRows + lane] = QuantizeQ4Block(v, q);
            }
        }
    }

    /// <summary>Dequantizes the row in panel <paramref name="panel"/>, lane <paramref name="lane"/>, into
    /// <paramref name="destination"/> (exactly q·d: the product of a small integer and a bf16 is a float32).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void DequantizeRow(WeightFormat format, byte* panel, int lane, Span<float> destination)
    {
        int cols = destination.Length, blocks = cols / BlockSize;
        ushort* scales = (ushort*)panel;
        byte* quants = panel + ScaleBytes(cols);
        int quantBytes = QuantBytes(format);
        fixed (float* y = destination)
        {
            for (int b = 0; b < blocks; b++)
            {
                float d = BFloat16.ToSingle(scales[b * PanelRows + lane]);
                byte* q = quants + (b * PanelRows + lane) * quantBytes;
                float* o = y + b * BlockSize;
                if (format == WeightFormat.Q8_0) DequantizeQ8Block((sbyte*)q, d, o);
                else DequantizeQ4Block(q, d, o);
            }
        }
    }

    private static ushort QuantizeQ8Block(float* x, sbyte* q)
    {
        float max = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var m = Vector256.Max(Vector256.Max(Vector256.Abs(Vector256.Load(x)), Vector256.Abs(Vector256.Load(x + 8))),
                Vector256.Max(Vector256.Abs(Vector256.Load(x + 16)), Vector256.Abs(Vector256.Load(x + 24))));
            max = MaxAcross(m);
        }
        else
        {
            for (int i = 0; i < BlockSize; i++) max = MathF.Max(max, MathF.Abs(x[i]));
        }
        ushort bits = ScaleBits(max / Q8Max);
        float d = BFloat16.ToSingle(bits);
        if (d == 0)
        {
            new Span<byte>(q, BlockSize).Clear();
            return bits;
        }
        if (Vector256.IsHardwareAccelerated)
        {
            var a = Vector256.Narrow(Round(x, d), Round(x + 8, d));
            var b = Vector256.Narrow(Round(x + 16, d), Round(x + 24, d));
            Vector256.Narrow(a, b).Store(q);
        }
        else
        {
            for (int i = 0; i < BlockSize; i++) q[i] = (sbyte)MathF.Round(x[i] / d);
        }
        return bits;
    }

    private static ushort QuantizeQ4Block(float* x, byte* q)
    {
        float max = float.MinValue, min = float.MaxValue;
        if (Vector256.IsHardwareAccelerated)
        {
            Vector256<float> v0 = Vector256.Load(x), v1 = Vector256.Load(x + 8), v2 = Vector256.Load(x + 16), v3 = Vector256.Load(x + 24);
            max = MaxAcross(Vector256.Max(Vector256.Max(v0, v1), Vector256.Max(v2, v3)));
            min = -MaxAcross(-Vector256.Min(Vector256.Min(v0, v1), Vector256.Min(v2, v3)));
        }
        else
        {
            for (int i = 0; i < BlockSize; i++)
            {
                max = MathF.Max(max, x[i]);
                min = MathF.Min(min, x[i]);
            }
        }
        float extreme = max >= -min ? max : min;
        ushort bits = ScaleBits(extreme / -Q4Offset);
        float d = BFloat16.ToSingle(bits);
        if (d == 0)
        {
            new Span<byte>(q, BlockSize / 2).Fill(Q4Offset | Q4Offset << 4);
            return bits;
        }
        if (Vector256.IsHardwareAccelerated)
        {
            var offset = Vector256.Create(Q4Offset);
            var lo = Vector256.Narrow(Nibbles(x, d, offset), Nibbles(x + 8, d, offset));
            var hi = Vector256.Narrow(Nibbles(x + 16, d, offset), Nibbles(x + 24, d, offset));
            var packed = Vector256.Narrow(lo, hi).AsByte();
            (packed.GetLower() | (packed.GetUpper() << 4)).Store(q);
        }
        else
        {
            for (int i = 0; i < BlockSize / 2; i++)
                q[i] = (byte)(Nibble(x[i], d) | Nibble(x[i + BlockSize / 2], d) << 4);
        }
        return bits;
    }

    private static int Nibble(float x, float d) => Math.Clamp((int)MathF.Round(x / d), -Q4Offset, Q4Offset - 1) + Q4Offset;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Round(float* x, float d) => Vector256.ConvertToInt32(Vector256.Round(Vector256.Load(x) / d));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Nibbles(float* x, float d, Vector256<int> offset) =>
        Vector256.Min(Vector256.Max(Round(x, d), -offset), offset - Vector256<int>.One) + offset;

    /// <summary>The largest of the eight lanes.</summary>
    internal static float MaxAcross(Vector256<float> v)
    {
        var m = Vector128.Max(v.GetLower(), v.GetUpper());
        m = Vector128.Max(m, Vector128.Shuffle(m, Vector128.Create(2, 3, 0, 1)));
        return MathF.Max(m.ToScalar(), m.GetElement(1));
    }

    private static void DequantizeQ8Block(sbyte* q, float d, float* y)
    {
        if (Vector256.IsHardwareAccelerated)
        {
            Widen(Vector256.Load(q), d, y);
            return;
        }
        for (int i = 0; i < BlockSize; i++) y[i] = q[i] * d;
    }

    private static void DequantizeQ4Block(byte* q, float d, float* y)
    {
        if (Vector256.IsHardwareAccelerated)
        {
            var packed = Vector128.Load(q);
            Widen(Vector256.Create(packed & Vector128.Create((byte)0xF), packed >> 4).AsSByte() - Vector256.Create((sbyte)Q4Offset), d, y);
            return;
        }
        for (int i = 0; i < BlockSize / 2; i++)
        {
            y[i] = ((q[i] & 0xF) - Q4Offset) * d;
            y[i + BlockSize / 2] = ((q[i] >> 4) - Q4Offset) * d;
        }
    }

    /// <summary>y[0..32) = v·d.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Widen(Vector256<sbyte> v, float d, float* y)
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
