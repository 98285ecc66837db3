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
    /// output a dot product of a weight row and a token's input (any CPU; also used for few tokens or few rows).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Dots<TW>(void* w, int cols, float* x, int xStride, int tokens, float* y, int yStride, int start, int end)
        where TW : struct, IWeightElements
    {
        long rowBytes = (long)cols * TW.Size;
        int r = start;
        for (; r + 4 <= end; r += 4)
        {
            byte* row = (byte*)w + r * rowBytes;
            int t = 0;
            for (; t + 4 <= tokens; t += 4)
                Block4x4<TW>(row, rowBytes, cols, x + (long)t * xStride, xStride, y + (long)t * yStride + r, yStride);
            for (; t < tokens; t++)
            {
                for (int i = 0; i < 4; i++) y[(long)t * yStride + r + i] = Dot<TW>(row + i * rowBytes, x + (long)t * xStride, cols);
            }
        }
        for (; r < end; r++)
        {
            for (int t = 0; t < tokens; t++) y[(long)t * yStride + r] = Dot<TW>((byte*)w + r * rowBytes, x + (long)t * xStride, cols);
        }
    }

    /// <summary>Four rows times four tokens, sixteen sums held in registers.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Block4x4<TW>(byte* row, long rowBytes, int cols, float* x, int xStride, float* y, int yStride)
        where TW : struct, IWeightElements
    {
        void* w0 = row, w1 = row + rowBytes, w2 = row + 2 * rowBytes, w3 = row + 3 * rowBytes;
        float* x0 = x, x1 = x + xStride, x2 = x + 2 * xStride, x3 = x + 3 * xStride;
        int c = 0;
        float s00 = 0, s01 = 0, s02 = 0, s03 = 0, s10 = 0, s11 = 0, s12 = 0, s13 = 0;
        float s20 = 0, s21 = 0, s22 = 0, s23 = 0, s30 = 0, s31 = 0, s32 = 0, s33 = 0;
        if (Vector512.IsHardwareAccelerated && cols >= 16)
        {
            Vector512<float> a00 = default, a01 = default, a02 = default, a03 = default, a10 = default, a11 = default, a12 = default, a13 = default;
            Vector512<float> a20 = default, a21 = default, a22 = default, a23 = default, a30 = default, a31 = default, a32 = default, a33 = default;
            for (; c + 16 <= cols; c += 16)
            {
                var v0 = Vector512.Load(x0 + c);
                var v1 = Vector512.Load(x1 + c);
                var v2 = Vector512.Load(x2 + c);
                var v3 = Vector512.Load(x3 + c);
                var w = TW.Load512(w0, c);
                a00 = Vector512.MultiplyAddEstimate(w, v0, a00); a01 = Vector512.MultiplyAddEstimate(w, v1, a01);
                a02 = Vector512.MultiplyAddEstimate(w, v2, a02); a03 = Vector512.MultiplyAddEstimate(w, v3, a03);
                w = TW.Load512(w1, c);
                a10 = Vector512.MultiplyAddEstimate(w, v0, a10); a11 = Vector512.MultiplyAddEstimate(w, v1, a11);
                a12 = Vector512.MultiplyAddEstimate(w, v2, a12); a13 = Vector512.MultiplyAddEstimate(w, v3, a13);
                w = TW.Load512(w2, c);
                a20 = Vector512.MultiplyAddEstimate(w, v0, a20); a21 = Vector512.MultiplyAddEstimate(w, v1, a21);
                a22 = Vector512.MultiplyAddEstimate(w, v2, a22); a23 = Vector512.MultiplyAddEstimate(w, v3, a23);
                w = TW.Load512(w3, c);
                a30 = Vector512.MultiplyAddEstimate(w, v0, a30); a31 = Vector512.MultiplyAddEstimate(w, v1, a31);
                a32 = Vector512.MultiplyAddEstimate(w, v2, a32); a33 = Vector512.MultiplyAddEstimate(w, v3, a33);
            }
            s00 = Vector512.Sum(a00); s01 = Vector512.Sum(a01); s02 = Vector512.Sum(a02); s03 = Vector512.Sum(a03);
            s10 = Vector512.Sum(a10); s11 = Vector512.Sum(a11); s12 = Vector512.Sum(a12); s13 = Vector512.Sum(a13);
            s20 = Vector512.Sum(a20); s21 = Vector512.Sum(a21); s22 = Vector512.Sum(a22); s23 = Vector512.Sum(a23);
            s30 = Vector512.Sum(a30); s31 = Vector512.Sum(a31); s32 = Vector512.Sum(a32); s33 = Vector512.Sum(a33);
        }
        else if (Vector256.IsHardwareAccelerated && cols >= 8)
        {
            Vector256<float> a00 = default, a01 = default, a02 = default, a03 = default, a10 = default, a11 = default, a12 = default, a13 = default;
            Vector256<float> a20 = default, a21 = default, a22 = default, a23 = default, a30 = default, a31 = default, a32 = default, a33 = default;
            for (; c + 8 <= cols; c += 8)
            {
                var v0 = Vector256.Load(x0 + c);
                var v1 = Vector256.Load(x1 + c);
                var v2 = Vector256.Load(x2 + c);
                var v3 = Vector256.Load(x3 + c);
                var w = TW.Load256(w0, c);
                a00 = Vector256.MultiplyAddEstimate(w, v0, a00); a01 = Vector256.MultiplyAddEstimate(w, v1, a01);
                a02 = Vector256.MultiplyAddEstimate(w, v2, a02); a03 = Vector256.MultiplyAddEstimate(w, v3, a03);
                w = TW.Load256(w1, c);
                a10 = Vector256.MultiplyAddEstimate(w, v0, a10); a11 = Vector256.MultiplyAddEstimate(w, v1, a11);
                a12 = Vector256.MultiplyAddEstimate(w, v2, a12); a13 = Vector256.MultiplyAddEstimate(w, v3, a13);
                w = TW.Load256(w2, c);
                a20 = Vector256.MultiplyAddEstimate(w, v0, a20); a21 = Vector256.MultiplyAddEstimate(w, v1, a21);
                a22 = Vector256.MultiplyAddEstimate(w, v2, a22); a23 = Vector256.MultiplyAddEstimate(w, v3, a23);
                w = TW.Load256(w3, c);
                a30 = Vector256.MultiplyAddEstimate(w, v0, a30); a31 = Vector256.MultiplyAddEstimate(w, v1, a31);
                a32 = Vector256.MultiplyAddEstimate(w, v2, a32); a33 = Vector256.MultiplyAddEstimate(w, v3, a33);
            }
            s00 = Vector256.Sum(a00); s01 = Vector256.Sum(a01); s02 = Vector256.Sum(a02); s03 = Vector256.Sum(a03);
            s10 = Vector256.Sum(a10); s11 = Vector256.Sum(a11); s12 = Vector256.Sum(a12); s13 = Vector256.Sum(a13);
            s20 = Vector256.Sum(a20); s21 = Vector256.Sum(a21); s22 = Vector256.Sum(a22); s23 = Vector256.Sum(a23);
            s30 = Vector256.Sum(a30); s31 = Vector256.Sum(a31); s32 = Vector256.Sum(a32); s33 = Vector256.Sum(a33);
        }
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

    /// <summary>One row times one token.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Dot<TW>(void* w, float* x, int cols) where TW : struct, IWeightElements
    {
        int c = 0;
        float sum = 0;
        if (Vector512.IsHardwareAccelerated && cols >= 16)
        {
            var a = Vector512<float>.Zero;
            for (; c + 16 <= cols; c += 16) a = Vector512.MultiplyAddEstimate(TW.Load512(w, c), Vector512.Load(x + c), a);
            sum = Vector512.Sum(a);
        }
        else if (Vector256.IsHardwareAccelerated && cols >= 8)
        {
            var a = Vector256<float>.Zero;
            for (; c + 8 <= cols; c += 8) a = Vector256.MultiplyAddEstimate(TW.Load256(w, c), Vector256.Load(x + c), a);
            sum = Vector256.Sum(a);
        }
        for (; c < cols; c++) sum += TW.Load(w, c) * x[c];
        return sum;
    }
}
