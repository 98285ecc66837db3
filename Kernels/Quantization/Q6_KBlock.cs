using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace GemmaGen.Kernels;

/// <summary>ggml's <c>block_q6_K</c> as stored (<see cref="KQuantBlocks"/>): 210 bytes per 256 values.</summary>
internal readonly unsafe struct Q6_KBlock : IKQuantBlock
{
    /// <summary>Bytes of one super-block.</summary>
    public const int Bytes = 210;

    /// <summary>Where the half d is.</summary>
    public const int ScaleOffset = 208;

    private const int HighOffset = 128, ScalesOffset = 192;

    public static TensorDType SourceType => TensorDType.Q6_K;

    public static int BlockBytes => Bytes;

    /// <summary>The four 32-value quarters of each half, one vector of values each.</summary>
    public static void Dequantize(byte* block, float* y)
    {
        float d = KQuantBlocks.HalfAt(block + ScaleOffset);
        sbyte* sc = (sbyte*)block + ScalesOffset;
        for (int half = 0; half < 2; half++)
        {
            byte* low = block + 64 * half, high = block + HighOffset + 32 * half;
            float* output = y + 128 * half;
            if (Vector256.IsHardwareAccelerated)
            {
                Vector256<byte> low0 = Vector256.Load(low), low1 = Vector256.Load(low + 32), bits = Vector256.Load(high);
                var nibble = Vector256.Create((byte)0xF);
                Store32(((low0 & nibble) | Vector256.ShiftLeft(bits & Vector256.Create((byte)3), 4)), d, sc + 8 * half, output);
                Store32(((low1 & nibble) | Vector256.ShiftLeft(Vector256.ShiftRightLogical(bits, 2) & Vector256.Create((byte)3), 4)), d, sc + 8 * half + 2, output + 32);
                Store32((Vector256.ShiftRightLogical(low0, 4) | Vector256.ShiftLeft(Vector256.ShiftRightLogical(bits, 4) & Vector256.Create((byte)3), 4)), d, sc + 8 * half + 4, output + 64);
                Store32((Vector256.ShiftRightLogical(low1, 4) | Vector256.ShiftLeft(Vector256.ShiftRightLogical(bits, 6), 4)), d, sc + 8 * half + 6, output + 96);
                continue;
            }
            for (int quarter = 0; quarter < 4; quarter++)
            {
                for (int l = 0; l < 32; l++)
                {
                    int q = ((low[l + 32 * (quarter % 2)] >> (4 * (quarter / 2))) & 0xF) | ((high[l] >> (2 * quarter)) & 3) << 4;
                    output[32 * quarter + l] = d * sc[8 * half + 2 * quarter + l / 16] * (q - 32);
                }
            }
        }
    }

    public static bool HasMinimums => false;

    /// <summary>Each quarter's 32 values as in <see cref="Dequantize"/>, (q − 32) widened to int16 and times its two
    /// sub-block scales.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Widen(byte* block, short* w, int* mins, out float d, out float dmin)
    {
        d = F16Scale.ToSingle(*(ushort*)(block + ScaleOffset));
        dmin = 0;
        sbyte* sc = (sbyte*)block + ScalesOffset;
        var nibble = Vector256.Create((byte)0xF);
        var three = Vector256.Create((byte)3);
        for (int half = 0; half < 2; half++)
        {
            byte* low = block + 64 * half;
            Vector256<byte> low0 = Vector256.Load(low), low1 = Vector256.Load(low + 32), bits = Vector256.Load(block + HighOffset + 32 * half);
            short* output = w + 128 * half;
            sbyte* scales = sc + 8 * half;
            Widen32((low0 & nibble) | Vector256.ShiftLeft(bits & three, 4), scales, output);
            Widen32((low1 & nibble) | Vector256.ShiftLeft(Vector256.ShiftRightLogical(bits, 2) & three, 4), scales + 2, output + 32);
            Widen32(Vector256.ShiftRightLogical(low0, 4) | Vector256.ShiftLeft(Vector256.ShiftRightLogical(bits, 4) & three, 4), scales + 4, output + 64);
            Widen32(Vector256.ShiftRightLogical(low1, 4) | Vector256.ShiftLeft(Vector256.ShiftRightLogical(bits, 6), 4), scales + 6, output + 96);
        }
    }

    /// <summary>w = (q − 32)·sc for 32 values of 6-bit <paramref name="q"/>: the first 16 times sc[0], the next sc[1].</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Widen32(Vector256<byte> q, sbyte* sc, short* w)
    {
        var values = q.AsSByte() - Vector256.Create((sbyte)32);
        (Vector256.WidenLower(values) * Vector256.Create((short)sc[0])).Store(w);
        (Vector256.WidenUpper(values) * Vector256.Create((short)sc[1])).Store(w + 16);
    }

    /// <summary>y = (d·sc_k)·(q − 32) for 32 values of 6-bit <paramref name="q"/>, the first 16 with scale
    /// <paramref name="sc"/>[0], the next with sc[1]: d·sc exact, times an exact small integer.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store32(Vector256<byte> q, float d, sbyte* sc, float* y)
    {
        var values = (q.AsSByte() - Vector256.Create((sbyte)32));
        Store16(Vector256.WidenLower(values), d * sc[0], y);
        Store16(Vector256.WidenUpper(values), d * sc[1], y + 16);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store16(Vector256<short> q, float scale, float* y)
    {
        (Vector256.ConvertToSingle(Vector256.WidenLower(q)) * scale).Store(y);
        (Vector256.ConvertToSingle(Vector256.WidenUpper(q)) * scale).Store(y + 8);
    }

    /// <summary>Per 16 values: the scale is the value of largest magnitude over −32 (so that it maps to −32, as Q4_0
    /// does); d is the largest scale magnitude over 127 as a half (rounded away from zero), sc the nearest integer to
    /// scale / d, q the nearest integer to x / (d·sc) within −32..31.</summary>
    public static void Quantize(float* x, byte* block)
    {
        Span<float> scale = stackalloc float[16];
        float largest = 0;
        for (int k = 0; k < 16; k++)
        {
            float extreme = 0;
            for (int l = 0; l < 16; l++)
            {
                if (MathF.Abs(x[16 * k + l]) > MathF.Abs(extreme)) extreme = x[16 * k + l];
            }
            scale[k] = extreme / -32;
            largest = MathF.Max(largest, MathF.Abs(scale[k]));
        }
        ushort bits = F16Scale.Encode(largest / 127);
        *(ushort*)(block + ScaleOffset) = bits;
        float d = F16Scale.ToSingle(bits);
        sbyte* sc = (sbyte*)block + ScalesOffset;
        for (int k = 0; k < 16; k++) sc[k] = (sbyte)(d == 0 ? 0 : Math.Clamp((int)MathF.Round(scale[k] / d), -128, 127));
        new Span<byte>(block, ScalesOffset).Clear();
        for (int i = 0; i < 256; i++)
        {
            float step = d * sc[i / 16];
            int q = (step == 0 ? 0 : Math.Clamp((int)MathF.Round(x[i] / step), -32, 31)) + 32;
            int half = i / 128, quarter = i % 128 / 32, l = i % 32;
            block[64 * half + 32 * (quarter % 2) + l] |= (byte)((q & 0xF) << (4 * (quarter / 2)));
            block[HighOffset + 32 * half + l] |= (byte)((q >> 4) << (2 * quarter));
        }
    }

    /// <summary>
    /// Per half (128 values): the quarters' 6-bit values widened to int16, minus 32, each times its two sub-blocks'
    /// scales (a permutation of the 16 scales: at most 32·128 in magnitude, an int16), against their inputs
    /// (<c>vpmaddwd</c>); each lane sums 8 products per half (below 2^31). Unrolled by hand (constant indices).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Dot512(byte* block, short* x, int* sums, float s, ref Vector512<float> acc, ref Vector256<float> minus)
    {
        var scales = Avx2.ConvertToVector256Int16(Vector128.Load((sbyte*)block + ScalesOffset)).ToVector512Unsafe();
        var d = Vector512.Create(F16Scale.ToSingle(*(ushort*)(block + ScaleOffset)) * s);
        var pairs = Vector512.Create(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, (short)1);
        acc = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(Half512(block, x, scales, pairs, 0)), d, acc);
        acc = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(Half512(block, x, scales, pairs, 1)), d, acc);
    }

    /// <summary>Half <paramref name="half"/> of the super-block against its inputs: 16 int32 lanes; <paramref name="pairs"/>
    /// + k is the permutation that puts scale k in lanes 0..15 and scale k + 1 in lanes 16..31.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> Half512(byte* block, short* x, Vector512<short> scales, Vector512<short> pairs, int half)
    {
        var nibble = Vector512.Create((short)0xF);
        var three = Vector512.Create((short)3);
        var offset = Vector512.Create((short)32);
        var low0 = Avx512BW.ConvertToVector512Int16(Vector256.Load(block + 64 * half)).AsInt16();
        var low1 = Avx512BW.ConvertToVector512Int16(Vector256.Load(block + 64 * half + 32)).AsInt16();
        var bits = Avx512BW.ConvertToVector512Int16(Vector256.Load(block + HighOffset + 32 * half)).AsInt16();
        var q0 = ((low0 & nibble) | Vector512.ShiftLeft(bits & three, 4)) - offset;
        var q1 = ((low1 & nibble) | Vector512.ShiftLeft(Vector512.ShiftRightLogical(bits, 2) & three, 4)) - offset;
        var q2 = (Vector512.ShiftRightLogical(low0, 4) | Vector512.ShiftLeft(Vector512.ShiftRightLogical(bits, 4) & three, 4)) - offset;
        var q3 = (Vector512.ShiftRightLogical(low1, 4) | Vector512.ShiftLeft(Vector512.ShiftRightLogical(bits, 6), 4)) - offset;
        short* input = x + 128 * half;
        return Avx512BW.MultiplyAddAdjacent(q0 * Avx512BW.PermuteVar32x16(scales, pairs + Vector512.Create((short)(8 * half))), Vector512.Load(input))
            + Avx512BW.MultiplyAddAdjacent(q1 * Avx512BW.PermuteVar32x16(scales, pairs + Vector512.Create((short)(8 * half + 2))), Vector512.Load(input + 32))
            + Avx512BW.MultiplyAddAdjacent(q2 * Avx512BW.PermuteVar32x16(scales, pairs + Vector512.Create((short)(8 * half + 4))), Vector512.Load(input + 64))
            + Avx512BW.MultiplyAddAdjacent(q3 * Avx512BW.PermuteVar32x16(scales, pairs + Vector512.Create((short)(8 * half + 6))), Vector512.Load(input + 96));
    }

    /// <summary><see cref="Dot512"/> at 256 bits: each 16 values, one sub-block, times its scale spread by a byte
    /// shuffle; each lane sums 16 products per half (at most 16·32·128·32767 &lt; 2^31).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Dot256(byte* block, short* x, int* sums, float s, ref Vector256<float> acc, ref Vector256<float> minus)
    {
        // Each half's eight scales as int16, in both 128-bit lanes (8 bytes read at a time: the block ends at 210).
        var low = Sse41.ConvertToVector128Int16(Vector128.CreateScalarUnsafe(*(long*)(block + ScalesOffset)).AsSByte()).AsByte();
        var high = Sse41.ConvertToVector128Int16(Vector128.CreateScalarUnsafe(*(long*)(block + ScalesOffset + 8)).AsSByte()).AsByte();
        var first = Vector256.Create(low, low);
        var second = Vector256.Create(high, high);
        var d = Vector256.Create(F16Scale.ToSingle(*(ushort*)(block + ScaleOffset)) * s);
        acc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(Piece256(block, x, first, 0, 0) + Piece256(block, x, first, 0, 1)), d, acc);
        acc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(Piece256(block, x, second, 1, 0) + Piece256(block, x, second, 1, 1)), d, acc);
    }

    /// <summary>Values 16·<paramref name="piece"/>..+15 of each quarter of half <paramref name="half"/>, one sub-block
    /// each (8·half + piece + 2·quarter), against their inputs; <paramref name="scales"/> holds the half's eight scales
    /// as int16 in each 128-bit lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Piece256(byte* block, short* x, Vector256<byte> scales, int half, int piece)
    {
        var nibble = Vector256.Create((short)0xF);
        var three = Vector256.Create((short)3);
        var offset = Vector256.Create((short)32);
        var low0 = Avx2.ConvertToVector256Int16(Vector128.Load(block + 64 * half + 16 * piece)).AsInt16();
        var low1 = Avx2.ConvertToVector256Int16(Vector128.Load(block + 64 * half + 32 + 16 * piece)).AsInt16();
        var bits = Avx2.ConvertToVector256Int16(Vector128.Load(block + HighOffset + 32 * half + 16 * piece)).AsInt16();
        var q0 = ((low0 & nibble) | Vector256.ShiftLeft(bits & three, 4)) - offset;
        var q1 = ((low1 & nibble) | Vector256.ShiftLeft(Vector256.ShiftRightLogical(bits, 2) & three, 4)) - offset;
        var q2 = (Vector256.ShiftRightLogical(low0, 4) | Vector256.ShiftLeft(Vector256.ShiftRightLogical(bits, 4) & three, 4)) - offset;
        var q3 = (Vector256.ShiftRightLogical(low1, 4) | Vector256.ShiftLeft(Vector256.ShiftRightLogical(bits, 6), 4)) - offset;
        short* input = x + 128 * half + 16 * piece;
        return Avx2.MultiplyAddAdjacent(q0 * Avx2.Shuffle(scales, MinKBlock.Word(piece)).AsInt16(), Vector256.Load(input))
            + Avx2.MultiplyAddAdjacent(q1 * Avx2.Shuffle(scales, MinKBlock.Word(piece + 2)).AsInt16(), Vector256.Load(input + 32))
            + Avx2.MultiplyAddAdjacent(q2 * Avx2.Shuffle(scales, MinKBlock.Word(piece + 4)).AsInt16(), Vector256.Load(input + 64))
            + Avx2.MultiplyAddAdjacent(q3 * Avx2.Shuffle(scales, MinKBlock.Word(piece + 6)).AsInt16(), Vector256.Load(input + 96));
    }
}
