using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace GemmaGen.Kernels;

/// <summary>
/// ggml's <c>block_q4_K</c> (<typeparamref name="TBits"/> <see cref="Count4"/>) and <c>block_q5_K</c>
/// (<see cref="Count5"/>: a fifth bit per value) in groups of eight rows (<see cref="KQuantGroupFormat{TGroup}"/>). A
/// value is (d·sc_j)·q − dmin·m_j, q the 4- or 5-bit value, sc_j and m_j 6-bit per sub-block of 32. A group-block
/// (1216 bytes for Q4_K, 152 per row and 256 values: the file's 144 and the scales unpacked; 1472 for Q5_K, 184 per
/// row: the file's 176 and the scales unpacked; both 64-byte aligned):
/// <list type="bullet">
/// <item>bytes 0..1023, the low 4 bits of the values as the format's nibble chunks;</item>
/// <item>Q5_K only, bytes 1024..1279, the fifth bits: those of values 32j..32j+31 at 1024 + 32j as 2 vectors of 16
/// bytes, vector p for chunks 4p..4p+3; row r's bytes are 2r and 2r + 1: byte 2r holds the fifth bits of values 4c
/// (bit 2m) and 4c + 2 (bit 2m + 1) of chunk c = 4p + m, byte 2r + 1 those of values 4c + 1 and 4c + 3;</item>
/// <item>then 64 bytes of the 6-bit sub-block scales unpacked to bytes (sc_j of row r at 8j + r), 64 of the minimums
/// m_j the same way, d of each row as float32 (exact), dmin as float32.</item>
/// </list>
/// The kernel: per sub-block of 32, each row's Σ q·x̂ exact in its int32 lane (at most 32·31·32767 &lt; 2^31), scaled
/// by sc_j·d per row into a float lane, dmin·m_j·Σ x̂ subtracted there; per super-block the total times the input scale
/// s.
/// </summary>
/// <typeparam name="TBits">The values' bits: <see cref="Count4"/> (Q4_K) or <see cref="Count5"/> (Q5_K).</typeparam>
internal readonly unsafe struct MinKGroup<TBits> : IKQuantGroup
    where TBits : struct, ICount
{
    private static bool Fifth => TBits.Value == 5;

    private const int FifthOffset = 1024;

    private static int ScalesOffset => Fifth ? 1280 : 1024;

    private static int MinimumsOffset => ScalesOffset + 64;

    private static int DOffset => ScalesOffset + 128;

    private static int DMinOffset => ScalesOffset + 160;

    public static TensorDType SourceType => Fifth ? TensorDType.Q5_K : TensorDType.Q4_K;

    public static int SourceBytes => Fifth ? Q5_KBlock.Bytes : Q4_KBlock.Bytes;

    public static int GroupBlockBytes => ScalesOffset + 192;

    public static void Quantize(float* x, byte* block)
    {
        if (Fifth) Q5_KBlock.Quantize(x, block);
        else Q4_KBlock.Quantize(x, block);
    }

    public static void Store(byte* block, byte* group, int r)
    {
        ((float*)(group + DOffset))[r] = KQuantBlocks.HalfAt(block);
        ((float*)(group + DMinOffset))[r] = KQuantBlocks.HalfAt(block + 2);
        KQuantBlocks.UnpackScales(block + 4, out ulong scales, out ulong mins);
        for (int j = 0; j < 8; j++)
        {
            group[ScalesOffset + 8 * j + r] = (byte)(scales >> (8 * j));
            group[MinimumsOffset + 8 * j + r] = (byte)(mins >> (8 * j));
        }
        byte* q = stackalloc byte[KQuantBlocks.BlockSize];
        MinKBlock.Values(block, q, Fifth);
        GroupNibbles.Store(q, group, r);
        if (!Fifth) return;
        for (int j = 0; j < 8; j++)
        {
            for (int c = 0; c < 8; c++)
            {
                byte* v = q + 32 * j + 4 * c;
                byte* bytes = group + FifthOffset + 32 * j + 16 * (c / 4) + 2 * r;
                int shift = 2 * (c % 4), mask = 3 << shift;
                bytes[0] = (byte)((bytes[0] & ~mask) | ((v[0] >> 4) | (v[2] >> 4) << 1) << shift);
                bytes[1] = (byte)((bytes[1] & ~mask) | ((v[1] >> 4) | (v[3] >> 4) << 1) << shift);
            }
        }
    }

    /// <summary>Q4_K's byte sums of 32 values fit int16 (16 products of at most 15·127 per int16), Q5_K's of 16
    /// (8 of at most 31·127).</summary>
    public static int Int16Steps => Fifth ? 2 : 4;

    public static bool Minimums => true;

    /// <summary>The values (nibbles and fifth bits), sc_j as int16 pairs (twice per 32), −dmin·m_j and d into the
    /// tile.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Unpack(byte* group, byte* tile)
    {
        var one = Vector128.Create((byte)1);
        for (int j = 0; j < 8; j++)
        {
            for (int c = 0; c < 8; c++)
            {
                Vector128<byte> lowFifth = default, highFifth = default;
                if (Fifth)
                {
                    var bits = Vector128.Load(group + FifthOffset + 32 * j + 16 * (c / 4)).AsUInt16();
                    int m = 2 * (c % 4);
                    lowFifth = Vector128.ShiftLeft((Vector128.ShiftRightLogical(bits, m).AsByte() & one).AsUInt16(), 4).AsByte();
                    highFifth = Vector128.ShiftLeft((Vector128.ShiftRightLogical(bits, m + 1).AsByte() & one).AsUInt16(), 4).AsByte();
                }
                KQuantMatMul.StoreChunk(group + 128 * j + 16 * c, lowFifth, highFifth, tile + 256 * j + 32 * c);
            }
            var sc = Avx2.ConvertToVector256Int32(group + ScalesOffset + 8 * j);
            KQuantMatMul.StorePairs(sc, tile + KQuantMatMul.ScalesOffset + 64 * j);
            KQuantMatMul.StorePairs(sc, tile + KQuantMatMul.ScalesOffset + 64 * j + 32);
            var minimums = Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(group + MinimumsOffset + 8 * j));
            (minimums * Vector256.Load((float*)(group + DMinOffset)) * -1f).Store((float*)(tile + KQuantMatMul.OffsetsOffset + 32 * j));
        }
        Vector256.Load((float*)(group + DOffset)).Store((float*)(tile + KQuantMatMul.DOffset));
    }

    /// <summary>(d·sc_j)·q − dmin·m_j, each product exact, one rounding.</summary>
    public static void Dequantize(byte* group, int r, float* y)
    {
        float d = ((float*)(group + DOffset))[r], dmin = ((float*)(group + DMinOffset))[r];
        for (int j = 0; j < 8; j++)
        {
            float dj = d * group[ScalesOffset + 8 * j + r], mj = dmin * group[MinimumsOffset + 8 * j + r];
            float* o = y + 32 * j;
            if (Avx2.IsSupported && !Fifth)
            {
                var (first, second) = GroupNibbles.Gather(group + 128 * j + 2 * r);
                Store16(first, dj, mj, o);
                Store16(second, dj, mj, o + 16);
                continue;
            }
            for (int c = 0; c < 8; c++)
            {
                byte* chunk = group + 128 * j + 16 * c + 2 * r;
                int q0 = chunk[0] & 0xF, q1 = chunk[1] & 0xF, q2 = chunk[0] >> 4, q3 = chunk[1] >> 4;
                if (Fifth)
                {
                    byte* bits = group + FifthOffset + 32 * j + 16 * (c / 4) + 2 * r;
                    int shift = 2 * (c % 4);
                    q0 |= ((bits[0] >> shift) & 1) << 4;
                    q1 |= ((bits[1] >> shift) & 1) << 4;
                    q2 |= ((bits[0] >> (shift + 1)) & 1) << 4;
                    q3 |= ((bits[1] >> (shift + 1)) & 1) << 4;
                }
                o[4 * c] = dj * q0 - mj;
                o[4 * c + 1] = dj * q1 - mj;
                o[4 * c + 2] = dj * q2 - mj;
                o[4 * c + 3] = dj * q3 - mj;
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store16(Vector256<short> q, float dj, float mj, float* y)
    {
        (Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(q.GetLower())) * dj - Vector256.Create(mj)).Store(y);
        (Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(q.GetUpper())) * dj - Vector256.Create(mj)).Store(y + 8);
    }

    /// <summary>
    /// Per super-block and sub-block, four chunk pairs widened to int16 once (<c>vpmovzxbw</c>), the low and high nibbles
    /// split by a mask and a shift, each met by every token's broadcast pair of inputs (an int32 accumulator per token);
    /// each sum scaled by sc_j·d per row into a float lane per row and token, dmin·m_j·Σ x̂ subtracted there, and the
    /// super-block's total times its input scale s added to the token's result. The stream prefetched
    /// <see cref="QuantizedMatVec.PrefetchBytes"/> ahead.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Dot256<TTokens>(byte* group, int blocks, KQuantInput.Quantized input, int t0, int cols, float* y)
        where TTokens : struct, ICount
    {
        var x = input.Token(t0, cols);
        short* xs = x.Values;
        float* negatedSums = x.NegatedSums;
        float* scales = x.Scales;
        int negatedStride = cols / 32;
        Vector256<float> r0 = default, r1 = default, r2 = default, r3 = default;
        var nibble = Vector256.Create((short)0xF);
        var bits = Fifth ? new FifthTables() : default;
        for (int b = 0; b < blocks; b++, group += GroupBlockBytes, xs += KQuantBlocks.BlockSize, negatedSums += 8)
        {
            byte* ahead = group + QuantizedMatVec.PrefetchBytes;
            var d = Vector256.Load((float*)(group + DOffset));
            var dmin = Vector256.Load((float*)(group + DMinOffset));
            Vector256<float> b0 = default, b1 = default, b2 = default, b3 = default;
            for (int j = 0; j < 8; j++)
            {
                byte* q = group + 128 * j, fifth = group + FifthOffset + 32 * j;
                GroupNibbles.PrefetchPart(ahead, GroupBlockBytes, j, 8);
                short* xj = xs + 32 * j;
                Vector256<int> i0 = default, i1 = default, i2 = default, i3 = default;
                if (TTokens.Value == 1)
                {
                    // One token: two chains of int32 adds (i1 is free), not one sixteen long (1.08x in cache; four
                    // chains were no faster).
                    Chunks<TTokens>(q, fifth, xj, cols, 0, nibble, bits, ref i0, ref i1, ref i2, ref i3);
                    Chunks<TTokens>(q, fifth, xj, cols, 2, nibble, bits, ref i1, ref i0, ref i2, ref i3);
                    Chunks<TTokens>(q, fifth, xj, cols, 4, nibble, bits, ref i0, ref i1, ref i2, ref i3);
                    Chunks<TTokens>(q, fifth, xj, cols, 6, nibble, bits, ref i1, ref i0, ref i2, ref i3);
                    i0 += i1;
                }
                else
                {
                    Chunks<TTokens>(q, fifth, xj, cols, 0, nibble, bits, ref i0, ref i1, ref i2, ref i3);
                    Chunks<TTokens>(q, fifth, xj, cols, 2, nibble, bits, ref i0, ref i1, ref i2, ref i3);
                    Chunks<TTokens>(q, fifth, xj, cols, 4, nibble, bits, ref i0, ref i1, ref i2, ref i3);
                    Chunks<TTokens>(q, fifth, xj, cols, 6, nibble, bits, ref i0, ref i1, ref i2, ref i3);
                }
                var scale = Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(group + ScalesOffset + 8 * j)) * d;
                var mins = Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(group + MinimumsOffset + 8 * j)) * dmin;
                b0 = Fma.MultiplyAdd(mins, Vector256.Create(negatedSums[j]), Fma.MultiplyAdd(Avx.ConvertToVector256Single(i0), scale, b0));
                if (TTokens.Value > 1) b1 = Fma.MultiplyAdd(mins, Vector256.Create(negatedSums[negatedStride + j]), Fma.MultiplyAdd(Avx.ConvertToVector256Single(i1), scale, b1));
                if (TTokens.Value > 2) b2 = Fma.MultiplyAdd(mins, Vector256.Create(negatedSums[2 * negatedStride + j]), Fma.MultiplyAdd(Avx.ConvertToVector256Single(i2), scale, b2));
                if (TTokens.Value > 3) b3 = Fma.MultiplyAdd(mins, Vector256.Create(negatedSums[3 * negatedStride + j]), Fma.MultiplyAdd(Avx.ConvertToVector256Single(i3), scale, b3));
            }
            GroupNibbles.Accumulate<TTokens>(scales + b, blocks, b0, b1, b2, b3, ref r0, ref r1, ref r2, ref r3);
        }
        GroupNibbles.Store<TTokens>(y, r0, r1, r2, r3);
    }

    /// <summary>Chunks <paramref name="c"/> and c + 1 of a sub-block (values 4c..4c + 7) against each token's inputs;
    /// Q5_K's fifth bits from vector c / 4 at <paramref name="fifth"/>, as 16 each looked up (<c>vpshufb</c>, the
    /// <paramref name="bits"/> tables) by the low (chunks 4p, 4p + 1) or high (4p + 2, 4p + 3) 4 bits of each int16 lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Chunks<TTokens>(byte* q, byte* fifth, short* x, int cols, int c, Vector256<short> nibble, in FifthTables bits,
        ref Vector256<int> i0, ref Vector256<int> i1, ref Vector256<int> i2, ref Vector256<int> i3)
        where TTokens : struct, ICount
    {
        var v0 = Avx2.ConvertToVector256Int16(q + 16 * c).AsInt16();
        var v1 = Avx2.ConvertToVector256Int16(q + 16 * c + 16).AsInt16();
        Vector256<short> a = v0 & nibble, b = Vector256.ShiftRightLogical(v0, 4), e = v1 & nibble, f = Vector256.ShiftRightLogical(v1, 4);
        if (Fifth)
        {
            var h = Avx2.ConvertToVector256Int16(fifth + 16 * (c / 4)).AsInt16();
            var index = (c % 4 == 0 ? h & nibble : Vector256.ShiftRightLogical(h, 4)).AsByte();
            a |= Avx2.Shuffle(bits.Bit0, index).AsInt16();
            b |= Avx2.Shuffle(bits.Bit1, index).AsInt16();
            e |= Avx2.Shuffle(bits.Bit2, index).AsInt16();
            f |= Avx2.Shuffle(bits.Bit3, index).AsInt16();
        }
        GroupNibbles.Pair<TTokens>(a, x + 4 * c, cols, ref i0, ref i1, ref i2, ref i3);
        GroupNibbles.Pair<TTokens>(b, x + 4 * c + 2, cols, ref i0, ref i1, ref i2, ref i3);
        GroupNibbles.Pair<TTokens>(e, x + 4 * c + 4, cols, ref i0, ref i1, ref i2, ref i3);
        GroupNibbles.Pair<TTokens>(f, x + 4 * c + 6, cols, ref i0, ref i1, ref i2, ref i3);
    }

    /// <summary>16 times bit k (0..3) of a 4-bit index, as <c>vpshufb</c> tables; index 0, which every int16 lane's zero
    /// upper byte reads, gives 0.</summary>
    private readonly struct FifthTables
    {
        public FifthTables()
        {
            Bit0 = Vector256.Create(Vector128.Create((byte)0, 16, 0, 16, 0, 16, 0, 16, 0, 16, 0, 16, 0, 16, 0, 16));
            Bit1 = Vector256.Create(Vector128.Create((byte)0, 0, 16, 16, 0, 0, 16, 16, 0, 0, 16, 16, 0, 0, 16, 16));
            Bit2 = Vector256.Create(Vector128.Create((byte)0, 0, 0, 0, 16, 16, 16, 16, 0, 0, 0, 0, 16, 16, 16, 16));
            Bit3 = Vector256.Create(Vector128.Create((byte)0, 0, 0, 0, 0, 0, 0, 0, 16, 16, 16, 16, 16, 16, 16, 16));
        }

        public Vector256<byte> Bit0 { get; }

        public Vector256<byte> Bit1 { get; }

        public Vector256<byte> Bit2 { get; }

        public Vector256<byte> Bit3 { get; }
    }
}
