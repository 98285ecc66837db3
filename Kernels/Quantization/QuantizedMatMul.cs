using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace GemmaGen.Kernels;

/// <summary>
/// Prefill over the block formats with integer dot products: AVX-VNNI <c>vpdpbusd</c> (32 byte products summed into
/// eight int32 lanes per instruction, twice the work of a float32 FMA of the same width) where the CPU has it, every
/// block type; and on AVX2 CPUs without it, for a block type whose unsigned weights are small enough,
/// <c>vpmaddubsw</c> (byte products summed in pairs into int16): a Q4_0 weight is at most 15, so a pair is at most
/// 2·15·127 = 3810 and a block's eight groups sum to at most 30480 in int16, widened to int32 once per block
/// (<c>vpmaddwd</c> with ones). A Q8_0 weight (up to 255 unsigned) would overflow int16 pairs, so Q8_0 needs AVX-VNNI.
/// .NET 10 exposes <c>vpdpbusd</c> only on 128- and 256-bit vectors (<see cref="AvxVnni"/>; its 512-bit forms come
/// with AVX-VNNI-INT8 and AVX10.2, not with AVX-512 VNNI), so the products stay 256-bit; where the CPU has AVX-512
/// (<c>wide</c>) the repack and the scaling are 512-bit.
/// <para>
/// Inputs: every token's x is quantized to int8 in blocks of 32 (x̂ = round(x · 127 / max|x|), ties to even; scale
/// s = max|x| / 127), once per call and thread. The rounding is at most s/2 per element (0.4% of the block's
/// largest input), the same scheme llama.cpp uses for its quantized products.
/// </para>
/// <para>
/// Weights: each group of <see cref="GroupRows"/> rows is repacked, <see cref="ChunkBlocks"/> blocks at a time, into
/// thread-local scratch that stays in the first-level cache: per block eight 64-byte vectors whose 32-bit lane i
/// holds four consecutive weights of row i (a transpose of the rows' 4-byte groups), made unsigned
/// (<see cref="IQuantizedBlock.Unsigned"/>; Q8_0: q + 128; Q4_0: the stored nibble q + 8), followed by the sixteen
/// rows' scales as float32. Each chunk is multiplied by every token before the next is repacked, and while the
/// first tokens run the next chunk's weights are prefetched, so the weights stream from memory while the products
/// run. A 256-bit half of a vector (eight rows) meets a broadcast group of four input bytes of a token: lane i
/// accumulates row i's block sum, so the block scales are applied to sixteen rows at once (convert, multiply, add)
/// and no horizontal sum is needed. The weight offset is taken off by starting each block's sum at
/// −offset·Σ x̂ of the block. A register block is sixteen rows × four tokens (eight int32 accumulators); the rest of
/// a batch runs two tokens, then one, at a time.
/// </para>
/// <para>
/// A row's result is Σ over blocks of (weight scale · input scale) · Σ q·x̂, the inner sums exact in int32 and the
/// blocks summed in column order; it differs from the product of the dequantized row with x only by the input
/// rounding and the float summation order.
/// </para>
/// </summary>
public static unsafe partial class QuantizedMatMul
{
    /// <summary>Rows per repacked group (the lanes of a 512-bit vector of int32 sums, two 256-bit halves).</summary>
    public const int GroupRows = 16;

    /// <summary>Rows of one 256-bit half of a repacked vector.</summary>
    private const int HalfRows = 8;

    /// <summary>Blocks repacked at a time: a chunk of a group (18 KiB) stays in the first-level cache while every
    /// token is multiplied by it.</summary>
    internal const int ChunkBlocks = 32;

    /// <summary>Largest magnitude of a quantized input value.</summary>
    public const int InputMax = sbyte.MaxValue;

    /// <summary>Bytes of one repacked vector: a 4-byte group of each of the <see cref="GroupRows"/> rows.</summary>
    private const int VectorBytes = GroupRows * 4;

    /// <summary>Bytes of the scales of one repacked block (float32, one per row).</summary>
    private const int ScalesAt = QuantizedLayout.BlockSize / 4 * VectorBytes;

    /// <summary>Bytes of one block of a repacked group: eight vectors of quants and sixteen float32 scales.</summary>
    private const int GroupBlockBytes = ScalesAt + GroupRows * sizeof(float);

    [ThreadStatic]
    private static Scratch? t_scratch;

    /// <summary>Whether this CPU runs the integer kernels for <paramref name="format"/>: AVX-VNNI for every block
    /// format, or AVX2 for Q4_0 (whose byte pairs fit int16).</summary>
    public static bool IsSupported(WeightFormat format) => format is QuantizedFormat { IntegerMatMulSupported: true };

    /// <summary>Whether this CPU runs the integer kernels for <typeparamref name="TBlock"/>.</summary>
    internal static bool IsSupported<TBlock>() where TBlock : struct, IQuantizedBlock =>
        Avx2.IsSupported && Fma.IsSupported && (AvxVnni.IsSupported || PairsFit<TBlock>());

    /// <summary>Whether this CPU runs the 512-bit repack and scaling (AVX-512 F).</summary>
    internal static bool WideSupported => Avx512F.IsSupported;

    /// <summary>Whether a block's eight groups of <c>vpmaddubsw</c> pairs stay within int16 for <typeparamref name="TBlock"/>.</summary>
    private static bool PairsFit<TBlock>() where TBlock : struct, IQuantizedBlock =>
        QuantizedLayout.BlockSize / 4 * 2 * TBlock.MaxUnsigned * InputMax <= short.MaxValue;

    /// <summary>
    /// y[t·yStride + r] = W[r]·x[t·xStride ..] for rows [start, end) and tokens [0, tokens), x rounded to int8 as the
    /// type describes. Requires <see cref="IsSupported(WeightFormat)"/> for the matrix's format.
    /// </summary>
    public static void Rows(WeightMatrix matrix, float* x, int xStride, int tokens, float* y, int yStride, int start, int end) =>
        Rows(matrix, x, xStride, tokens, y, yStride, start, end, AvxVnni.IsSupported);

    /// <summary><see cref="Rows(WeightMatrix, float*, int, int, float*, int, int, int)"/> with the kernel chosen: AVX-VNNI
    /// (<paramref name="vnni"/>) or AVX2 pairs (tests run both on one machine).</summary>
    internal static void Rows(WeightMatrix matrix, float* x, int xStride, int tokens, float* y, int yStride, int start, int end, bool vnni)
    {
        if (matrix.Format is not QuantizedFormat format)
            throw new ArgumentException($"{matrix.Name} is {matrix.Format}, not a block format", nameof(matrix));
        format.IntegerMatMulRows(matrix, x, xStride, tokens, y, yStride, start, end, vnni);
    }

    /// <summary><see cref="Rows(WeightMatrix, float*, int, int, float*, int, int, int, bool)"/> with the width of the
    /// repack and scaling chosen as well: 512-bit (<paramref name="wide"/>, AVX-512) or 256-bit (tests run both).</summary>
    internal static void Rows(WeightMatrix matrix, float* x, int xStride, int tokens, float* y, int yStride, int start, int end, bool vnni, bool wide)
    {
        switch (matrix.Format)
        {
            case QuantizedFormat<Q8_0Block>: Rows<Q8_0Block>(matrix, x, xStride, tokens, y, yStride, start, end, vnni, wide); break;
            case QuantizedFormat<Q4_0Block>: Rows<Q4_0Block>(matrix, x, xStride, tokens, y, yStride, start, end, vnni, wide); break;
            default: throw new ArgumentException($"{matrix.Name} is {matrix.Format}, not a block format", nameof(matrix));
        }
    }

    /// <summary>The kernel for <typeparamref name="TBlock"/>: AVX-VNNI (<paramref name="vnni"/>) or AVX2 pairs, 512-bit
    /// repack and scaling where the CPU has AVX-512.</summary>
    internal static void Rows<TBlock>(WeightMatrix matrix, float* x, int xStride, int tokens, float* y, int yStride, int start, int end, bool vnni)
        where TBlock : struct, IQuantizedBlock =>
        Rows<TBlock>(matrix, x, xStride, tokens, y, yStride, start, end, vnni, WideSupported);

    /// <summary>The kernel for <typeparamref name="TBlock"/>: AVX-VNNI (<paramref name="vnni"/>) or AVX2 pairs; 512-bit
    /// repack and scaling (<paramref name="wide"/>) or 256-bit.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Rows<TBlock>(WeightMatrix matrix, float* x, int xStride, int tokens, float* y, int yStride, int start, int end, bool vnni, bool wide)
        where TBlock : struct, IQuantizedBlock
    {
        if (vnni ? !AvxVnni.IsSupported || !IsSupported<TBlock>() : !(Avx2.IsSupported && Fma.IsSupported && PairsFit<TBlock>()))
            throw new PlatformNotSupportedException($"the integer prefill kernels for {matrix.Format} need {(vnni || !PairsFit<TBlock>() ? "AVX-VNNI" : "AVX2")}");
        if (wide && !WideSupported)
            throw new PlatformNotSupportedException("the 512-bit repack of the integer prefill kernels needs AVX-512");
        if (start < 0 || end > matrix.Rows || start > end)
            throw new ArgumentOutOfRangeException(nameof(start), $"rows [{start}, {end}) are not within [0, {matrix.Rows})");
        if (start >= end || tokens <= 0) return;

        int cols = matrix.Cols, blocks = cols / QuantizedLayout.BlockSize;
        var scratch = t_scratch;
        if (scratch == null || scratch.Cols < cols || scratch.Tokens < tokens)
            t_scratch = scratch = new Scratch(Math.Max(cols, scratch?.Cols ?? 0), Math.Max(tokens, scratch?.Tokens ?? 0));
        for (int t = 0; t < tokens; t++)
            QuantizeInput(x + (long)t * xStride, blocks, TBlock.UnsignedOffset, scratch.Input + (long)t * cols, scratch.InputScales + t * blocks, scratch.InputStarts + t * blocks);

        const int n = QuantizedLayout.PanelRows;
        int scaleBytes = QuantizedLayout.ScaleBytes(cols), blockBytes = n * TBlock.QuantBytes;
        long panelBytes = scaleBytes + (long)blocks * blockBytes;
        byte* group = scratch.Group;
        float* sums = scratch.Sums;
        for (int r = start; r < end; r += GroupRows)
        {
            int rows = Math.Min(GroupRows, end - r);
            new Span<float>(sums, tokens * GroupRows).Clear();
            for (int b0 = 0; b0 < blocks; b0 += ChunkBlocks)
            {
                int count = Math.Min(ChunkBlocks, blocks - b0);
                if (wide && r % n == 0) RepackWide<TBlock>(matrix, r, rows, b0, count, group); // lanes in WideOrder
                else Repack<TBlock>(matrix, r, rows, b0, count, group);

                // The next chunk: of this group, else the first of the next group.
                int nextRow = r, nextBlock = b0 + ChunkBlocks;
                if (nextBlock >= blocks) (nextRow, nextBlock) = (r + GroupRows, 0);
                var prefetch = nextRow < end
                    ? new Prefetch((byte*)matrix.Data + nextRow / n * panelBytes + scaleBytes + (long)nextBlock * blockBytes, panelBytes, blockBytes,
                        (Math.Min(end, nextRow + GroupRows) - nextRow / n * n + n - 1) / n)
                    : default;

                for (int t = 0, step; t < tokens; t += step)
                {
                    step = tokens - t >= 4 ? 4 : tokens - t >= 2 ? 2 : 1;
                    sbyte* input = scratch.Input + (long)t * cols + b0 * QuantizedLayout.BlockSize;
                    float* scales = scratch.InputScales + t * blocks + b0, o = sums + t * GroupRows;
                    int* starts = scratch.InputStarts + t * blocks + b0;
                    var ahead = t == 0 ? prefetch : default;
                    if (step == 4 && vnni && wide) Tokens4Wide(group, count, input, cols, scales, starts, blocks, o, ahead);
                    else if (step == 4 && vnni) Tokens4(group, count, input, cols, scales, starts, blocks, o, ahead);
                    else if (step == 4) PairTokens4(group, count, input, cols, scales, starts, blocks, o, ahead);
                    else if (step == 2 && vnni) Tokens2(group, count, input, cols, scales, starts, blocks, o, ahead);
                    else if (step == 2) PairTokens2(group, count, input, cols, scales, starts, blocks, o, ahead);
                    else if (vnni) Token1(group, count, input, scales, starts, o, ahead);
                    else PairToken1(group, count, input, scales, starts, o, ahead);
                }
            }
            bool inWideOrder = wide && r % n == 0;
            for (int t = 0; t < tokens; t++) Store(sums + t * GroupRows, y + (long)t * yStride + r, rows, inWideOrder);
        }
    }

    /// <summary>
    /// Quantizes <paramref name="blocks"/> blocks of 32 floats to int8: per block s = max|x| / 127 and
    /// x̂ = round(x · (127 / max|x|)), ties to even (all zero when the block is). Writes x̂ to <paramref name="input"/>,
    /// s to <paramref name="scales"/>[b] and −<paramref name="offset"/>·Σ x̂ to <paramref name="starts"/>[b].
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void QuantizeInput(float* x, int blocks, int offset, sbyte* input, float* scales, int* starts)
    {
        const int size = QuantizedLayout.BlockSize;
        for (int b = 0; b < blocks; b++, x += size, input += size)
        {
            Vector256<float> v0 = Vector256.Load(x), v1 = Vector256.Load(x + 8), v2 = Vector256.Load(x + 16), v3 = Vector256.Load(x + 24);
            float max = QuantizedLayout.MaxAcross(Vector256.Max(Vector256.Max(Vector256.Abs(v0), Vector256.Abs(v1)), Vector256.Max(Vector256.Abs(v2), Vector256.Abs(v3))));
            int sum = 0;
            if (max > 0)
            {
                float inverse = InputMax / max;
                Vector256<int> q0 = Avx.ConvertToVector256Int32(v0 * inverse), q1 = Avx.ConvertToVector256Int32(v1 * inverse);
                Vector256<int> q2 = Avx.ConvertToVector256Int32(v2 * inverse), q3 = Avx.ConvertToVector256Int32(v3 * inverse);
                Vector256.Narrow(Vector256.Narrow(q0, q1), Vector256.Narrow(q2, q3)).Store(input);
                sum = Vector256.Sum(q0 + q1 + q2 + q3);
            }
            else
            {
                Vector256<sbyte>.Zero.Store(input);
            }
            scales[b] = max / InputMax;
            starts[b] = -offset * sum;
        }
    }

    /// <summary>
    /// Repacks blocks [<paramref name="block"/>, block + <paramref name="count"/>) of rows [<paramref name="first"/>,
    /// first + <paramref name="rows"/>) (at most sixteen; lanes past them hold copies of the last row) into
    /// <paramref name="group"/> with 256-bit vectors, any first row: per block, vector g (g = 0..7) holds in lane i the
    /// unsigned weights of row i at columns 4g..4g+3 of the block, then the sixteen rows' scales as float32.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Repack<TBlock>(WeightMatrix matrix, int first, int rows, int block, int count, byte* group)
        where TBlock : struct, IQuantizedBlock
    {
        const int n = QuantizedLayout.PanelRows;
        int cols = matrix.Cols, blocks = cols / QuantizedLayout.BlockSize, scaleBytes = QuantizedLayout.ScaleBytes(cols);
        int quantBytes = TBlock.QuantBytes;
        long panelBytes = scaleBytes + (long)blocks * n * quantBytes;
        byte* Panel(int row) => (byte*)matrix.Data + row / n * panelBytes;
        var quants = stackalloc byte*[GroupRows];
        var scales = stackalloc ushort*[GroupRows];
        for (int i = 0; i < GroupRows; i++)
        {
            int r = first + Math.Min(i, rows - 1);
            quants[i] = Panel(r) + scaleBytes + r % n * quantBytes;
            scales[i] = (ushort*)Panel(r) + r % n;
        }
        // Whole panels: the sixteen scales of a block are four runs of four.
        bool aligned = first % n == 0 && rows == GroupRows;
        for (int b = block; b < block + count; b++, group += GroupBlockBytes)
        {
            long at = (long)b * n * quantBytes;
            Transpose8<TBlock>(quants, at, group);
            Transpose8<TBlock>(quants + HalfRows, at, group + HalfRows * 4);
            float* s = (float*)(group + ScalesAt);
            if (aligned)
            {
                for (int h = 0; h < 2; h++)
                {
                    var bits = Vector128.Create(*(ulong*)(scales[8 * h] + b * n), *(ulong*)(scales[8 * h + 4] + b * n)).AsUInt16();
                    (Vector256.WidenLower(bits.ToVector256Unsafe()) << 16).AsSingle().Store(s + 8 * h);
                }
            }
            else
            {
                for (int i = 0; i < GroupRows; i++) s[i] = BFloat16.ToSingle(scales[i][b * n]);
            }
        }
    }

    /// <summary>Eight rows' block at <paramref name="at"/> past their quants, unsigned, as an 8×8 transpose of 32-bit
    /// groups (row i, group g → vector g, lane i), vector g stored at <paramref name="group"/> + 64g.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Transpose8<TBlock>(byte** quants, long at, byte* group)
        where TBlock : struct, IQuantizedBlock
    {
        Vector256<int> r0 = TBlock.Unsigned(quants[0] + at), r1 = TBlock.Unsigned(quants[1] + at), r2 = TBlock.Unsigned(quants[2] + at), r3 = TBlock.Unsigned(quants[3] + at);
        Vector256<int> r4 = TBlock.Unsigned(quants[4] + at), r5 = TBlock.Unsigned(quants[5] + at), r6 = TBlock.Unsigned(quants[6] + at), r7 = TBlock.Unsigned(quants[7] + at);
        Vector256<int> t0 = Avx2.UnpackLow(r0, r1), t1 = Avx2.UnpackHigh(r0, r1), t2 = Avx2.UnpackLow(r2, r3), t3 = Avx2.UnpackHigh(r2, r3);
        Vector256<int> t4 = Avx2.UnpackLow(r4, r5), t5 = Avx2.UnpackHigh(r4, r5), t6 = Avx2.UnpackLow(r6, r7), t7 = Avx2.UnpackHigh(r6, r7);
        Vector256<int> u0 = Avx2.UnpackLow(t0.AsInt64(), t2.AsInt64()).AsInt32(), u1 = Avx2.UnpackHigh(t0.AsInt64(), t2.AsInt64()).AsInt32();
        Vector256<int> u2 = Avx2.UnpackLow(t1.AsInt64(), t3.AsInt64()).AsInt32(), u3 = Avx2.UnpackHigh(t1.AsInt64(), t3.AsInt64()).AsInt32();
        Vector256<int> u4 = Avx2.UnpackLow(t4.AsInt64(), t6.AsInt64()).AsInt32(), u5 = Avx2.UnpackHigh(t4.AsInt64(), t6.AsInt64()).AsInt32();
        Vector256<int> u6 = Avx2.UnpackLow(t5.AsInt64(), t7.AsInt64()).AsInt32(), u7 = Avx2.UnpackHigh(t5.AsInt64(), t7.AsInt64()).AsInt32();
        int* g = (int*)group;
        const int v = VectorBytes / sizeof(int);
        Avx2.Permute2x128(u0, u4, 0x20).Store(g);
        Avx2.Permute2x128(u1, u5, 0x20).Store(g + v);
        Avx2.Permute2x128(u2, u6, 0x20).Store(g + 2 * v);
        Avx2.Permute2x128(u3, u7, 0x20).Store(g + 3 * v);
        Avx2.Permute2x128(u0, u4, 0x31).Store(g + 4 * v);
        Avx2.Permute2x128(u1, u5, 0x31).Store(g + 5 * v);
        Avx2.Permute2x128(u2, u6, 0x31).Store(g + 6 * v);
        Avx2.Permute2x128(u3, u7, 0x31).Store(g + 7 * v);
    }

    /// <summary>The next chunk's weights, prefetched a block at a time while the first tokens run on this chunk: per
    /// block, the quants of each of four panels (the last one repeated where the group has fewer); nothing when
    /// <c>default</c>.</summary>
    private readonly struct Prefetch
    {
        private readonly byte* _q0, _q1, _q2, _q3;
        private readonly int _blockBytes;

        public Prefetch(byte* quants, long panelBytes, int blockBytes, int panels)
        {
            _q0 = quants;
            _q1 = quants + Math.Min(1, panels - 1) * panelBytes;
            _q2 = quants + Math.Min(2, panels - 1) * panelBytes;
            _q3 = quants + Math.Min(3, panels - 1) * panelBytes;
            _blockBytes = blockBytes;
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Block(int b)
        {
            if (_blockBytes == 0) return;
            long at = (long)b * _blockBytes;
            Sse.Prefetch0(_q0 + at);
            Sse.Prefetch0(_q1 + at);
            Sse.Prefetch0(_q2 + at);
            Sse.Prefetch0(_q3 + at);
            if (_blockBytes > 64)
            {
                Sse.Prefetch0(_q0 + at + 64);
                Sse.Prefetch0(_q1 + at + 64);
                Sse.Prefetch0(_q2 + at + 64);
                Sse.Prefetch0(_q3 + at + 64);
            }
        }
    }

    /// <summary>One group of four columns of sixteen rows (<paramref name="w"/>: rows 0..7, then 8..15) against four
    /// tokens' four input bytes: a·, e· (rows 0..7, 8..15) += the byte products, four to a lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Step4(byte* w, sbyte* x0, sbyte* x1, sbyte* x2, sbyte* x3,
        ref Vector256<int> a0, ref Vector256<int> a1, ref Vector256<int> a2, ref Vector256<int> a3,
        ref Vector256<int> e0, ref Vector256<int> e1, ref Vector256<int> e2, ref Vector256<int> e3)
    {
        var low = Vector256.Load(w);
        var high = Vector256.Load(w + 32);
        var i0 = Vector256.Create(*(int*)x0).AsSByte();
        a0 = AvxVnni.MultiplyWideningAndAdd(a0, low, i0);
        e0 = AvxVnni.MultiplyWideningAndAdd(e0, high, i0);
        var i1 = Vector256.Create(*(int*)x1).AsSByte();
        a1 = AvxVnni.MultiplyWideningAndAdd(a1, low, i1);
        e1 = AvxVnni.MultiplyWideningAndAdd(e1, high, i1);
        var i2 = Vector256.Create(*(int*)x2).AsSByte();
        a2 = AvxVnni.MultiplyWideningAndAdd(a2, low, i2);
        e2 = AvxVnni.MultiplyWideningAndAdd(e2, high, i2);
        var i3 = Vector256.Create(*(int*)x3).AsSByte();
        a3 = AvxVnni.MultiplyWideningAndAdd(a3, low, i3);
        e3 = AvxVnni.MultiplyWideningAndAdd(e3, high, i3);
    }

    /// <summary>A block (eight groups of four columns, unrolled) of sixteen rows × four tokens.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Block4(byte* w, sbyte* x0, sbyte* x1, sbyte* x2, sbyte* x3,
        ref Vector256<int> a0, ref Vector256<int> a1, ref Vector256<int> a2, ref Vector256<int> a3,
        ref Vector256<int> e0, ref Vector256<int> e1, ref Vector256<int> e2, ref Vector256<int> e3)
    {
        Step4(w, x0, x1, x2, x3, ref a0, ref a1, ref a2, ref a3, ref e0, ref e1, ref e2, ref e3);
        Step4(w + VectorBytes, x0 + 4, x1 + 4, x2 + 4, x3 + 4, ref a0, ref a1, ref a2, ref a3, ref e0, ref e1, ref e2, ref e3);
        Step4(w + 2 * VectorBytes, x0 + 8, x1 + 8, x2 + 8, x3 + 8, ref a0, ref a1, ref a2, ref a3, ref e0, ref e1, ref e2, ref e3);
        Step4(w + 3 * VectorBytes, x0 + 12, x1 + 12, x2 + 12, x3 + 12, ref a0, ref a1, ref a2, ref a3, ref e0, ref e1, ref e2, ref e3);
        Step4(w + 4 * VectorBytes, x0 + 16, x1 + 16, x2 + 16, x3 + 16, ref a0, ref a1, ref a2, ref a3, ref e0, ref e1, ref e2, ref e3);
        Step4(w + 5 * VectorBytes, x0 + 20, x1 + 20, x2 + 20, x3 + 20, ref a0, ref a1, ref a2, ref a3, ref e0, ref e1, ref e2, ref e3);
        Step4(w + 6 * VectorBytes, x0 + 24, x1 + 24, x2 + 24, x3 + 24, ref a0, ref a1, ref a2, ref a3, ref e0, ref e1, ref e2, ref e3);
        Step4(w + 7 * VectorBytes, x0 + 28, x1 + 28, x2 + 28, x3 + 28, ref a0, ref a1, ref a2, ref a3, ref e0, ref e1, ref e2, ref e3);
    }

    /// <summary>Sixteen rows × four tokens, the scaling 512-bit: the tokens' inputs are <paramref name="stride"/> bytes
    /// apart and their scales and starts <paramref name="blocks"/> apart; adds to <paramref name="sums"/> [4][16].</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tokens4Wide(byte* group, int count, sbyte* x, int stride, float* xs, int* starts, int blocks, float* sums, Prefetch prefetch)
    {
        sbyte* x0 = x, x1 = x + stride, x2 = x + 2 * stride, x3 = x + 3 * stride;
        float* s0 = xs, s1 = xs + blocks, s2 = xs + 2 * blocks, s3 = xs + 3 * blocks;
        int* c0 = starts, c1 = starts + blocks, c2 = starts + 2 * blocks, c3 = starts + 3 * blocks;
        Vector512<float> o0 = Vector512.Load(sums), o1 = Vector512.Load(sums + 16), o2 = Vector512.Load(sums + 32), o3 = Vector512.Load(sums + 48);
        for (int b = 0; b < count; b++, group += GroupBlockBytes, x0 += 32, x1 += 32, x2 += 32, x3 += 32)
        {
            prefetch.Block(b);
            Vector256<int> a0 = Vector256.Create(c0[b]), a1 = Vector256.Create(c1[b]), a2 = Vector256.Create(c2[b]), a3 = Vector256.Create(c3[b]);
            Vector256<int> e0 = a0, e1 = a1, e2 = a2, e3 = a3;
            Block4(group, x0, x1, x2, x3, ref a0, ref a1, ref a2, ref a3, ref e0, ref e1, ref e2, ref e3);
            var d = Vector512.Load((float*)(group + ScalesAt));
            o0 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(Vector512.Create(a0, e0)), d * s0[b], o0);
            o1 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(Vector512.Create(a1, e1)), d * s1[b], o1);
            o2 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(Vector512.Create(a2, e2)), d * s2[b], o2);
            o3 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(Vector512.Create(a3, e3)), d * s3[b], o3);
        }
        o0.Store(sums);
        o1.Store(sums + 16);
        o2.Store(sums + 32);
        o3.Store(sums + 48);
    }

    /// <summary>Sixteen rows × four tokens, the scaling 256-bit (sixteen 256-bit registers hold the int32 sums, so the
    /// float sums stay in <paramref name="sums"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tokens4(byte* group, int count, sbyte* x, int stride, float* xs, int* starts, int blocks, float* sums, Prefetch prefetch)
    {
        sbyte* x0 = x, x1 = x + stride, x2 = x + 2 * stride, x3 = x + 3 * stride;
        float* s0 = xs, s1 = xs + blocks, s2 = xs + 2 * blocks, s3 = xs + 3 * blocks;
        int* c0 = starts, c1 = starts + blocks, c2 = starts + 2 * blocks, c3 = starts + 3 * blocks;
        for (int b = 0; b < count; b++, group += GroupBlockBytes, x0 += 32, x1 += 32, x2 += 32, x3 += 32)
        {
            prefetch.Block(b);
            Vector256<int> a0 = Vector256.Create(c0[b]), a1 = Vector256.Create(c1[b]), a2 = Vector256.Create(c2[b]), a3 = Vector256.Create(c3[b]);
            Vector256<int> e0 = a0, e1 = a1, e2 = a2, e3 = a3;
            Block4(group, x0, x1, x2, x3, ref a0, ref a1, ref a2, ref a3, ref e0, ref e1, ref e2, ref e3);
            float* d = (float*)(group + ScalesAt);
            Scale(a0, e0, d, s0[b], sums);
            Scale(a1, e1, d, s1[b], sums + 16);
            Scale(a2, e2, d, s2[b], sums + 32);
            Scale(a3, e3, d, s3[b], sums + 48);
        }
    }

    /// <summary>sums[0..16) += (rows 0..7: <paramref name="low"/>, rows 8..15: <paramref name="high"/>) · d · s.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Scale(Vector256<int> low, Vector256<int> high, float* d, float s, float* sums)
    {
        Fma.MultiplyAdd(Avx.ConvertToVector256Single(low), Vector256.Load(d) * s, Vector256.Load(sums)).Store(sums);
        Fma.MultiplyAdd(Avx.ConvertToVector256Single(high), Vector256.Load(d + 8) * s, Vector256.Load(sums + 8)).Store(sums + 8);
    }

    /// <summary>Sixteen rows × two tokens (the rest of a batch that is not a multiple of four).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tokens2(byte* group, int count, sbyte* x, int stride, float* xs, int* starts, int blocks, float* sums, Prefetch prefetch)
    {
        sbyte* x0 = x, x1 = x + stride;
        float* s0 = xs, s1 = xs + blocks;
        int* c0 = starts, c1 = starts + blocks;
        for (int b = 0; b < count; b++, group += GroupBlockBytes, x0 += 32, x1 += 32)
        {
            prefetch.Block(b);
            Vector256<int> a0 = Vector256.Create(c0[b]), a1 = Vector256.Create(c1[b]), e0 = a0, e1 = a1;
            Step2(group, x0, x1, ref a0, ref a1, ref e0, ref e1);
            Step2(group + VectorBytes, x0 + 4, x1 + 4, ref a0, ref a1, ref e0, ref e1);
            Step2(group + 2 * VectorBytes, x0 + 8, x1 + 8, ref a0, ref a1, ref e0, ref e1);
            Step2(group + 3 * VectorBytes, x0 + 12, x1 + 12, ref a0, ref a1, ref e0, ref e1);
            Step2(group + 4 * VectorBytes, x0 + 16, x1 + 16, ref a0, ref a1, ref e0, ref e1);
            Step2(group + 5 * VectorBytes, x0 + 20, x1 + 20, ref a0, ref a1, ref e0, ref e1);
            Step2(group + 6 * VectorBytes, x0 + 24, x1 + 24, ref a0, ref a1, ref e0, ref e1);
            Step2(group + 7 * VectorBytes, x0 + 28, x1 + 28, ref a0, ref a1, ref e0, ref e1);
            float* d = (float*)(group + ScalesAt);
            Scale(a0, e0, d, s0[b], sums);
            Scale(a1, e1, d, s1[b], sums + 16);
        }
    }

    /// <summary>One group of four columns of sixteen rows against two tokens' four input bytes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Step2(byte* w, sbyte* x0, sbyte* x1, ref Vector256<int> a0, ref Vector256<int> a1, ref Vector256<int> e0, ref Vector256<int> e1)
    {
        var low = Vector256.Load(w);
        var high = Vector256.Load(w + 32);
        var i0 = Vector256.Create(*(int*)x0).AsSByte();
        a0 = AvxVnni.MultiplyWideningAndAdd(a0, low, i0);
        e0 = AvxVnni.MultiplyWideningAndAdd(e0, high, i0);
        var i1 = Vector256.Create(*(int*)x1).AsSByte();
        a1 = AvxVnni.MultiplyWideningAndAdd(a1, low, i1);
        e1 = AvxVnni.MultiplyWideningAndAdd(e1, high, i1);
    }

    /// <summary>One group of four columns of sixteen rows against one token's four input bytes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Step1(byte* w, sbyte* x, ref Vector256<int> a, ref Vector256<int> e)
    {
        var i = Vector256.Create(*(int*)x).AsSByte();
        a = AvxVnni.MultiplyWideningAndAdd(a, Vector256.Load(w), i);
        e = AvxVnni.MultiplyWideningAndAdd(e, Vector256.Load(w + 32), i);
    }

    /// <summary>Sixteen rows × one token.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Token1(byte* group, int count, sbyte* x, float* xs, int* starts, float* sums, Prefetch prefetch)
    {
        for (int b = 0; b < count; b++, group += GroupBlockBytes, x += 32)
        {
            prefetch.Block(b);
            var a = Vector256.Create(starts[b]);
            var e = a;
            Step1(group, x, ref a, ref e);
            Step1(group + VectorBytes, x + 4, ref a, ref e);
            Step1(group + 2 * VectorBytes, x + 8, ref a, ref e);
            Step1(group + 3 * VectorBytes, x + 12, ref a, ref e);
            Step1(group + 4 * VectorBytes, x + 16, ref a, ref e);
            Step1(group + 5 * VectorBytes, x + 20, ref a, ref e);
            Step1(group + 6 * VectorBytes, x + 24, ref a, ref e);
            Step1(group + 7 * VectorBytes, x + 28, ref a, ref e);
            Scale(a, e, (float*)(group + ScalesAt), xs[b], sums);
        }
    }

    /// <summary>
    /// Without AVX-VNNI (Q4_0), sixteen rows × four tokens: per group of four columns <c>vpmaddubsw</c> sums each row's
    /// two byte pairs into int16, kept in int16 for the whole block (at most 8·3810), then widened once
    /// (<c>vpmaddwd</c> with ones gives each row's int32 sum).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PairTokens4(byte* group, int count, sbyte* x, int stride, float* xs, int* starts, int blocks, float* sums, Prefetch prefetch)
    {
        sbyte* x0 = x, x1 = x + stride, x2 = x + 2 * stride, x3 = x + 3 * stride;
        float* s0 = xs, s1 = xs + blocks, s2 = xs + 2 * blocks, s3 = xs + 3 * blocks;
        int* c0 = starts, c1 = starts + blocks, c2 = starts + 2 * blocks, c3 = starts + 3 * blocks;
        var ones = Vector256.Create((short)1);
        for (int b = 0; b < count; b++, group += GroupBlockBytes, x0 += 32, x1 += 32, x2 += 32, x3 += 32)
        {
            prefetch.Block(b);
            Vector256<short> p0 = default, p1 = default, p2 = default, p3 = default, q0 = default, q1 = default, q2 = default, q3 = default;
            for (int g = 0; g < 8; g++)
            {
                var w = Vector256.Load(group + VectorBytes * g);
                var v = Vector256.Load(group + VectorBytes * g + 32);
                var i0 = Vector256.Create(*(int*)(x0 + 4 * g)).AsSByte();
                p0 += Avx2.MultiplyAddAdjacent(w, i0);
                q0 += Avx2.MultiplyAddAdjacent(v, i0);
                var i1 = Vector256.Create(*(int*)(x1 + 4 * g)).AsSByte();
                p1 += Avx2.MultiplyAddAdjacent(w, i1);
                q1 += Avx2.MultiplyAddAdjacent(v, i1);
                var i2 = Vector256.Create(*(int*)(x2 + 4 * g)).AsSByte();
                p2 += Avx2.MultiplyAddAdjacent(w, i2);
                q2 += Avx2.MultiplyAddAdjacent(v, i2);
                var i3 = Vector256.Create(*(int*)(x3 + 4 * g)).AsSByte();
                p3 += Avx2.MultiplyAddAdjacent(w, i3);
                q3 += Avx2.MultiplyAddAdjacent(v, i3);
            }
            float* d = (float*)(group + ScalesAt);
            Vector256<int> a0 = Vector256.Create(c0[b]), a1 = Vector256.Create(c1[b]), a2 = Vector256.Create(c2[b]), a3 = Vector256.Create(c3[b]);
            Scale(Avx2.MultiplyAddAdjacent(p0, ones) + a0, Avx2.MultiplyAddAdjacent(q0, ones) + a0, d, s0[b], sums);
            Scale(Avx2.MultiplyAddAdjacent(p1, ones) + a1, Avx2.MultiplyAddAdjacent(q1, ones) + a1, d, s1[b], sums + 16);
            Scale(Avx2.MultiplyAddAdjacent(p2, ones) + a2, Avx2.MultiplyAddAdjacent(q2, ones) + a2, d, s2[b], sums + 32);
            Scale(Avx2.MultiplyAddAdjacent(p3, ones) + a3, Avx2.MultiplyAddAdjacent(q3, ones) + a3, d, s3[b], sums + 48);
        }
    }

    /// <summary>Without AVX-VNNI (Q4_0), sixteen rows × two tokens.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PairTokens2(byte* group, int count, sbyte* x, int stride, float* xs, int* starts, int blocks, float* sums, Prefetch prefetch)
    {
        sbyte* x0 = x, x1 = x + stride;
        float* s0 = xs, s1 = xs + blocks;
        int* c0 = starts, c1 = starts + blocks;
        var ones = Vector256.Create((short)1);
        for (int b = 0; b < count; b++, group += GroupBlockBytes, x0 += 32, x1 += 32)
        {
            prefetch.Block(b);
            Vector256<short> p0 = default, p1 = default, q0 = default, q1 = default;
            for (int g = 0; g < 8; g++)
            {
                var w = Vector256.Load(group + VectorBytes * g);
                var v = Vector256.Load(group + VectorBytes * g + 32);
                var i0 = Vector256.Create(*(int*)(x0 + 4 * g)).AsSByte();
                p0 += Avx2.MultiplyAddAdjacent(w, i0);
                q0 += Avx2.MultiplyAddAdjacent(v, i0);
                var i1 = Vector256.Create(*(int*)(x1 + 4 * g)).AsSByte();
                p1 += Avx2.MultiplyAddAdjacent(w, i1);
                q1 += Avx2.MultiplyAddAdjacent(v, i1);
            }
            float* d = (float*)(group + ScalesAt);
            Vector256<int> a0 = Vector256.Create(c0[b]), a1 = Vector256.Create(c1[b]);
            Scale(Avx2.MultiplyAddAdjacent(p0, ones) + a0, Avx2.MultiplyAddAdjacent(q0, ones) + a0, d, s0[b], sums);
            Scale(Avx2.MultiplyAddAdjacent(p1, ones) + a1, Avx2.MultiplyAddAdjacent(q1, ones) + a1, d, s1[b], sums + 16);
        }
    }

    /// <summary>Without AVX-VNNI (Q4_0), sixteen rows × one token.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PairToken1(byte* group, int count, sbyte* x, float* xs, int* starts, float* sums, Prefetch prefetch)
    {
        var ones = Vector256.Create((short)1);
        for (int b = 0; b < count; b++, group += GroupBlockBytes, x += 32)
        {
            prefetch.Block(b);
            Vector256<short> p = default, q = default;
            for (int g = 0; g < 8; g++)
            {
                var i = Vector256.Create(*(int*)(x + 4 * g)).AsSByte();
                p += Avx2.MultiplyAddAdjacent(Vector256.Load(group + VectorBytes * g), i);
                q += Avx2.MultiplyAddAdjacent(Vector256.Load(group + VectorBytes * g + 32), i);
            }
            var a = Vector256.Create(starts[b]);
            Scale(Avx2.MultiplyAddAdjacent(p, ones) + a, Avx2.MultiplyAddAdjacent(q, ones) + a, (float*)(group + ScalesAt), xs[b], sums);
        }
    }

    /// <summary>y[0..rows) = sums[0..rows), the sums' lanes in row order or in <see cref="WideOrder"/>
    /// (<paramref name="inWideOrder"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store(float* sums, float* y, int rows, bool inWideOrder)
    {
        if (inWideOrder)
        {
            if (rows == GroupRows)
            {
                Avx512F.PermuteVar16x32(Vector512.Load(sums), Vector512.Create(WideRows)).Store(y);
                return;
            }
            for (int i = 0; i < GroupRows; i++)
            {
                if (WideOrder[i] < rows) y[WideOrder[i]] = sums[i];
            }
        }
        else if (rows == GroupRows)
        {
            Vector256.Load(sums).Store(y);
            Vector256.Load(sums + 8).Store(y + 8);
        }
        else
        {
            for (int i = 0; i < rows; i++) y[i] = sums[i];
        }
    }

    /// <summary>A worker thread's buffers, grown (never shrunk) to the widest matrix and largest batch it has seen.</summary>
    private sealed class Scratch
    {
        private readonly NativeBuffer _buffer;

        public Scratch(int cols, int tokens)
        {
            Cols = cols;
            Tokens = tokens;
            int blocks = cols / QuantizedLayout.BlockSize;
            long input = Align((long)tokens * cols), perBlock = Align((long)tokens * blocks * sizeof(float));
            long group = (long)ChunkBlocks * GroupBlockBytes, sums = Align((long)tokens * GroupRows * sizeof(float));
            _buffer = new NativeBuffer(input + 2 * perBlock + group + sums);
            byte* p = (byte*)_buffer.Pointer;
            Input = (sbyte*)p;
            InputScales = (float*)(p + input);
            InputStarts = (int*)(p + input + perBlock);
            Group = p + input + 2 * perBlock;
            Sums = (float*)(p + input + 2 * perBlock + group);
        }

        public int Cols { get; }

        public int Tokens { get; }

        /// <summary>x̂ of every token, [tokens][cols].</summary>
        public sbyte* Input { get; }

        /// <summary>The input scales, [tokens][blocks].</summary>
        public float* InputScales { get; }

        /// <summary>Where each block's integer sum starts (−offset·Σ x̂), [tokens][blocks].</summary>
        public int* InputStarts { get; }

        /// <summary>The current chunk of the current group of rows, repacked.</summary>
        public byte* Group { get; }

        /// <summary>The current group's float sums, [tokens][<see cref="GroupRows"/>].</summary>
        public float* Sums { get; }

        private static long Align(long bytes) => (bytes + 63) & ~63L;
    }
}
