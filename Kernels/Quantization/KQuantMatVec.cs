using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace GemmaGen.Kernels;

/// <summary>
/// Matrix-vector products over the K-quant formats (<see cref="KQuantFormat{TBlock}"/>: ggml's super-blocks as stored,
/// rows one after another), called through <see cref="WeightMatrix.MatVecRows"/> on the worker threads.
/// <para>
/// Each call first quantizes the input x to int16 per super-block of 256 (s = max|x| / 32767, x̂ = round(x / s)), once
/// per pool run and thread (<see cref="RunInput"/>), into thread-local scratch, with Σ x̂ of each 32 (what the minimums
/// multiply). A row's dot product is then, per super-block, s·d·Σ_j sc_j·Σ q·x̂ − s·dmin·Σ_j m_j·Σ x̂ (Q6_K:
/// s·d·Σ_k sc_k·Σ (q − 32)·x̂): the values times their sub-block scale are int16 and meet the int16 inputs pairwise
/// (<c>vpmaddwd</c>), summed exactly in int32 lanes per 128 values, then scaled into float lanes. The only differences
/// from the dot product of the dequantized row with x in float are the input's rounding, at most s/2 per element
/// (1.5e-5 of the super-block's largest input), and the summation order. 512-bit with AVX-512 BW, 256-bit with AVX2
/// and FMA, else the rows dequantized and multiplied with x̂ in scalar code.
/// </para>
/// </summary>
internal static unsafe class KQuantMatVec
{
    [ThreadStatic]
    private static Scratch? t_scratch;

    /// <summary>y[r] = W[r]·x for rows [start, end).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Rows<TBlock>(WeightMatrix matrix, float* x, float* y, int start, int end)
        where TBlock : struct, IKQuantBlock
    {
        var scratch = Prepare(matrix, x);
        int blocks = matrix.Cols / KQuantBlocks.BlockSize;
        long rowBytes = (long)blocks * TBlock.BlockBytes;
        byte* row = (byte*)matrix.Data + start * rowBytes;
        for (int r = start; r < end; r++, row += rowBytes)
        {
            y[r] = Avx512BW.IsSupported ? Row512<TBlock>(row, blocks, scratch)
                : Avx2.IsSupported && Fma.IsSupported ? Row256<TBlock>(row, blocks, scratch)
                : RowScalar<TBlock>(row, blocks, scratch);
        }
    }

    /// <summary>Rows <see cref="TokenRows{TBlock}"/> widens and multiplies together: each token's inputs of a
    /// super-block, loaded once, meet the four rows' widened values.</summary>
    private const int PassRows = 4;

    [ThreadStatic]
    private static TokensScratch? t_tokens;

    /// <summary>Whether this CPU runs <see cref="TokenRows{TBlock}"/> (AVX2 and FMA).</summary>
    internal static bool TokensSupported => Avx2.IsSupported && Fma.IsSupported;

    /// <summary>
    /// y[t·yStride + r] = W[r]·x_t for rows [start, end) and tokens [0, tokens), with the inputs rounded to int16 per
    /// super-block as decoding rounds them. Every <see cref="PassRows"/> rows are widened once
    /// (<see cref="IKQuantBlock.Widen"/>: each value times its sub-block scale as int16, into thread-local scratch) and
    /// then meet every token's inputs (<c>vpmaddwd</c>, summed exactly in int32 lanes per 128 values, then scaled
    /// into float lanes; the minimums' part from the inputs' sums per 32), so the weights are decoded once per batch
    /// instead of once per token and read from memory once. The result differs from the dequantized rows times x only
    /// by the input's rounding (as decoding's) and the float summation order.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void TokenRows<TBlock>(WeightMatrix matrix, float* x, int xStride, int tokens, float* y, int yStride, int start, int end)
        where TBlock : struct, IKQuantBlock
    {
        matrix.CheckRows(start, end);
        if (start >= end || tokens <= 0) return;
        if (!TokensSupported)
            throw new PlatformNotSupportedException("the K-quants' batched integer kernel needs AVX2 and FMA");

        const int size = KQuantBlocks.BlockSize;
        int cols = matrix.Cols, blocks = cols / size;
        var scratch = TokensHolding(x, xStride, tokens, cols);

        long rowBytes = (long)blocks * TBlock.BlockBytes;
        for (int r0 = start; r0 < end; r0 += PassRows)
        {
            int rows = Math.Min(PassRows, end - r0);
            byte* first = (byte*)matrix.Data + r0 * rowBytes;
            for (int i = 0; i < rows; i++)
            {
                for (int b = 0; b < blocks; b++)
                {
                    byte* block = first + i * rowBytes + (long)b * TBlock.BlockBytes;
                    Prefetch<TBlock>(block + QuantizedMatVec.PrefetchBytes);
                    int k = i * blocks + b;
                    TBlock.Widen(block, scratch.Widened + (long)k * size, scratch.Minimums + 8 * k, out scratch.D[k], out scratch.DMin[k]);
                }
            }
            var pass = new RowPass(scratch, cols, y + r0, yStride);
            for (int t = 0; t < tokens; t++)
            {
                switch (rows)
                {
                    case 4: Token<TBlock, Count4>(pass, t); break;
                    case 3: Token<TBlock, Count3>(pass, t); break;
                    case 2: Token<TBlock, Count2>(pass, t); break;
                    default: Token<TBlock, Count1>(pass, t); break;
                }
            }
        }
    }

    /// <summary>The widened rows of a pass (in the scratch), the width, and where row 0's outputs go.</summary>
    private readonly struct RowPass(TokensScratch scratch, int cols, float* y, int yStride)
    {
        public readonly TokensScratch Scratch = scratch;
        public readonly int Cols = cols;
        public readonly float* Y = y;
        public readonly int YStride = yStride;
    }

    /// <summary>Token <paramref name="t"/> against the pass's <typeparamref name="TRows"/> widened rows: per super-block
    /// and 128 values, each 16 inputs loaded once and multiplied with every row's (an int32 accumulator per row), then
    /// scaled into a float accumulator per row, the minimums' part subtracted there; all in registers.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Token<TBlock, TRows>(in RowPass pass, int t)
        where TBlock : struct, IKQuantBlock
        where TRows : struct, ICount
    {
        const int size = KQuantBlocks.BlockSize;
        var scratch = pass.Scratch;
        int cols = pass.Cols, blocks = cols / size;
        long rowStride = (long)blocks * size;
        short* x = scratch.Input + (long)t * cols;
        float* scales = scratch.Scales + t * blocks;
        int* sums = scratch.Sums + t * (cols / 32);
        short* w = scratch.Widened;
        int* mins = scratch.Minimums;
        float* d = scratch.D, dmin = scratch.DMin;
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
        for (int b = 0; b < blocks; b++, x += size, w += size, sums += 8, mins += 8)
        {
            float s = scales[b];
            for (int half = 0; half < 2; half++)
            {
                Vector256<int> i0 = default, i1 = default, i2 = default, i3 = default;
                short* xs = x + 128 * half, row = w + 128 * half;
                Sixteen<TRows>(xs, row, rowStride, ref i0, ref i1, ref i2, ref i3);
                Sixteen<TRows>(xs + 16, row + 16, rowStride, ref i0, ref i1, ref i2, ref i3);
                Sixteen<TRows>(xs + 32, row + 32, rowStride, ref i0, ref i1, ref i2, ref i3);
                Sixteen<TRows>(xs + 48, row + 48, rowStride, ref i0, ref i1, ref i2, ref i3);
                Sixteen<TRows>(xs + 64, row + 64, rowStride, ref i0, ref i1, ref i2, ref i3);
                Sixteen<TRows>(xs + 80, row + 80, rowStride, ref i0, ref i1, ref i2, ref i3);
                Sixteen<TRows>(xs + 96, row + 96, rowStride, ref i0, ref i1, ref i2, ref i3);
                Sixteen<TRows>(xs + 112, row + 112, rowStride, ref i0, ref i1, ref i2, ref i3);
                a0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i0), Vector256.Create(d[b] * s), a0);
                if (TRows.Value > 1) a1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i1), Vector256.Create(d[blocks + b] * s), a1);
                if (TRows.Value > 2) a2 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i2), Vector256.Create(d[2 * blocks + b] * s), a2);
                if (TRows.Value > 3) a3 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i3), Vector256.Create(d[3 * blocks + b] * s), a3);
            }
            if (TBlock.HasMinimums)
            {
                // − s·dmin·m_j·Σ_32 x̂ per sub-block lane (each product exact in int32, at most 63·32·32767 < 2^26, then
                // converted to float32).
                var input = Vector256.Load(sums);
                a0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(Vector256.Load(mins) * input), Vector256.Create(-dmin[b] * s), a0);
                if (TRows.Value > 1) a1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(Vector256.Load(mins + 8 * blocks) * input), Vector256.Create(-dmin[blocks + b] * s), a1);
                if (TRows.Value > 2) a2 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(Vector256.Load(mins + 16 * blocks) * input), Vector256.Create(-dmin[2 * blocks + b] * s), a2);
                if (TRows.Value > 3) a3 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(Vector256.Load(mins + 24 * blocks) * input), Vector256.Create(-dmin[3 * blocks + b] * s), a3);
            }
        }
        float* o = pass.Y + (long)t * pass.YStride;
        o[0] = Vector256.Sum(a0);
        if (TRows.Value > 1) o[1] = Vector256.Sum(a1);
        if (TRows.Value > 2) o[2] = Vector256.Sum(a2);
        if (TRows.Value > 3) o[3] = Vector256.Sum(a3);
    }

    /// <summary>This thread's batch scratch, sized for <paramref name="tokens"/> inputs of <paramref name="cols"/>, with
    /// them quantized into it (kept for the run's later chunks).</summary>
    private static TokensScratch TokensHolding(float* x, int xStride, int tokens, int cols)
    {
        int blocks = cols / KQuantBlocks.BlockSize;
        var scratch = t_tokens;
        if (scratch == null || scratch.Cols < cols || scratch.Tokens < tokens)
            t_tokens = scratch = new TokensScratch(Math.Max(cols, scratch?.Cols ?? 0), Math.Max(tokens, scratch?.Tokens ?? 0));
        var key = RunInput.Of(x, xStride, tokens, cols, 0);
        if (!key.IsHeldIn(scratch.Held))
        {
            for (int t = 0; t < tokens; t++)
                QuantizeInput(x + (long)t * xStride, blocks, scratch.Input + (long)t * cols, scratch.Scales + t * blocks, scratch.Sums + t * (cols / 32));
            scratch.Held = key;
        }
        return scratch;
    }

    /// <summary>x quantized for a matrix-vector product over <paramref name="matrix"/> (<see cref="QuantizeInput"/>), in
    /// this thread's scratch: for kernels of other layouts.</summary>
    internal static QuantizedInput Quantized(WeightMatrix matrix, float* x)
    {
        var scratch = Prepare(matrix, x);
        return new QuantizedInput(scratch.Input, scratch.Scales, scratch.Sums);
    }

    /// <summary><paramref name="tokens"/> inputs of <paramref name="cols"/> quantized (<see cref="QuantizeInput"/>), in
    /// this thread's batch scratch: for kernels of other layouts.</summary>
    internal static QuantizedInput QuantizedTokens(float* x, int xStride, int tokens, int cols)
    {
        var scratch = TokensHolding(x, xStride, tokens, cols);
        return new QuantizedInput(scratch.Input, scratch.Scales, scratch.Sums);
    }

    /// <summary>Inputs quantized by <see cref="QuantizeInput"/>, one after another: x̂ [tokens][cols], the scales
    /// [tokens][cols / 256], Σ x̂ per 32 [tokens][cols / 32].</summary>
    internal readonly struct QuantizedInput(short* values, float* scales, int* sums)
    {
        /// <summary>Token <paramref name="t"/>'s, for inputs of <paramref name="cols"/>.</summary>
        public TokenInput Token(int t, int cols) =>
            new(values + (long)t * cols, scales + t * (cols / KQuantBlocks.BlockSize), sums + t * (cols / 32));
    }

    /// <summary>One input quantized by <see cref="QuantizeInput"/>: x̂, the scale s of each super-block, Σ x̂ of each 32.</summary>
    internal readonly struct TokenInput(short* values, float* scales, int* sums)
    {
        public short* Values { get; } = values;

        public float* Scales { get; } = scales;

        public int* Sums { get; } = sums;
    }

    /// <summary>This thread's scratch, sized for the matrix, with x quantized into it (kept for the run's later chunks).</summary>
    private static Scratch Prepare(WeightMatrix matrix, float* x)
    {
        var scratch = t_scratch;
        if (scratch == null || scratch.Capacity < matrix.Cols) t_scratch = scratch = new Scratch(matrix.Cols);
        var input = RunInput.Of(x, matrix.Cols, 1, matrix.Cols, 0);
        if (!input.IsHeldIn(scratch.Held))
        {
            QuantizeInput(x, matrix.Cols / KQuantBlocks.BlockSize, scratch.Input, scratch.Scales, scratch.Sums);
            scratch.Held = input;
        }
        return scratch;
    }

    /// <summary>
    /// Quantizes <paramref name="blocks"/> super-blocks of 256 floats to int16: per super-block s = max|x| / 32767 and
    /// x̂ = round(x · (32767 / max|x|)), ties to even (all zero when the super-block is). Writes x̂ to
    /// <paramref name="input"/>, s to <paramref name="scales"/>[b] and Σ x̂ of each 32 to <paramref name="sums"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void QuantizeInput(float* x, int blocks, short* input, float* scales, int* sums)
    {
        const int size = KQuantBlocks.BlockSize;
        for (int b = 0; b < blocks; b++, x += size, input += size, sums += size / 32)
        {
            float max = QuantizedMatVec.MaxMagnitude(x, size);
            scales[b] = max / QuantizedMatVec.InputMax;
            for (int j = 0; j < size / 32; j++) sums[j] = QuantizedMatVec.Round(x + 32 * j, max, input + 32 * j);
        }
    }

    /// <summary>One row at 512 bits: a float accumulator of 16 lanes and one of 8 for the minimums' part, the stream
    /// prefetched <see cref="QuantizedMatVec.PrefetchBytes"/> ahead.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Row512<TBlock>(byte* row, int blocks, Scratch scratch)
        where TBlock : struct, IKQuantBlock
    {
        Vector512<float> acc = default;
        Vector256<float> minus = default;
        short* x = scratch.Input;
        for (int b = 0; b < blocks; b++, row += TBlock.BlockBytes, x += KQuantBlocks.BlockSize)
        {
            Prefetch<TBlock>(row + QuantizedMatVec.PrefetchBytes);
            TBlock.Dot512(row, x, scratch.Sums + 8 * b, scratch.Scales[b], ref acc, ref minus);
        }
        return Vector512.Sum(acc) - Vector256.Sum(minus);
    }

    /// <summary><see cref="Row512{TBlock}"/> at 256 bits.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Row256<TBlock>(byte* row, int blocks, Scratch scratch)
        where TBlock : struct, IKQuantBlock
    {
        Vector256<float> acc = default, minus = default;
        short* x = scratch.Input;
        for (int b = 0; b < blocks; b++, row += TBlock.BlockBytes, x += KQuantBlocks.BlockSize)
        {
            Prefetch<TBlock>(row + QuantizedMatVec.PrefetchBytes);
            TBlock.Dot256(row, x, scratch.Sums + 8 * b, scratch.Scales[b], ref acc, ref minus);
        }
        return Vector256.Sum(acc) - Vector256.Sum(minus);
    }

    /// <summary>One row without vector instructions: each super-block dequantized (<see cref="IKQuantBlock.Dequantize"/>)
    /// and multiplied with x̂, scaled by s.</summary>
    private static float RowScalar<TBlock>(byte* row, int blocks, Scratch scratch)
        where TBlock : struct, IKQuantBlock
    {
        const int size = KQuantBlocks.BlockSize;
        float* values = stackalloc float[size];
        float total = 0;
        for (int b = 0; b < blocks; b++)
        {
            TBlock.Dequantize(row + (long)b * TBlock.BlockBytes, values);
            short* x = scratch.Input + b * size;
            float sum = 0;
            for (int i = 0; i < size; i++) sum += values[i] * x[i];
            total += sum * scratch.Scales[b];
        }
        return total;
    }

    /// <summary>Prefetches the lines of one super-block.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Prefetch<TBlock>(byte* block)
        where TBlock : struct, IKQuantBlock
    {
        Sse.Prefetch0(block);
        Sse.Prefetch0(block + 64);
        Sse.Prefetch0(block + 128);
        if (TBlock.BlockBytes > 192) Sse.Prefetch0(block + 192);
    }

    /// <summary>Sixteen inputs, loaded once, against the same sixteen values of each row (rows <paramref name="rowStride"/>
    /// apart): i· += the pairwise products (written out, so that the JIT keeps every accumulator in a register).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Sixteen<TRows>(short* x, short* row, long rowStride, ref Vector256<int> i0, ref Vector256<int> i1, ref Vector256<int> i2, ref Vector256<int> i3)
        where TRows : struct, ICount
    {
        var input = Vector256.Load(x);
        i0 += Avx2.MultiplyAddAdjacent(Vector256.Load(row), input);
        if (TRows.Value > 1) i1 += Avx2.MultiplyAddAdjacent(Vector256.Load(row + rowStride), input);
        if (TRows.Value > 2) i2 += Avx2.MultiplyAddAdjacent(Vector256.Load(row + 2 * rowStride), input);
        if (TRows.Value > 3) i3 += Avx2.MultiplyAddAdjacent(Vector256.Load(row + 3 * rowStride), input);
    }

    /// <summary>A worker thread's buffers for <see cref="TokenRows{TBlock}"/>, grown (never shrunk) to the widest matrix
    /// and largest batch it has seen.</summary>
    private sealed class TokensScratch
    {
        private readonly NativeBuffer _buffer;

        public TokensScratch(int cols, int tokens)
        {
            Cols = cols;
            Tokens = tokens;
            int blocks = cols / KQuantBlocks.BlockSize;
            long input = NativeBuffer.Align((long)tokens * cols * sizeof(short)), scales = NativeBuffer.Align((long)tokens * blocks * sizeof(float));
            long sums = NativeBuffer.Align((long)tokens * (cols / 32) * sizeof(int)), widened = NativeBuffer.Align((long)PassRows * cols * sizeof(short));
            long minimums = NativeBuffer.Align((long)PassRows * blocks * 8 * sizeof(int)), perBlock = NativeBuffer.Align((long)PassRows * blocks * sizeof(float));
            _buffer = new NativeBuffer(input + scales + sums + widened + minimums + 2 * perBlock);
            byte* p = (byte*)_buffer.Pointer;
            Input = (short*)p;
            Scales = (float*)(p += input);
            Sums = (int*)(p += scales);
            Widened = (short*)(p += sums);
            Minimums = (int*)(p += widened);
            D = (float*)(p += minimums);
            DMin = (float*)(p + perBlock);
        }

        public int Cols { get; }

        public int Tokens { get; }

        /// <summary>What the quantized inputs hold, for the run's later chunks (<see cref="RunInput"/>).</summary>
        public RunInput Held { get; set; }

        /// <summary>x̂ of every token, [tokens][cols].</summary>
        public short* Input { get; }

        /// <summary>The input scale of each token's super-blocks, [tokens][cols / 256].</summary>
        public float* Scales { get; }

        /// <summary>Σ x̂ over each 32 inputs, [tokens][cols / 32].</summary>
        public int* Sums { get; }

        /// <summary>The pass's rows widened, [rows][cols] (super-block b of row i at (i·blocks + b)·256).</summary>
        public short* Widened { get; }

        /// <summary>Their minimums, [rows][blocks][8].</summary>
        public int* Minimums { get; }

        /// <summary>Their d and dmin, [rows][blocks].</summary>
        public float* D { get; }

        public float* DMin { get; }
    }

    /// <summary>A worker thread's buffers, grown (never shrunk) to the widest matrix it has seen.</summary>
    private sealed class Scratch
    {
        private readonly NativeBuffer _buffer;

        public Scratch(int cols)
        {
            Capacity = cols;
            long input = NativeBuffer.Align(cols * sizeof(short)), scales = NativeBuffer.Align(cols / KQuantBlocks.BlockSize * sizeof(float));
            _buffer = new NativeBuffer(input + scales + NativeBuffer.Align(cols / 32 * sizeof(int)));
            byte* p = (byte*)_buffer.Pointer;
            Input = (short*)p;
            Scales = (float*)(p + input);
            Sums = (int*)(p + input + scales);
        }

        /// <summary>The widest matrix (columns) the buffers fit.</summary>
        public int Capacity { get; }

        /// <summary>What the quantized input holds, for the run's later chunks (<see cref="RunInput"/>).</summary>
        public RunInput Held { get; set; }

        /// <summary>x̂, the quantized input [cols].</summary>
        public short* Input { get; }

        /// <summary>The input scale s of each super-block.</summary>
        public float* Scales { get; }

        /// <summary>Σ x̂ over each 32 inputs.</summary>
        public int* Sums { get; }
    }
}
