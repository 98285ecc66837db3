using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace GemmaGen.Kernels;

/// <summary>
/// Matrix-vector products over the block formats (laid out as <see cref="QuantizedLayout"/> describes, each block type an
/// <see cref="IQuantizedBlock"/>), called through <see cref="WeightMatrix.MatVecRows"/> from the generated kernels' jobs
/// on the worker threads, and the float fallback of the batched products of prefill (<see cref="FloatMatMulRows"/>,
/// where the CPU does not run <see cref="QuantizedMatMul"/> for the format).
/// <para>
/// Each matrix-vector call first quantizes the input x to int16, in blocks of 32 with a float scale each
/// (s = max|x| / 32767, x̂ = round(x · 32767 / max|x|)), once per call and thread, into thread-local scratch (no
/// allocation after a thread's first call). A row's dot product is then Σ over blocks of (weight scale · input scale) ·
/// Σ q·x̂, the inner sums exact in int32, over the four rows of a panel at once (<see cref="IQuantizedBlock.PanelDots"/>:
/// one loop written over the vector width, <see cref="IPanelWidth{TAcc}"/>, AVX-512 BW or AVX2, with each block type's
/// row product at that width; or scalar code). A block type whose stored integers exceed the weights by an offset (Q4_0: 8) has
/// offset·Σ x̂ per block taken off once per row. The only difference from the dot product of the dequantized row
/// with x in float is the input's rounding, at most s/2 per element (about 1.5e-5 of the block's largest input), and
/// the float summation order.
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
    internal const int PrefetchBytes = 3072;

    /// <summary>Largest magnitude of a quantized input value.</summary>
    internal const int InputMax = short.MaxValue;

    [ThreadStatic]
    private static Scratch? t_scratch;

    /// <summary>y[r] = W[r]·x for rows [start, end).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Rows<TBlock>(WeightMatrix matrix, float* x, float* y, int start, int end)
        where TBlock : struct, IQuantizedBlock
    {
        var scratch = Prepare(matrix, x);
        float* dots = scratch.Dots;
        const int n = QuantizedLayout.PanelRows;
        for (int panel = start / n; panel <= (end - 1) / n; panel++)
        {
            PanelDots<TBlock>(matrix, panel, scratch);
            int first = Math.Max(start, panel * n), last = Math.Min(end, panel * n + n);
            for (int r = first; r < last; r++) y[r] = dots[r - panel * n];
        }
    }

    /// <summary>y[i] = gelu_tanh(W[2i]·x)·(W[2i+1]·x) for outputs [start, end) of an interleaved gate/up matrix
    /// (gate row i is row 2i, up row i is row 2i + 1: each panel holds two outputs).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void GateUpRows<TBlock>(WeightMatrix matrix, float* x, float* y, int start, int end)
        where TBlock : struct, IQuantizedBlock
    {
        var scratch = Prepare(matrix, x);
        float* dots = scratch.Dots;
        const int outputs = QuantizedLayout.PanelRows / 2;
        for (int panel = start / outputs; panel <= (end - 1) / outputs; panel++)
        {
            PanelDots<TBlock>(matrix, panel, scratch);
            int first = Math.Max(start, panel * outputs), last = Math.Min(end, panel * outputs + outputs);
            for (int i = first; i < last; i++)
            {
                int lane = 2 * (i - panel * outputs);
                y[i] = Activations.GeluTanh(dots[lane]) * dots[lane + 1];
            }
        }
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
        if (matrix.Format is not QuantizedFormat)
            throw new ArgumentException($"{matrix.Name} is {matrix.Format}, not a block format", nameof(matrix));
        if (start < 0 || end > matrix.Rows || start > end)
            throw new ArgumentOutOfRangeException(nameof(start), $"rows [{start}, {end}) are not within [0, {matrix.Rows})");
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
    private static void PanelDots<TBlock>(WeightMatrix matrix, int panel, Scratch scratch)
        where TBlock : struct, IQuantizedBlock
    {
        const int n = QuantizedLayout.PanelRows;
        int cols = matrix.Cols, blocks = cols / QuantizedLayout.BlockSize, scaleBytes = QuantizedLayout.ScaleBytes(cols);
        byte* start = (byte*)matrix.Data + panel * (scaleBytes + (long)blocks * n * TBlock.QuantBytes);
        ushort* weightScales = (ushort*)start;
        int count = blocks * n;
        Vector128<float> offsetSums;
        if (Avx512F.IsSupported) offsetSums = CombineScales<Width512, Vector512<float>>(weightScales, count, scratch.InputScales, scratch.InputSums, scratch.Scales);
        else if (Avx2.IsSupported && Fma.IsSupported) offsetSums = CombineScales<Width256, Vector256<float>>(weightScales, count, scratch.InputScales, scratch.InputSums, scratch.Scales);
        else offsetSums = CombineScalesScalar(weightScales, 0, count, scratch.InputScales, scratch.InputSums, scratch.Scales);
        TBlock.PanelDots(start + scaleBytes, blocks, scratch.Input, scratch.Scales, scratch.Dots);
        if (TBlock.DotsOffset != 0)
        {
            for (int r = 0; r < n; r++) scratch.Dots[r] -= TBlock.DotsOffset * offsetSums.GetElement(r);
        }
    }

    /// <summary>
    /// The four dot products of a panel at width <typeparamref name="TW"/>, written once for every width and block type
    /// (<see cref="IQuantizedBlock.PanelDots"/>): dots[i] = Σ over blocks b of s[4b + i] · (row i's block product,
    /// <typeparamref name="TRow"/>), the quants at <paramref name="q"/> in blocks of four rows of
    /// <paramref name="rowBytes"/> bytes. Two blocks per iteration, eight accumulators (four rows × two blocks) to hide
    /// the FMA latency, the stream prefetched <see cref="PrefetchBytes"/> ahead.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void PanelDots<TW, TAcc, TRow>(byte* q, int rowBytes, int blocks, short* x, float* s, float* dots)
        where TW : struct, IPanelWidth<TAcc>
        where TAcc : struct
        where TRow : struct, IRowProduct<TAcc>
    {
        const int size = QuantizedLayout.BlockSize;
        int blockBytes = QuantizedLayout.PanelRows * rowBytes;
        TAcc a0 = default, a1 = default, a2 = default, a3 = default;
        TAcc b0 = default, b1 = default, b2 = default, b3 = default;
        int b = 0;
        for (; b + 2 <= blocks; b += 2, q += 2 * blockBytes, x += 2 * size, s += 8)
        {
            for (int line = 0; line < 2 * blockBytes; line += 64) Sse.Prefetch0(q + PrefetchBytes + line);
            a0 = TRow.Row(q, x, s[0], a0);
            a1 = TRow.Row(q + rowBytes, x, s[1], a1);
            a2 = TRow.Row(q + 2 * rowBytes, x, s[2], a2);
            a3 = TRow.Row(q + 3 * rowBytes, x, s[3], a3);
            b0 = TRow.Row(q + blockBytes, x + size, s[4], b0);
            b1 = TRow.Row(q + blockBytes + rowBytes, x + size, s[5], b1);
            b2 = TRow.Row(q + blockBytes + 2 * rowBytes, x + size, s[6], b2);
            b3 = TRow.Row(q + blockBytes + 3 * rowBytes, x + size, s[7], b3);
        }
        if (b < blocks)
        {
            a0 = TRow.Row(q, x, s[0], a0);
            a1 = TRow.Row(q + rowBytes, x, s[1], a1);
            a2 = TRow.Row(q + 2 * rowBytes, x, s[2], a2);
            a3 = TRow.Row(q + 3 * rowBytes, x, s[3], a3);
        }
        dots[0] = TW.Sum(TW.Add(a0, b0));
        dots[1] = TW.Sum(TW.Add(a1, b1));
        dots[2] = TW.Sum(TW.Add(a2, b2));
        dots[3] = TW.Sum(TW.Add(a3, b3));
    }

    /// <summary>
    /// scales[i] = weight scale i (bf16) · input scale i for the <paramref name="count"/> scales of a panel; returns,
    /// per row of the panel, Σ over blocks of that product · Σ x̂ (what a block type's offset contributes, divided by
    /// the offset).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<float> CombineScales<TW, TAcc>(ushort* weightScales, int count, float* inputScales, float* inputSums, float* scales)
        where TW : struct, IPanelWidth<TAcc>
        where TAcc : struct
    {
        int i = 0;
        TAcc acc = default;
        for (; i + TW.Count <= count; i += TW.Count)
            acc = TW.ScaleProducts(weightScales + i, inputScales + i, inputSums + i, scales + i, acc);
        return TW.Fold(acc) + CombineScalesScalar(weightScales, i, count, inputScales, inputSums, scales);
    }

    /// <summary><see cref="CombineScales{TW, TAcc}"/> for scales [<paramref name="from"/>, <paramref name="count"/>),
    /// one at a time.</summary>
    private static Vector128<float> CombineScalesScalar(ushort* weightScales, int from, int count, float* inputScales, float* inputSums, float* scales)
    {
        float o0 = 0, o1 = 0, o2 = 0, o3 = 0;
        for (int i = from; i < count; i += 4)
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
