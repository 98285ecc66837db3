using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace GemmaGen.Kernels;

/// <summary>
/// Decode over the row-major formats (<see cref="WeightFormat.F32"/>, <see cref="WeightFormat.BF16"/>): y[r] = W[r]·x,
/// four rows a pass with two accumulators each (eight independent FMA chains hide the FMA latency), every row's stream
/// prefetched <see cref="PrefetchBytes"/> ahead, at the widest vector width the CPU runs (<see cref="IVectorWidth{TV}"/>),
/// columns that do not fill two vectors one by one. This kernel was generated per spec, with the width a constant,
/// until measuring the two side by side found nothing the constant bought (BENCHMARKS.md, "Specialization"): it is
/// written once for runtime shapes now, and every compiled decoder calls it through the format.
/// </summary>
internal static unsafe class ElementMatVec
{
    /// <summary>How far ahead of its loads each row's stream is prefetched where a pass reads one line of each row
    /// (<see cref="PrefetchLine"/>: BF16 at 512 bits). Four row streams per thread left the hardware prefetcher behind:
    /// 1 KiB ahead streamed 5–20% faster than none (2 threads, eight 85 MB matrices in turn; 2 and 4 KiB were no better
    /// than 1). Where a pass reads two lines of a row (F32) the prefetch instructions measured slower in cache (their load
    /// slots) and the hardware prefetcher keeps up, so there are none.</summary>
    private const int PrefetchBytes = 1024;

    /// <summary>The bytes of a row a pass reads for the prefetch to pay: one cache line.</summary>
    private const int PrefetchLine = 64;

    /// <summary>Outputs of a gate/up pass whose dot products go through the activation together.</summary>
    private const int GateUpOutputs = 32;

    /// <summary>y[r] = W[r]·x for rows [start, end) of a row-major [rows, cols] matrix of <typeparamref name="TW"/>.</summary>
    public static void Rows<TW>(void* w, int cols, float* x, float* y, int start, int end)
        where TW : struct, IWeightElements
    {
        if (Vector512.IsHardwareAccelerated) Rows<Width512, Vector512<float>, TW>(w, cols, x, y, start, end);
        else Rows<Width256, Vector256<float>, TW>(w, cols, x, y, start, end);
    }

    /// <summary>
    /// y[i] = gelu_tanh(W[2i]·x)·(W[2i+1]·x) for outputs [start, end) of an interleaved gate/up matrix (gate row i is
    /// row 2i, up row i is row 2i + 1, so both stream in one pass); the dot products of <see cref="GateUpOutputs"/>
    /// outputs at a time go through <see cref="Activations.GeluTanhGated"/>, the activation prefill uses.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void GateUpRows<TW>(void* w, int cols, float* x, float* y, int start, int end)
        where TW : struct, IWeightElements
    {
        float* dots = stackalloc float[2 * GateUpOutputs];
        for (int first = start; first < end; first += GateUpOutputs)
        {
            int n = Math.Min(GateUpOutputs, end - first);
            Rows<TW>(w, cols, x, dots - 2 * first, 2 * first, 2 * (first + n));
            Activations.GeluTanhGated(dots, y + first, n);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Rows<TS, TV, TW>(void* w, int cols, float* x, float* y, int start, int end)
        where TS : struct, IVectorWidth<TV> where TV : struct where TW : struct, IWeightElements
    {
        long rowBytes = (long)cols * TW.Size;
        int r = start;
        for (; r + 4 <= end; r += 4) Dot4<TS, TV, TW>((byte*)w + r * rowBytes, rowBytes, cols, x, y + r);
        for (; r < end; r++) y[r] = Dot<TS, TV, TW>((byte*)w + r * rowBytes, cols, x);
    }

    /// <summary>Four consecutive rows from <paramref name="w"/>, <paramref name="rowBytes"/> apart.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Dot4<TS, TV, TW>(byte* w, long rowBytes, int cols, float* x, float* y)
        where TS : struct, IVectorWidth<TV> where TV : struct where TW : struct, IWeightElements
    {
        // pointers bumped once a pass and constant offsets from them: the loads and prefetches need no address arithmetic
        byte* w0 = w, w1 = w + rowBytes, w2 = w + 2 * rowBytes, w3 = w + 3 * rowBytes;
        TV a00 = TS.Zero, a01 = TS.Zero, a10 = TS.Zero, a11 = TS.Zero, a20 = TS.Zero, a21 = TS.Zero, a30 = TS.Zero, a31 = TS.Zero;
        int vectorCols = TS.IsHardwareAccelerated ? cols - cols % (2 * TS.Count) : 0;
        int step = 2 * TS.Count * TW.Size;
        byte* p0 = w0, p1 = w1, p2 = w2, p3 = w3;
        for (float* v = x, last = x + vectorCols; v < last; v += 2 * TS.Count, p0 += step, p1 += step, p2 += step, p3 += step)
        {
            var x0 = TS.Load(v);
            var x1 = TS.Load(v + TS.Count);
            if (Sse.IsSupported && 2 * TS.Count * TW.Size == PrefetchLine)
            {
                Sse.Prefetch0(p0 + PrefetchBytes);
                Sse.Prefetch0(p1 + PrefetchBytes);
                Sse.Prefetch0(p2 + PrefetchBytes);
                Sse.Prefetch0(p3 + PrefetchBytes);
            }
            a00 = TS.MultiplyAddEstimate(TS.Load<TW>(p0, 0), x0, a00);
            a01 = TS.MultiplyAddEstimate(TS.Load<TW>(p0, TS.Count), x1, a01);
            a10 = TS.MultiplyAddEstimate(TS.Load<TW>(p1, 0), x0, a10);
            a11 = TS.MultiplyAddEstimate(TS.Load<TW>(p1, TS.Count), x1, a11);
            a20 = TS.MultiplyAddEstimate(TS.Load<TW>(p2, 0), x0, a20);
            a21 = TS.MultiplyAddEstimate(TS.Load<TW>(p2, TS.Count), x1, a21);
            a30 = TS.MultiplyAddEstimate(TS.Load<TW>(p3, 0), x0, a30);
            a31 = TS.MultiplyAddEstimate(TS.Load<TW>(p3, TS.Count), x1, a31);
        }
        int c = vectorCols;
        float s0 = TS.Sum(TS.Add(a00, a01)), s1 = TS.Sum(TS.Add(a10, a11)), s2 = TS.Sum(TS.Add(a20, a21)), s3 = TS.Sum(TS.Add(a30, a31));
        for (; c < cols; c++)
        {
            float v = x[c];
            s0 += TW.Load(w0, c) * v;
            s1 += TW.Load(w1, c) * v;
            s2 += TW.Load(w2, c) * v;
            s3 += TW.Load(w3, c) * v;
        }
        y[0] = s0;
        y[1] = s1;
        y[2] = s2;
        y[3] = s3;
    }

    /// <summary>One row (the rows of a range that do not fill a pass of four).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Dot<TS, TV, TW>(byte* w, int cols, float* x)
        where TS : struct, IVectorWidth<TV> where TV : struct where TW : struct, IWeightElements
    {
        TV a0 = TS.Zero, a1 = TS.Zero;
        int c = 0;
        for (; TS.IsHardwareAccelerated && c + 2 * TS.Count <= cols; c += 2 * TS.Count)
        {
            a0 = TS.MultiplyAddEstimate(TS.Load<TW>(w, c), TS.Load(x + c), a0);
            a1 = TS.MultiplyAddEstimate(TS.Load<TW>(w, c + TS.Count), TS.Load(x + c + TS.Count), a1);
        }
        float sum = TS.Sum(TS.Add(a0, a1));
        for (; c < cols; c++) sum += TW.Load(w, c) * x[c];
        return sum;
    }
}
