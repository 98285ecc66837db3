using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace GemmaGen.Kernels;

/// <summary>
/// The blocked kernel of <see cref="MatMul.Rows{TW}"/>: no dot products, but outer products. Written once over the
/// vector width (<see cref="IVectorWidth{TV}"/>): AVX-512, or with AVX2 only the same at half the width. Each group of
/// two vectors of weight rows (32 rows with AVX-512, 16 with AVX2) is converted to float32 and transposed once per call
/// into thread-local scratch, [cols][32], and the tokens' inputs once per call into blocks of 12 (then 4) tokens,
/// [cols][12] (6 then 2 with AVX2). For each column k the kernel loads the group's weights as two vectors and
/// multiplies them with each token's input k broadcast: 24 accumulators (32 rows × 12 tokens) in registers, two loads
/// and twelve broadcasts per 24 FMAs, and no horizontal sums (with AVX2's 16 registers, 12 accumulators). The
/// dot-product kernel instead needs a load per FMA and converts every bf16 weight once per 4 tokens; this one converts
/// it once per call and is FMA-bound (BENCHMARKS.md has the ratio). Each output is a float32 sum over the columns in
/// order.
/// </summary>
public static unsafe partial class MatMul
{
    /// <summary>Rows per group of the blocked kernel with AVX-512 (two 512-bit vectors of float32); with AVX2 a
    /// group is half of it.</summary>
    public const int GroupRows = 32;

    /// <summary>Fewest tokens for which <see cref="Rows{TW}"/> takes the blocked kernel; fewer take <see cref="Dots{TW}"/>.</summary>
    public const int MinBlockedTokens = 4;

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

    /// <summary>Floats of the transposed inputs of <paramref name="tokens"/> tokens of <paramref name="cols"/> columns
    /// (padded to a multiple of the widest small block, which every width's blocks fill).</summary>
    internal static long InputFloats(int cols, int tokens) =>
        (long)cols * ((tokens + Width512.SmallBlock - 1) / Width512.SmallBlock * Width512.SmallBlock);

    /// <summary>Floats of one transposed group of weight rows.</summary>
    internal static long GroupFloats(int cols) => (long)cols * GroupRows;

    /// <summary>
    /// Transposes the tokens' inputs into blocks of 12 tokens, then of 4 (with AVX2 only, 6 then 2; the last padded with
    /// zeros): block by block, [cols][width] (<see cref="InputFloats"/> floats at <paramref name="xt"/>).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void PrepareInputs(float* x, int xStride, int tokens, int cols, float* xt)
    {
        if (Avx512F.IsSupported) PrepareInputs<Width512, Vector512<float>>(x, xStride, tokens, cols, xt);
        else PrepareInputs<Width256, Vector256<float>>(x, xStride, tokens, cols, xt);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PrepareInputs<TS, TV>(float* x, int xStride, int tokens, int cols, float* xt)
        where TS : struct, IVectorWidth<TV> where TV : struct
    {
        for (int t = 0; t < tokens;)
        {
            int width = BlockWidth<TS, TV>(tokens - t);
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

    /// <summary>Tokens in the next block of inputs.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int BlockWidth<TS, TV>(int remaining) where TS : struct, IVectorWidth<TV> where TV : struct =>
        remaining >= TS.TokenBlock ? TS.TokenBlock : TS.SmallBlock;

    /// <summary>The groups of rows [start, end) against inputs prepared by <see cref="PrepareInputs"/>; <paramref name="wt"/>
    /// holds <see cref="GroupFloats"/> floats.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void BlockedGroups<TW>(void* w, int cols, float* xt, int tokens, float* y, int yStride, int start, int end, float* wt)
        where TW : struct, IWeightElements
    {
        if (Avx512F.IsSupported) BlockedGroups<Width512, Vector512<float>, TW>(w, cols, xt, tokens, y, yStride, start, end, wt);
        else BlockedGroups<Width256, Vector256<float>, TW>(w, cols, xt, tokens, y, yStride, start, end, wt);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void BlockedGroups<TS, TV, TW>(void* w, int cols, float* xt, int tokens, float* y, int yStride, int start, int end, float* wt)
        where TS : struct, IVectorWidth<TV> where TV : struct where TW : struct, IWeightElements
    {
        for (int r = start; r < end; r += 2 * TS.Count)
        {
            int rows = Math.Min(2 * TS.Count, end - r);
            TransposeGroup<TS, TV, TW>(w, cols, r, rows, wt);
            float* xb = xt;
            for (int t = 0; t < tokens;)
            {
                int width = BlockWidth<TS, TV>(tokens - t), n = Math.Min(width, tokens - t);
                float* yt = y + (long)t * yStride + r;
                if (width == TS.TokenBlock) Tokens<TS, TV, FullBlock>(wt, xb, cols, yt, yStride, rows, n);
                else Tokens<TS, TV, TailBlock>(wt, xb, cols, yt, yStride, rows, n);
                xb += (long)cols * width;
                t += width;
            }
        }
    }

    /// <summary>
    /// Rows [first, first + rows) (at most two vectors' worth; missing rows are zero) as float32, transposed:
    /// wt[k·2V + i] = W[first + i][k] for V lanes, each half through the width's transpose in registers. (Prefetching
    /// the next group's rows from here, into L1 or L2, measured slower.)
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void TransposeGroup<TS, TV, TW>(void* w, int cols, int first, int rows, float* wt)
        where TS : struct, IVectorWidth<TV> where TV : struct where TW : struct, IWeightElements
    {
        int group = 2 * TS.Count;
        long rowBytes = (long)cols * TW.Size;
        int whole = cols / TS.Count * TS.Count;
        for (int half = 0; half < 2; half++) TS.TransposeRows<TW>(w, rowBytes, first + half * TS.Count, rows - half * TS.Count, whole, wt + half * TS.Count, group);
        for (int k = whole; k < cols; k++)
        {
            for (int i = 0; i < group; i++)
                wt[(long)k * group + i] = i < rows ? TW.Load((byte*)w + (first + i) * rowBytes, k) : 0f;
        }
    }

    /// <summary>Which of a width's token blocks an instantiation of <see cref="Tokens{TS, TV, TB}"/> runs.</summary>
    private interface ITokenBlock
    {
        static abstract bool Tail { get; }
    }

    /// <summary><see cref="IVectorWidth{TV}.TokenBlock"/> tokens.</summary>
    private readonly struct FullBlock : ITokenBlock
    {
        public static bool Tail => false;
    }

    /// <summary><see cref="IVectorWidth{TV}.SmallBlock"/> tokens.</summary>
    private readonly struct TailBlock : ITokenBlock
    {
        public static bool Tail => true;
    }

    /// <summary>
    /// Two vectors of rows × a block of tokens (the first <paramref name="n"/> stored): 32 × 12 or 32 × 4 with AVX-512,
    /// 16 × 6 or 16 × 2 with AVX2. The block is a constant of each instantiation, so the unused accumulators vanish.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tokens<TS, TV, TB>(float* wt, float* xb, int cols, float* y, int yStride, int rows, int n)
        where TS : struct, IVectorWidth<TV> where TV : struct where TB : struct, ITokenBlock
    {
        int block = TB.Tail ? TS.SmallBlock : TS.TokenBlock;
        TV a00 = TS.Zero, a01 = TS.Zero, a02 = TS.Zero, a03 = TS.Zero, a04 = TS.Zero, a05 = TS.Zero, a06 = TS.Zero, a07 = TS.Zero, a08 = TS.Zero, a09 = TS.Zero, a010 = TS.Zero, a011 = TS.Zero;
        TV a10 = TS.Zero, a11 = TS.Zero, a12 = TS.Zero, a13 = TS.Zero, a14 = TS.Zero, a15 = TS.Zero, a16 = TS.Zero, a17 = TS.Zero, a18 = TS.Zero, a19 = TS.Zero, a110 = TS.Zero, a111 = TS.Zero;
        for (int k = 0; k < cols; k++, wt += 2 * TS.Count, xb += block)
        {
            var w0 = TS.Load(wt);
            var w1 = TS.Load(wt + TS.Count);
            TV x;
            x = TS.Broadcast(xb[0]); a00 = TS.FusedMultiplyAdd(w0, x, a00); a10 = TS.FusedMultiplyAdd(w1, x, a10);
            x = TS.Broadcast(xb[1]); a01 = TS.FusedMultiplyAdd(w0, x, a01); a11 = TS.FusedMultiplyAdd(w1, x, a11);
            if (block > 2)
            {
                x = TS.Broadcast(xb[2]); a02 = TS.FusedMultiplyAdd(w0, x, a02); a12 = TS.FusedMultiplyAdd(w1, x, a12);
                x = TS.Broadcast(xb[3]); a03 = TS.FusedMultiplyAdd(w0, x, a03); a13 = TS.FusedMultiplyAdd(w1, x, a13);
            }
            if (block > 4)
            {
                x = TS.Broadcast(xb[4]); a04 = TS.FusedMultiplyAdd(w0, x, a04); a14 = TS.FusedMultiplyAdd(w1, x, a14);
                x = TS.Broadcast(xb[5]); a05 = TS.FusedMultiplyAdd(w0, x, a05); a15 = TS.FusedMultiplyAdd(w1, x, a15);
            }
            if (block > 6)
            {
                x = TS.Broadcast(xb[6]); a06 = TS.FusedMultiplyAdd(w0, x, a06); a16 = TS.FusedMultiplyAdd(w1, x, a16);
                x = TS.Broadcast(xb[7]); a07 = TS.FusedMultiplyAdd(w0, x, a07); a17 = TS.FusedMultiplyAdd(w1, x, a17);
                x = TS.Broadcast(xb[8]); a08 = TS.FusedMultiplyAdd(w0, x, a08); a18 = TS.FusedMultiplyAdd(w1, x, a18);
                x = TS.Broadcast(xb[9]); a09 = TS.FusedMultiplyAdd(w0, x, a09); a19 = TS.FusedMultiplyAdd(w1, x, a19);
                x = TS.Broadcast(xb[10]); a010 = TS.FusedMultiplyAdd(w0, x, a010); a110 = TS.FusedMultiplyAdd(w1, x, a110);
                x = TS.Broadcast(xb[11]); a011 = TS.FusedMultiplyAdd(w0, x, a011); a111 = TS.FusedMultiplyAdd(w1, x, a111);
            }
        }
        if (0 < n) Store<TS, TV>(y + 0L * yStride, rows, a00, a10);
        if (1 < n) Store<TS, TV>(y + 1L * yStride, rows, a01, a11);
        if (block > 2 && 2 < n) Store<TS, TV>(y + 2L * yStride, rows, a02, a12);
        if (block > 2 && 3 < n) Store<TS, TV>(y + 3L * yStride, rows, a03, a13);
        if (block > 4 && 4 < n) Store<TS, TV>(y + 4L * yStride, rows, a04, a14);
        if (block > 4 && 5 < n) Store<TS, TV>(y + 5L * yStride, rows, a05, a15);
        if (block > 6 && 6 < n) Store<TS, TV>(y + 6L * yStride, rows, a06, a16);
        if (block > 6 && 7 < n) Store<TS, TV>(y + 7L * yStride, rows, a07, a17);
        if (block > 6 && 8 < n) Store<TS, TV>(y + 8L * yStride, rows, a08, a18);
        if (block > 6 && 9 < n) Store<TS, TV>(y + 9L * yStride, rows, a09, a19);
        if (block > 6 && 10 < n) Store<TS, TV>(y + 10L * yStride, rows, a010, a110);
        if (block > 6 && 11 < n) Store<TS, TV>(y + 11L * yStride, rows, a011, a111);
    }

    /// <summary>Two vectors of rows of one token's output (the first <paramref name="rows"/> of them).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store<TS, TV>(float* y, int rows, TV low, TV high) where TS : struct, IVectorWidth<TV> where TV : struct
    {
        if (rows == 2 * TS.Count)
        {
            TS.Store(low, y);
            TS.Store(high, y + TS.Count);
            return;
        }
        for (int i = 0; i < rows; i++) y[i] = i < TS.Count ? TS.Lane(low, i) : TS.Lane(high, i - TS.Count);
    }

    /// <summary>A worker thread's buffers for the blocked kernel, grown (never shrunk) to the largest call it has seen.</summary>
    internal sealed class BlockedScratch
    {
        private readonly NativeBuffer _buffer;

        private BlockedScratch(int cols, int tokens)
        {
            Cols = cols;
            Tokens = tokens;
            long weights = NativeBuffer.Align(GroupFloats(cols) * sizeof(float));
            long rows = NativeBuffer.Align((long)GroupRows * cols * sizeof(float));
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
