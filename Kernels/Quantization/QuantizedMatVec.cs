using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace GemmaGen.Kernels;

/// <summary>
/// Matrix-vector products over the block formats (laid out as <see cref="QuantizedLayout"/> describes, each block type an
/// <see cref="IQuantizedBlock"/>), called through <see cref="WeightMatrix.MatVecRows"/> from the generated kernels' jobs
/// on the worker threads, and the float fallback of the batched products (<see cref="FloatMatMulRows"/>, where the CPU
/// does not run <see cref="QuantizedMatMul"/> for the format).
/// <para>
/// Each matrix-vector call first quantizes the input x to int16, in blocks of 32 with a float scale each
/// (s = max|x| / 32767, x̂ = round(x · 32767 / max|x|)), once per call and thread, into thread-local scratch (no
/// allocation after a thread's first call). A row's dot product is then Σ over blocks of (weight scale · input scale) ·
/// (Σ stored·x̂ − offset·Σ x̂), the inner sums exact in int32, for the sixteen rows of a group at once: each 256-bit half
/// of a record's vector (four columns of eight rows, as stored) is widened to int16 and multiplied pairwise with the
/// four inputs of those columns (<c>vpmaddwd</c>), so that each row's sum gathers in two lanes of its own, added at the
/// end of the block, where the sixteen rows' scales are applied at once. The only difference from the dot product of
/// the dequantized row with x in float is the input's rounding, at most s/2 per element (about 1.5e-5 of the block's
/// largest input), and the float summation order.
/// </para>
/// <para>
/// Everything on the per-token path is jitted fully optimized at once: a decoder with few layers calls these
/// methods too rarely for tiered compilation to promote them in time, and their tier-0 vector code is many times
/// slower.
/// </para>
/// </summary>
public static unsafe partial class QuantizedMatVec
{
    /// <summary>How far ahead of the loads the kernels prefetch. The hardware prefetcher alone left the stream at
    /// 55–65% of the bandwidth probe (2 threads, Xeon with AVX-512); 3 KiB ahead reached 80–90%, 1 KiB about 75%.</summary>
    internal const int PrefetchBytes = 3072;

    /// <summary>Largest magnitude of a quantized input value.</summary>
    internal const int InputMax = short.MaxValue;

    /// <summary>Rows the float fallback dequantizes and multiplies at a time.</summary>
    private const int DotRows = 4;

    [ThreadStatic]
    private static Scratch? t_scratch;

    /// <summary>y[r] = W[r]·x for rows [start, end).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Rows<TBlock>(WeightMatrix matrix, float* x, float* y, int start, int end)
        where TBlock : struct, IQuantizedBlock
    {
        var scratch = Prepare(matrix, x);
        float* dots = scratch.Dots;
        const int n = QuantizedLayout.GroupRows;
        for (int group = start / n; group <= (end - 1) / n; group++)
        {
            GroupDots<TBlock>(matrix, group, scratch);
            int first = Math.Max(start, group * n), last = Math.Min(end, group * n + n);
            for (int r = first; r < last; r++) y[r] = dots[r - group * n];
        }
    }

    /// <summary>y[i] = gelu_tanh(W[2i]·x)·(W[2i+1]·x) for outputs [start, end) of an interleaved gate/up matrix
    /// (gate row i is row 2i, up row i is row 2i + 1: each group holds eight outputs).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void GateUpRows<TBlock>(WeightMatrix matrix, float* x, float* y, int start, int end)
        where TBlock : struct, IQuantizedBlock
    {
        var scratch = Prepare(matrix, x);
        float* dots = scratch.Dots;
        const int outputs = QuantizedLayout.GroupRows / 2;
        for (int group = start / outputs; group <= (end - 1) / outputs; group++)
        {
            GroupDots<TBlock>(matrix, group, scratch);
            int first = Math.Max(start, group * outputs), last = Math.Min(end, group * outputs + outputs);
            Activations.GeluTanhGated(dots + 2 * (first - group * outputs), y + first, last - first);
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
        if (matrix.Format.ElementSize != null)
            throw new ArgumentException($"{matrix.Name} is {matrix.Format}, not a block format", nameof(matrix));
        matrix.CheckRows(start, end);
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
        const int n = DotRows;
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
        var input = RunInput.Of(x, matrix.Cols, 1, matrix.Cols, 0);
        if (!input.IsHeldIn(scratch.Held))
        {
            QuantizeInput(x, matrix.Cols / QuantizedLayout.BlockSize, scratch.Input, scratch.InputScales, scratch.InputSums);
            scratch.Held = input;
        }
        return scratch;
    }

    /// <summary>
    /// Quantizes <paramref name="blocks"/> blocks of 32 floats to int16: per block s = max|x| / 32767 and
    /// x̂ = round(x · (32767 / max|x|)), ties to even (all zero when the block is). Writes x̂ to <paramref name="input"/>,
    /// s to <paramref name="scales"/>[b] and Σ x̂ to <paramref name="sums"/>[b].
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void QuantizeInput(float* x, int blocks, short* input, float* scales, int* sums)
    {
        const int size = QuantizedLayout.BlockSize;
        for (int b = 0; b < blocks; b++, x += size, input += size)
        {
            float max = MaxMagnitude(x, size);
            scales[b] = max / InputMax;
            sums[b] = Round(x, max, input, out _);
        }
    }

    /// <summary>max |x[i]| over <paramref name="count"/> floats (a multiple of 8).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float MaxMagnitude(float* x, int count)
    {
        if (Avx2.IsSupported)
        {
            var m = Vector256<float>.Zero;
            for (int i = 0; i < count; i += 8) m = Vector256.Max(m, Vector256.Abs(Vector256.Load(x + i)));
            return QuantizedLayout.MaxAcross(m);
        }
        float max = 0;
        for (int i = 0; i < count; i++) max = MathF.Max(max, MathF.Abs(x[i]));
        return max;
    }

    /// <summary>The 32 floats at <paramref name="x"/> as int16 for an input whose largest magnitude is
    /// <paramref name="max"/>: round(x · 32767 / max), ties to even (all zero when max is zero), into
    /// <paramref name="q"/>; returns their sum, and that of the first 16 in <paramref name="first"/>. The one rounding of
    /// every int16 input (this kernel's, the K-quants').</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static int Round(float* x, float max, short* q, out int first)
    {
        first = 0;
        if (max == 0)
        {
            new Span<short>(q, 32).Clear();
            return 0;
        }
        float inverse = InputMax / max;
        if (Avx2.IsSupported)
        {
            Vector256<int> q0 = Avx.ConvertToVector256Int32(Vector256.Load(x) * inverse), q1 = Avx.ConvertToVector256Int32(Vector256.Load(x + 8) * inverse);
            Vector256<int> q2 = Avx.ConvertToVector256Int32(Vector256.Load(x + 16) * inverse), q3 = Avx.ConvertToVector256Int32(Vector256.Load(x + 24) * inverse);
            Vector256.Narrow(q0, q1).Store(q);
            Vector256.Narrow(q2, q3).Store(q + 16);
            first = Vector256.Sum(q0 + q1);
            return first + Vector256.Sum(q2 + q3);
        }
        int sum = 0;
        for (int i = 0; i < 32; i++)
        {
            q[i] = (short)MathF.Round(x[i] * inverse);
            sum += q[i];
            if (i == 15) first = sum;
        }
        return sum;
    }

    /// <summary>The sixteen dot products of group <paramref name="group"/> with the quantized input, into
    /// <c>scratch.Dots</c>: 512-bit with AVX-512 BW, else 256-bit with AVX2, else scalar.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void GroupDots<TBlock>(WeightMatrix matrix, int group, Scratch scratch)
        where TBlock : struct, IQuantizedBlock
    {
        int cols = matrix.Cols, blocks = cols / QuantizedLayout.BlockSize, scaleBytes = QuantizedLayout.ScaleBytes(cols);
        int recordBytes = TBlock.QuantBytes * QuantizedLayout.GroupRows;
        byte* start = (byte*)matrix.Data + group * (scaleBytes + (long)blocks * recordBytes);
        if (Avx512BW.IsSupported) Dots512<TBlock>(start + scaleBytes, (ushort*)start, blocks, scratch.Input, scratch.InputScales, scratch.InputSums, scratch.Dots);
        else if (Avx2.IsSupported && Fma.IsSupported) Dots256<TBlock>(start + scaleBytes, (ushort*)start, blocks, scratch.Input, scratch.InputScales, scratch.InputSums, scratch.Dots);
        else DotsScalar<TBlock>(start + scaleBytes, (ushort*)start, blocks, scratch.Input, scratch.InputScales, scratch.InputSums, scratch.Dots);
    }

    /// <summary>The lanes that gather each row's two partial sums: row i (i &lt; 8) from lanes 2i, 2i + 1 of the first
    /// accumulator, row 8 + i from those of the second.</summary>
    private static ReadOnlySpan<int> EvenLanes => [0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30];

    /// <summary>
    /// One group's sixteen rows at 512 bits: per block, per four columns g, each half of the record's vector widened to
    /// int16 (<c>vpmovzxbw</c>; Q4_0 splits its nibbles after widening) meets x̂[4g..4g+3] broadcast (<c>vpmaddwd</c>):
    /// lanes 2i, 2i + 1 of <c>low</c> hold row i's sums (columns 4g, 4g+1 and 4g+2, 4g+3), <c>high</c> rows 8..15. Two float accumulators (even and odd
    /// blocks) hide the FMA latency; the stream is prefetched <see cref="PrefetchBytes"/> ahead.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void Dots512<TBlock>(byte* record, ushort* weightScales, int blocks, short* x, float* inputScales, int* inputSums, float* dots)
        where TBlock : struct, IQuantizedBlock
    {
        int recordBytes = TBlock.QuantBytes * QuantizedLayout.GroupRows;
        var even = Vector512.Create(EvenLanes);
        var odd = even + Vector512<int>.One;
        Vector512<float> o0 = default, o1 = default;
        for (int b = 0; b < blocks; b++, record += recordBytes, x += QuantizedLayout.BlockSize)
        {
            PrefetchRecord<TBlock>(record + PrefetchBytes);
            Vector512<int> low = default, high = default;
            Columns512<TBlock>(record, x, 0, ref low, ref high);
            Columns512<TBlock>(record, x, 1, ref low, ref high);
            Columns512<TBlock>(record, x, 2, ref low, ref high);
            Columns512<TBlock>(record, x, 3, ref low, ref high);
            var sums = Avx512F.PermuteVar16x32x2(low, even, high) + Avx512F.PermuteVar16x32x2(low, odd, high) - Vector512.Create(TBlock.Offset * inputSums[b]);
            var scale = TBlock.Scales512(weightScales + b * QuantizedLayout.GroupRows) * inputScales[b];
            if ((b & 1) == 0) o0 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(sums), scale, o0);
            else o1 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(sums), scale, o1);
        }
        (o0 + o1).Store(dots);
    }

    /// <summary>Prefetches the record at <paramref name="record"/> (four or eight lines), unrolled.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void PrefetchRecord<TBlock>(byte* record)
        where TBlock : struct, IQuantizedBlock
    {
        Sse.Prefetch0(record);
        Sse.Prefetch0(record + 64);
        Sse.Prefetch0(record + 128);
        Sse.Prefetch0(record + 192);
        if (TBlock.QuantBytes * QuantizedLayout.GroupRows <= 256) return;
        Sse.Prefetch0(record + 256);
        Sse.Prefetch0(record + 320);
        Sse.Prefetch0(record + 384);
        Sse.Prefetch0(record + 448);
    }

    /// <summary>Columns 4g..4g+3 and 4(g+4)..4(g+4)+3 of the sixteen rows against their inputs
    /// (<see cref="Dots512{TBlock}"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Columns512<TBlock>(byte* record, short* x, int g, ref Vector512<int> low, ref Vector512<int> high)
        where TBlock : struct, IQuantizedBlock
    {
        Vector512<short> input = Vector512.Create(*(long*)(x + 4 * g)).AsInt16(), later = Vector512.Create(*(long*)(x + 4 * g + 16)).AsInt16();
        TBlock.Widened512(record, g, 0, out var first, out var second);
        low += Avx512BW.MultiplyAddAdjacent(first, input) + Avx512BW.MultiplyAddAdjacent(second, later);
        TBlock.Widened512(record, g, 1, out first, out second);
        high += Avx512BW.MultiplyAddAdjacent(first, input) + Avx512BW.MultiplyAddAdjacent(second, later);
    }

    /// <summary>
    /// <see cref="Dots512{TBlock}"/> at 256 bits: each half of the group (eight rows) in two accumulators of four rows'
    /// pairs of lanes, gathered per block by a horizontal add and a permute of 64-bit lanes. Never inlined (nor
    /// <see cref="Dots512{TBlock}"/>): compiled on its own, its helpers inline within its own budget; inlined through
    /// <see cref="Rows{TBlock}"/> into a tiered caller, the JIT once ran out of budget there and left the widening and
    /// the products as calls (whole 2B decode 1.3x slower, Q8_0 and Q4_0 alike).
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void Dots256<TBlock>(byte* record, ushort* weightScales, int blocks, short* x, float* inputScales, int* inputSums, float* dots)
        where TBlock : struct, IQuantizedBlock
    {
        int recordBytes = TBlock.QuantBytes * QuantizedLayout.GroupRows;
        Vector256<float> o0 = default, o1 = default;
        for (int b = 0; b < blocks; b++, record += recordBytes, x += QuantizedLayout.BlockSize)
        {
            PrefetchRecord<TBlock>(record + PrefetchBytes);
            var offset = Vector256.Create(TBlock.Offset * inputSums[b]);
            float s = inputScales[b];
            o0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(Half256<TBlock>(record, x, 0) - offset), TBlock.Scales256(weightScales + b * QuantizedLayout.GroupRows) * s, o0);
            o1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(Half256<TBlock>(record, x, 1) - offset), TBlock.Scales256(weightScales + b * QuantizedLayout.GroupRows + 8) * s, o1);
        }
        o0.Store(dots);
        o1.Store(dots + 8);
    }

    /// <summary>The integer sums of rows 8<paramref name="half"/>..8·half+7 of one block, in row order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Half256<TBlock>(byte* record, short* x, int half)
        where TBlock : struct, IQuantizedBlock
    {
        Vector256<int> a = default, c = default;
        if (TBlock.DecodeUnrolled)
        {
            // Written out: the same four steps through a helper taking a and c by reference ran 0.63–0.9x this form (and
            // Group256 for one token, with unused accumulators passed, slower than the loop).
            TBlock.Widened256(record, 0, half, out var low, out var high, out var laterLow, out var laterHigh);
            Token256(low, high, laterLow, laterHigh, x, ref a, ref c);
            TBlock.Widened256(record, 1, half, out low, out high, out laterLow, out laterHigh);
            Token256(low, high, laterLow, laterHigh, x + 4, ref a, ref c);
            TBlock.Widened256(record, 2, half, out low, out high, out laterLow, out laterHigh);
            Token256(low, high, laterLow, laterHigh, x + 8, ref a, ref c);
            TBlock.Widened256(record, 3, half, out low, out high, out laterLow, out laterHigh);
            Token256(low, high, laterLow, laterHigh, x + 12, ref a, ref c);
        }
        else
        {
            for (int g = 0; g < 4; g++)
            {
                TBlock.Widened256(record, g, half, out var low, out var high, out var laterLow, out var laterHigh);
                Token256(low, high, laterLow, laterHigh, x + 4 * g, ref a, ref c);
            }
        }
        // a: rows 0, 1 | 2, 3 (two lanes each); c: rows 4, 5 | 6, 7. The horizontal add gives rows 0, 1, 4, 5 | 2, 3, 6, 7.
        return Avx2.Permute4x64(Avx2.HorizontalAdd(a, c).AsInt64(), 0b11_01_10_00).AsInt32();
    }

    /// <summary>The sixteen dot products without vector instructions, the same integer sums in the same order of blocks.</summary>
    private static void DotsScalar<TBlock>(byte* record, ushort* weightScales, int blocks, short* x, float* inputScales, int* inputSums, float* dots)
        where TBlock : struct, IQuantizedBlock
    {
        const int n = QuantizedLayout.GroupRows;
        int recordBytes = TBlock.QuantBytes * n;
        var sums = stackalloc int[n];
        new Span<float>(dots, n).Clear();
        for (int b = 0; b < blocks; b++, record += recordBytes, x += QuantizedLayout.BlockSize)
        {
            for (int i = 0; i < n; i++) sums[i] = -TBlock.Offset * inputSums[b];
            for (int g = 0; g < 8; g++)
            {
                for (int half = 0; half < 2; half++)
                {
                    var columns = TBlock.Columns(record, g, half);
                    for (int i = 0; i < 8; i++)
                    {
                        for (int j = 0; j < 4; j++) sums[8 * half + i] += columns.GetElement(4 * i + j) * x[4 * g + j];
                    }
                }
            }
            for (int i = 0; i < n; i++) dots[i] += sums[i] * (TBlock.Scale(weightScales[b * n + i]) * inputScales[b]);
        }
    }

    /// <summary>A worker thread's buffers, grown (never shrunk) to the widest matrix it has seen.</summary>
    private sealed class Scratch
    {
        private readonly NativeBuffer _buffer;

        public Scratch(int cols)
        {
            Capacity = cols;
            int blocks = cols / QuantizedLayout.BlockSize;
            long input = NativeBuffer.Align(cols * sizeof(short)), perBlock = NativeBuffer.Align(blocks * sizeof(float));
            long dots = QuantizedLayout.GroupRows * sizeof(float), panel = (long)DotRows * cols * sizeof(float);
            _buffer = new NativeBuffer(input + 2 * perBlock + dots + panel);
            byte* p = (byte*)_buffer.Pointer;
            Input = (short*)p;
            InputScales = (float*)(p + input);
            InputSums = (int*)(p + input + perBlock);
            Dots = (float*)(p + input + 2 * perBlock);
            PanelRows = (float*)(p + input + 2 * perBlock + dots);
        }

        /// <summary>The widest matrix (columns) the buffers fit.</summary>
        public int Capacity { get; }

        /// <summary>What the quantized input holds, for the run's later chunks (<see cref="RunInput"/>).</summary>
        public RunInput Held { get; set; }

        /// <summary>x̂, the quantized input [cols].</summary>
        public short* Input { get; }

        /// <summary>The input scale of each block.</summary>
        public float* InputScales { get; }

        /// <summary>Σ x̂ over each block.</summary>
        public int* InputSums { get; }

        /// <summary>The current group's sixteen dot products.</summary>
        public float* Dots { get; }

        /// <summary>Rows dequantized for the float fallback, [<see cref="DotRows"/>][cols].</summary>
        public float* PanelRows { get; }
    }
}
