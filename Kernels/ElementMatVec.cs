using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace GemmaGen.Kernels;

/// <summary>
/// Decode over the row-major formats (<see cref="WeightFormat.F32"/>, <see cref="WeightFormat.BF16"/>): y[r] = W[r]·x,
/// four rows a pass with two accumulators each (eight independent FMA chains hide the FMA latency), the four rows one
/// from each quarter of the range, so that each stream runs on from a row into the next one in memory (a stream that
/// ended with every 4.6 KB BF16 row left one thread reading 19–20 GB/s from memory on an AMD EPYC Zen 3; running on, 35),
/// every row's stream prefetched <see cref="PrefetchBytes"/> ahead, at the widest vector width the CPU runs (<see cref="IVectorWidth{TV}"/>),
/// columns that do not fill two vectors one by one. BF16 rows are read a 32-bit pair at a time
/// (<see cref="IWeightElements.PairsInterleaved"/>: the even weight widened by a shift, the odd one by a mask) against
/// a copy of x laid out the same way, made once per input and thread. This kernel was generated per spec, with the width a constant,
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

    /// <summary>This thread's copy of the input laid out as <see cref="IWeightElements.PairsInterleaved"/> weights meet
    /// it, grown (never shrunk) to the widest matrix; pinned, so its address is fixed.</summary>
    [ThreadStatic]
    private static float[]? t_paired;

    /// <summary>What <see cref="t_paired"/> holds, for the run's later calls on this thread.</summary>
    [ThreadStatic]
    private static RunInput t_pairedInput;

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
        float* paired = Paired<TS, TV, TW>(x, cols);
        // A pass's four rows are one from each quarter of the range, so that each of the four streams runs on from one
        // row into the next (contiguous in memory) instead of ending with every row.
        int quarter = (end - start) / 4;
        for (int i = 0; i < quarter; i++)
        {
            int r = start + i;
            Dot4<TS, TV, TW>((byte*)w + r * rowBytes, quarter * rowBytes, cols, x, paired, y + r, quarter);
        }
        for (int r = start + 4 * quarter; r < end; r++) y[r] = Dot<TS, TV, TW>((byte*)w + r * rowBytes, cols, x, paired);
    }

    /// <summary>
    /// The input as the vector loop reads it: <paramref name="x"/> itself, or for weights whose pairs are interleaved
    /// (<see cref="IWeightElements.PairsInterleaved"/>: BF16) a copy whose every 2·<see cref="IVectorWidth{TV}.Count"/>
    /// columns hold the even-numbered ones, then the odd-numbered ones (the columns past the last whole span stay
    /// where they are; the scalar tail reads <paramref name="x"/>). Made once per input and thread in a pool run.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float* Paired<TS, TV, TW>(float* x, int cols)
        where TS : struct, IVectorWidth<TV> where TV : struct where TW : struct, IWeightElements
    {
        if (!TW.PairsInterleaved || !TS.IsHardwareAccelerated) return x;
        var buffer = t_paired is { } existing && existing.Length >= cols ? existing : t_paired = GC.AllocateUninitializedArray<float>(cols, pinned: true);
        float* paired = (float*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(buffer));
        var key = RunInput.Of(x, cols, 1, cols, offset: -2, block: 2 * TS.Count);
        if (key.IsHeldIn(t_pairedInput)) return paired;
        int span = 2 * TS.Count, spans = cols / span;
        for (int s = 0; s < spans; s++)
        {
            float* from = x + s * span, to = paired + s * span;
            for (int j = 0; j < TS.Count; j++)
            {
                to[j] = from[2 * j];
                to[TS.Count + j] = from[2 * j + 1];
            }
        }
        t_pairedInput = key;
        return paired;
    }

    /// <summary>Four rows from <paramref name="w"/>, <paramref name="rowBytes"/> apart, their results
    /// <paramref name="yStride"/> apart from <paramref name="y"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Dot4<TS, TV, TW>(byte* w, long rowBytes, int cols, float* x, float* paired, float* y, int yStride)
        where TS : struct, IVectorWidth<TV> where TV : struct where TW : struct, IWeightElements
    {
        // pointers bumped once a pass and constant offsets from them: the loads and prefetches need no address arithmetic
        byte* w0 = w, w1 = w + rowBytes, w2 = w + 2 * rowBytes, w3 = w + 3 * rowBytes;
        TV a00 = TS.Zero, a01 = TS.Zero, a10 = TS.Zero, a11 = TS.Zero, a20 = TS.Zero, a21 = TS.Zero, a30 = TS.Zero, a31 = TS.Zero;
        int vectorCols = TS.IsHardwareAccelerated ? cols - cols % (2 * TS.Count) : 0;
        int step = 2 * TS.Count * TW.Size;
        byte* p0 = w0, p1 = w1, p2 = w2, p3 = w3;
        for (float* v = paired, last = paired + vectorCols; v < last; v += 2 * TS.Count, p0 += step, p1 += step, p2 += step, p3 += step)
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
            TS.LoadPair<TW>(p0, 0, out var u0, out var v0);
            a00 = TS.MultiplyAddEstimate(u0, x0, a00);
            a01 = TS.MultiplyAddEstimate(v0, x1, a01);
            TS.LoadPair<TW>(p1, 0, out var u1, out var v1);
            a10 = TS.MultiplyAddEstimate(u1, x0, a10);
            a11 = TS.MultiplyAddEstimate(v1, x1, a11);
            TS.LoadPair<TW>(p2, 0, out var u2, out var v2);
            a20 = TS.MultiplyAddEstimate(u2, x0, a20);
            a21 = TS.MultiplyAddEstimate(v2, x1, a21);
            TS.LoadPair<TW>(p3, 0, out var u3, out var v3);
            a30 = TS.MultiplyAddEstimate(u3, x0, a30);
            a31 = TS.MultiplyAddEstimate(v3, x1, a31);
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
        y[yStride] = s1;
        y[2 * yStride] = s2;
        y[3 * yStride] = s3;
    }

    /// <summary>One row (the rows of a range that do not fill a pass of four).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Dot<TS, TV, TW>(byte* w, int cols, float* x, float* paired)
        where TS : struct, IVectorWidth<TV> where TV : struct where TW : struct, IWeightElements
    {
        TV a0 = TS.Zero, a1 = TS.Zero;
        int c = 0;
        for (; TS.IsHardwareAccelerated && c + 2 * TS.Count <= cols; c += 2 * TS.Count)
        {
            TS.LoadPair<TW>(w, c, out var u, out var v);
            a0 = TS.MultiplyAddEstimate(u, TS.Load(paired + c), a0);
            a1 = TS.MultiplyAddEstimate(v, TS.Load(paired + c + TS.Count), a1);
        }
        float sum = TS.Sum(TS.Add(a0, a1));
        for (; c < cols; c++) sum += TW.Load(w, c) * x[c];
        return sum;
    }
}
