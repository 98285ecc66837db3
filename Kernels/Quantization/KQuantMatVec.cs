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

    /// <summary>A worker thread's buffers, grown (never shrunk) to the widest matrix it has seen.</summary>
    private sealed class Scratch
    {
        private readonly NativeBuffer _buffer;

        public Scratch(int cols)
        {
            Capacity = cols;
            long input = Align(cols * sizeof(short)), scales = Align(cols / KQuantBlocks.BlockSize * sizeof(float));
            _buffer = new NativeBuffer(input + scales + Align(cols / 32 * sizeof(int)));
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

        private static long Align(long bytes) => (bytes + 63) & ~63L;
    }
}
