using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace GemmaGen.Kernels;

/// <summary>
/// The blocked kernel on CPUs with AVX2 but no AVX-512 (most desktop CPUs): the same outer products at half the width
/// and with half the registers, 16 rows transposed per group (two 256-bit vectors) × 6 tokens (then 2), 12
/// accumulators, through 8×8 transposes.
/// </summary>
public static unsafe partial class MatMul
{
    private const int GroupRows256 = 16, TokenBlock256 = 6, SmallBlock256 = 2;

    /// <summary>Rows [first, first + rows) (at most 16; missing rows are zero) as float32, transposed:
    /// wt[k·16 + i] = W[first + i][k], eight columns of eight rows at a time.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void TransposeGroup256<TW>(void* w, int cols, int first, int rows, float* wt)
        where TW : struct, IWeightElements
    {
        long rowBytes = (long)cols * TW.Size;
        int whole = cols / 8 * 8;
        for (int half = 0; half < 2; half++)
        {
            for (int c = 0; c < whole; c += 8)
            {
                float* o = wt + (long)c * GroupRows256 + half * 8;
                var r0 = LoadRow256<TW>(w, rowBytes, first + half * 8 + 0, half * 8 + 0 < rows, c);
                var r1 = LoadRow256<TW>(w, rowBytes, first + half * 8 + 1, half * 8 + 1 < rows, c);
                var r2 = LoadRow256<TW>(w, rowBytes, first + half * 8 + 2, half * 8 + 2 < rows, c);
                var r3 = LoadRow256<TW>(w, rowBytes, first + half * 8 + 3, half * 8 + 3 < rows, c);
                var r4 = LoadRow256<TW>(w, rowBytes, first + half * 8 + 4, half * 8 + 4 < rows, c);
                var r5 = LoadRow256<TW>(w, rowBytes, first + half * 8 + 5, half * 8 + 5 < rows, c);
                var r6 = LoadRow256<TW>(w, rowBytes, first + half * 8 + 6, half * 8 + 6 < rows, c);
                var r7 = LoadRow256<TW>(w, rowBytes, first + half * 8 + 7, half * 8 + 7 < rows, c);
                Vector256<float> t0 = Avx.UnpackLow(r0, r1), t1 = Avx.UnpackHigh(r0, r1);
                Vector256<float> t2 = Avx.UnpackLow(r2, r3), t3 = Avx.UnpackHigh(r2, r3);
                Vector256<float> t4 = Avx.UnpackLow(r4, r5), t5 = Avx.UnpackHigh(r4, r5);
                Vector256<float> t6 = Avx.UnpackLow(r6, r7), t7 = Avx.UnpackHigh(r6, r7);
                Vector256<float> u0 = Avx.Shuffle(t0, t2, 0x44), u1 = Avx.Shuffle(t0, t2, 0xEE);
                Vector256<float> u2 = Avx.Shuffle(t1, t3, 0x44), u3 = Avx.Shuffle(t1, t3, 0xEE);
                Vector256<float> u4 = Avx.Shuffle(t4, t6, 0x44), u5 = Avx.Shuffle(t4, t6, 0xEE);
                Vector256<float> u6 = Avx.Shuffle(t5, t7, 0x44), u7 = Avx.Shuffle(t5, t7, 0xEE);
                Avx.Permute2x128(u0, u4, 0x20).Store(o + 0 * GroupRows256);
                Avx.Permute2x128(u0, u4, 0x31).Store(o + 4 * GroupRows256);
                Avx.Permute2x128(u1, u5, 0x20).Store(o + 1 * GroupRows256);
                Avx.Permute2x128(u1, u5, 0x31).Store(o + 5 * GroupRows256);
                Avx.Permute2x128(u2, u6, 0x20).Store(o + 2 * GroupRows256);
                Avx.Permute2x128(u2, u6, 0x31).Store(o + 6 * GroupRows256);
                Avx.Permute2x128(u3, u7, 0x20).Store(o + 3 * GroupRows256);
                Avx.Permute2x128(u3, u7, 0x31).Store(o + 7 * GroupRows256);
            }
        }
        for (int k = whole; k < cols; k++)
        {
            for (int i = 0; i < GroupRows256; i++)
                wt[(long)k * GroupRows256 + i] = i < rows ? TW.Load((byte*)w + (first + i) * rowBytes, k) : 0f;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> LoadRow256<TW>(void* w, long rowBytes, int row, bool present, int c)
        where TW : struct, IWeightElements =>
        present ? TW.Load256((byte*)w + row * rowBytes, c) : Vector256<float>.Zero;

    /// <summary>16 rows × 6 tokens (the first <paramref name="n"/> stored).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tokens6(float* wt, float* xb, int cols, float* y, int yStride, int rows, int n)
    {
        Vector256<float> a00 = default, a01 = default, a02 = default, a03 = default, a04 = default, a05 = default;
        Vector256<float> a10 = default, a11 = default, a12 = default, a13 = default, a14 = default, a15 = default;
        for (int k = 0; k < cols; k++, wt += GroupRows256, xb += TokenBlock256)
        {
            var w0 = Vector256.Load(wt);
            var w1 = Vector256.Load(wt + 8);
            Vector256<float> x;
            x = Vector256.Create(xb[0]); a00 = Fma.MultiplyAdd(w0, x, a00); a10 = Fma.MultiplyAdd(w1, x, a10);
            x = Vector256.Create(xb[1]); a01 = Fma.MultiplyAdd(w0, x, a01); a11 = Fma.MultiplyAdd(w1, x, a11);
            x = Vector256.Create(xb[2]); a02 = Fma.MultiplyAdd(w0, x, a02); a12 = Fma.MultiplyAdd(w1, x, a12);
            x = Vector256.Create(xb[3]); a03 = Fma.MultiplyAdd(w0, x, a03); a13 = Fma.MultiplyAdd(w1, x, a13);
            x = Vector256.Create(xb[4]); a04 = Fma.MultiplyAdd(w0, x, a04); a14 = Fma.MultiplyAdd(w1, x, a14);
            x = Vector256.Create(xb[5]); a05 = Fma.MultiplyAdd(w0, x, a05); a15 = Fma.MultiplyAdd(w1, x, a15);
        }
        if (0 < n) Store256(y + 0L * yStride, rows, a00, a10);
        if (1 < n) Store256(y + 1L * yStride, rows, a01, a11);
        if (2 < n) Store256(y + 2L * yStride, rows, a02, a12);
        if (3 < n) Store256(y + 3L * yStride, rows, a03, a13);
        if (4 < n) Store256(y + 4L * yStride, rows, a04, a14);
        if (5 < n) Store256(y + 5L * yStride, rows, a05, a15);
    }

    /// <summary>16 rows × 2 tokens (the first <paramref name="n"/> stored).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tokens2(float* wt, float* xb, int cols, float* y, int yStride, int rows, int n)
    {
        Vector256<float> a00 = default, a01 = default;
        Vector256<float> a10 = default, a11 = default;
        for (int k = 0; k < cols; k++, wt += GroupRows256, xb += SmallBlock256)
        {
            var w0 = Vector256.Load(wt);
            var w1 = Vector256.Load(wt + 8);
            Vector256<float> x;
            x = Vector256.Create(xb[0]); a00 = Fma.MultiplyAdd(w0, x, a00); a10 = Fma.MultiplyAdd(w1, x, a10);
            x = Vector256.Create(xb[1]); a01 = Fma.MultiplyAdd(w0, x, a01); a11 = Fma.MultiplyAdd(w1, x, a11);
        }
        if (0 < n) Store256(y + 0L * yStride, rows, a00, a10);
        if (1 < n) Store256(y + 1L * yStride, rows, a01, a11);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store256(float* y, int rows, Vector256<float> low, Vector256<float> high)
    {
        if (rows == GroupRows256)
        {
            low.Store(y);
            high.Store(y + 8);
            return;
        }
        for (int i = 0; i < rows; i++) y[i] = i < 8 ? low.GetElement(i) : high.GetElement(i - 8);
    }
}
