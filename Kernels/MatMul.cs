using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace GemmaGen.Kernels;

/// <summary>How a weight format's elements widen to float32, for the batched kernels.</summary>
public unsafe interface IWeightElements
{
    /// <summary>16 weights from element <paramref name="index"/> of <paramref name="row"/>.</summary>
    static abstract Vector512<float> Load512(void* row, int index);

    /// <summary>8 weights from element <paramref name="index"/> of <paramref name="row"/>.</summary>
    static abstract Vector256<float> Load256(void* row, int index);

    /// <summary>Weight <paramref name="index"/> of <paramref name="row"/>.</summary>
    static abstract float Load(void* row, int index);

    /// <summary>Bytes per element.</summary>
    static abstract int Size { get; }

    /// <summary>Whether <see cref="LoadPair256"/> and <see cref="LoadPair512"/> give the even-numbered weights of their
    /// span, then the odd-numbered ones (so the input they meet must be laid out the same way), rather than the first
    /// half, then the second.</summary>
    static abstract bool PairsInterleaved { get; }

    /// <summary>16 weights from element <paramref name="index"/> (a multiple of 16) as two vectors, in the order
    /// <see cref="PairsInterleaved"/> says.</summary>
    static abstract void LoadPair256(void* row, int index, out Vector256<float> first, out Vector256<float> second);

    /// <summary>32 weights from element <paramref name="index"/> (a multiple of 32) as two vectors, in the order
    /// <see cref="PairsInterleaved"/> says.</summary>
    static abstract void LoadPair512(void* row, int index, out Vector512<float> first, out Vector512<float> second);
}

/// <summary>float32 weights.</summary>
public readonly unsafe struct F32Elements : IWeightElements
{
    /// <inheritdoc/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Load512(void* row, int index) => Vector512.Load((float*)row + index);

    /// <inheritdoc/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load256(void* row, int index) => Vector256.Load((float*)row + index);

    /// <inheritdoc/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Load(void* row, int index) => ((float*)row)[index];

    /// <inheritdoc/>
    public static int Size => 4;

    /// <inheritdoc/>
    public static bool PairsInterleaved => false;

    /// <inheritdoc/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void LoadPair256(void* row, int index, out Vector256<float> first, out Vector256<float> second)
    {
        first = Vector256.Load((float*)row + index);
        second = Vector256.Load((float*)row + index + 8);
    }

    /// <inheritdoc/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void LoadPair512(void* row, int index, out Vector512<float> first, out Vector512<float> second)
    {
        first = Vector512.Load((float*)row + index);
        second = Vector512.Load((float*)row + index + 16);
    }
}

/// <summary>bfloat16 weights, widened exactly by a 16-bit shift.</summary>
public readonly unsafe struct BF16Elements : IWeightElements
{
    /// <inheritdoc/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Load512(void* row, int index) =>
        (Vector512.WidenLower(Vector256.Load((ushort*)row + index).ToVector512Unsafe()) << 16).AsSingle();

    /// <inheritdoc/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load256(void* row, int index) =>
        (Vector256.WidenLower(Vector128.Load((ushort*)row + index).ToVector256Unsafe()) << 16).AsSingle();

    /// <inheritdoc/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Load(void* row, int index) => BFloat16.ToSingle(((ushort*)row)[index]);

    /// <inheritdoc/>
    public static int Size => 2;

    /// <summary>One load of 32 (64) bytes holds the pairs of weights in its 32-bit lanes: the even one in the low half,
    /// widened by a shift, the odd one in the high half, already a float32 once the low half is masked off: two
    /// in-lane operations for two vectors, where widening in order takes a lane-crossing one per vector.</summary>
    public static bool PairsInterleaved => true;

    /// <inheritdoc/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void LoadPair256(void* row, int index, out Vector256<float> first, out Vector256<float> second)
    {
        var pairs = Vector256.Load((uint*)((ushort*)row + index));
        first = (pairs << 16).AsSingle();
        second = (pairs & Vector256.Create(0xFFFF0000u)).AsSingle();
    }

    /// <inheritdoc/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void LoadPair512(void* row, int index, out Vector512<float> first, out Vector512<float> second)
    {
        var pairs = Vector512.Load((uint*)((ushort*)row + index));
        first = (pairs << 16).AsSingle();
        second = (pairs & Vector512.Create(0xFFFF0000u)).AsSingle();
    }
}

/// <summary>
/// Batched matrix products for prefill: Y[t, r] = W[r]·X[t] for a block of tokens, so each weight row is read from
/// memory once per batch instead of once per token. With AVX-512 or AVX2 and at least <see cref="MinBlockedTokens"/>
/// tokens, the blocked kernel (<see cref="Blocked{TW}"/>: transposed 32-row groups, outer products); otherwise
/// <see cref="Dots{TW}"/>, 4-row × 4-token register blocks of dot products, where every weight vector loaded serves
/// four tokens and every activation vector four rows. Rows and tokens that do not fill a block take narrower paths.
/// </summary>
public static unsafe partial class MatMul
{
    /// <summary>Y[t·yStride + r] = W[r]·X[t·xStride ..] for rows [start, end) and tokens [0, tokens).</summary>
    /// <param name="w">Row 0 of a row-major [rows, cols] matrix.</param>
    /// <typeparam name="TW">The weight format.</typeparam>
    /// <param name="cols">Columns of the matrix (the input width).</param>
    /// <param name="x">Token 0's input; token t's starts <paramref name="xStride"/> floats later.</param>
    /// <param name="xStride">Floats between consecutive tokens' inputs.</param>
    /// <param name="tokens">Tokens in the batch.</param>
    /// <param name="y">Token 0's output row; token t's starts <paramref name="yStride"/> floats later.</param>
    /// <param name="yStride">Floats between consecutive tokens' outputs.</param>
    /// <param name="start">First row.</param>
    /// <param name="end">Row after the last.</param>
    public static void Rows<TW>(void* w, int cols, float* x, int xStride, int tokens, float* y, int yStride, int start, int end)
        where TW : struct, IWeightElements
    {
        if (BlockedSupported && tokens >= MinBlockedTokens) Blocked<TW>(w, cols, x, xStride, tokens, y, yStride, start, end);
        else Dots<TW>(w, cols, x, xStride, tokens, y, yStride, start, end);
    }

    /// <summary>
    /// The dot-product kernel: the same product as <see cref="Rows{TW}"/> in 4-row × 4-token register blocks, each
    /// output a dot product of a weight row and a token's input (any CPU; also used for few tokens or few rows). Whole
    /// vectors of columns at the widest width that fits the row, the rest one by one.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Dots<TW>(void* w, int cols, float* x, int xStride, int tokens, float* y, int yStride, int start, int end)
        where TW : struct, IWeightElements
    {
        if (Vector512.IsHardwareAccelerated && cols >= 16) Dots<Width512, Vector512<float>, TW>(w, cols, x, xStride, tokens, y, yStride, start, end);
        else Dots<Width256, Vector256<float>, TW>(w, cols, x, xStride, tokens, y, yStride, start, end);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Dots<TS, TV, TW>(void* w, int cols, float* x, int xStride, int tokens, float* y, int yStride, int start, int end)
        where TS : struct, IVectorWidth<TV> where TV : struct where TW : struct, IWeightElements
    {
        long rowBytes = (long)cols * TW.Size;
        int r = start;
        for (; r + 4 <= end; r += 4)
        {
            byte* row = (byte*)w + r * rowBytes;
            int t = Blocks4x4<TS, TV, TW>(row, rowBytes, cols, x, xStride, tokens, y + r, yStride);
            for (; t < tokens; t++)
            {
                for (int i = 0; i < 4; i++) y[(long)t * yStride + r + i] = Dot<TS, TV, TW>(row + i * rowBytes, x + (long)t * xStride, cols);
            }
        }
        for (; r < end; r++)
        {
            for (int t = 0; t < tokens; t++) y[(long)t * yStride + r] = Dot<TS, TV, TW>((byte*)w + r * rowBytes, x + (long)t * xStride, cols);
        }
    }

    /// <summary>Four rows times each whole block of four tokens, sixteen sums held in registers (the vector loop only
    /// where <typeparamref name="TS"/> is hardware-accelerated); returns the tokens done.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static int Blocks4x4<TS, TV, TW>(byte* row, long rowBytes, int cols, float* xs, int xStride, int tokens, float* ys, int yStride)
        where TS : struct, IVectorWidth<TV> where TV : struct where TW : struct, IWeightElements
    {
        void* w0 = row, w1 = row + rowBytes, w2 = row + 2 * rowBytes, w3 = row + 3 * rowBytes;
        int t = 0;
        for (; t + 4 <= tokens; t += 4)
        {
            float* x = xs + (long)t * xStride, y = ys + (long)t * yStride;
            float* x0 = x, x1 = x + xStride, x2 = x + 2 * xStride, x3 = x + 3 * xStride;
            TV a00 = TS.Zero, a01 = TS.Zero, a02 = TS.Zero, a03 = TS.Zero, a10 = TS.Zero, a11 = TS.Zero, a12 = TS.Zero, a13 = TS.Zero;
            TV a20 = TS.Zero, a21 = TS.Zero, a22 = TS.Zero, a23 = TS.Zero, a30 = TS.Zero, a31 = TS.Zero, a32 = TS.Zero, a33 = TS.Zero;
            int c = 0;
            for (; TS.IsHardwareAccelerated && c + TS.Count <= cols; c += TS.Count)
            {
                var v0 = TS.Load(x0 + c);
                var v1 = TS.Load(x1 + c);
                var v2 = TS.Load(x2 + c);
                var v3 = TS.Load(x3 + c);
                var w = TS.Load<TW>(w0, c);
                a00 = TS.MultiplyAddEstimate(w, v0, a00); a01 = TS.MultiplyAddEstimate(w, v1, a01);
                a02 = TS.MultiplyAddEstimate(w, v2, a02); a03 = TS.MultiplyAddEstimate(w, v3, a03);
                w = TS.Load<TW>(w1, c);
                a10 = TS.MultiplyAddEstimate(w, v0, a10); a11 = TS.MultiplyAddEstimate(w, v1, a11);
                a12 = TS.MultiplyAddEstimate(w, v2, a12); a13 = TS.MultiplyAddEstimate(w, v3, a13);
                w = TS.Load<TW>(w2, c);
                a20 = TS.MultiplyAddEstimate(w, v0, a20); a21 = TS.MultiplyAddEstimate(w, v1, a21);
                a22 = TS.MultiplyAddEstimate(w, v2, a22); a23 = TS.MultiplyAddEstimate(w, v3, a23);
                w = TS.Load<TW>(w3, c);
                a30 = TS.MultiplyAddEstimate(w, v0, a30); a31 = TS.MultiplyAddEstimate(w, v1, a31);
                a32 = TS.MultiplyAddEstimate(w, v2, a32); a33 = TS.MultiplyAddEstimate(w, v3, a33);
            }
            float s00 = TS.Sum(a00), s01 = TS.Sum(a01), s02 = TS.Sum(a02), s03 = TS.Sum(a03);
            float s10 = TS.Sum(a10), s11 = TS.Sum(a11), s12 = TS.Sum(a12), s13 = TS.Sum(a13);
            float s20 = TS.Sum(a20), s21 = TS.Sum(a21), s22 = TS.Sum(a22), s23 = TS.Sum(a23);
            float s30 = TS.Sum(a30), s31 = TS.Sum(a31), s32 = TS.Sum(a32), s33 = TS.Sum(a33);
            for (; c < cols; c++)
            {
                float e0 = TW.Load(w0, c), e1 = TW.Load(w1, c), e2 = TW.Load(w2, c), e3 = TW.Load(w3, c);
                s00 += e0 * x0[c]; s01 += e0 * x1[c]; s02 += e0 * x2[c]; s03 += e0 * x3[c];
                s10 += e1 * x0[c]; s11 += e1 * x1[c]; s12 += e1 * x2[c]; s13 += e1 * x3[c];
                s20 += e2 * x0[c]; s21 += e2 * x1[c]; s22 += e2 * x2[c]; s23 += e2 * x3[c];
                s30 += e3 * x0[c]; s31 += e3 * x1[c]; s32 += e3 * x2[c]; s33 += e3 * x3[c];
            }
            float* y0 = y, y1 = y + yStride, y2 = y + 2 * yStride, y3 = y + 3 * yStride;
            y0[0] = s00; y0[1] = s10; y0[2] = s20; y0[3] = s30;
            y1[0] = s01; y1[1] = s11; y1[2] = s21; y1[3] = s31;
            y2[0] = s02; y2[1] = s12; y2[2] = s22; y2[3] = s32;
            y3[0] = s03; y3[1] = s13; y3[2] = s23; y3[3] = s33;
        }
        return t;
    }

    /// <summary>One row times one token.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Dot<TS, TV, TW>(void* w, float* x, int cols)
        where TS : struct, IVectorWidth<TV> where TV : struct where TW : struct, IWeightElements
    {
        var a = TS.Zero;
        int c = 0;
        for (; TS.IsHardwareAccelerated && c + TS.Count <= cols; c += TS.Count) a = TS.MultiplyAddEstimate(TS.Load<TW>(w, c), TS.Load(x + c), a);
        float sum = TS.Sum(a);
        for (; c < cols; c++) sum += TW.Load(w, c) * x[c];
        return sum;
    }
}
