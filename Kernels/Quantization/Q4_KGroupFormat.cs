using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace GemmaGen.Kernels;

/// <summary>
/// GGUF's Q4_K tensors (ggml's <c>block_q4_K</c>, <see cref="KQuantBlocks"/>) rearranged at load into groups of
/// <see cref="RowsPerGroup"/> interleaved rows, so that the decode kernel's int32 lanes are the group's rows: each
/// vector of weights meets one broadcast pair of inputs (<c>vpmaddwd</c>), and every sub-block's scale, minimum and
/// super-block half scales apply to eight rows at once, with no per-row reduction or scale unpacking at run time. Every
/// bit of the file's blocks is kept (the half scales widened exactly to float32), so rows read back as the file's
/// values bit for bit.
/// <para>
/// Group g (rows 8g..8g+7; the last group padded with zero rows) is <c>Cols / 256</c> group-blocks of
/// <see cref="GroupBlockBytes"/> bytes, one per super-block, each:
/// <list type="bullet">
/// <item>bytes 0..1023, the values: sub-block j (values 32j..32j+31) at 128j, as 8 chunks of 16 bytes; in chunk c,
/// row r's bytes are 2r and 2r + 1: byte 2r holds value 32j + 4c in its low nibble and 32j + 4c + 2 in its high one,
/// byte 2r + 1 values 32j + 4c + 1 and 32j + 4c + 3. Widened to int16, the low nibbles of a chunk are each row's
/// values 4c and 4c + 1 as one int32 lane of int16 pairs (lane r = row r), the high nibbles its values 4c + 2 and
/// 4c + 3.</item>
/// <item>bytes 1024..1087, the 6-bit sub-block scales unpacked to bytes: sc_j of row r at 1024 + 8j + r; bytes
/// 1088..1151 the minimums m_j the same way.</item>
/// <item>bytes 1152..1183, d of each row as float32; bytes 1184..1215, dmin.</item>
/// </list>
/// 152 bytes per row and 256 values (the file's 144 and the scales unpacked), 64-byte aligned per group-block.
/// </para>
/// <para>
/// Decode (<see cref="MatVecRows"/>) quantizes x to int16 per super-block as the other K-quant kernels do
/// (<see cref="KQuantMatVec.QuantizeInput"/>); per sub-block each row's Σ q·x̂ is exact in its int32 lane (at most
/// 32·15·32767 &lt; 2^24, so exact in float32 too) and is scaled by sc_j·d·s into a float lane per row, and
/// dmin·s·m_j·Σ x̂ is subtracted. Batches of fewer than <see cref="IntegerTokensBelow"/> tokens run the same kernel
/// over each group while it is in cache, four tokens at a time; larger ones the dequantized rows and the float kernel
/// (<see cref="QuantizedMatVec.FloatMatMulRows"/>). AVX2 and FMA; else scalar code over the dequantized rows.
/// </para>
/// </summary>
internal sealed unsafe class Q4_KGroupFormat() : WeightFormat("q4_k", KQuantBlocks.BlockSize, groupRows: RowsPerGroup)
{
    /// <summary>Rows interleaved in one group: the eight int32 lanes of a 256-bit vector.</summary>
    public const int RowsPerGroup = 8;

    /// <summary>Bytes of one super-block of a group: 8 rows × 152.</summary>
    public const int GroupBlockBytes = 1216;

    private const int ScalesOffset = 1024, MinimumsOffset = 1088, DOffset = 1152, DMinOffset = 1184;

    internal override TensorDType? SourceType => TensorDType.Q4_K;

    public override long ByteLength(int rows, int cols) => (long)((rows + RowsPerGroup - 1) / RowsPerGroup) * (cols / BlockSize) * GroupBlockBytes;

    /// <summary>Group-block <paramref name="block"/> of the group holding row <paramref name="row"/>.</summary>
    private static byte* GroupBlock(WeightMatrix matrix, int row, int block) =>
        (byte*)matrix.Data + ((long)(row / RowsPerGroup) * (matrix.Cols / KQuantBlocks.BlockSize) + block) * GroupBlockBytes;

    /// <summary>Zeroes the last group when rows pad it (zero scales: its padding rows compute to zero).</summary>
    internal override void Initialize(WeightMatrix matrix)
    {
        if (matrix.Rows % RowsPerGroup == 0) return;
        long groupBytes = (long)(matrix.Cols / KQuantBlocks.BlockSize) * GroupBlockBytes;
        new Span<byte>(GroupBlock(matrix, matrix.Rows - 1, 0), checked((int)groupBytes)).Clear();
    }

    /// <summary>Quantizes the row super-block by super-block (<see cref="Q4_KBlock.Quantize"/>) and stores it.</summary>
    internal override void WriteRow(WeightMatrix matrix, int row, ReadOnlySpan<float> source)
    {
        byte* block = stackalloc byte[Q4_KBlock.Bytes];
        fixed (float* x = source)
        {
            for (int b = 0; b < source.Length / BlockSize; b++)
            {
                Q4_KBlock.Quantize(x + b * BlockSize, block);
                Store(block, GroupBlock(matrix, row, b), row % RowsPerGroup);
            }
        }
    }

    /// <summary>A GGUF Q4_K row: each super-block rearranged into its group (every bit kept).</summary>
    internal override bool TryCopyRow(WeightMatrix matrix, int row, TensorDType dtype, ReadOnlySpan<byte> source)
    {
        if (dtype != TensorDType.Q4_K) return false;
        int blocks = matrix.Cols / KQuantBlocks.BlockSize;
        if (source.Length != (long)blocks * Q4_KBlock.Bytes)
            throw new ArgumentException($"{source.Length} bytes are not one row of {matrix.Cols} {dtype} values ({(long)blocks * Q4_KBlock.Bytes} bytes)", nameof(source));
        fixed (byte* s = source)
        {
            for (int b = 0; b < blocks; b++) Store(s + b * Q4_KBlock.Bytes, GroupBlock(matrix, row, b), row % RowsPerGroup);
        }
        return true;
    }

    /// <summary>One <c>block_q4_K</c> as row <paramref name="r"/> of group-block <paramref name="group"/>.</summary>
    private static void Store(byte* block, byte* group, int r)
    {
        ((float*)(group + DOffset))[r] = KQuantBlocks.HalfAt(block);
        ((float*)(group + DMinOffset))[r] = KQuantBlocks.HalfAt(block + 2);
        KQuantBlocks.UnpackScales(block + 4, out ulong scales, out ulong mins);
        for (int j = 0; j < 8; j++)
        {
            group[ScalesOffset + 8 * j + r] = (byte)(scales >> (8 * j));
            group[MinimumsOffset + 8 * j + r] = (byte)(mins >> (8 * j));
        }
        byte* qs = block + 16;
        for (int j = 0; j < 8; j++)
        {
            // Sub-block j: the low (even j) or high (odd j) nibbles of bytes 32(j/2)..32(j/2)+31.
            byte* q = qs + 32 * (j / 2);
            int shift = 4 * (j % 2);
            for (int c = 0; c < 8; c++)
            {
                int v0 = (q[4 * c] >> shift) & 0xF, v1 = (q[4 * c + 1] >> shift) & 0xF;
                int v2 = (q[4 * c + 2] >> shift) & 0xF, v3 = (q[4 * c + 3] >> shift) & 0xF;
                byte* chunk = group + 128 * j + 16 * c + 2 * r;
                chunk[0] = (byte)(v0 | v2 << 4);
                chunk[1] = (byte)(v1 | v3 << 4);
            }
        }
    }

    /// <summary>The row as ggml dequantizes it, bit for bit: (d·sc_j)·q − dmin·m_j, each product exact, one rounding.</summary>
    internal override void ReadRow(WeightMatrix matrix, int row, Span<float> destination)
    {
        int r = row % RowsPerGroup;
        fixed (float* y = destination)
        {
            for (int b = 0; b < matrix.Cols / KQuantBlocks.BlockSize; b++)
            {
                byte* group = GroupBlock(matrix, row, b);
                float d = ((float*)(group + DOffset))[r], dmin = ((float*)(group + DMinOffset))[r];
                for (int j = 0; j < 8; j++)
                {
                    float dj = d * group[ScalesOffset + 8 * j + r], mj = dmin * group[MinimumsOffset + 8 * j + r];
                    float* o = y + b * BlockSize + 32 * j;
                    if (Avx2.IsSupported)
                    {
                        SubBlock256(group + 128 * j + 2 * r, dj, mj, o);
                        continue;
                    }
                    for (int c = 0; c < 8; c++)
                    {
                        byte* chunk = group + 128 * j + 16 * c + 2 * r;
                        o[4 * c] = dj * (chunk[0] & 0xF) - mj;
                        o[4 * c + 1] = dj * (chunk[1] & 0xF) - mj;
                        o[4 * c + 2] = dj * (chunk[0] >> 4) - mj;
                        o[4 * c + 3] = dj * (chunk[1] >> 4) - mj;
                    }
                }
            }
        }
    }

    /// <summary>
    /// One row's 32 values of a sub-block, y[i] = dj·q_i − mj: its two bytes of each chunk (16 bytes apart from
    /// <paramref name="chunks"/>) gathered into one vector and widened to int16, the low and high nibbles interleaved
    /// per chunk (values 4c, 4c + 1, 4c + 2, 4c + 3), then widened to float.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void SubBlock256(byte* chunks, float dj, float mj, float* y)
    {
        var pairs = Vector128.Create(*(ushort*)chunks, *(ushort*)(chunks + 16), *(ushort*)(chunks + 32), *(ushort*)(chunks + 48),
            *(ushort*)(chunks + 64), *(ushort*)(chunks + 80), *(ushort*)(chunks + 96), *(ushort*)(chunks + 112));
        var bytes = Avx2.ConvertToVector256Int16(pairs.AsByte());
        var low = bytes & Vector256.Create((short)0xF);
        var high = Vector256.ShiftRightLogical(bytes, 4);
        // Per 128-bit lane: unpacklo holds chunks 0, 1 (4, 5), unpackhi chunks 2, 3 (6, 7).
        var first = Avx2.UnpackLow(low.AsInt32(), high.AsInt32()).AsInt16();
        var second = Avx2.UnpackHigh(low.AsInt32(), high.AsInt32()).AsInt16();
        Store16(Avx2.Permute2x128(first, second, 0x20), dj, mj, y);
        Store16(Avx2.Permute2x128(first, second, 0x31), dj, mj, y + 16);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store16(Vector256<short> q, float dj, float mj, float* y)
    {
        (Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(q.GetLower())) * dj - Vector256.Create(mj)).Store(y);
        (Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(q.GetUpper())) * dj - Vector256.Create(mj)).Store(y + 8);
    }

    internal override void MatVecRows(WeightMatrix matrix, float* x, float* y, int start, int end)
    {
        matrix.CheckRows(start, end);
        if (start >= end) return;
        var input = KQuantMatVec.Quantized(matrix, x);
        int blocks = matrix.Cols / KQuantBlocks.BlockSize;
        float* dots = stackalloc float[RowsPerGroup];
        for (int group = start / RowsPerGroup; group <= (end - 1) / RowsPerGroup; group++)
        {
            byte* data = GroupBlock(matrix, group * RowsPerGroup, 0);
            int first = group * RowsPerGroup, last = first + RowsPerGroup;
            bool whole = first >= start && last <= end;
            float* o = whole ? y + first : dots;
            if (Supported) Group256<Count1>(data, blocks, input, 0, matrix.Cols, o);
            else GroupScalar(data, blocks, input.Token(0, matrix.Cols), o);
            if (whole) continue;
            for (int r = Math.Max(start, first); r < Math.Min(end, last); r++) y[r] = dots[r - first];
        }
    }

    internal override void MatMulRows(WeightMatrix matrix, float* x, int xStride, int tokens, float* y, int yStride, int start, int end)
    {
        matrix.CheckRows(start, end);
        if (start >= end || tokens <= 0) return;
        if (!(Supported && tokens < IntegerTokensBelow))
        {
            QuantizedMatVec.FloatMatMulRows(matrix, x, xStride, tokens, y, yStride, start, end);
            return;
        }
        var input = KQuantMatVec.QuantizedTokens(x, xStride, tokens, matrix.Cols);
        float* dots = stackalloc float[PassTokens * RowsPerGroup];
        int cols = matrix.Cols, blocks = cols / KQuantBlocks.BlockSize;
        for (int group = start / RowsPerGroup; group <= (end - 1) / RowsPerGroup; group++)
        {
            byte* data = GroupBlock(matrix, group * RowsPerGroup, 0);
            int first = Math.Max(start, group * RowsPerGroup), last = Math.Min(end, group * RowsPerGroup + RowsPerGroup);
            // The group's bytes stay in cache from the first pass on.
            for (int t0 = 0; t0 < tokens; t0 += PassTokens)
            {
                int count = Math.Min(PassTokens, tokens - t0);
                switch (count)
                {
                    case 4: Group256<Count4>(data, blocks, input, t0, cols, dots); break;
                    case 3: Group256<Count3>(data, blocks, input, t0, cols, dots); break;
                    case 2: Group256<Count2>(data, blocks, input, t0, cols, dots); break;
                    default: Group256<Count1>(data, blocks, input, t0, cols, dots); break;
                }
                for (int i = 0; i < count; i++)
                {
                    float* o = y + (long)(t0 + i) * yStride;
                    for (int r = first; r < last; r++) o[r] = dots[RowsPerGroup * i + r - group * RowsPerGroup];
                }
            }
        }
    }

    /// <summary>
    /// Batches of fewer tokens than this run the integer kernel, larger ones the dequantized rows and the float kernel.
    /// Without AVX-512 every batch runs the integer kernel: measured on an AMD EPYC Zen 3 (AVX2), 2 threads, the Q4_K_M
    /// 2B file's prefill ran 1.27–1.31x faster on it than on the float kernel at 128, 256 and 512 tokens (the float
    /// kernel reads every row back through <see cref="ReadRow"/>, a gather in this layout). With AVX-512 the float kernel
    /// runs at twice the width, and the K-quants' threshold (<see cref="KQuantFormat{TBlock}.IntegerTokensBelow"/>)
    /// stands, unmeasured for this layout.
    /// </summary>
    internal static int IntegerTokensBelow { get; } = Avx512F.IsSupported ? KQuantFormat<Q4_KBlock>.IntegerTokensBelow : int.MaxValue;

    /// <summary>Whether this CPU runs the vector kernel (AVX2 and FMA).</summary>
    internal static bool Supported => Avx2.IsSupported && Fma.IsSupported;

    /// <summary>Tokens one group meets at a time, each widened vector of its values used once per token.</summary>
    private const int PassTokens = 4;

    /// <summary>
    /// The eight rows of one group times <typeparamref name="TTokens"/> inputs (tokens <paramref name="t0"/>.. of
    /// <paramref name="input"/>, <paramref name="cols"/> wide), token i's eight results into y[8i..8i + 8): per
    /// super-block and sub-block, four chunk pairs widened to int16 once (<c>vpmovzxbw</c>), the low and high nibbles
    /// split by a mask and a shift, each met by every token's broadcast pair of inputs (<c>vpmaddwd</c>, an int32
    /// accumulator per token); each sum scaled by sc_j·d per row into a float lane per row and token, dmin·m_j·Σ x̂
    /// subtracted there, and the super-block's total times its input scale s added to the token's result. The stream
    /// prefetched <see cref="QuantizedMatVec.PrefetchBytes"/> ahead.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Group256<TTokens>(byte* group, int blocks, KQuantMatVec.QuantizedInput input, int t0, int cols, float* y)
        where TTokens : struct, ICount
    {
        var x = input.Token(t0, cols);
        short* xs = x.Values;
        int* sums = x.Sums;
        float* scales = x.Scales;
        int sumStride = cols / 32;
        Vector256<float> r0 = default, r1 = default, r2 = default, r3 = default;
        var nibble = Vector256.Create((short)0xF);
        for (int b = 0; b < blocks; b++, group += GroupBlockBytes, xs += KQuantBlocks.BlockSize, sums += 8)
        {
            byte* ahead = group + QuantizedMatVec.PrefetchBytes;
            Sse.Prefetch0(ahead + ScalesOffset);
            Sse.Prefetch0(ahead + ScalesOffset + 64);
            Sse.Prefetch0(ahead + ScalesOffset + 128);
            var d = Vector256.Load((float*)(group + DOffset));
            var dmin = Vector256.Load((float*)(group + DMinOffset));
            Vector256<float> b0 = default, b1 = default, b2 = default, b3 = default;
            for (int j = 0; j < 8; j++)
            {
                byte* q = group + 128 * j;
                short* xj = xs + 32 * j;
                Sse.Prefetch0(ahead + 128 * j);
                Sse.Prefetch0(ahead + 128 * j + 64);
                Vector256<int> i0 = default, i1 = default, i2 = default, i3 = default;
                Chunks<TTokens>(q, xj, cols, 0, nibble, ref i0, ref i1, ref i2, ref i3);
                Chunks<TTokens>(q, xj, cols, 2, nibble, ref i0, ref i1, ref i2, ref i3);
                Chunks<TTokens>(q, xj, cols, 4, nibble, ref i0, ref i1, ref i2, ref i3);
                Chunks<TTokens>(q, xj, cols, 6, nibble, ref i0, ref i1, ref i2, ref i3);
                var scale = Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(group + ScalesOffset + 8 * j)) * d;
                var mins = Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(group + MinimumsOffset + 8 * j)) * dmin;
                b0 = Fma.MultiplyAdd(mins, Vector256.Create(-(float)sums[j]), Fma.MultiplyAdd(Avx.ConvertToVector256Single(i0), scale, b0));
                if (TTokens.Value > 1) b1 = Fma.MultiplyAdd(mins, Vector256.Create(-(float)sums[sumStride + j]), Fma.MultiplyAdd(Avx.ConvertToVector256Single(i1), scale, b1));
                if (TTokens.Value > 2) b2 = Fma.MultiplyAdd(mins, Vector256.Create(-(float)sums[2 * sumStride + j]), Fma.MultiplyAdd(Avx.ConvertToVector256Single(i2), scale, b2));
                if (TTokens.Value > 3) b3 = Fma.MultiplyAdd(mins, Vector256.Create(-(float)sums[3 * sumStride + j]), Fma.MultiplyAdd(Avx.ConvertToVector256Single(i3), scale, b3));
            }
            r0 = Fma.MultiplyAdd(b0, Vector256.Create(scales[b]), r0);
            if (TTokens.Value > 1) r1 = Fma.MultiplyAdd(b1, Vector256.Create(scales[blocks + b]), r1);
            if (TTokens.Value > 2) r2 = Fma.MultiplyAdd(b2, Vector256.Create(scales[2 * blocks + b]), r2);
            if (TTokens.Value > 3) r3 = Fma.MultiplyAdd(b3, Vector256.Create(scales[3 * blocks + b]), r3);
        }
        r0.Store(y);
        if (TTokens.Value > 1) r1.Store(y + 8);
        if (TTokens.Value > 2) r2.Store(y + 16);
        if (TTokens.Value > 3) r3.Store(y + 24);
    }

    /// <summary>Chunks <paramref name="c"/> and c + 1 of a sub-block (values 4c..4c + 7) against each token's inputs
    /// (<paramref name="cols"/> apart).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Chunks<TTokens>(byte* q, short* x, int cols, int c, Vector256<short> nibble,
        ref Vector256<int> i0, ref Vector256<int> i1, ref Vector256<int> i2, ref Vector256<int> i3)
        where TTokens : struct, ICount
    {
        var v0 = Avx2.ConvertToVector256Int16(q + 16 * c).AsInt16();
        var low = v0 & nibble;
        var high = Vector256.ShiftRightLogical(v0, 4);
        Pair<TTokens>(low, x + 4 * c, cols, ref i0, ref i1, ref i2, ref i3);
        Pair<TTokens>(high, x + 4 * c + 2, cols, ref i0, ref i1, ref i2, ref i3);
        var v1 = Avx2.ConvertToVector256Int16(q + 16 * c + 16).AsInt16();
        low = v1 & nibble;
        high = Vector256.ShiftRightLogical(v1, 4);
        Pair<TTokens>(low, x + 4 * c + 4, cols, ref i0, ref i1, ref i2, ref i3);
        Pair<TTokens>(high, x + 4 * c + 6, cols, ref i0, ref i1, ref i2, ref i3);
    }

    /// <summary>Each row's pair of values (an int32 lane of <paramref name="values"/>) times each token's pair of inputs at
    /// <paramref name="x"/>, broadcast.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Pair<TTokens>(Vector256<short> values, short* x, int cols,
        ref Vector256<int> i0, ref Vector256<int> i1, ref Vector256<int> i2, ref Vector256<int> i3)
        where TTokens : struct, ICount
    {
        i0 += Avx2.MultiplyAddAdjacent(values, Vector256.Create(*(int*)x).AsInt16());
        if (TTokens.Value > 1) i1 += Avx2.MultiplyAddAdjacent(values, Vector256.Create(*(int*)(x + cols)).AsInt16());
        if (TTokens.Value > 2) i2 += Avx2.MultiplyAddAdjacent(values, Vector256.Create(*(int*)(x + 2 * cols)).AsInt16());
        if (TTokens.Value > 3) i3 += Avx2.MultiplyAddAdjacent(values, Vector256.Create(*(int*)(x + 3 * cols)).AsInt16());
    }

    /// <summary><see cref="Group256"/> without vector instructions: each row's values (<see cref="ReadRow"/>'s) times
    /// x̂, scaled by s per super-block.</summary>
    private static void GroupScalar(byte* group, int blocks, KQuantMatVec.TokenInput x, float* y)
    {
        for (int r = 0; r < RowsPerGroup; r++)
        {
            float total = 0;
            for (int b = 0; b < blocks; b++)
            {
                byte* g = group + (long)b * GroupBlockBytes;
                short* xs = x.Values + b * KQuantBlocks.BlockSize;
                float d = ((float*)(g + DOffset))[r], dmin = ((float*)(g + DMinOffset))[r], sum = 0;
                for (int j = 0; j < 8; j++)
                {
                    float dj = d * g[ScalesOffset + 8 * j + r], mj = dmin * g[MinimumsOffset + 8 * j + r];
                    for (int c = 0; c < 8; c++)
                    {
                        byte* chunk = g + 128 * j + 16 * c + 2 * r;
                        short* xc = xs + 32 * j + 4 * c;
                        sum += (dj * (chunk[0] & 0xF) - mj) * xc[0] + (dj * (chunk[1] & 0xF) - mj) * xc[1]
                            + (dj * (chunk[0] >> 4) - mj) * xc[2] + (dj * (chunk[1] >> 4) - mj) * xc[3];
                    }
                }
                total += sum * x.Scales[b];
            }
            y[r] = total;
        }
    }
}
