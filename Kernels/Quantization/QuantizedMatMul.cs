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
/// <para>
/// Inputs: every token's x is quantized to int8 in blocks of 32 (x̂ = round(x · 127 / max|x|), ties to even; scale
/// s = max|x| / 127), once per call and thread. The rounding is at most s/2 per element (0.4% of the block's
/// largest input), the same scheme llama.cpp uses for its quantized products.
/// </para>
/// <para>
/// Weights: each group of <see cref="GroupRows"/> rows is repacked once per call into thread-local scratch, block by
/// block, as eight 32-byte vectors whose 32-bit lane i holds four consecutive weights of row i (a transpose of the
/// rows' 4-byte groups), made unsigned (<see cref="IQuantizedBlock.Unsigned"/>; Q8_0: q + 128; Q4_0: the stored nibble
/// q + 8), followed by the eight rows' scales as float32. One vector of weights then meets a broadcast group of four input bytes of a token: lane i
/// accumulates row i's block sum, so the block scales are applied to eight rows at once (convert, multiply, add)
/// and no horizontal sum is needed. The weight offset is taken off by starting each block's sum at
/// −offset·Σ x̂ of the block. A register block is eight rows × four tokens.
/// </para>
/// <para>
/// A row's result is Σ over blocks of (weight scale · input scale) · Σ q·x̂, the inner sums exact in int32; it
/// differs from the product of the dequantized row with x only by the input rounding and the float summation order.
/// </para>
/// </summary>
public static unsafe class QuantizedMatMul
{
    /// <summary>Rows per repacked group (the lanes of a 256-bit vector of int32 sums).</summary>
    public const int GroupRows = 8;

    /// <summary>Largest magnitude of a quantized input value.</summary>
    public const int InputMax = sbyte.MaxValue;

    /// <summary>Bytes of one block of a repacked group: eight vectors of quants and eight float32 scales.</summary>
    private const int GroupBlockBytes = GroupRows * QuantizedLayout.BlockSize + GroupRows * sizeof(float);

    [ThreadStatic]
    private static Scratch? t_scratch;

    /// <summary>Whether this CPU runs the integer kernels for <paramref name="format"/>: AVX-VNNI for every block
    /// format, or AVX2 for Q4_0 (whose byte pairs fit int16).</summary>
    public static bool IsSupported(WeightFormat format) => format is QuantizedFormat { IntegerMatMulSupported: true };

    /// <summary>Whether this CPU runs the integer kernels for <typeparamref name="TBlock"/>.</summary>
    internal static bool IsSupported<TBlock>() where TBlock : struct, IQuantizedBlock =>
        Avx2.IsSupported && Fma.IsSupported && (AvxVnni.IsSupported || PairsFit<TBlock>());

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

    /// <summary>The kernel for <typeparamref name="TBlock"/>: AVX-VNNI (<paramref name="vnni"/>) or AVX2 pairs.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Rows<TBlock>(WeightMatrix matrix, float* x, int xStride, int tokens, float* y, int yStride, int start, int end, bool vnni)
        where TBlock : struct, IQuantizedBlock
    {
        if (vnni ? !AvxVnni.IsSupported || !IsSupported<TBlock>() : !(Avx2.IsSupported && Fma.IsSupported && PairsFit<TBlock>()))
            throw new PlatformNotSupportedException($"the integer prefill kernels for {matrix.Format} need {(vnni || !PairsFit<TBlock>() ? "AVX-VNNI" : "AVX2")}");
        if (start < 0 || end > matrix.Rows || start > end)
            throw new ArgumentOutOfRangeException(nameof(start), $"rows [{start}, {end}) are not within [0, {matrix.Rows})");
        if (start >= end || tokens <= 0) return;

        int cols = matrix.Cols, blocks = cols / QuantizedLayout.BlockSize;
        var scratch = t_scratch;
        if (scratch == null || scratch.Cols < cols || scratch.Tokens < tokens)
            t_scratch = scratch = new Scratch(Math.Max(cols, scratch?.Cols ?? 0), Math.Max(tokens, scratch?.Tokens ?? 0));
        for (int t = 0; t < tokens; t++)
            QuantizeInput(x + (long)t * xStride, blocks, TBlock.UnsignedOffset, scratch.Input + (long)t * cols, scratch.InputScales + t * blocks, scratch.InputStarts + t * blocks);

        byte* group = scratch.Group;
        for (int r = start; r < end; r += GroupRows)
        {
            int rows = Math.Min(GroupRows, end - r);
            Repack<TBlock>(matrix, r, rows, Math.Min(GroupRows, end - r - rows), group);
            for (int t = 0, n; t < tokens; t += n)
            {
                n = tokens - t >= 4 ? 4 : 1;
                sbyte* input = scratch.Input + (long)t * cols;
                float* scales = scratch.InputScales + t * blocks, outputs = y + (long)t * yStride + r;
                int* starts = scratch.InputStarts + t * blocks;
                if (n == 4 && vnni) Tokens4(group, blocks, input, cols, scales, starts, outputs, yStride, rows);
                else if (n == 4) PairTokens4(group, blocks, input, cols, scales, starts, outputs, yStride, rows);
                else if (vnni) Token1(group, blocks, input, scales, starts, outputs, rows);
                else PairToken1(group, blocks, input, scales, starts, outputs, rows);
            }
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
    /// Repacks rows [<paramref name="first"/>, first + <paramref name="rows"/>) (at most eight; lanes past them hold
    /// copies of the last row) into <paramref name="group"/>: per block, vector g (g = 0..7) holds in lane i the
    /// unsigned weights of row i at columns 4g..4g+3 of the block, then the eight rows' scales as float32. Meanwhile it
    /// prefetches the next <paramref name="next"/> rows (the next group), so that their loads overlap this group's
    /// products instead of stalling the next repack.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Repack<TBlock>(WeightMatrix matrix, int first, int rows, int next, byte* group)
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
        // Whole panels (the pool's ranges start at multiples of 16): the eight scales of a block are two runs of four.
        bool aligned = first % n == 0;
        ushort* scales0 = (ushort*)Panel(first), scales1 = rows > n ? (ushort*)Panel(first + n) : scales0;
        byte* prefetch0 = next > 0 ? Panel(first + GroupRows) : null, prefetch1 = next > n ? Panel(first + GroupRows + n) : prefetch0;
        for (int b = 0; b < blocks; b++, group += GroupBlockBytes)
        {
            long at = (long)b * n * quantBytes;
            if (prefetch0 != null)
            {
                Sse.Prefetch0(prefetch0 + scaleBytes + at);
                Sse.Prefetch0(prefetch1 + scaleBytes + at);
                if (n * TBlock.QuantBytes > 64)
                {
                    Sse.Prefetch0(prefetch0 + scaleBytes + at + 64);
                    Sse.Prefetch0(prefetch1 + scaleBytes + at + 64);
                }
                if ((b & 7) == 0)
                {
                    Sse.Prefetch0(prefetch0 + b * n * sizeof(ushort));
                    Sse.Prefetch0(prefetch1 + b * n * sizeof(ushort));
                }
            }
            Vector256<int> r0 = TBlock.Unsigned(quants[0] + at), r1 = TBlock.Unsigned(quants[1] + at), r2 = TBlock.Unsigned(quants[2] + at), r3 = TBlock.Unsigned(quants[3] + at);
            Vector256<int> r4 = TBlock.Unsigned(quants[4] + at), r5 = TBlock.Unsigned(quants[5] + at), r6 = TBlock.Unsigned(quants[6] + at), r7 = TBlock.Unsigned(quants[7] + at);

            // 8×8 transpose of 32-bit groups: row i, group g → vector g, lane i.
            Vector256<int> t0 = Avx2.UnpackLow(r0, r1), t1 = Avx2.UnpackHigh(r0, r1), t2 = Avx2.UnpackLow(r2, r3), t3 = Avx2.UnpackHigh(r2, r3);
            Vector256<int> t4 = Avx2.UnpackLow(r4, r5), t5 = Avx2.UnpackHigh(r4, r5), t6 = Avx2.UnpackLow(r6, r7), t7 = Avx2.UnpackHigh(r6, r7);
            Vector256<int> u0 = Avx2.UnpackLow(t0.AsInt64(), t2.AsInt64()).AsInt32(), u1 = Avx2.UnpackHigh(t0.AsInt64(), t2.AsInt64()).AsInt32();
            Vector256<int> u2 = Avx2.UnpackLow(t1.AsInt64(), t3.AsInt64()).AsInt32(), u3 = Avx2.UnpackHigh(t1.AsInt64(), t3.AsInt64()).AsInt32();
            Vector256<int> u4 = Avx2.UnpackLow(t4.AsInt64(), t6.AsInt64()).AsInt32(), u5 = Avx2.UnpackHigh(t4.AsInt64(), t6.AsInt64()).AsInt32();
            Vector256<int> u6 = Avx2.UnpackLow(t5.AsInt64(), t7.AsInt64()).AsInt32(), u7 = Avx2.UnpackHigh(t5.AsInt64(), t7.AsInt64()).AsInt32();
            int* g = (int*)group;
            Avx2.Permute2x128(u0, u4, 0x20).Store(g);
            Avx2.Permute2x128(u1, u5, 0x20).Store(g + 8);
            Avx2.Permute2x128(u2, u6, 0x20).Store(g + 16);
            Avx2.Permute2x128(u3, u7, 0x20).Store(g + 24);
            Avx2.Permute2x128(u0, u4, 0x31).Store(g + 32);
            Avx2.Permute2x128(u1, u5, 0x31).Store(g + 40);
            Avx2.Permute2x128(u2, u6, 0x31).Store(g + 48);
            Avx2.Permute2x128(u3, u7, 0x31).Store(g + 56);

            float* s = (float*)(group + GroupRows * QuantizedLayout.BlockSize);
            if (aligned)
            {
                var bits = Vector128.Create(*(ulong*)(scales0 + b * n), *(ulong*)(scales1 + b * n)).AsUInt16();
                (Vector256.WidenLower(bits.ToVector256Unsafe()) << 16).AsSingle().Store(s);
            }
            else
            {
                for (int i = 0; i < GroupRows; i++) s[i] = BFloat16.ToSingle(scales[i][b * n]);
            }
        }
    }

    /// <summary>Eight rows × four tokens: the tokens' inputs are <paramref name="stride"/> bytes apart.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tokens4(byte* group, int blocks, sbyte* x, int stride, float* xs, int* starts, float* y, int yStride, int rows)
    {
        sbyte* x0 = x, x1 = x + stride, x2 = x + 2 * stride, x3 = x + 3 * stride;
        float* s0 = xs, s1 = xs + blocks, s2 = xs + 2 * blocks, s3 = xs + 3 * blocks;
        int* c0 = starts, c1 = starts + blocks, c2 = starts + 2 * blocks, c3 = starts + 3 * blocks;
        Vector256<float> o0 = default, o1 = default, o2 = default, o3 = default;
        for (int b = 0; b < blocks; b++, group += GroupBlockBytes, x0 += 32, x1 += 32, x2 += 32, x3 += 32)
        {
            var a0 = Vector256.Create(c0[b]);
            var a1 = Vector256.Create(c1[b]);
            var a2 = Vector256.Create(c2[b]);
            var a3 = Vector256.Create(c3[b]);
            for (int g = 0; g < 8; g++)
            {
                var w = Vector256.Load(group + 32 * g);
                a0 = AvxVnni.MultiplyWideningAndAdd(a0, w, Vector256.Create(*(int*)(x0 + 4 * g)).AsSByte());
                a1 = AvxVnni.MultiplyWideningAndAdd(a1, w, Vector256.Create(*(int*)(x1 + 4 * g)).AsSByte());
                a2 = AvxVnni.MultiplyWideningAndAdd(a2, w, Vector256.Create(*(int*)(x2 + 4 * g)).AsSByte());
                a3 = AvxVnni.MultiplyWideningAndAdd(a3, w, Vector256.Create(*(int*)(x3 + 4 * g)).AsSByte());
            }
            var d = Vector256.Load((float*)(group + 256));
            o0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(a0), d * s0[b], o0);
            o1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(a1), d * s1[b], o1);
            o2 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(a2), d * s2[b], o2);
            o3 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(a3), d * s3[b], o3);
        }
        Store(o0, y, rows);
        Store(o1, y + yStride, rows);
        Store(o2, y + 2 * yStride, rows);
        Store(o3, y + 3 * yStride, rows);
    }

    /// <summary>Eight rows × one token.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Token1(byte* group, int blocks, sbyte* x, float* xs, int* starts, float* y, int rows)
    {
        Vector256<float> o = default;
        for (int b = 0; b < blocks; b++, group += GroupBlockBytes, x += 32)
        {
            var a = Vector256.Create(starts[b]);
            for (int g = 0; g < 8; g++)
                a = AvxVnni.MultiplyWideningAndAdd(a, Vector256.Load(group + 32 * g), Vector256.Create(*(int*)(x + 4 * g)).AsSByte());
            o = Fma.MultiplyAdd(Avx.ConvertToVector256Single(a), Vector256.Load((float*)(group + 256)) * xs[b], o);
        }
        Store(o, y, rows);
    }

    /// <summary>
    /// Without AVX-VNNI (Q4_0), eight rows × four tokens: per group of four columns <c>vpmaddubsw</c> sums each row's
    /// two byte pairs into int16, kept in int16 for the whole block (at most 8·3810), then widened once
    /// (<c>vpmaddwd</c> with ones gives each row's int32 sum).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PairTokens4(byte* group, int blocks, sbyte* x, int stride, float* xs, int* starts, float* y, int yStride, int rows)
    {
        sbyte* x0 = x, x1 = x + stride, x2 = x + 2 * stride, x3 = x + 3 * stride;
        float* s0 = xs, s1 = xs + blocks, s2 = xs + 2 * blocks, s3 = xs + 3 * blocks;
        int* c0 = starts, c1 = starts + blocks, c2 = starts + 2 * blocks, c3 = starts + 3 * blocks;
        var ones = Vector256.Create((short)1);
        Vector256<float> o0 = default, o1 = default, o2 = default, o3 = default;
        for (int b = 0; b < blocks; b++, group += GroupBlockBytes, x0 += 32, x1 += 32, x2 += 32, x3 += 32)
        {
            Vector256<short> p0 = default, p1 = default, p2 = default, p3 = default;
            for (int g = 0; g < 8; g++)
            {
                var w = Vector256.Load(group + 32 * g);
                p0 += Avx2.MultiplyAddAdjacent(w, Vector256.Create(*(int*)(x0 + 4 * g)).AsSByte());
                p1 += Avx2.MultiplyAddAdjacent(w, Vector256.Create(*(int*)(x1 + 4 * g)).AsSByte());
                p2 += Avx2.MultiplyAddAdjacent(w, Vector256.Create(*(int*)(x2 + 4 * g)).AsSByte());
                p3 += Avx2.MultiplyAddAdjacent(w, Vector256.Create(*(int*)(x3 + 4 * g)).AsSByte());
            }
            var d = Vector256.Load((float*)(group + 256));
            o0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(Avx2.MultiplyAddAdjacent(p0, ones) + Vector256.Create(c0[b])), d * s0[b], o0);
            o1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(Avx2.MultiplyAddAdjacent(p1, ones) + Vector256.Create(c1[b])), d * s1[b], o1);
            o2 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(Avx2.MultiplyAddAdjacent(p2, ones) + Vector256.Create(c2[b])), d * s2[b], o2);
            o3 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(Avx2.MultiplyAddAdjacent(p3, ones) + Vector256.Create(c3[b])), d * s3[b], o3);
        }
        Store(o0, y, rows);
        Store(o1, y + yStride, rows);
        Store(o2, y + 2 * yStride, rows);
        Store(o3, y + 3 * yStride, rows);
    }

    /// <summary>Without AVX-VNNI (Q4_0), eight rows × one token.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PairToken1(byte* group, int blocks, sbyte* x, float* xs, int* starts, float* y, int rows)
    {
        var ones = Vector256.Create((short)1);
        Vector256<float> o = default;
        for (int b = 0; b < blocks; b++, group += GroupBlockBytes, x += 32)
        {
            Vector256<short> p = default;
            for (int g = 0; g < 8; g++)
                p += Avx2.MultiplyAddAdjacent(Vector256.Load(group + 32 * g), Vector256.Create(*(int*)(x + 4 * g)).AsSByte());
            var sum = Avx2.MultiplyAddAdjacent(p, ones) + Vector256.Create(starts[b]);
            o = Fma.MultiplyAdd(Avx.ConvertToVector256Single(sum), Vector256.Load((float*)(group + 256)) * xs[b], o);
        }
        Store(o, y, rows);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store(Vector256<float> o, float* y, int rows)
    {
        if (rows == GroupRows) o.Store(y);
        else for (int i = 0; i < rows; i++) y[i] = o.GetElement(i);
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
            long group = (long)blocks * GroupBlockBytes;
            _buffer = new NativeBuffer(input + 2 * perBlock + group);
            byte* p = (byte*)_buffer.Pointer;
            Input = (sbyte*)p;
            InputScales = (float*)(p + input);
            InputStarts = (int*)(p + input + perBlock);
            Group = p + input + 2 * perBlock;
        }

        public int Cols { get; }

        public int Tokens { get; }

        /// <summary>x̂ of every token, [tokens][cols].</summary>
        public sbyte* Input { get; }

        /// <summary>The input scales, [tokens][blocks].</summary>
        public float* InputScales { get; }

        /// <summary>Where each block's integer sum starts (−offset·Σ x̂), [tokens][blocks].</summary>
        public int* InputStarts { get; }

        /// <summary>The current group of rows, repacked.</summary>
        public byte* Group { get; }

        private static long Align(long bytes) => (bytes + 63) & ~63L;
    }
}
