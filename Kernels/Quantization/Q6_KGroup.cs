using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace GemmaGen.Kernels;

/// <summary>
/// ggml's <c>block_q6_K</c> in groups of eight rows (<see cref="KQuantGroupFormat{TGroup}"/>). A value is
/// (d·sc_k)·(q − 32), q = low nibble + 16·high part (0..63), sc_k an int8 per 16 values. A group-block of 1696 bytes
/// (212 per row and 256 values: the file's 210 and d widened; 32-byte aligned, so no 16- or 32-byte load crosses a
/// line):
/// <list type="bullet">
/// <item>bytes 0..1023, the low nibbles as the format's nibble chunks;</item>
/// <item>bytes 1024..1535, the high parts: those of values 32j..32j+31 at 1024 + 64j, as 4 vectors of 16 bytes, vector
/// p for chunks 2p and 2p + 1; row r's bytes are 2r and 2r + 1: byte 2r holds, as 2-bit fields, values 4c (bits 0-1)
/// and 4c + 2 (bits 2-3) of chunk c = 2p, and those of chunk 2p + 1 in bits 4-5 and 6-7; byte 2r + 1 values 4c + 1 and
/// 4c + 3 the same way. Widened to int16 like the nibbles, a byte's low 4 bits (chunk 2p) and high 4 bits (chunk 2p + 1)
/// index <c>vpshufb</c> tables of 16 times either field.</item>
/// <item>bytes 1536..1663, the scales: sc_k of row r at 1536 + 8k + r;</item>
/// <item>bytes 1664..1695, d of each row as float32 (exact).</item>
/// </list>
/// The kernel: per 16 values, each row's Σ (q − 32)·x̂ exact in its int32 lane (Σ q·x̂ added to −32·Σ x̂; the total is
/// at most 16·32·32767 &lt; 2^24, so exact in float32 too), scaled by sc_k·d per row into a float lane; per super-block
/// the total times the input scale s.
/// </summary>
internal readonly unsafe struct Q6_KGroup : IKQuantGroup
{
    private const int HighOffset = 1024, ScalesOffset = 1536, DOffset = 1664;

    public static TensorDType SourceType => TensorDType.Q6_K;

    public static int SourceBytes => Q6_KBlock.Bytes;

    public static int GroupBlockBytes => 1696;

    public static void Quantize(float* x, byte* block) => Q6_KBlock.Quantize(x, block);

    public static void Store(byte* block, byte* group, int r)
    {
        ((float*)(group + DOffset))[r] = KQuantBlocks.HalfAt(block + Q6_KBlock.ScaleOffset);
        for (int k = 0; k < 16; k++) group[ScalesOffset + 8 * k + r] = block[Q6_KBlock.ScalesOffset + k];
        byte* q = stackalloc byte[KQuantBlocks.BlockSize];
        Q6_KBlock.Values(block, q);
        GroupNibbles.Store(q, group, r);
        for (int j = 0; j < 8; j++)
        {
            for (int c = 0; c < 8; c++)
            {
                byte* v = q + 32 * j + 4 * c;
                byte* bytes = group + HighOffset + 64 * j + 16 * (c / 2) + 2 * r;
                int shift = 4 * (c % 2), mask = 0xF << shift;
                bytes[0] = (byte)((bytes[0] & ~mask) | (Field(v[0]) | Field(v[2]) << 2) << shift);
                bytes[1] = (byte)((bytes[1] & ~mask) | (Field(v[1]) | Field(v[3]) << 2) << shift);
            }
        }
    }

    /// <summary>The high part of 6-bit <paramref name="q"/>.</summary>
    private static int Field(byte q) => q >> 4;

    /// <summary>(d·sc_k)·(q − 32): d·sc exact, times an exact small integer, one rounding (the file's values).</summary>
    public static void Dequantize(byte* group, int r, float* y)
    {
        float d = ((float*)(group + DOffset))[r];
        for (int j = 0; j < 8; j++)
        {
            float first = d * (sbyte)group[ScalesOffset + 16 * j + r], second = d * (sbyte)group[ScalesOffset + 16 * j + 8 + r];
            for (int c = 0; c < 8; c++)
            {
                byte* chunk = group + 128 * j + 16 * c + 2 * r;
                byte* high = group + HighOffset + 64 * j + 16 * (c / 2) + 2 * r;
                int shift = 4 * (c % 2);
                float scale = c < 4 ? first : second;
                float* o = y + 32 * j + 4 * c;
                o[0] = scale * Value(chunk[0] & 0xF, high[0] >> shift);
                o[1] = scale * Value(chunk[1] & 0xF, high[1] >> shift);
                o[2] = scale * Value(chunk[0] >> 4, high[0] >> (shift + 2));
                o[3] = scale * Value(chunk[1] >> 4, high[1] >> (shift + 2));
            }
        }
    }

    /// <summary>Byte sums of 8 values fit int16 (4 products of at most 63·127 per int16).</summary>
    public static int Int16Steps => 1;

    public static bool Minimums => false;

    /// <summary>The values q (nibble + 16·high part, 0..63), sc_k as int16 pairs, −32·sc of each 16 as int16 pairs per 32,
    /// and d into the tile.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Unpack(byte* group, byte* tile)
    {
        var three = Vector128.Create((byte)3);
        for (int j = 0; j < 8; j++)
        {
            for (int c = 0; c < 8; c++)
            {
                var bits = Vector128.Load(group + HighOffset + 64 * j + 16 * (c / 2)).AsUInt16();
                int e = 4 * (c % 2);
                var lowHigh = Vector128.ShiftLeft((Vector128.ShiftRightLogical(bits, e).AsByte() & three).AsUInt16(), 4).AsByte();
                var highHigh = Vector128.ShiftLeft((Vector128.ShiftRightLogical(bits, e + 2).AsByte() & three).AsUInt16(), 4).AsByte();
                KQuantMatMul.StoreChunk(group + 128 * j + 16 * c, lowHigh, highHigh, tile + 256 * j + 32 * c);
            }
            var first = Avx2.ConvertToVector256Int32((sbyte*)(group + ScalesOffset + 16 * j));
            var second = Avx2.ConvertToVector256Int32((sbyte*)(group + ScalesOffset + 16 * j + 8));
            KQuantMatMul.StorePairs(first, tile + KQuantMatMul.ScalesOffset + 64 * j);
            KQuantMatMul.StorePairs(second, tile + KQuantMatMul.ScalesOffset + 64 * j + 32);
            var offsets = ((first * -32) & Vector256.Create(0xFFFF)) | Vector256.ShiftLeft(second * -32, 16);
            offsets.Store((int*)(tile + KQuantMatMul.OffsetsOffset + 32 * j));
        }
        Vector256.Load((float*)(group + DOffset)).Store((float*)(tile + KQuantMatMul.DOffset));
    }

    /// <summary>q − 32 from a nibble and the high part in the low 2 bits of <paramref name="field"/>.</summary>
    private static int Value(int nibble, int field) => nibble + 16 * ((field & 3) - 2);

    /// <summary>
    /// Per super-block and 16 values, each token's int32 lanes start at −32·Σ x̂ of its 16 inputs; two chunk pairs of
    /// nibbles widened to int16 once and split by a mask and a shift, their high parts (<see cref="Chunks{TTokens}"/>)
    /// put in bits 4-5, each vector met by every token's broadcast pair of inputs; each sum scaled by sc_k·d per row into a
    /// float lane per row and token, the super-block's total times its input scale s added to the token's result. The
    /// stream prefetched <see cref="QuantizedMatVec.PrefetchBytes"/> ahead.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Dot256<TTokens>(byte* group, int blocks, KQuantInput.Quantized input, int t0, int cols, float* y)
        where TTokens : struct, ICount
    {
        var x = input.Token(t0, cols);
        short* xs = x.Values;
        int* offsets = x.Offsets;
        float* scales = x.Scales;
        int offsetStride = cols / 16;
        Vector256<float> r0 = default, r1 = default, r2 = default, r3 = default;
        var nibble = Vector256.Create((short)0xF);
        // 16 times the field in bits 0-1 (values 4c, 4c + 1) or 2-3 (4c + 2, 4c + 3) of a 4-bit index; index 0, which
        // every int16 lane's zero upper byte reads, gives 0.
        var first = Vector256.Create(Vector128.Create((byte)0, 16, 32, 48, 0, 16, 32, 48, 0, 16, 32, 48, 0, 16, 32, 48));
        var second = Vector256.Create(Vector128.Create((byte)0, 0, 0, 0, 16, 16, 16, 16, 32, 32, 32, 32, 48, 48, 48, 48));
        for (int b = 0; b < blocks; b++, group += GroupBlockBytes, xs += KQuantBlocks.BlockSize, offsets += 16)
        {
            byte* ahead = group + QuantizedMatVec.PrefetchBytes;
            var d = Vector256.Load((float*)(group + DOffset));
            Vector256<float> b0 = default, b1 = default, b2 = default, b3 = default;
            for (int k = 0; k < 16; k += 2)
            {
                // Values 16k..16k+31: chunks 0-3 have scale k, chunks 4-7 scale k + 1.
                byte* q = group + 64 * k;
                GroupNibbles.PrefetchPart(ahead, GroupBlockBytes, k / 2, 8);
                byte* high = group + HighOffset + 32 * k;
                short* xk = xs + 16 * k;
                Offsets<TTokens>(offsets + k, offsetStride, out var i0, out var i1, out var i2, out var i3);
                Chunks<TTokens>(q, high, xk, cols, 0, nibble, first, second, ref i0, ref i1, ref i2, ref i3);
                Chunks<TTokens>(q, high, xk, cols, 2, nibble, first, second, ref i0, ref i1, ref i2, ref i3);
                Scale<TTokens>(group + ScalesOffset + 8 * k, d, i0, i1, i2, i3, ref b0, ref b1, ref b2, ref b3);
                Offsets<TTokens>(offsets + k + 1, offsetStride, out i0, out i1, out i2, out i3);
                Chunks<TTokens>(q, high, xk, cols, 4, nibble, first, second, ref i0, ref i1, ref i2, ref i3);
                Chunks<TTokens>(q, high, xk, cols, 6, nibble, first, second, ref i0, ref i1, ref i2, ref i3);
                Scale<TTokens>(group + ScalesOffset + 8 * k + 8, d, i0, i1, i2, i3, ref b0, ref b1, ref b2, ref b3);
            }
            GroupNibbles.Accumulate<TTokens>(scales + b, blocks, b0, b1, b2, b3, ref r0, ref r1, ref r2, ref r3);
        }
        GroupNibbles.Store<TTokens>(y, r0, r1, r2, r3);
    }

    /// <summary>Each token's int32 lanes at its −32·Σ x̂ at <paramref name="offsets"/> (tokens <paramref name="stride"/>
    /// apart): q − 32 summed as q and the offset.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Offsets<TTokens>(int* offsets, int stride, out Vector256<int> i0, out Vector256<int> i1, out Vector256<int> i2, out Vector256<int> i3)
        where TTokens : struct, ICount
    {
        i0 = Vector256.Create(offsets[0]);
        i1 = TTokens.Value > 1 ? Vector256.Create(offsets[stride]) : default;
        i2 = TTokens.Value > 2 ? Vector256.Create(offsets[2 * stride]) : default;
        i3 = TTokens.Value > 3 ? Vector256.Create(offsets[3 * stride]) : default;
    }

    /// <summary>b· += the int32 sums times sc·d per row (the scales at <paramref name="sc"/>, one int8 per row).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Scale<TTokens>(byte* sc, Vector256<float> d, Vector256<int> i0, Vector256<int> i1, Vector256<int> i2, Vector256<int> i3,
        ref Vector256<float> b0, ref Vector256<float> b1, ref Vector256<float> b2, ref Vector256<float> b3)
        where TTokens : struct, ICount
    {
        var scale = Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32((sbyte*)sc)) * d;
        b0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i0), scale, b0);
        if (TTokens.Value > 1) b1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i1), scale, b1);
        if (TTokens.Value > 2) b2 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i2), scale, b2);
        if (TTokens.Value > 3) b3 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i3), scale, b3);
    }

    /// <summary>Chunks <paramref name="c"/> and c + 1 (values 4c..4c + 7 of the 32 at <paramref name="q"/>) against each
    /// token's inputs as q (0..63): each chunk's nibbles, and 16 times the high parts looked up (<c>vpshufb</c>, the
    /// <paramref name="first"/> and <paramref name="second"/> tables) by the low (chunk c) or high (chunk c + 1) 4 bits of
    /// vector c / 2 at <paramref name="high"/>, widened to int16.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Chunks<TTokens>(byte* q, byte* high, short* x, int cols, int c, Vector256<short> nibble, Vector256<byte> first, Vector256<byte> second,
        ref Vector256<int> i0, ref Vector256<int> i1, ref Vector256<int> i2, ref Vector256<int> i3)
        where TTokens : struct, ICount
    {
        var h = Avx2.ConvertToVector256Int16(high + 8 * c).AsInt16();
        var low = (h & nibble).AsByte();
        var up = Vector256.ShiftRightLogical(h, 4).AsByte();
        var v0 = Avx2.ConvertToVector256Int16(q + 16 * c).AsInt16();
        GroupNibbles.Pair<TTokens>((v0 & nibble) | Avx2.Shuffle(first, low).AsInt16(), x + 4 * c, cols, ref i0, ref i1, ref i2, ref i3);
        GroupNibbles.Pair<TTokens>(Vector256.ShiftRightLogical(v0, 4) | Avx2.Shuffle(second, low).AsInt16(), x + 4 * c + 2, cols, ref i0, ref i1, ref i2, ref i3);
        var v1 = Avx2.ConvertToVector256Int16(q + 16 * c + 16).AsInt16();
        GroupNibbles.Pair<TTokens>((v1 & nibble) | Avx2.Shuffle(first, up).AsInt16(), x + 4 * c + 4, cols, ref i0, ref i1, ref i2, ref i3);
        GroupNibbles.Pair<TTokens>(Vector256.ShiftRightLogical(v1, 4) | Avx2.Shuffle(second, up).AsInt16(), x + 4 * c + 6, cols, ref i0, ref i1, ref i2, ref i3);
    }
}
