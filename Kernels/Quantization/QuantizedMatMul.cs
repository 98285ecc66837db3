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
/// (<c>vpmaddwd</c> with ones). A Q8_0 weight (up to 255 unsigned) would overflow int16 pairs, so without AVX-VNNI Q8_0
/// multiplies each weight's magnitude with the input carrying its sign (<c>vpsignb</c>): a pair is at most 2·128·127,
/// widened after every product.
/// .NET 10 exposes <c>vpdpbusd</c> only on 128- and 256-bit vectors (<see cref="AvxVnni"/>; its 512-bit forms come
/// with AVX-VNNI-INT8 and AVX10.2, not with AVX-512 VNNI), so the products stay 256-bit; where the CPU has AVX-512
/// (<c>wide</c>) the scaling is 512-bit.
/// <para>
/// Inputs: every token's x is quantized to int8 in blocks of 32 (x̂ = round(x · 127 / max|x|), ties to even; scale
/// s = max|x| / 127), once per call and thread. The rounding is at most s/2 per element (0.4% of the block's
/// largest input), the same scheme llama.cpp uses for its quantized products. GGUF's blocks as stored
/// (<see cref="QuantizedFormat.InputsPer16"/>) round per 16 values instead, each half block with its own scale and
/// its own integer sum (<see cref="QuantizeHalves"/>), which keeps their prefill closer to the exact logits than
/// llama.cpp's own; they run the AVX2 kernels, on AVX-VNNI CPUs too.
/// </para>
/// <para>
/// Weights: read as stored (<see cref="QuantizedLayout"/>: groups of <see cref="GroupRows"/> rows whose records hold
/// four columns of every row per 64-byte vector, unsigned), <see cref="ChunkBlocks"/> blocks of a group at a time, a
/// chunk that stays in the first-level cache while every token is multiplied by it; while the first tokens run, the
/// next chunk's weights are prefetched, so the weights stream from memory while the products run. A 256-bit half of a
/// vector (eight rows) meets a broadcast group of four input bytes of a token: lane i accumulates row i's block sum,
/// so the block scales are applied to sixteen rows at once (convert, multiply, add) and no horizontal sum is needed.
/// The weight offset is taken off by starting each block's sum at −offset·Σ x̂ of the block. A register block is
/// sixteen rows × four tokens (eight int32 accumulators); the rest of a batch runs two tokens, then one, at a time.
/// </para>
/// <para>
/// A row's result is Σ over blocks of (weight scale · input scale) · Σ q·x̂, the inner sums exact in int32 and the
/// blocks summed in column order; it differs from the product of the dequantized row with x only by the input
/// rounding and the float summation order.
/// </para>
/// </summary>
public static unsafe partial class QuantizedMatMul
{
    /// <summary>Rows per group (the lanes of a 512-bit vector of int32 sums, two 256-bit halves).</summary>
    public const int GroupRows = QuantizedLayout.GroupRows;

    /// <summary>Blocks of a group multiplied by every token before the next: a chunk (16 KiB of Q8_0) stays in the
    /// first-level cache while the tokens run.</summary>
    internal const int ChunkBlocks = 32;

    /// <summary>Largest magnitude of a quantized input value.</summary>
    public const int InputMax = sbyte.MaxValue;

    [ThreadStatic]
    private static TokenScratch<sbyte>? t_scratch;

    /// <summary>Whether this CPU runs the integer kernels for <paramref name="format"/>: AVX-VNNI for every block
    /// format, or AVX2 for Q4_0 (whose byte pairs fit int16).</summary>
    public static bool IsSupported(WeightFormat format) => format is QuantizedFormat { IntegerMatMulSupported: true };

    /// <summary>Whether this CPU runs the integer kernels for <typeparamref name="TBlock"/>.</summary>
    internal static bool IsSupported<TBlock>() where TBlock : struct, IQuantizedBlock =>
        Avx2.IsSupported && Fma.IsSupported && (AvxVnni.IsSupported || PairsFit<TBlock>() || Signs<TBlock>());

    /// <summary>Whether this CPU runs <typeparamref name="TBlock"/>'s products on int8 activations per 16 in decoding too
    /// (<see cref="DecodeActivations.Int8"/>): AVX2 byte pairs that fit int16 (Q4_0).</summary>
    internal static bool ByteActivationsSupported<TBlock>() where TBlock : struct, IQuantizedBlock =>
        Avx2.IsSupported && Fma.IsSupported && PairsFit<TBlock>();

    [ThreadStatic]
    private static float[]? t_gateUp;

    /// <summary>y[i] = gelu_tanh(W[2i]·x)·(W[2i+1]·x) for outputs [start, end) of an interleaved gate/up matrix, one
    /// token on int8 activations per 16 (<see cref="DecodeActivations.Int8"/>): its rows [2·start, 2·end) as
    /// <see cref="Rows{TBlock}(WeightMatrix, float*, int, int, float*, int, int, int, bool)"/> computes them, into this
    /// thread's scratch (grown once), then gated.</summary>
    internal static void GateUpRow<TBlock>(WeightMatrix matrix, float* x, float* y, int start, int end)
        where TBlock : struct, IQuantizedBlock
    {
        if (start >= end) return;
        int n = 2 * (end - start);
        var rows = t_gateUp;
        if (rows == null || rows.Length < n) t_gateUp = rows = GC.AllocateArray<float>(Math.Max(n, 2 * QuantizedLayout.GroupRows), pinned: true);
        fixed (float* r = rows)
        {
            Rows<TBlock>(matrix, x, matrix.Cols, 1, r - 2 * start, 0, 2 * start, 2 * end, vnni: false);
            Activations.GeluTanhGated(r, y + start, end - start);
        }
    }

    /// <summary>Whether this CPU runs the 512-bit scaling (AVX-512 F).</summary>
    internal static bool WideSupported => Avx512F.IsSupported;

    /// <summary>Whether a block's eight groups of <c>vpmaddubsw</c> pairs stay within int16 for <typeparamref name="TBlock"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool PairsFit<TBlock>() where TBlock : struct, IQuantizedBlock =>
        QuantizedLayout.BlockSize / 4 * 2 * TBlock.MaxUnsigned * InputMax <= short.MaxValue;

    /// <summary>Whether <typeparamref name="TBlock"/>'s values are int8 stored with an offset of 128 (Q8_0): without
    /// AVX-VNNI they run as |q| times x̂ with q's sign (<c>vpsignb</c>), whose byte pairs fit int16 one product at a
    /// time.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool Signs<TBlock>() where TBlock : struct, IQuantizedBlock => !PairsFit<TBlock>() && TBlock.Offset == 128;

    /// <summary>
    /// y[t·yStride + r] = W[r]·x[t·xStride ..] for rows [start, end) and tokens [0, tokens), x rounded to int8 as the
    /// type describes. Requires <see cref="IsSupported(WeightFormat)"/> for the matrix's format.
    /// </summary>
    public static void Rows(WeightMatrix matrix, float* x, int xStride, int tokens, float* y, int yStride, int start, int end) =>
        Rows(matrix, x, xStride, tokens, y, yStride, start, end, AvxVnni.IsSupported && !(matrix.Format is QuantizedFormat format && format.RoundsPer16(matrix)));

    /// <summary><see cref="Rows(WeightMatrix, float*, int, int, float*, int, int, int)"/> with the kernel chosen: AVX-VNNI
    /// (<paramref name="vnni"/>) or AVX2 pairs (tests run both on one machine).</summary>
    internal static void Rows(WeightMatrix matrix, float* x, int xStride, int tokens, float* y, int yStride, int start, int end, bool vnni) =>
        Rows(matrix, x, xStride, tokens, y, yStride, start, end, vnni, WideSupported);

    /// <summary><see cref="Rows(WeightMatrix, float*, int, int, float*, int, int, int, bool)"/> with the width of the
    /// scaling chosen as well: 512-bit (<paramref name="wide"/>, AVX-512) or 256-bit (tests run both).</summary>
    internal static void Rows(WeightMatrix matrix, float* x, int xStride, int tokens, float* y, int yStride, int start, int end, bool vnni, bool wide)
    {
        if (matrix.Format is not QuantizedFormat format)
            throw new ArgumentException($"{matrix.Name} is {matrix.Format}, not a block format", nameof(matrix));
        format.IntegerMatMulRows(matrix, x, xStride, tokens, y, yStride, start, end, vnni, wide);
    }

    /// <summary>The kernel for <typeparamref name="TBlock"/>: AVX-VNNI (<paramref name="vnni"/>) or AVX2 pairs, 512-bit
    /// scaling where the CPU has AVX-512.</summary>
    internal static void Rows<TBlock>(WeightMatrix matrix, float* x, int xStride, int tokens, float* y, int yStride, int start, int end, bool vnni)
        where TBlock : struct, IQuantizedBlock =>
        Rows<TBlock>(matrix, x, xStride, tokens, y, yStride, start, end, vnni, WideSupported);

    /// <summary>The kernel for <typeparamref name="TBlock"/>: AVX-VNNI (<paramref name="vnni"/>) or AVX2 pairs; 512-bit
    /// scaling (<paramref name="wide"/>) or 256-bit.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Rows<TBlock>(WeightMatrix matrix, float* x, int xStride, int tokens, float* y, int yStride, int start, int end, bool vnni, bool wide)
        where TBlock : struct, IQuantizedBlock
    {
        bool halves = ((QuantizedFormat)matrix.Format).RoundsPer16(matrix);
        if (vnni && halves)
            throw new PlatformNotSupportedException($"{matrix.Format}'s per-16 inputs run the AVX2 kernels, not the AVX-VNNI ones");
        if (vnni ? !AvxVnni.IsSupported || !IsSupported<TBlock>() : !(Avx2.IsSupported && Fma.IsSupported && (PairsFit<TBlock>() || Signs<TBlock>())))
            throw new PlatformNotSupportedException($"the integer prefill kernels for {matrix.Format} need {(vnni ? "AVX-VNNI" : "AVX2")}");
        if (wide && !WideSupported)
            throw new PlatformNotSupportedException("the 512-bit scaling of the integer prefill kernels needs AVX-512");
        matrix.CheckRows(start, end);
        if (start >= end || tokens <= 0) return;

        // Per token: x̂, and a scale and start per block, or per half block (scaleStride of them per token).
        int cols = matrix.Cols, blocks = cols / QuantizedLayout.BlockSize, perBlock = halves ? 2 : 1, scaleStride = perBlock * blocks;
        var scratch = TokenScratch<sbyte>.Fit(ref t_scratch, cols, tokens);
        var key = RunInput.Of(x, xStride, tokens, cols, TBlock.Offset, QuantizedLayout.BlockSize / perBlock);
        if (!key.IsHeldIn(scratch.Held))
        {
            for (int t = 0; t < tokens; t++)
            {
                float* from = x + (long)t * xStride, scales = scratch.InputScales + t * scaleStride;
                sbyte* input = scratch.Input + (long)t * cols;
                int* starts = scratch.InputStarts + t * scaleStride;
                if (halves) QuantizeHalves(from, blocks, TBlock.Offset, input, scales, starts);
                else QuantizeInput(from, blocks, TBlock.Offset, input, scales, starts);
            }
            scratch.Held = key;
        }

        int scaleBytes = QuantizedLayout.ScaleBytes(cols), recordBytes = TBlock.QuantBytes * GroupRows;
        long groupBytes = scaleBytes + (long)blocks * recordBytes;
        float* sums = scratch.Sums;
        for (int r = start / GroupRows * GroupRows; r < end; r += GroupRows)
        {
            byte* group = (byte*)matrix.Data + r / GroupRows * groupBytes;
            new Span<float>(sums, tokens * GroupRows).Clear();
            for (int b0 = 0; b0 < blocks; b0 += ChunkBlocks)
            {
                int count = Math.Min(ChunkBlocks, blocks - b0);
                byte* records = group + scaleBytes + (long)b0 * recordBytes;
                ushort* scales = (ushort*)group + b0 * GroupRows;

                // The next chunk: of this group, else the first of the next group.
                bool lastChunk = b0 + ChunkBlocks >= blocks;
                byte* next = !lastChunk ? records + (long)count * recordBytes : group + groupBytes + scaleBytes;
                int nextCount = !lastChunk ? Math.Min(ChunkBlocks, blocks - b0 - ChunkBlocks) : Math.Min(ChunkBlocks, blocks);
                int steps = tokens / 4 + (tokens % 4 >= 2 ? 1 : 0) + (tokens % 2);
                var prefetch = !lastChunk || r + GroupRows < end ? new Prefetch(next, nextCount * recordBytes, steps * count) : default;

                for (int t = 0, step, pass = 0; t < tokens; t += step, pass++)
                {
                    step = tokens - t >= 4 ? 4 : tokens - t >= 2 ? 2 : 1;
                    sbyte* input = scratch.Input + (long)t * cols + b0 * QuantizedLayout.BlockSize;
                    float* xs = scratch.InputScales + t * scaleStride + b0 * perBlock, o = sums + t * GroupRows;
                    int* starts = scratch.InputStarts + t * scaleStride + b0 * perBlock;
                    var ahead = new PrefetchPass(prefetch, pass * count);
                    if (halves)
                    {
                        if (step == 4) HalfTokens<TBlock, Count4>(records, scales, count, input, cols, xs, starts, scaleStride, o, ahead);
                        else if (step == 2) HalfTokens<TBlock, Count2>(records, scales, count, input, cols, xs, starts, scaleStride, o, ahead);
                        else if (Signs<TBlock>()) HalfTokens<TBlock, Count1>(records, scales, count, input, cols, xs, starts, scaleStride, o, ahead);
                        else HalfToken<TBlock>(records, scales, count, input, xs, starts, o, ahead);
                    }
                    else if (step == 4 && vnni && wide) Tokens4Wide<TBlock>(records, scales, count, input, cols, xs, starts, blocks, o, ahead);
                    else if (step == 4 && vnni) Tokens4<TBlock>(records, scales, count, input, cols, xs, starts, blocks, o, ahead);
                    else if (!vnni && Signs<TBlock>())
                    {
                        if (step == 4) SignTokens<TBlock, Count4>(records, scales, count, input, cols, xs, blocks, o, ahead);
                        else if (step == 2) SignTokens<TBlock, Count2>(records, scales, count, input, cols, xs, blocks, o, ahead);
                        else SignTokens<TBlock, Count1>(records, scales, count, input, cols, xs, blocks, o, ahead);
                    }
                    else if (step == 4) PairTokens<TBlock, Count4>(records, scales, count, input, cols, xs, starts, blocks, o, ahead);
                    else if (step == 2 && vnni) Tokens2<TBlock>(records, scales, count, input, cols, xs, starts, blocks, o, ahead);
                    else if (step == 2) PairTokens<TBlock, Count2>(records, scales, count, input, cols, xs, starts, blocks, o, ahead);
                    else if (vnni) Token1<TBlock>(records, scales, count, input, xs, starts, o, ahead);
                    else PairTokens<TBlock, Count1>(records, scales, count, input, cols, xs, starts, blocks, o, ahead);
                }
            }
            int first = Math.Max(start, r), last = Math.Min(end, r + GroupRows);
            for (int t = 0; t < tokens; t++) Store(sums + t * GroupRows + (first - r), y + (long)t * yStride + first, last - first);
        }
    }

    /// <summary>
    /// Quantizes <paramref name="blocks"/> blocks of 32 floats to int8: per block s = max|x| / 127 and
    /// x̂ = round(x · (127 / max|x|)), ties to even (all zero when the block is). Writes x̂ to <paramref name="input"/>,
    /// s to <paramref name="scales"/>[b] and −<paramref name="offset"/>·Σ x̂ to <paramref name="starts"/>[b]; where
    /// <paramref name="halves"/> is given, Σ x̂ of each block's first and second 16 to halves[2b] and halves[2b + 1].
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void QuantizeInput(float* x, int blocks, int offset, sbyte* input, float* scales, int* starts, short* halves = null)
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
                if (halves == null)
                {
                    sum = Vector256.Sum(q0 + q1 + q2 + q3);
                }
                else
                {
                    int first = Vector256.Sum(q0 + q1), second = Vector256.Sum(q2 + q3);
                    halves[2 * b] = (short)first;
                    halves[2 * b + 1] = (short)second;
                    sum = first + second;
                }
            }
            else
            {
                Vector256<sbyte>.Zero.Store(input);
                if (halves != null) *(int*)(halves + 2 * b) = 0;
            }
            scales[b] = max / InputMax;
            starts[b] = -offset * sum;
        }
    }

    /// <summary>
    /// Quantizes <paramref name="blocks"/> blocks of 32 floats to int8 per half block of 16: for half h of block b,
    /// s = max|x| / 127 over its 16 values and x̂ = round(x · (127 / max|x|)), ties to even (all zero when the half is).
    /// Writes x̂ to <paramref name="input"/>, s to <paramref name="scales"/>[2b + h] and −<paramref name="offset"/>·Σ x̂
    /// of the half to <paramref name="starts"/>[2b + h].
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void QuantizeHalves(float* x, int blocks, int offset, sbyte* input, float* scales, int* starts)
    {
        const int size = QuantizedLayout.BlockSize / 2;
        for (int h = 0; h < 2 * blocks; h++, x += size, input += size)
        {
            Vector256<float> v0 = Vector256.Load(x), v1 = Vector256.Load(x + 8);
            float max = QuantizedLayout.MaxAcross(Vector256.Max(Vector256.Abs(v0), Vector256.Abs(v1)));
            int sum = 0;
            if (max > 0)
            {
                float inverse = InputMax / max;
                Vector256<int> q0 = Avx.ConvertToVector256Int32(v0 * inverse), q1 = Avx.ConvertToVector256Int32(v1 * inverse);
                var narrowed = Vector256.Narrow(q0, q1);
                Vector128.Narrow(narrowed.GetLower(), narrowed.GetUpper()).Store(input);
                sum = Vector256.Sum(q0 + q1);
            }
            else
            {
                Vector128<sbyte>.Zero.Store(input);
            }
            scales[h] = max / InputMax;
            starts[h] = -offset * sum;
        }
    }

    /// <summary>
    /// The next chunk's weights (<paramref name="bytes"/> from <paramref name="next"/>), prefetched while this chunk runs,
    /// spread evenly over its <paramref name="visits"/> block visits (every token step's pass over every block) so that
    /// the memory streams while every pass computes, not only the first; nothing when <c>default</c>.
    /// </summary>
    internal readonly struct Prefetch(byte* next, int bytes, int visits)
    {
        /// <summary>The most a visit prefetches: eight lines, a Q8_0 record.</summary>
        private const int MaxVisitBytes = 512;

        private readonly byte* _next = next;
        private readonly int _bytes = bytes;

        // A chunk is at most 32 records of 512 bytes, and visits·64 fits an int for any batch below a million tokens:
        // 32-bit division, once per chunk.
        private readonly int _perVisit = visits > 0 ? Math.Min(MaxVisitBytes, (bytes + visits * 64 - 1) / (visits * 64) * 64) : 0;

        /// <summary>The lines of visit <paramref name="visit"/> (the token step's pass × blocks + the block): up to
        /// <see cref="MaxVisitBytes"/>, unrolled (the rest of a chunk whose blocks outnumber the visits is left to the
        /// hardware prefetcher, which follows the stream).</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Visit(int visit)
        {
            int from = visit * _perVisit;
            if (from >= _bytes) return;
            byte* at = _next + from;
            Sse.Prefetch0(at);
            if (_perVisit <= 64) return;
            Sse.Prefetch0(at + 64);
            if (_perVisit <= 128) return;
            Sse.Prefetch0(at + 128);
            Sse.Prefetch0(at + 192);
            if (_perVisit <= 256) return;
            Sse.Prefetch0(at + 256);
            Sse.Prefetch0(at + 320);
            Sse.Prefetch0(at + 384);
            Sse.Prefetch0(at + 448);
        }
    }

    /// <summary>One token step's pass over a chunk: block b is visit <c>first + b</c> of the chunk's <see cref="Prefetch"/>.</summary>
    private readonly struct PrefetchPass(Prefetch prefetch, int first)
    {
        private readonly Prefetch _prefetch = prefetch;
        private readonly int _first = first;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Block(int b) => _prefetch.Visit(_first + b);
    }

    /// <summary>One group of four columns of sixteen rows (<paramref name="low"/>: rows 0..7, <paramref name="high"/>:
    /// 8..15) against four tokens' four input bytes: a·, e· (rows 0..7, 8..15) += the byte products, four to a lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Step4(Vector256<byte> low, Vector256<byte> high, sbyte* x0, sbyte* x1, sbyte* x2, sbyte* x3,
        ref Vector256<int> a0, ref Vector256<int> a1, ref Vector256<int> a2, ref Vector256<int> a3,
        ref Vector256<int> e0, ref Vector256<int> e1, ref Vector256<int> e2, ref Vector256<int> e3)
    {
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
    private static void Block4<TBlock>(byte* record, sbyte* x0, sbyte* x1, sbyte* x2, sbyte* x3,
        ref Vector256<int> a0, ref Vector256<int> a1, ref Vector256<int> a2, ref Vector256<int> a3,
        ref Vector256<int> e0, ref Vector256<int> e1, ref Vector256<int> e2, ref Vector256<int> e3)
        where TBlock : struct, IQuantizedBlock
    {
        Step4(TBlock.Columns(record, 0, 0), TBlock.Columns(record, 0, 1), x0, x1, x2, x3, ref a0, ref a1, ref a2, ref a3, ref e0, ref e1, ref e2, ref e3);
        Step4(TBlock.Columns(record, 1, 0), TBlock.Columns(record, 1, 1), x0 + 4, x1 + 4, x2 + 4, x3 + 4, ref a0, ref a1, ref a2, ref a3, ref e0, ref e1, ref e2, ref e3);
        Step4(TBlock.Columns(record, 2, 0), TBlock.Columns(record, 2, 1), x0 + 8, x1 + 8, x2 + 8, x3 + 8, ref a0, ref a1, ref a2, ref a3, ref e0, ref e1, ref e2, ref e3);
        Step4(TBlock.Columns(record, 3, 0), TBlock.Columns(record, 3, 1), x0 + 12, x1 + 12, x2 + 12, x3 + 12, ref a0, ref a1, ref a2, ref a3, ref e0, ref e1, ref e2, ref e3);
        Step4(TBlock.Columns(record, 4, 0), TBlock.Columns(record, 4, 1), x0 + 16, x1 + 16, x2 + 16, x3 + 16, ref a0, ref a1, ref a2, ref a3, ref e0, ref e1, ref e2, ref e3);
        Step4(TBlock.Columns(record, 5, 0), TBlock.Columns(record, 5, 1), x0 + 20, x1 + 20, x2 + 20, x3 + 20, ref a0, ref a1, ref a2, ref a3, ref e0, ref e1, ref e2, ref e3);
        Step4(TBlock.Columns(record, 6, 0), TBlock.Columns(record, 6, 1), x0 + 24, x1 + 24, x2 + 24, x3 + 24, ref a0, ref a1, ref a2, ref a3, ref e0, ref e1, ref e2, ref e3);
        Step4(TBlock.Columns(record, 7, 0), TBlock.Columns(record, 7, 1), x0 + 28, x1 + 28, x2 + 28, x3 + 28, ref a0, ref a1, ref a2, ref a3, ref e0, ref e1, ref e2, ref e3);
    }

    /// <summary>Sixteen rows × four tokens, the scaling 512-bit: the tokens' inputs are <paramref name="stride"/> bytes
    /// apart and their scales and starts <paramref name="blocks"/> apart; adds to <paramref name="sums"/> [4][16].</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tokens4Wide<TBlock>(byte* record, ushort* scales, int count, sbyte* x, int stride, float* xs, int* starts, int blocks, float* sums, PrefetchPass prefetch)
        where TBlock : struct, IQuantizedBlock
    {
        int recordBytes = TBlock.QuantBytes * GroupRows;
        sbyte* x0 = x, x1 = x + stride, x2 = x + 2 * stride, x3 = x + 3 * stride;
        float* s0 = xs, s1 = xs + blocks, s2 = xs + 2 * blocks, s3 = xs + 3 * blocks;
        int* c0 = starts, c1 = starts + blocks, c2 = starts + 2 * blocks, c3 = starts + 3 * blocks;
        Vector512<float> o0 = Vector512.Load(sums), o1 = Vector512.Load(sums + 16), o2 = Vector512.Load(sums + 32), o3 = Vector512.Load(sums + 48);
        for (int b = 0; b < count; b++, record += recordBytes, x0 += 32, x1 += 32, x2 += 32, x3 += 32)
        {
            prefetch.Block(b);
            Vector256<int> a0 = Vector256.Create(c0[b]), a1 = Vector256.Create(c1[b]), a2 = Vector256.Create(c2[b]), a3 = Vector256.Create(c3[b]);
            Vector256<int> e0 = a0, e1 = a1, e2 = a2, e3 = a3;
            Block4<TBlock>(record, x0, x1, x2, x3, ref a0, ref a1, ref a2, ref a3, ref e0, ref e1, ref e2, ref e3);
            var d = TBlock.Scales512(scales + b * GroupRows);
            o0 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(a0.ToVector512Unsafe().WithUpper(e0)), d * s0[b], o0);
            o1 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(a1.ToVector512Unsafe().WithUpper(e1)), d * s1[b], o1);
            o2 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(a2.ToVector512Unsafe().WithUpper(e2)), d * s2[b], o2);
            o3 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(a3.ToVector512Unsafe().WithUpper(e3)), d * s3[b], o3);
        }
        o0.Store(sums);
        o1.Store(sums + 16);
        o2.Store(sums + 32);
        o3.Store(sums + 48);
    }

    /// <summary>Sixteen rows × four tokens, the scaling 256-bit (sixteen 256-bit registers hold the int32 sums, so the
    /// float sums stay in <paramref name="sums"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tokens4<TBlock>(byte* record, ushort* scales, int count, sbyte* x, int stride, float* xs, int* starts, int blocks, float* sums, PrefetchPass prefetch)
        where TBlock : struct, IQuantizedBlock
    {
        int recordBytes = TBlock.QuantBytes * GroupRows;
        sbyte* x0 = x, x1 = x + stride, x2 = x + 2 * stride, x3 = x + 3 * stride;
        float* s0 = xs, s1 = xs + blocks, s2 = xs + 2 * blocks, s3 = xs + 3 * blocks;
        int* c0 = starts, c1 = starts + blocks, c2 = starts + 2 * blocks, c3 = starts + 3 * blocks;
        for (int b = 0; b < count; b++, record += recordBytes, x0 += 32, x1 += 32, x2 += 32, x3 += 32)
        {
            prefetch.Block(b);
            Vector256<int> a0 = Vector256.Create(c0[b]), a1 = Vector256.Create(c1[b]), a2 = Vector256.Create(c2[b]), a3 = Vector256.Create(c3[b]);
            Vector256<int> e0 = a0, e1 = a1, e2 = a2, e3 = a3;
            Block4<TBlock>(record, x0, x1, x2, x3, ref a0, ref a1, ref a2, ref a3, ref e0, ref e1, ref e2, ref e3);
            ushort* d = scales + b * GroupRows;
            Scale<TBlock>(a0, e0, d, s0[b], sums);
            Scale<TBlock>(a1, e1, d, s1[b], sums + 16);
            Scale<TBlock>(a2, e2, d, s2[b], sums + 32);
            Scale<TBlock>(a3, e3, d, s3[b], sums + 48);
        }
    }

    /// <summary>sums[0..16) += (rows 0..7: <paramref name="low"/>, rows 8..15: <paramref name="high"/>) · d · s, d the
    /// rows' scales (<typeparamref name="TBlock"/>'s encoding), widened here (<see cref="HalfScale"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Scale<TBlock>(Vector256<int> low, Vector256<int> high, ushort* d, float s, float* sums)
        where TBlock : struct, IQuantizedBlock =>
        HalfScale(low, high, TBlock.Scales256(d), TBlock.Scales256(d + 8), s, sums);

    /// <summary>Sixteen rows × two tokens (the rest of a batch that is not a multiple of four).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tokens2<TBlock>(byte* record, ushort* scales, int count, sbyte* x, int stride, float* xs, int* starts, int blocks, float* sums, PrefetchPass prefetch)
        where TBlock : struct, IQuantizedBlock
    {
        int recordBytes = TBlock.QuantBytes * GroupRows;
        sbyte* x0 = x, x1 = x + stride;
        float* s0 = xs, s1 = xs + blocks;
        int* c0 = starts, c1 = starts + blocks;
        for (int b = 0; b < count; b++, record += recordBytes, x0 += 32, x1 += 32)
        {
            prefetch.Block(b);
            Vector256<int> a0 = Vector256.Create(c0[b]), a1 = Vector256.Create(c1[b]), e0 = a0, e1 = a1;
            for (int g = 0; g < 8; g++)
            {
                Vector256<byte> low = TBlock.Columns(record, g, 0), high = TBlock.Columns(record, g, 1);
                var i0 = Vector256.Create(*(int*)(x0 + 4 * g)).AsSByte();
                a0 = AvxVnni.MultiplyWideningAndAdd(a0, low, i0);
                e0 = AvxVnni.MultiplyWideningAndAdd(e0, high, i0);
                var i1 = Vector256.Create(*(int*)(x1 + 4 * g)).AsSByte();
                a1 = AvxVnni.MultiplyWideningAndAdd(a1, low, i1);
                e1 = AvxVnni.MultiplyWideningAndAdd(e1, high, i1);
            }
            ushort* d = scales + b * GroupRows;
            Scale<TBlock>(a0, e0, d, s0[b], sums);
            Scale<TBlock>(a1, e1, d, s1[b], sums + 16);
        }
    }

    /// <summary>Sixteen rows × one token.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Token1<TBlock>(byte* record, ushort* scales, int count, sbyte* x, float* xs, int* starts, float* sums, PrefetchPass prefetch)
        where TBlock : struct, IQuantizedBlock
    {
        int recordBytes = TBlock.QuantBytes * GroupRows;
        for (int b = 0; b < count; b++, record += recordBytes, x += 32)
        {
            prefetch.Block(b);
            var a = Vector256.Create(starts[b]);
            var e = a;
            for (int g = 0; g < 8; g++)
            {
                var i = Vector256.Create(*(int*)(x + 4 * g)).AsSByte();
                a = AvxVnni.MultiplyWideningAndAdd(a, TBlock.Columns(record, g, 0), i);
                e = AvxVnni.MultiplyWideningAndAdd(e, TBlock.Columns(record, g, 1), i);
            }
            Scale<TBlock>(a, e, scales + b * GroupRows, xs[b], sums);
        }
    }

    /// <summary>
    /// Without AVX-VNNI (Q4_0), sixteen rows × <typeparamref name="TTokens"/> tokens (1, 2 or 4): per group of four
    /// columns <c>vpmaddubsw</c> sums each row's two byte pairs into int16, kept in int16 for the whole block (at most
    /// 8·3810), then widened once (<c>vpmaddwd</c> with ones gives each row's int32 sum).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PairTokens<TBlock, TTokens>(byte* record, ushort* scales, int count, sbyte* x, int stride, float* xs, int* starts, int blocks, float* sums, PrefetchPass prefetch)
        where TBlock : struct, IQuantizedBlock
        where TTokens : struct, ICount
    {
        int recordBytes = TBlock.QuantBytes * GroupRows;
        var ones = Vector256.Create((short)1);
        for (int b = 0; b < count; b++, record += recordBytes, x += 32)
        {
            prefetch.Block(b);
            Vector256<short> p0 = default, p1 = default, p2 = default, p3 = default, q0 = default, q1 = default, q2 = default, q3 = default;
            PairGroups<TBlock, TTokens>(record, 0, 8, x, stride, ref p0, ref p1, ref p2, ref p3, ref q0, ref q1, ref q2, ref q3);
            // The rows' scales widened once for every token.
            ushort* d = scales + b * GroupRows;
            Vector256<float> low = TBlock.Scales256(d), high = TBlock.Scales256(d + 8);
            var a = Vector256.Create(starts[b]);
            HalfScale(Avx2.MultiplyAddAdjacent(p0, ones) + a, Avx2.MultiplyAddAdjacent(q0, ones) + a, low, high, xs[b], sums);
            if (TTokens.Value > 1)
            {
                a = Vector256.Create(starts[blocks + b]);
                HalfScale(Avx2.MultiplyAddAdjacent(p1, ones) + a, Avx2.MultiplyAddAdjacent(q1, ones) + a, low, high, xs[blocks + b], sums + 16);
            }
            if (TTokens.Value > 2)
            {
                a = Vector256.Create(starts[2 * blocks + b]);
                HalfScale(Avx2.MultiplyAddAdjacent(p2, ones) + a, Avx2.MultiplyAddAdjacent(q2, ones) + a, low, high, xs[2 * blocks + b], sums + 32);
                a = Vector256.Create(starts[3 * blocks + b]);
                HalfScale(Avx2.MultiplyAddAdjacent(p3, ones) + a, Avx2.MultiplyAddAdjacent(q3, ones) + a, low, high, xs[3 * blocks + b], sums + 48);
            }
        }
    }

    /// <summary>Groups [<paramref name="from"/>, <paramref name="to"/>) of a block of sixteen Q4_0 rows against
    /// <typeparamref name="TTokens"/> tokens' inputs: p·, q· (rows 0..7, 8..15 of each token) += the byte pairs' int16
    /// sums (<c>vpmaddubsw</c>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void PairGroups<TBlock, TTokens>(byte* record, int from, int to, sbyte* x, int stride,
        ref Vector256<short> p0, ref Vector256<short> p1, ref Vector256<short> p2, ref Vector256<short> p3,
        ref Vector256<short> q0, ref Vector256<short> q1, ref Vector256<short> q2, ref Vector256<short> q3)
        where TBlock : struct, IQuantizedBlock
        where TTokens : struct, ICount
    {
        // Unrolled by hand, each group a constant (the JIT keeps the loop a loop, with the block type's choice of bytes
        // for the group a branch inside it); from and to are constants where this inlines.
        if (from <= 0 && 0 < to) PairGroup<TBlock, TTokens>(record, 0, x, stride, ref p0, ref p1, ref p2, ref p3, ref q0, ref q1, ref q2, ref q3);
        if (from <= 1 && 1 < to) PairGroup<TBlock, TTokens>(record, 1, x, stride, ref p0, ref p1, ref p2, ref p3, ref q0, ref q1, ref q2, ref q3);
        if (from <= 2 && 2 < to) PairGroup<TBlock, TTokens>(record, 2, x, stride, ref p0, ref p1, ref p2, ref p3, ref q0, ref q1, ref q2, ref q3);
        if (from <= 3 && 3 < to) PairGroup<TBlock, TTokens>(record, 3, x, stride, ref p0, ref p1, ref p2, ref p3, ref q0, ref q1, ref q2, ref q3);
        if (from <= 4 && 4 < to) PairGroup<TBlock, TTokens>(record, 4, x, stride, ref p0, ref p1, ref p2, ref p3, ref q0, ref q1, ref q2, ref q3);
        if (from <= 5 && 5 < to) PairGroup<TBlock, TTokens>(record, 5, x, stride, ref p0, ref p1, ref p2, ref p3, ref q0, ref q1, ref q2, ref q3);
        if (from <= 6 && 6 < to) PairGroup<TBlock, TTokens>(record, 6, x, stride, ref p0, ref p1, ref p2, ref p3, ref q0, ref q1, ref q2, ref q3);
        if (from <= 7 && 7 < to) PairGroup<TBlock, TTokens>(record, 7, x, stride, ref p0, ref p1, ref p2, ref p3, ref q0, ref q1, ref q2, ref q3);
    }

    /// <summary>Group <paramref name="g"/> of <see cref="PairGroups{TBlock, TTokens}"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void PairGroup<TBlock, TTokens>(byte* record, int g, sbyte* x, int stride,
        ref Vector256<short> p0, ref Vector256<short> p1, ref Vector256<short> p2, ref Vector256<short> p3,
        ref Vector256<short> q0, ref Vector256<short> q1, ref Vector256<short> q2, ref Vector256<short> q3)
        where TBlock : struct, IQuantizedBlock
        where TTokens : struct, ICount
    {
        Vector256<byte> w = TBlock.Columns(record, g, 0), v = TBlock.Columns(record, g, 1);
        var i0 = Vector256.Create(*(int*)(x + 4 * g)).AsSByte();
        p0 += Avx2.MultiplyAddAdjacent(w, i0);
        q0 += Avx2.MultiplyAddAdjacent(v, i0);
        if (TTokens.Value > 1)
        {
            var i1 = Vector256.Create(*(int*)(x + stride + 4 * g)).AsSByte();
            p1 += Avx2.MultiplyAddAdjacent(w, i1);
            q1 += Avx2.MultiplyAddAdjacent(v, i1);
        }
        if (TTokens.Value > 2)
        {
            var i2 = Vector256.Create(*(int*)(x + 2 * stride + 4 * g)).AsSByte();
            p2 += Avx2.MultiplyAddAdjacent(w, i2);
            q2 += Avx2.MultiplyAddAdjacent(v, i2);
            var i3 = Vector256.Create(*(int*)(x + 3 * stride + 4 * g)).AsSByte();
            p3 += Avx2.MultiplyAddAdjacent(w, i3);
            q3 += Avx2.MultiplyAddAdjacent(v, i3);
        }
    }

    /// <summary>
    /// Without AVX-VNNI, Q8_0 (<see cref="Signs{TBlock}"/>): sixteen rows × <typeparamref name="TTokens"/> tokens (1, 2 or
    /// 4). Per group of four columns each vector of values is made signed (q) and its magnitude |q| taken once; each token's
    /// broadcast inputs take q's sign (<c>vpsignb</c>), and <c>vpmaddubsw</c> of |q| with them sums each row's two byte
    /// pairs (at most 2·128·127) into int16, widened at once (<c>vpmaddwd</c> with ones). The sums are Σ q·x̂ with no
    /// offset to take off (the starts are not read).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void SignTokens<TBlock, TTokens>(byte* record, ushort* scales, int count, sbyte* x, int stride, float* xs, int blocks, float* sums, PrefetchPass prefetch)
        where TBlock : struct, IQuantizedBlock
        where TTokens : struct, ICount
    {
        int recordBytes = TBlock.QuantBytes * GroupRows;
        var ones = Vector256.Create((short)1);
        for (int b = 0; b < count; b++, record += recordBytes, x += 32)
        {
            prefetch.Block(b);
            Vector256<int> a0 = default, a1 = default, a2 = default, a3 = default, e0 = default, e1 = default, e2 = default, e3 = default;
            SignGroups<TBlock, TTokens>(record, 0, 8, x, stride, ones, ref a0, ref a1, ref a2, ref a3, ref e0, ref e1, ref e2, ref e3);
            // The rows' scales widened once for every token.
            ushort* d = scales + b * GroupRows;
            Vector256<float> low = TBlock.Scales256(d), high = TBlock.Scales256(d + 8);
            HalfScale(a0, e0, low, high, xs[b], sums);
            if (TTokens.Value > 1) HalfScale(a1, e1, low, high, xs[blocks + b], sums + 16);
            if (TTokens.Value > 2)
            {
                HalfScale(a2, e2, low, high, xs[2 * blocks + b], sums + 32);
                HalfScale(a3, e3, low, high, xs[3 * blocks + b], sums + 48);
            }
        }
    }

    /// <summary>Groups [<paramref name="from"/>, <paramref name="to"/>) of a block of sixteen Q8_0 rows against
    /// <typeparamref name="TTokens"/> tokens' inputs as <see cref="SignStep"/> multiplies them: a·, e· (rows 0..7,
    /// 8..15 of each token) += the products.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void SignGroups<TBlock, TTokens>(byte* record, int from, int to, sbyte* x, int stride, Vector256<short> ones,
        ref Vector256<int> a0, ref Vector256<int> a1, ref Vector256<int> a2, ref Vector256<int> a3,
        ref Vector256<int> e0, ref Vector256<int> e1, ref Vector256<int> e2, ref Vector256<int> e3)
        where TBlock : struct, IQuantizedBlock
        where TTokens : struct, ICount
    {
        // Unrolled by hand, as PairGroups.
        if (from <= 0 && 0 < to) SignGroup<TBlock, TTokens>(record, 0, x, stride, ones, ref a0, ref a1, ref a2, ref a3, ref e0, ref e1, ref e2, ref e3);
        if (from <= 1 && 1 < to) SignGroup<TBlock, TTokens>(record, 1, x, stride, ones, ref a0, ref a1, ref a2, ref a3, ref e0, ref e1, ref e2, ref e3);
        if (from <= 2 && 2 < to) SignGroup<TBlock, TTokens>(record, 2, x, stride, ones, ref a0, ref a1, ref a2, ref a3, ref e0, ref e1, ref e2, ref e3);
        if (from <= 3 && 3 < to) SignGroup<TBlock, TTokens>(record, 3, x, stride, ones, ref a0, ref a1, ref a2, ref a3, ref e0, ref e1, ref e2, ref e3);
        if (from <= 4 && 4 < to) SignGroup<TBlock, TTokens>(record, 4, x, stride, ones, ref a0, ref a1, ref a2, ref a3, ref e0, ref e1, ref e2, ref e3);
        if (from <= 5 && 5 < to) SignGroup<TBlock, TTokens>(record, 5, x, stride, ones, ref a0, ref a1, ref a2, ref a3, ref e0, ref e1, ref e2, ref e3);
        if (from <= 6 && 6 < to) SignGroup<TBlock, TTokens>(record, 6, x, stride, ones, ref a0, ref a1, ref a2, ref a3, ref e0, ref e1, ref e2, ref e3);
        if (from <= 7 && 7 < to) SignGroup<TBlock, TTokens>(record, 7, x, stride, ones, ref a0, ref a1, ref a2, ref a3, ref e0, ref e1, ref e2, ref e3);
    }

    /// <summary>Group <paramref name="g"/> of <see cref="SignGroups{TBlock, TTokens}"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void SignGroup<TBlock, TTokens>(byte* record, int g, sbyte* x, int stride, Vector256<short> ones,
        ref Vector256<int> a0, ref Vector256<int> a1, ref Vector256<int> a2, ref Vector256<int> a3,
        ref Vector256<int> e0, ref Vector256<int> e1, ref Vector256<int> e2, ref Vector256<int> e3)
        where TBlock : struct, IQuantizedBlock
        where TTokens : struct, ICount
    {
        var flip = Vector256.Create((byte)0x80);
        var w = (TBlock.Columns(record, g, 0) ^ flip).AsSByte();
        var v = (TBlock.Columns(record, g, 1) ^ flip).AsSByte();
        Vector256<byte> aw = Avx2.Abs(w), av = Avx2.Abs(v);
        SignStep(aw, av, w, v, x + 4 * g, ones, ref a0, ref e0);
        if (TTokens.Value > 1) SignStep(aw, av, w, v, x + stride + 4 * g, ones, ref a1, ref e1);
        if (TTokens.Value > 2)
        {
            SignStep(aw, av, w, v, x + 2 * stride + 4 * g, ones, ref a2, ref e2);
            SignStep(aw, av, w, v, x + 3 * stride + 4 * g, ones, ref a3, ref e3);
        }
    }

    /// <summary>One token's four input bytes at <paramref name="x"/> against sixteen rows' four signed values
    /// (<paramref name="w"/>: rows 0..7, <paramref name="v"/>: 8..15) as magnitudes times sign-moved inputs.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void SignStep(Vector256<byte> aw, Vector256<byte> av, Vector256<sbyte> w, Vector256<sbyte> v, sbyte* x, Vector256<short> ones,
        ref Vector256<int> a, ref Vector256<int> e)
    {
        var i = Vector256.Create(*(int*)x).AsSByte();
        a += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(aw, Avx2.Sign(i, w)), ones);
        e += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(av, Avx2.Sign(i, v)), ones);
    }

    /// <summary>
    /// Per-16 inputs (<see cref="QuantizedFormat.InputsPer16"/>), AVX2: sixteen rows × <typeparamref name="TTokens"/>
    /// tokens (1, 2 or 4), each half block (four groups of four columns) summed on its own and scaled by its own input
    /// scale, <paramref name="xs"/>[2b + h] (token t's <paramref name="scaleStride"/>·t on, as its starts). Q8_0's
    /// products as <see cref="SignTokens{TBlock, TTokens}"/>'s (no offset to take off); Q4_0's byte pairs kept in int16
    /// over the half (at most 4·3810) and widened once, each half starting at −offset·Σ x̂ of its 16 inputs. The rows'
    /// block scales are widened once per block for every token.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void HalfTokens<TBlock, TTokens>(byte* record, ushort* scales, int count, sbyte* x, int stride, float* xs, int* starts, int scaleStride, float* sums, PrefetchPass prefetch)
        where TBlock : struct, IQuantizedBlock
        where TTokens : struct, ICount
    {
        int recordBytes = TBlock.QuantBytes * GroupRows;
        var ones = Vector256.Create((short)1);
        for (int b = 0; b < count; b++, record += recordBytes, x += 32)
        {
            prefetch.Block(b);
            ushort* d = scales + b * GroupRows;
            Vector256<float> low = TBlock.Scales256(d), high = TBlock.Scales256(d + 8);
            HalfBlock<TBlock, TTokens>(record, 0, x, stride, xs + 2 * b, starts + 2 * b, scaleStride, low, high, ones, sums);
            HalfBlock<TBlock, TTokens>(record, 1, x, stride, xs + 2 * b + 1, starts + 2 * b + 1, scaleStride, low, high, ones, sums);
        }
    }

    /// <summary>
    /// <see cref="HalfTokens{TBlock, TTokens}"/> for one token of a block type whose byte pairs fit int16 (Q4_0), the
    /// same operations per half block in the same order (so the same floats, bit for bit), with the token's sixteen float
    /// sums held in registers over the chunk instead of loaded and stored per half block, and both halves of a block in
    /// one pass over its record (Q4_0's first half is the low nibbles of the bytes whose high nibbles are the second). What a
    /// row of decoding runs when the activations are rounded to int8 (<see cref="WeightMatrix.DecodeActivations"/>).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void HalfToken<TBlock>(byte* record, ushort* scales, int count, sbyte* x, float* xs, int* starts, float* sums, PrefetchPass prefetch)
        where TBlock : struct, IQuantizedBlock
    {
        int recordBytes = TBlock.QuantBytes * GroupRows;
        var ones = Vector256.Create((short)1);
        Vector256<float> s0 = Vector256.Load(sums), s1 = Vector256.Load(sums + 8);
        for (int b = 0; b < count; b++, record += recordBytes, x += 32)
        {
            prefetch.Block(b);
            // p, q: the first half (groups 0..3), u, v: the second (4..7), each group a constant as in PairGroups, the two
            // halves' groups sharing bytes side by side (one token: the other tokens' sums are not touched).
            Vector256<short> p = default, q = default, u = default, v = default, none = default;
            PairGroup<TBlock, Count1>(record, 0, x, 0, ref p, ref none, ref none, ref none, ref q, ref none, ref none, ref none);
            PairGroup<TBlock, Count1>(record, 4, x, 0, ref u, ref none, ref none, ref none, ref v, ref none, ref none, ref none);
            PairGroup<TBlock, Count1>(record, 1, x, 0, ref p, ref none, ref none, ref none, ref q, ref none, ref none, ref none);
            PairGroup<TBlock, Count1>(record, 5, x, 0, ref u, ref none, ref none, ref none, ref v, ref none, ref none, ref none);
            PairGroup<TBlock, Count1>(record, 2, x, 0, ref p, ref none, ref none, ref none, ref q, ref none, ref none, ref none);
            PairGroup<TBlock, Count1>(record, 6, x, 0, ref u, ref none, ref none, ref none, ref v, ref none, ref none, ref none);
            PairGroup<TBlock, Count1>(record, 3, x, 0, ref p, ref none, ref none, ref none, ref q, ref none, ref none, ref none);
            PairGroup<TBlock, Count1>(record, 7, x, 0, ref u, ref none, ref none, ref none, ref v, ref none, ref none, ref none);
            ushort* d = scales + b * GroupRows;
            Vector256<float> low = TBlock.Scales256(d), high = TBlock.Scales256(d + 8);
            var c = Vector256.Create(starts[2 * b]);
            s0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(Avx2.MultiplyAddAdjacent(p, ones) + c), low * xs[2 * b], s0);
            s1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(Avx2.MultiplyAddAdjacent(q, ones) + c), high * xs[2 * b], s1);
            c = Vector256.Create(starts[2 * b + 1]);
            s0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(Avx2.MultiplyAddAdjacent(u, ones) + c), low * xs[2 * b + 1], s0);
            s1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(Avx2.MultiplyAddAdjacent(v, ones) + c), high * xs[2 * b + 1], s1);
        }
        s0.Store(sums);
        s1.Store(sums + 8);
    }

    /// <summary>Half <paramref name="half"/> of a block (groups 4h..4h+3) of sixteen rows against every token's inputs,
    /// scaled into the tokens' float sums by the rows' scales (<paramref name="low"/>: rows 0..7, <paramref name="high"/>:
    /// 8..15) times the token's input scale of the half.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void HalfBlock<TBlock, TTokens>(byte* record, int half, sbyte* x, int stride, float* xs, int* starts, int scaleStride,
        Vector256<float> low, Vector256<float> high, Vector256<short> ones, float* sums)
        where TBlock : struct, IQuantizedBlock
        where TTokens : struct, ICount
    {
        Vector256<int> a0 = default, a1 = default, a2 = default, a3 = default, e0 = default, e1 = default, e2 = default, e3 = default;
        if (Signs<TBlock>())
        {
            SignGroups<TBlock, TTokens>(record, 4 * half, 4 * half + 4, x, stride, ones, ref a0, ref a1, ref a2, ref a3, ref e0, ref e1, ref e2, ref e3);
        }
        else
        {
            Vector256<short> p0 = default, p1 = default, p2 = default, p3 = default, q0 = default, q1 = default, q2 = default, q3 = default;
            PairGroups<TBlock, TTokens>(record, 4 * half, 4 * half + 4, x, stride, ref p0, ref p1, ref p2, ref p3, ref q0, ref q1, ref q2, ref q3);
            var c = Vector256.Create(starts[0]);
            a0 = Avx2.MultiplyAddAdjacent(p0, ones) + c;
            e0 = Avx2.MultiplyAddAdjacent(q0, ones) + c;
            if (TTokens.Value > 1)
            {
                c = Vector256.Create(starts[scaleStride]);
                a1 = Avx2.MultiplyAddAdjacent(p1, ones) + c;
                e1 = Avx2.MultiplyAddAdjacent(q1, ones) + c;
            }
            if (TTokens.Value > 2)
            {
                c = Vector256.Create(starts[2 * scaleStride]);
                a2 = Avx2.MultiplyAddAdjacent(p2, ones) + c;
                e2 = Avx2.MultiplyAddAdjacent(q2, ones) + c;
                c = Vector256.Create(starts[3 * scaleStride]);
                a3 = Avx2.MultiplyAddAdjacent(p3, ones) + c;
                e3 = Avx2.MultiplyAddAdjacent(q3, ones) + c;
            }
        }
        HalfScale(a0, e0, low, high, xs[0], sums);
        if (TTokens.Value > 1) HalfScale(a1, e1, low, high, xs[scaleStride], sums + GroupRows);
        if (TTokens.Value > 2)
        {
            HalfScale(a2, e2, low, high, xs[2 * scaleStride], sums + 2 * GroupRows);
            HalfScale(a3, e3, low, high, xs[3 * scaleStride], sums + 3 * GroupRows);
        }
    }

    /// <summary>sums[0..16) += (rows 0..7: <paramref name="a"/>, rows 8..15: <paramref name="e"/>) · the rows' scales
    /// (widened) · <paramref name="s"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void HalfScale(Vector256<int> a, Vector256<int> e, Vector256<float> low, Vector256<float> high, float s, float* sums)
    {
        Fma.MultiplyAdd(Avx.ConvertToVector256Single(a), low * s, Vector256.Load(sums)).Store(sums);
        Fma.MultiplyAdd(Avx.ConvertToVector256Single(e), high * s, Vector256.Load(sums + 8)).Store(sums + 8);
    }

    /// <summary>y[0..rows) = sums[0..rows).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store(float* sums, float* y, int rows)
    {
        if (rows == GroupRows)
        {
            Vector256.Load(sums).Store(y);
            Vector256.Load(sums + 8).Store(y + 8);
            return;
        }
        for (int i = 0; i < rows; i++) y[i] = sums[i];
    }
}
