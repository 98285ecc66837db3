using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace GemmaGen.Kernels;

/// <summary>
/// The blocked kernel of <see cref="MatMul.Rows{TW}"/> (AVX-512; with AVX2 only, the half-width version in
/// MatMulBlocked256.cs): no dot products, but outer products. Each group of
/// <see cref="GroupRows"/> weight rows is converted to float32 and transposed once per call into thread-local scratch,
/// [cols][32], and the tokens' inputs once per call into blocks of 12 (then 4) tokens, [cols][12]. For each column k
/// the kernel loads the 32 rows' weights as two vectors and multiplies them with each token's input k broadcast: 24
/// accumulators (32 rows × 12 tokens) in registers, two loads and twelve broadcasts per 24 FMAs, and no horizontal
/// sums. The dot-product kernel instead needs a load per FMA and converts every bf16 weight once per 4 tokens; this
/// one converts it once per call and is FMA-bound (BENCHMARKS.md has the ratio). Each output is a float32 sum over
/// the columns in order.
/// </summary>
public static unsafe partial class MatMul
{
    /// <summary>Rows per group of the blocked kernel (two 512-bit vectors of float32).</summary>
    public const int GroupRows = 32;

    /// <summary>Fewest tokens for which <see cref="Rows{TW}"/> takes the blocked kernel; fewer take <see cref="Dots{TW}"/>.</summary>
    public const int MinBlockedTokens = 4;

    private const int TokenBlock = 12, SmallBlock = 4;

    [ThreadStatic]
    private static BlockedScratch? t_blocked;

    /// <summary>Whether this CPU runs the blocked kernel: AVX-512F, or AVX2 and FMA (at half the width).</summary>
    public static bool BlockedSupported => Avx512F.IsSupported || (Avx2.IsSupported && Fma.IsSupported);

    /// <summary>
    /// The blocked kernel: Y[t·yStride + r] = W[r]·X[t·xStride ..] for rows [start, end) and tokens [0, tokens).
    /// Requires <see cref="BlockedSupported"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Blocked<TW>(void* w, int cols, float* x, int xStride, int tokens, float* y, int yStride, int start, int end)
        where TW : struct, IWeightElements
    {
        if (!BlockedSupported) throw new PlatformNotSupportedException("the blocked prefill kernel needs AVX-512F or AVX2");
        if (start >= end || tokens <= 0) return;
        var scratch = BlockedScratch.For(cols, tokens);
        PrepareInputs(x, xStride, tokens, cols, scratch.Inputs);
        BlockedGroups<TW>(w, cols, scratch.Inputs, tokens, y, yStride, start, end, scratch.Weights);
    }

    /// <summary>Floats of the transposed inputs of <paramref name="tokens"/> tokens of <paramref name="cols"/> columns.</summary>
    internal static long InputFloats(int cols, int tokens) => (long)cols * ((tokens + SmallBlock - 1) / SmallBlock * SmallBlock);

    /// <summary>Floats of one transposed group of weight rows.</summary>
    internal static long GroupFloats(int cols) => (long)cols * GroupRows;

    /// <summary>
    /// Transposes the tokens' inputs into blocks of 12 tokens, then of 4 (with AVX2 only, 6 then 2; the last padded with zeros): block by block,
    /// [cols][width] (<see cref="InputFloats"/> floats at <paramref name="xt"/>).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void PrepareInputs(float* x, int xStride, int tokens, int cols, float* xt)
    {
        for (int t = 0; t < tokens;)
        {
            int width = BlockWidth(tokens - t);
            for (int j = 0; j < width; j++)
            {
                float* o = xt + j;
                if (t + j < tokens)
                {
                    float* source = x + (long)(t + j) * xStride;
                    for (int k = 0; k < cols; k++) o[(long)k * width] = source[k];
                }
                else
                {
                    for (int k = 0; k < cols; k++) o[(long)k * width] = 0;
                }
            }
            xt += (long)cols * width;
            t += width;
        }
    }

    /// <summary>Tokens in the next block of inputs: 12 or 4 with AVX-512, 6 or 2 with AVX2.</summary>
    private static int BlockWidth(int remaining) => Avx512F.IsSupported
        ? (remaining >= TokenBlock ? TokenBlock : SmallBlock)
        : (remaining >= TokenBlock256 ? TokenBlock256 : SmallBlock256);

    /// <summary>The groups of rows [start, end) against inputs prepared by <see cref="PrepareInputs"/>; <paramref name="wt"/>
    /// holds <see cref="GroupFloats"/> floats.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void BlockedGroups<TW>(void* w, int cols, float* xt, int tokens, float* y, int yStride, int start, int end, float* wt)
        where TW : struct, IWeightElements
    {
        bool wide = Avx512F.IsSupported;
        int groupRows = wide ? GroupRows : GroupRows256;
        for (int r = start; r < end; r += groupRows)
        {
            int rows = Math.Min(groupRows, end - r);
            if (wide) TransposeGroup<TW>(w, cols, r, rows, wt);
            else TransposeGroup256<TW>(w, cols, r, rows, wt);
            float* xb = xt;
            for (int t = 0; t < tokens;)
            {
                int width = BlockWidth(tokens - t), n = Math.Min(width, tokens - t);
                float* yt = y + (long)t * yStride + r;
                if (width == TokenBlock) Tokens12(wt, xb, cols, yt, yStride, rows, n);
                else if (width == SmallBlock) Tokens4(wt, xb, cols, yt, yStride, rows, n);
                else if (width == TokenBlock256) Tokens6(wt, xb, cols, yt, yStride, rows, n);
                else Tokens2(wt, xb, cols, yt, yStride, rows, n);
                xb += (long)cols * width;
                t += width;
            }
        }
    }

    /// <summary>
    /// Rows [first, first + rows) (at most 32; missing rows are zero) as float32, transposed: wt[k·32 + i] = W[first + i][k].
    /// Sixteen columns of sixteen rows at a time, through a 16×16 transpose in registers. (Prefetching the next group's
    /// rows from here, into L1 or L2, measured slower.)
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void TransposeGroup<TW>(void* w, int cols, int first, int rows, float* wt)
        where TW : struct, IWeightElements
    {
        long rowBytes = (long)cols * TW.Size;
        int whole = cols / 16 * 16;
        for (int half = 0; half < 2; half++)
        {
            for (int c = 0; c < whole; c += 16)
            {
                float* o = wt + (long)c * GroupRows + half * 16;
                var r0 = LoadRow<TW>(w, rowBytes, first + half * 16 + 0, half * 16 + 0 < rows, c);
                var r1 = LoadRow<TW>(w, rowBytes, first + half * 16 + 1, half * 16 + 1 < rows, c);
                var r2 = LoadRow<TW>(w, rowBytes, first + half * 16 + 2, half * 16 + 2 < rows, c);
                var r3 = LoadRow<TW>(w, rowBytes, first + half * 16 + 3, half * 16 + 3 < rows, c);
                var r4 = LoadRow<TW>(w, rowBytes, first + half * 16 + 4, half * 16 + 4 < rows, c);
                var r5 = LoadRow<TW>(w, rowBytes, first + half * 16 + 5, half * 16 + 5 < rows, c);
                var r6 = LoadRow<TW>(w, rowBytes, first + half * 16 + 6, half * 16 + 6 < rows, c);
                var r7 = LoadRow<TW>(w, rowBytes, first + half * 16 + 7, half * 16 + 7 < rows, c);
                var r8 = LoadRow<TW>(w, rowBytes, first + half * 16 + 8, half * 16 + 8 < rows, c);
                var r9 = LoadRow<TW>(w, rowBytes, first + half * 16 + 9, half * 16 + 9 < rows, c);
                var r10 = LoadRow<TW>(w, rowBytes, first + half * 16 + 10, half * 16 + 10 < rows, c);
                var r11 = LoadRow<TW>(w, rowBytes, first + half * 16 + 11, half * 16 + 11 < rows, c);
                var r12 = LoadRow<TW>(w, rowBytes, first + half * 16 + 12, half * 16 + 12 < rows, c);
                var r13 = LoadRow<TW>(w, rowBytes, first + half * 16 + 13, half * 16 + 13 < rows, c);
                var r14 = LoadRow<TW>(w, rowBytes, first + half * 16 + 14, half * 16 + 14 < rows, c);
                var r15 = LoadRow<TW>(w, rowBytes, first + half * 16 + 15, half * 16 + 15 < rows, c);
                Vector512<float> t0 = Avx512F.UnpackLow(r0, r1), t1 = Avx512F.UnpackHigh(r0, r1);
                Vector512<float> t2 = Avx512F.UnpackLow(r2, r3), t3 = Avx512F.UnpackHigh(r2, r3);
                Vector512<float> t4 = Avx512F.UnpackLow(r4, r5), t5 = Avx512F.UnpackHigh(r4, r5);
                Vector512<float> t6 = Avx512F.UnpackLow(r6, r7), t7 = Avx512F.UnpackHigh(r6, r7);
                Vector512<float> t8 = Avx512F.UnpackLow(r8, r9), t9 = Avx512F.UnpackHigh(r8, r9);
                Vector512<float> t10 = Avx512F.UnpackLow(r10, r11), t11 = Avx512F.UnpackHigh(r10, r11);
                Vector512<float> t12 = Avx512F.UnpackLow(r12, r13), t13 = Avx512F.UnpackHigh(r12, r13);
                Vector512<float> t14 = Avx512F.UnpackLow(r14, r15), t15 = Avx512F.UnpackHigh(r14, r15);
                Vector512<float> u0 = Avx512F.UnpackLow(t0.AsDouble(), t2.AsDouble()).AsSingle(), u1 = Avx512F.UnpackHigh(t0.AsDouble(), t2.AsDouble()).AsSingle();
                Vector512<float> u2 = Avx512F.UnpackLow(t1.AsDouble(), t3.AsDouble()).AsSingle(), u3 = Avx512F.UnpackHigh(t1.AsDouble(), t3.AsDouble()).AsSingle();
                Vector512<float> u4 = Avx512F.UnpackLow(t4.AsDouble(), t6.AsDouble()).AsSingle(), u5 = Avx512F.UnpackHigh(t4.AsDouble(), t6.AsDouble()).AsSingle();
                Vector512<float> u6 = Avx512F.UnpackLow(t5.AsDouble(), t7.AsDouble()).AsSingle(), u7 = Avx512F.UnpackHigh(t5.AsDouble(), t7.AsDouble()).AsSingle();
                Vector512<float> u8 = Avx512F.UnpackLow(t8.AsDouble(), t10.AsDouble()).AsSingle(), u9 = Avx512F.UnpackHigh(t8.AsDouble(), t10.AsDouble()).AsSingle();
                Vector512<float> u10 = Avx512F.UnpackLow(t9.AsDouble(), t11.AsDouble()).AsSingle(), u11 = Avx512F.UnpackHigh(t9.AsDouble(), t11.AsDouble()).AsSingle();
                Vector512<float> u12 = Avx512F.UnpackLow(t12.AsDouble(), t14.AsDouble()).AsSingle(), u13 = Avx512F.UnpackHigh(t12.AsDouble(), t14.AsDouble()).AsSingle();
                Vector512<float> u14 = Avx512F.UnpackLow(t13.AsDouble(), t15.AsDouble()).AsSingle(), u15 = Avx512F.UnpackHigh(t13.AsDouble(), t15.AsDouble()).AsSingle();
                Vector512<float> a0 = Avx512F.Shuffle4x128(u0, u4, 0x44), b0 = Avx512F.Shuffle4x128(u8, u12, 0x44);
                Vector512<float> c0 = Avx512F.Shuffle4x128(u0, u4, 0xEE), d0 = Avx512F.Shuffle4x128(u8, u12, 0xEE);
                Avx512F.Shuffle4x128(a0, b0, 0x88).Store(o + 0 * GroupRows);
                Avx512F.Shuffle4x128(a0, b0, 0xDD).Store(o + 4 * GroupRows);
                Avx512F.Shuffle4x128(c0, d0, 0x88).Store(o + 8 * GroupRows);
                Avx512F.Shuffle4x128(c0, d0, 0xDD).Store(o + 12 * GroupRows);
                Vector512<float> a1 = Avx512F.Shuffle4x128(u1, u5, 0x44), b1 = Avx512F.Shuffle4x128(u9, u13, 0x44);
                Vector512<float> c1 = Avx512F.Shuffle4x128(u1, u5, 0xEE), d1 = Avx512F.Shuffle4x128(u9, u13, 0xEE);
                Avx512F.Shuffle4x128(a1, b1, 0x88).Store(o + 1 * GroupRows);
                Avx512F.Shuffle4x128(a1, b1, 0xDD).Store(o + 5 * GroupRows);
                Avx512F.Shuffle4x128(c1, d1, 0x88).Store(o + 9 * GroupRows);
                Avx512F.Shuffle4x128(c1, d1, 0xDD).Store(o + 13 * GroupRows);
                Vector512<float> a2 = Avx512F.Shuffle4x128(u2, u6, 0x44), b2 = Avx512F.Shuffle4x128(u10, u14, 0x44);
                Vector512<float> c2 = Avx512F.Shuffle4x128(u2, u6, 0xEE), d2 = Avx512F.Shuffle4x128(u10, u14, 0xEE);
                Avx512F.Shuffle4x128(a2, b2, 0x88).Store(o + 2 * GroupRows);
                Avx512F.Shuffle4x128(a2, b2, 0xDD).Store(o + 6 * GroupRows);
                Avx512F.Shuffle4x128(c2, d2, 0x88).Store(o + 10 * GroupRows);
                Avx512F.Shuffle4x128(c2, d2, 0xDD).Store(o + 14 * GroupRows);
                Vector512<float> a3 = Avx512F.Shuffle4x128(u3, u7, 0x44), b3 = Avx512F.Shuffle4x128(u11, u15, 0x44);
                Vector512<float> c3 = Avx512F.Shuffle4x128(u3, u7, 0xEE), d3 = Avx512F.Shuffle4x128(u11, u15, 0xEE);
                Avx512F.Shuffle4x128(a3, b3, 0x88).Store(o + 3 * GroupRows);
                Avx512F.Shuffle4x128(a3, b3, 0xDD).Store(o + 7 * GroupRows);
                Avx512F.Shuffle4x128(c3, d3, 0x88).Store(o + 11 * GroupRows);
                Avx512F.Shuffle4x128(c3, d3, 0xDD).Store(o + 15 * GroupRows);
            }
        }
        for (int k = whole; k < cols; k++)
        {
            for (int i = 0; i < GroupRows; i++)
                wt[(long)k * GroupRows + i] = i < rows ? TW.Load((byte*)w + (first + i) * rowBytes, k) : 0f;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> LoadRow<TW>(void* w, long rowBytes, int row, bool present, int c)
        where TW : struct, IWeightElements =>
        present ? TW.Load512((byte*)w + row * rowBytes, c) : Vector512<float>.Zero;

    /// <summary>32 rows × 12 tokens (the first <paramref name="n"/> stored).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tokens12(float* wt, float* xb, int cols, float* y, int yStride, int rows, int n)
    {
        Vector512<float> a00 = default, a01 = default, a02 = default, a03 = default, a04 = default, a05 = default, a06 = default, a07 = default, a08 = default, a09 = default, a010 = default, a011 = default;
        Vector512<float> a10 = default, a11 = default, a12 = default, a13 = default, a14 = default, a15 = default, a16 = default, a17 = default, a18 = default, a19 = default, a110 = default, a111 = default;
        for (int k = 0; k < cols; k++, wt += GroupRows, xb += TokenBlock)
        {
            var w0 = Vector512.Load(wt);
            var w1 = Vector512.Load(wt + 16);
            Vector512<float> x;
            x = Vector512.Create(xb[0]); a00 = Avx512F.FusedMultiplyAdd(w0, x, a00); a10 = Avx512F.FusedMultiplyAdd(w1, x, a10);
            x = Vector512.Create(xb[1]); a01 = Avx512F.FusedMultiplyAdd(w0, x, a01); a11 = Avx512F.FusedMultiplyAdd(w1, x, a11);
            x = Vector512.Create(xb[2]); a02 = Avx512F.FusedMultiplyAdd(w0, x, a02); a12 = Avx512F.FusedMultiplyAdd(w1, x, a12);
            x = Vector512.Create(xb[3]); a03 = Avx512F.FusedMultiplyAdd(w0, x, a03); a13 = Avx512F.FusedMultiplyAdd(w1, x, a13);
            x = Vector512.Create(xb[4]); a04 = Avx512F.FusedMultiplyAdd(w0, x, a04); a14 = Avx512F.FusedMultiplyAdd(w1, x, a14);
            x = Vector512.Create(xb[5]); a05 = Avx512F.FusedMultiplyAdd(w0, x, a05); a15 = Avx512F.FusedMultiplyAdd(w1, x, a15);
            x = Vector512.Create(xb[6]); a06 = Avx512F.FusedMultiplyAdd(w0, x, a06); a16 = Avx512F.FusedMultiplyAdd(w1, x, a16);
            x = Vector512.Create(xb[7]); a07 = Avx512F.FusedMultiplyAdd(w0, x, a07); a17 = Avx512F.FusedMultiplyAdd(w1, x, a17);
            x = Vector512.Create(xb[8]); a08 = Avx512F.FusedMultiplyAdd(w0, x, a08); a18 = Avx512F.FusedMultiplyAdd(w1, x, a18);
            x = Vector512.Create(xb[9]); a09 = Avx512F.FusedMultiplyAdd(w0, x, a09); a19 = Avx512F.FusedMultiplyAdd(w1, x, a19);
            x = Vector512.Create(xb[10]); a010 = Avx512F.FusedMultiplyAdd(w0, x, a010); a110 = Avx512F.FusedMultiplyAdd(w1, x, a110);
            x = Vector512.Create(xb[11]); a011 = Avx512F.FusedMultiplyAdd(w0, x, a011); a111 = Avx512F.FusedMultiplyAdd(w1, x, a111);
        }
        if (0 < n) Store(y + 0L * yStride, rows, a00, a10);
        if (1 < n) Store(y + 1L * yStride, rows, a01, a11);
        if (2 < n) Store(y + 2L * yStride, rows, a02, a12);
        if (3 < n) Store(y + 3L * yStride, rows, a03, a13);
        if (4 < n) Store(y + 4L * yStride, rows, a04, a14);
        if (5 < n) Store(y + 5L * yStride, rows, a05, a15);
        if (6 < n) Store(y + 6L * yStride, rows, a06, a16);
        if (7 < n) Store(y + 7L * yStride, rows, a07, a17);
        if (8 < n) Store(y + 8L * yStride, rows, a08, a18);
        if (9 < n) Store(y + 9L * yStride, rows, a09, a19);
        if (10 < n) Store(y + 10L * yStride, rows, a010, a110);
        if (11 < n) Store(y + 11L * yStride, rows, a011, a111);
    }

    /// <summary>32 rows × 4 tokens (the first <paramref name="n"/> stored).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tokens4(float* wt, float* xb, int cols, float* y, int yStride, int rows, int n)
    {
        Vector512<float> a00 = default, a01 = default, a02 = default, a03 = default;
        Vector512<float> a10 = default, a11 = default, a12 = default, a13 = default;
        for (int k = 0; k < cols; k++, wt += GroupRows, xb += SmallBlock)
        {
            var w0 = Vector512.Load(wt);
            var w1 = Vector512.Load(wt + 16);
            Vector512<float> x;
            x = Vector512.Create(xb[0]); a00 = Avx512F.FusedMultiplyAdd(w0, x, a00); a10 = Avx512F.FusedMultiplyAdd(w1, x, a10);
            x = Vector512.Create(xb[1]); a01 = Avx512F.FusedMultiplyAdd(w0, x, a01); a11 = Avx512F.FusedMultiplyAdd(w1, x, a11);
            x = Vector512.Create(xb[2]); a02 = Avx512F.FusedMultiplyAdd(w0, x, a02); a12 = Avx512F.FusedMultiplyAdd(w1, x, a12);
            x = Vector512.Create(xb[3]); a03 = Avx512F.FusedMultiplyAdd(w0, x, a03); a13 = Avx512F.FusedMultiplyAdd(w1, x, a13);
        }
        if (0 < n) Store(y + 0L * yStride, rows, a00, a10);
        if (1 < n) Store(y + 1L * yStride, rows, a01, a11);
        if (2 < n) Store(y + 2L * yStride, rows, a02, a12);
        if (3 < n) Store(y + 3L * yStride, rows, a03, a13);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store(float* y, int rows, Vector512<float> low, Vector512<float> high)
    {
        if (rows == GroupRows)
        {
            low.Store(y);
            high.Store(y + 16);
            return;
        }
        for (int i = 0; i < rows; i++) y[i] = i < 16 ? low.GetElement(i) : high.GetElement(i - 16);
    }

    /// <summary>A worker thread's buffers for the blocked kernel, grown (never shrunk) to the largest call it has seen.</summary>
    internal sealed class BlockedScratch
    {
        private readonly NativeBuffer _buffer;

        private BlockedScratch(int cols, int tokens)
        {
            Cols = cols;
            Tokens = tokens;
            long weights = (GroupFloats(cols) * sizeof(float) + 63) & ~63L;
            long rows = ((long)GroupRows * cols * sizeof(float) + 63) & ~63L;
            _buffer = new NativeBuffer(weights + rows + InputFloats(cols, tokens) * sizeof(float));
            Weights = (float*)_buffer.Pointer;
            Rows = (float*)((byte*)_buffer.Pointer + weights);
            Inputs = (float*)((byte*)_buffer.Pointer + weights + rows);
        }

        /// <summary>This thread's scratch, grown to fit <paramref name="cols"/> columns and <paramref name="tokens"/> tokens.</summary>
        public static BlockedScratch For(int cols, int tokens)
        {
            var scratch = t_blocked;
            if (scratch == null || scratch.Cols < cols || scratch.Tokens < tokens)
                t_blocked = scratch = new BlockedScratch(Math.Max(cols, scratch?.Cols ?? 0), Math.Max(tokens, scratch?.Tokens ?? 0));
            return scratch;
        }

        public int Cols { get; }

        public int Tokens { get; }

        /// <summary>One transposed group of rows, [cols][32].</summary>
        public float* Weights { get; }

        /// <summary>A group of rows in float32, row-major [32][cols] (for callers that dequantize first).</summary>
        public float* Rows { get; }

        /// <summary>The transposed inputs, <see cref="InputFloats"/>.</summary>
        public float* Inputs { get; }
    }
}
