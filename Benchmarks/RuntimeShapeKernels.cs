using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace GemmaGen.Benchmarks;

/// <summary>
/// The generated BF16 matrix-vector kernel (<c>MatVec_BF16_{cols}</c> / <c>Dot4_BF16_{cols}</c> of a compiled spec)
/// written once for runtime shapes: the same four rows per pass, the same two 512-bit (or 256-bit) accumulators per
/// row, the same prefetch 1 KiB ahead, the width <c>cols</c> a parameter instead of a constant. Issue 10 item 6
/// compares the two (<see cref="SpecializationBenchmarks"/>): what specializing the trip count buys, nothing else.
/// </summary>
public static unsafe class RuntimeShapeKernels
{
    /// <summary>y[r] = W[r]·x for rows [start, end) of a BF16 matrix of <paramref name="cols"/> columns (a multiple of 32).</summary>
    public static void MatVecBF16(ushort* w, float* x, float* y, int start, int end, int cols)
    {
        if (cols % 32 != 0) throw new ArgumentException("the width must be a multiple of 32", nameof(cols));
        int r = start;
        for (; r + 4 <= end; r += 4) Dot4BF16(w + (long)r * cols, x, y + r, cols);
        for (; r < end; r++)
        {
            float sum = 0;
            for (int i = 0; i < cols; i++) sum += BitConverter.UInt32BitsToSingle((uint)w[(long)r * cols + i] << 16) * x[i];
            y[r] = sum;
        }
    }

    /// <summary>Four consecutive rows, as the generated <c>Dot4_BF16</c> computes them.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Dot4BF16(ushort* w, float* x, float* y, int cols)
    {
        if (Vector512.IsHardwareAccelerated)
        {
            Vector512<float> a00 = default, a01 = default, a10 = default, a11 = default;
            Vector512<float> a20 = default, a21 = default, a30 = default, a31 = default;
            ushort* w1 = w + cols, w2 = w + 2 * cols, w3 = w + 3 * cols;
            for (int i = 0; i < cols; i += 32)
            {
                var x0 = Vector512.Load(x + i);
                var x1 = Vector512.Load(x + i + 16);
                Sse.Prefetch0((byte*)(w + i) + 1024);
                Sse.Prefetch0((byte*)(w1 + i) + 1024);
                Sse.Prefetch0((byte*)(w2 + i) + 1024);
                Sse.Prefetch0((byte*)(w3 + i) + 1024);
                a00 = Vector512.MultiplyAddEstimate(Widen512(w + i), x0, a00);
                a01 = Vector512.MultiplyAddEstimate(Widen512(w + i + 16), x1, a01);
                a10 = Vector512.MultiplyAddEstimate(Widen512(w1 + i), x0, a10);
                a11 = Vector512.MultiplyAddEstimate(Widen512(w1 + i + 16), x1, a11);
                a20 = Vector512.MultiplyAddEstimate(Widen512(w2 + i), x0, a20);
                a21 = Vector512.MultiplyAddEstimate(Widen512(w2 + i + 16), x1, a21);
                a30 = Vector512.MultiplyAddEstimate(Widen512(w3 + i), x0, a30);
                a31 = Vector512.MultiplyAddEstimate(Widen512(w3 + i + 16), x1, a31);
            }
            y[0] = Vector512.Sum(a00 + a01);
            y[1] = Vector512.Sum(a10 + a11);
            y[2] = Vector512.Sum(a20 + a21);
            y[3] = Vector512.Sum(a30 + a31);
        }
        else
        {
            Vector256<float> a00 = default, a01 = default, a10 = default, a11 = default;
            Vector256<float> a20 = default, a21 = default, a30 = default, a31 = default;
            ushort* w1 = w + cols, w2 = w + 2 * cols, w3 = w + 3 * cols;
            for (int i = 0; i < cols; i += 16)
            {
                var x0 = Vector256.Load(x + i);
                var x1 = Vector256.Load(x + i + 8);
                a00 = Vector256.MultiplyAddEstimate(Widen256(w + i), x0, a00);
                a01 = Vector256.MultiplyAddEstimate(Widen256(w + i + 8), x1, a01);
                a10 = Vector256.MultiplyAddEstimate(Widen256(w1 + i), x0, a10);
                a11 = Vector256.MultiplyAddEstimate(Widen256(w1 + i + 8), x1, a11);
                a20 = Vector256.MultiplyAddEstimate(Widen256(w2 + i), x0, a20);
                a21 = Vector256.MultiplyAddEstimate(Widen256(w2 + i + 8), x1, a21);
                a30 = Vector256.MultiplyAddEstimate(Widen256(w3 + i), x0, a30);
                a31 = Vector256.MultiplyAddEstimate(Widen256(w3 + i + 8), x1, a31);
            }
            y[0] = Vector256.Sum(a00 + a01);
            y[1] = Vector256.Sum(a10 + a11);
            y[2] = Vector256.Sum(a20 + a21);
            y[3] = Vector256.Sum(a30 + a31);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Widen512(ushort* p) => (Vector512.WidenLower(Vector256.Load(p).ToVector512Unsafe()) << 16).AsSingle();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Widen256(ushort* p) => (Vector256.WidenLower(Vector128.Load(p).ToVector256Unsafe()) << 16).AsSingle();
}
