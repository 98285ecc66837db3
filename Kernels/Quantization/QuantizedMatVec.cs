using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace GemmaGen.Kernels;

/// <summary>
/// Matrix-vector products over <see cref="WeightFormat.Q8_0"/> and <see cref="WeightFormat.Q4_0"/> matrices (laid out
/// as <see cref="QuantizedLayout"/> describes), called from the generated kernels' jobs on the worker threads, and
/// the batched products of prefill (<see cref="MatMulRows"/>, on <see cref="QuantizedMatMul"/> where the CPU runs it).
/// <para>
/// Each matrix-vector call first quantizes the input x to int16, in blocks of 32 with a float scale each
/// (s = max|x| / 32767, x̂ = round(x · 32767 / max|x|)), once per call and thread, into thread-local scratch (no
/// allocation after a thread's first call). A row's dot product is then Σ over blocks of (weight scale · input scale) ·
/// Σ q·x̂, the inner sums exact in int32: Avx512BW (vpmovsxbw / vpmovzxbw, vpmaddwd) over the four rows of a panel
/// at once, Avx2 the same at half the width, or scalar code. Q4_0 values are summed as stored (0..15); the
/// offset, 8·Σ x̂ per block, is taken off once per row. The only difference from the dot product of the
/// dequantized row with x in float is the input's rounding, at most s/2 per element (about 1.5e-5 of the block's
/// largest input), and the float summation order.
/// </para>
/// <para>
/// Everything on the per-token path is jitted fully optimized at once: a decoder with few layers calls these
/// methods too rarely for tiered compilation to promote them in time, and their tier-0 vector code is many times
/// slower.
/// </para>
/// </summary>
public static unsafe class QuantizedMatVec
{
    /// <summary>How far ahead of the loads the kernels prefetch. The hardware prefetcher alone left the stream at
    /// 55–65% of the bandwidth probe (2 threads, Xeon with AVX-512); 3 KiB ahead reached 80–90%, 1 KiB about 75%.</summary>
    private const int PrefetchBytes = 3072;

    /// <summary>Largest magnitude of a quantized input value.</summary>
    internal const int InputMax = short.MaxValue;

    [ThreadStatic]
    private static Scratch? t_scratch;

    /// <summary>y[r] = W[r]·x for rows [start, end).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Rows(WeightMatrix matrix, float* x, float* y, int start, int end)
    {
        CheckRange(matrix, start, end, matrix.Rows);
        if (start >= end) return;
        var scratch = Prepare(matrix, x);
        float* dots = scratch.Dots;
        const int n = QuantizedLayout.PanelRows;
        for (int panel = start / n; panel <= (end - 1) / n; panel++)
        {
            PanelDots(matrix, panel, scratch);
            int first = Math.Max(start, panel * n), last = Math.Min(end, panel * n + n);
            for (int r = first; r < last; r++) y[r] = dots[r - panel * n];
        }
    }

    /// <summary>y[i] = gelu_tanh(W[2i]·x)·(W[2i+1]·x) for outputs [start, end) of an interleaved gate/up matrix
    /// (gate row i is row 2i, up row i is row 2i + 1: each panel holds two outputs).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void GateUpRows(WeightMatrix matrix, float* x, float* y, int start, int end)
    {
        CheckRange(matrix, start, end, matrix.Rows / 2);
        if (start >= end) return;
        var scratch = Prepare(matrix, x);
        float* dots = scratch.Dots;
        const int outputs = QuantizedLayout.PanelRows / 2;
        for (int panel = start / outputs; panel <= (end - 1) / outputs; panel++)
        {
            PanelDots(matrix, panel, scratch);
            int first = Math.Max(start, panel * outputs), last = Math.Min(end, panel * outputs + outputs);
            for (int i = first; i < last; i++)
            {
                int lane = 2 * (i - panel * outputs);
                y[i] = Activations.GeluTanh(dots[lane]) * dots[lane + 1];
            }
        }
    }

    /// <summary>
    /// Prefill: y[t·yStride + r] = W[r]·x[t·xStride ..] for rows [start, end) and tokens [0, tokens), the weights read
    /// once per batch. Where the CPU runs them for the format (AVX-VNNI; for Q4_0 also AVX2),
    /// <see cref="QuantizedMatMul.Rows(WeightMatrix, float*, int, int, float*, int, int, int)"/> (inputs rounded to int8,
    /// integer dot products); elsewhere <see cref="FloatMatMulRows"/>.
    /// </summary>
    public static void MatMulRows(WeightMatrix matrix, float* x, int xStride, int tokens, float* y, int yStride, int start, int end)
    {
        if (QuantizedMatMul.IsSupported(matrix.Format)) QuantizedMatMul.Rows(matrix, x, xStride, tokens, y, yStride, start, end);
        else FloatMatMulRows(matrix, x, xStride, tokens, y, yStride, start, end);
    }

    /// <summary>
    /// Prefill without integer dot products: the rows are dequantized to float32 (exactly, into thread-local scratch)
    /// once per call and multiplied with every token's float input, the inputs not rounded. With AVX-512 and at least
    /// <see cref="MatMul.MinBlockedTokens"/> tokens, 32 rows at a time through the blocked kernel
    /// (<see cref="MatMul.BlockedGroups{TW}"/>, the inputs transposed once per call); otherwise each 4-row panel
    /// through <see cref="MatMul.Dots{TW}"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void FloatMatMulRows(WeightMatrix matrix, float* x, int xStride, int tokens, float* y, int yStride, int start, int end)
    {
        CheckRange(matrix, start, end, matrix.Rows);
        if (start >= end || tokens <= 0) return;
        int cols = matrix.Cols;
        if (MatMul.BlockedSupported && tokens >= MatMul.MinBlockedTokens)
        {
            var blocked = MatMul.BlockedScratch.For(cols, tokens);
            MatMul.PrepareInputs(x, xStride, tokens, cols, blocked.Inputs);
            for (int r = start; r < end; r += MatMul.GroupRows)
            {
                int rows = Math.Min(MatMul.GroupRows, end - r);
                for (int i = 0; i < rows; i++) matrix.ReadRow(r + i, new Span<float>(blocked.Rows + (long)i * cols, cols));
                MatMul.BlockedGroups<F32Elements>(blocked.Rows, cols, blocked.Inputs, tokens, y + r, yStride, 0, rows, blocked.Weights);
            }
            return;
        }
        var scratch = t_scratch;
        if (scratch == null || scratch.Capacity < cols) t_scratch = scratch = new Scratch(cols);
        float* panelRows = scratch.PanelRows;
        const int n = QuantizedLayout.PanelRows;
        for (int panel = start / n; panel <= (end - 1) / n; panel++)
        {
            int first = Math.Max(start, panel * n) - panel * n, last = Math.Min(end, panel * n + n) - panel * n;
            for (int i = first; i < last; i++) matrix.ReadRow(panel * n + i, new Span<float>(panelRows + i * cols, cols));
            MatMul.Dots<F32Elements>(panelRows, cols, x, xStride, tokens, y + panel * n, yStride, first, last);
        }
    }

    private static void CheckRange(WeightMatrix matrix, int start, int end, int limit)
    {
        if (!QuantizedLayout.IsQuantized(matrix.Format))
            throw new ArgumentException($"{matrix.Name} is {matrix.Format}, not a quantized format", nameof(matrix));
        if (start < 0 || end > limit || start > end)
            throw new ArgumentOutOfRangeException(nameof(start), $"rows [{start}, {end}) are not within [0, {limit})");
    }

    /// <summary>This thread's scratch, sized for the matrix, with x quantized into it.</summary>
    private static Scratch Prepare(WeightMatrix matrix, float* x)
    {
        var scratch = t_scratch;
        if (scratch == null || scratch.Capacity < matrix.Cols) t_scratch = scratch = new Scratch(matrix.Cols);
        QuantizeInput(x, matrix.Cols / QuantizedLayout.BlockSize, scratch.Input, scratch.InputScales, scratch.InputSums);
        return scratch;
    }

    /// <summary>
    /// Quantizes <paramref name="blocks"/> blocks of 32 floats to int16: per block s = max|x| / 32767 and
    /// x̂ = round(x · (32767 / max|x|)), ties to even (all zero when the block is). Writes x̂ to <paramref name="input"/>, and s and
    /// Σ x̂ of block b, each four times over, at [4b, 4b + 4) of <paramref name="scales"/> and <paramref name="sums"/>
    /// (the layout of a panel's weight scales).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void QuantizeInput(float* x, int blocks, short* input, float* scales, float* sums)
    {
        const int size = QuantizedLayout.BlockSize, n = QuantizedLayout.PanelRows;
        for (int b = 0; b < blocks; b++, x += size, input += size)
        {
            float max = 0;
            int sum = 0;
            if (Avx2.IsSupported)
            {
                Vector256<float> v0 = Vector256.Load(x), v1 = Vector256.Load(x + 8), v2 = Vector256.Load(x + 16), v3 = Vector256.Load(x + 24);
                max = QuantizedLayout.MaxAcross(Vector256.Max(Vector256.Max(Vector256.Abs(v0), Vector256.Abs(v1)), Vector256.Max(Vector256.Abs(v2), Vector256.Abs(v3))));
                if (max > 0)
                {
                    float inverse = InputMax / max;
                    Vector256<int> q0 = Avx.ConvertToVector256Int32(v0 * inverse), q1 = Avx.ConvertToVector256Int32(v1 * inverse);
                    Vector256<int> q2 = Avx.ConvertToVector256Int32(v2 * inverse), q3 = Avx.ConvertToVector256Int32(v3 * inverse);
                    Vector256.Narrow(q0, q1).Store(input);
                    Vector256.Narrow(q2, q3).Store(input + 16);
                    sum = Vector256.Sum(q0 + q1 + q2 + q3);
                }
            }
            else
            {
                for (int i = 0; i < size; i++) max = MathF.Max(max, MathF.Abs(x[i]));
                if (max > 0)
                {
                    float inverse = InputMax / max;
                    for (int i = 0; i < size; i++)
                    {
                        short q = (short)MathF.Round(x[i] * inverse);
                        input[i] = q;
                        sum += q;
                    }
                }
            }
            if (max == 0) new Span<short>(input, size).Clear();
            float scale = max / InputMax;
            for (int i = 0; i < n; i++)
            {
                scales[b * n + i] = scale;
                sums[b * n + i] = sum;
            }
        }
    }

    /// <summary>The four dot products of panel <paramref name="panel"/> with the quantized input, into <c>scratch.Dots</c>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PanelDots(WeightMatrix matrix, int panel, Scratch scratch)
    {
        int cols = matrix.Cols, blocks = cols / QuantizedLayout.BlockSize;
        byte* start = (byte*)matrix.Data + panel * QuantizedLayout.PanelBytes(matrix.Format, cols);
        byte* quants = start + QuantizedLayout.ScaleBytes(cols);
        float* scales = scratch.Scales, dots = scratch.Dots;
        var offsetSums = CombineScales((ushort*)start, blocks * QuantizedLayout.PanelRows, scratch.InputScales, scratch.InputSums, scales);
        if (matrix.Format == WeightFormat.Q8_0)
        {
            if (Avx512BW.IsSupported) DotsQ8Avx512((sbyte*)quants, blocks, scratch.Input, scales, dots);
            else if (Avx2.IsSupported && Fma.IsSupported) DotsQ8Avx2((sbyte*)quants, blocks, scratch.Input, scales, dots);
            else DotsQ8Scalar((sbyte*)quants, blocks, scratch.Input, scales, dots);
        }
        else
        {
            if (Avx512BW.IsSupported) DotsQ4Avx512(quants, blocks, scratch.Input, scales, dots);
            else if (Avx2.IsSupported && Fma.IsSupported) DotsQ4Avx2(quants, blocks, scratch.Input, scales, dots);
            else DotsQ4Scalar(quants, blocks, scratch.Input, scales, dots);
            for (int r = 0; r < QuantizedLayout.PanelRows; r++) dots[r] -= QuantizedLayout.Q4Offset * offsetSums.GetElement(r);
        }
    }

    /// <summary>
    /// scales[i] = weight scale i (bf16) · input scale i for the <paramref name="count"/> scales of a panel; returns,
    /// per row of the panel, Σ over blocks of that product · Σ x̂ (what the Q4_0 offset contributes, divided by 8).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static Vector128<float> CombineScales(ushort* weightScales, int count, float* inputScales, float* inputSums, float* scales)
    {
        int i = 0;
        var offset = Vector128<float>.Zero;
        if (Avx512F.IsSupported)
        {
            var acc = Vector512<float>.Zero;
            for (; i + 16 <= count; i += 16)
            {
                var s = (Avx512F.ConvertToVector512Int32(Vector256.Load(weightScales + i)) << 16).AsSingle() * Vector512.Load(inputScales + i);
                s.Store(scales + i);
                acc = Avx512F.FusedMultiplyAdd(s, Vector512.Load(inputSums + i), acc);
            }
            var half = acc.GetLower() + acc.GetUpper();
            offset = half.GetLower() + half.GetUpper();
        }
        else if (Avx2.IsSupported && Fma.IsSupported)
        {
            var acc = Vector256<float>.Zero;
            for (; i + 8 <= count; i += 8)
            {
                var s = (Avx2.ConvertToVector256Int32(Vector128.Load(weightScales + i)) << 16).AsSingle() * Vector256.Load(inputScales + i);
                s.Store(scales + i);
                acc = Fma.MultiplyAdd(s, Vector256.Load(inputSums + i), acc);
            }
            offset = acc.GetLower() + acc.GetUpper();
        }
        float o0 = offset.GetElement(0), o1 = offset.GetElement(1), o2 = offset.GetElement(2), o3 = offset.GetElement(3);
        for (; i < count; i += 4)
        {
            scales[i] = BFloat16.ToSingle(weightScales[i]) * inputScales[i];
            scales[i + 1] = BFloat16.ToSingle(weightScales[i + 1]) * inputScales[i + 1];
            scales[i + 2] = BFloat16.ToSingle(weightScales[i + 2]) * inputScales[i + 2];
            scales[i + 3] = BFloat16.ToSingle(weightScales[i + 3]) * inputScales[i + 3];
            o0 += scales[i] * inputSums[i];
            o1 += scales[i + 1] * inputSums[i + 1];
            o2 += scales[i + 2] * inputSums[i + 2];
            o3 += scales[i + 3] * inputSums[i + 3];
        }
        return Vector128.Create(o0, o1, o2, o3);
    }

    // ---- Q8_0: one row's block is 32 int8, widened to int16 and multiplied pairwise with x̂ (vpmaddwd) ----

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> BlockQ8(sbyte* q, Vector512<short> x, float scale, Vector512<float> acc) =>
        Avx512F.FusedMultiplyAdd(
            Avx512F.ConvertToVector512Single(Avx512BW.MultiplyAddAdjacent(Avx512BW.ConvertToVector512Int16(Vector256.Load(q)), x)),
            Vector512.Create(scale), acc);

    /// <summary>Two blocks per iteration, eight accumulators (four rows × two blocks) to hide the FMA latency.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void DotsQ8Avx512(sbyte* q, int blocks, short* x, float* s, float* dots)
    {
        Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default;
        Vector512<float> b0 = default, b1 = default, b2 = default, b3 = default;
        int b = 0;
        for (; b + 2 <= blocks; b += 2, q += 256, x += 64, s += 8)
        {
            Sse.Prefetch0(q + PrefetchBytes);
            Sse.Prefetch0(q + PrefetchBytes + 64);
            Sse.Prefetch0(q + PrefetchBytes + 128);
            Sse.Prefetch0(q + PrefetchBytes + 192);
            var x0 = Vector512.Load(x);
            var x1 = Vector512.Load(x + 32);
            a0 = BlockQ8(q, x0, s[0], a0);
            a1 = BlockQ8(q + 32, x0, s[1], a1);
            a2 = BlockQ8(q + 64, x0, s[2], a2);
            a3 = BlockQ8(q + 96, x0, s[3], a3);
            b0 = BlockQ8(q + 128, x1, s[4], b0);
            b1 = BlockQ8(q + 160, x1, s[5], b1);
            b2 = BlockQ8(q + 192, x1, s[6], b2);
            b3 = BlockQ8(q + 224, x1, s[7], b3);
        }
        if (b < blocks)
        {
            var x0 = Vector512.Load(x);
            a0 = BlockQ8(q, x0, s[0], a0);
            a1 = BlockQ8(q + 32, x0, s[1], a1);
            a2 = BlockQ8(q + 64, x0, s[2], a2);
            a3 = BlockQ8(q + 96, x0, s[3], a3);
        }
        dots[0] = Vector512.Sum(a0 + b0);
        dots[1] = Vector512.Sum(a1 + b1);
        dots[2] = Vector512.Sum(a2 + b2);
        dots[3] = Vector512.Sum(a3 + b3);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> BlockQ8(sbyte* q, Vector256<short> xLow, Vector256<short> xHigh, float scale, Vector256<float> acc) =>
        Fma.MultiplyAdd(
            Avx.ConvertToVector256Single(
                Avx2.MultiplyAddAdjacent(Avx2.ConvertToVector256Int16(Vector128.Load(q)), xLow) +
                Avx2.MultiplyAddAdjacent(Avx2.ConvertToVector256Int16(Vector128.Load(q + 16)), xHigh)),
            Vector256.Create(scale), acc);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void DotsQ8Avx2(sbyte* q, int blocks, short* x, float* s, float* dots)
    {
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
        for (int b = 0; b < blocks; b++, q += 128, x += 32, s += 4)
        {
            Sse.Prefetch0(q + PrefetchBytes);
            Sse.Prefetch0(q + PrefetchBytes + 64);
            var xLow = Vector256.Load(x);
            var xHigh = Vector256.Load(x + 16);
            a0 = BlockQ8(q, xLow, xHigh, s[0], a0);
            a1 = BlockQ8(q + 32, xLow, xHigh, s[1], a1);
            a2 = BlockQ8(q + 64, xLow, xHigh, s[2], a2);
            a3 = BlockQ8(q + 96, xLow, xHigh, s[3], a3);
        }
        dots[0] = Vector256.Sum(a0);
        dots[1] = Vector256.Sum(a1);
        dots[2] = Vector256.Sum(a2);
        dots[3] = Vector256.Sum(a3);
    }

    private static void DotsQ8Scalar(sbyte* q, int blocks, short* x, float* s, float* dots)
    {
        float d0 = 0, d1 = 0, d2 = 0, d3 = 0;
        for (int b = 0; b < blocks; b++, q += 128, x += 32, s += 4)
        {
            int i0 = 0, i1 = 0, i2 = 0, i3 = 0;
            for (int j = 0; j < QuantizedLayout.BlockSize; j++)
            {
                int xj = x[j];
                i0 += q[j] * xj;
                i1 += q[32 + j] * xj;
                i2 += q[64 + j] * xj;
                i3 += q[96 + j] * xj;
            }
            d0 += i0 * s[0];
            d1 += i1 * s[1];
            d2 += i2 * s[2];
            d3 += i3 * s[3];
        }
        dots[0] = d0;
        dots[1] = d1;
        dots[2] = d2;
        dots[3] = d3;
    }

    // ---- Q4_0: one row's block is 16 bytes, low nibbles columns 0..15, high nibbles 16..31, summed as stored ----

    /// <summary>
    /// Two rows at once: their 32 bytes widen to 32 int16 (row a, then row b); the low nibbles meet x̂[0..16) and the
    /// high nibbles x̂[16..32), each broadcast to both halves, so int32 lanes 0..7 sum row a and 8..15 row b.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> RowPairQ4(byte* q, Vector512<short> xLow, Vector512<short> xHigh, Vector512<float> scales, Vector512<float> acc)
    {
        var w = Avx512BW.ConvertToVector512Int16(Vector256.Load(q));
        var sum = Avx512BW.MultiplyAddAdjacent(w & Vector512.Create((short)0xF), xLow) +
                  Avx512BW.MultiplyAddAdjacent(Avx512BW.ShiftRightLogical(w, 4), xHigh);
        return Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(sum), scales, acc);
    }

    /// <summary>16 int16 at <paramref name="x"/> in both halves of a 512-bit vector.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<short> Broadcast256(short* x)
    {
        var half = Vector256.Load(x);
        return Vector512.Create(half, half);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void DotsQ4Avx512(byte* q, int blocks, short* x, float* s, float* dots)
    {
        var rows01 = Vector512.Create(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
        var rows23 = Vector512.Create(2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
        Vector512<float> a01 = default, a23 = default, b01 = default, b23 = default;
        int b = 0;
        for (; b + 2 <= blocks; b += 2, q += 128, x += 64, s += 8)
        {
            Sse.Prefetch0(q + PrefetchBytes);
            Sse.Prefetch0(q + PrefetchBytes + 64);
            var xLow = Broadcast256(x);
            var xHigh = Broadcast256(x + 16);
            var scales = Avx512F.BroadcastVector128ToVector512(s);
            a01 = RowPairQ4(q, xLow, xHigh, Avx512F.PermuteVar16x32(scales, rows01), a01);
            a23 = RowPairQ4(q + 32, xLow, xHigh, Avx512F.PermuteVar16x32(scales, rows23), a23);
            xLow = Broadcast256(x + 32);
            xHigh = Broadcast256(x + 48);
            scales = Avx512F.BroadcastVector128ToVector512(s + 4);
            b01 = RowPairQ4(q + 64, xLow, xHigh, Avx512F.PermuteVar16x32(scales, rows01), b01);
            b23 = RowPairQ4(q + 96, xLow, xHigh, Avx512F.PermuteVar16x32(scales, rows23), b23);
        }
        if (b < blocks)
        {
            var xLow = Broadcast256(x);
            var xHigh = Broadcast256(x + 16);
            var scales = Avx512F.BroadcastVector128ToVector512(s);
            a01 = RowPairQ4(q, xLow, xHigh, Avx512F.PermuteVar16x32(scales, rows01), a01);
            a23 = RowPairQ4(q + 32, xLow, xHigh, Avx512F.PermuteVar16x32(scales, rows23), a23);
        }
        a01 += b01;
        a23 += b23;
        dots[0] = Vector256.Sum(a01.GetLower());
        dots[1] = Vector256.Sum(a01.GetUpper());
        dots[2] = Vector256.Sum(a23.GetLower());
        dots[3] = Vector256.Sum(a23.GetUpper());
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> BlockQ4(byte* q, Vector256<short> xLow, Vector256<short> xHigh, float scale, Vector256<float> acc)
    {
        var w = Avx2.ConvertToVector256Int16(q);
        var sum = Avx2.MultiplyAddAdjacent(w & Vector256.Create((short)0xF), xLow) +
                  Avx2.MultiplyAddAdjacent(Avx2.ShiftRightLogical(w, 4), xHigh);
        return Fma.MultiplyAdd(Avx.ConvertToVector256Single(sum), Vector256.Create(scale), acc);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void DotsQ4Avx2(byte* q, int blocks, short* x, float* s, float* dots)
    {
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
        for (int b = 0; b < blocks; b++, q += 64, x += 32, s += 4)
        {
            Sse.Prefetch0(q + PrefetchBytes);
            var xLow = Vector256.Load(x);
            var xHigh = Vector256.Load(x + 16);
            a0 = BlockQ4(q, xLow, xHigh, s[0], a0);
            a1 = BlockQ4(q + 16, xLow, xHigh, s[1], a1);
            a2 = BlockQ4(q + 32, xLow, xHigh, s[2], a2);
            a3 = BlockQ4(q + 48, xLow, xHigh, s[3], a3);
        }
        dots[0] = Vector256.Sum(a0);
        dots[1] = Vector256.Sum(a1);
        dots[2] = Vector256.Sum(a2);
        dots[3] = Vector256.Sum(a3);
    }

    private static void DotsQ4Scalar(byte* q, int blocks, short* x, float* s, float* dots)
    {
        const int half = QuantizedLayout.BlockSize / 2;
        for (int r = 0; r < QuantizedLayout.PanelRows; r++) dots[r] = 0;
        for (int b = 0; b < blocks; b++, x += 32, s += 4)
        {
            for (int r = 0; r < QuantizedLayout.PanelRows; r++, q += half)
            {
                int sum = 0;
                for (int j = 0; j < half; j++) sum += (q[j] & 0xF) * x[j] + (q[j] >> 4) * x[j + half];
                dots[r] += sum * s[r];
            }
        }
    }

    /// <summary>A worker thread's buffers, grown (never shrunk) to the widest matrix it has seen.</summary>
    private sealed class Scratch
    {
        private readonly NativeBuffer _buffer;

        public Scratch(int cols)
        {
            Capacity = cols;
            int scaleCount = cols / QuantizedLayout.BlockSize * QuantizedLayout.PanelRows;
            long input = Align(cols * sizeof(short)), scales = Align(scaleCount * sizeof(float));
            long panel = (long)QuantizedLayout.PanelRows * cols * sizeof(float);
            _buffer = new NativeBuffer(input + 3 * scales + 64 + panel);
            byte* p = (byte*)_buffer.Pointer;
            Input = (short*)p;
            InputScales = (float*)(p + input);
            InputSums = (float*)(p + input + scales);
            Scales = (float*)(p + input + 2 * scales);
            Dots = (float*)(p + input + 3 * scales);
            PanelRows = (float*)(p + input + 3 * scales + 64);
        }

        /// <summary>The widest matrix (columns) the buffers fit.</summary>
        public int Capacity { get; }

        /// <summary>x̂, the quantized input [cols].</summary>
        public short* Input { get; }

        /// <summary>The input scale of block b at [4b, 4b + 4).</summary>
        public float* InputScales { get; }

        /// <summary>Σ x̂ over block b at [4b, 4b + 4).</summary>
        public float* InputSums { get; }

        /// <summary>The current panel's weight scale · input scale, [blocks][4].</summary>
        public float* Scales { get; }

        /// <summary>The current panel's four dot products.</summary>
        public float* Dots { get; }

        /// <summary>The current panel dequantized, [4][cols] (batched products only).</summary>
        public float* PanelRows { get; }

        private static long Align(long bytes) => (bytes + 63) & ~63L;
    }
}
