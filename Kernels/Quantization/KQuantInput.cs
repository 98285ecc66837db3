using System.Runtime.CompilerServices;

namespace GemmaGen.Kernels;

/// <summary>
/// The K-quant kernels' inputs (<see cref="KQuantGroupFormat{TGroup}"/>): each token's x quantized to int16 per
/// super-block of 256 (s = max|x| / 32767, x̂ = round(x / s)), with −32·Σ x̂ of each 16 (Q6_K's values are q − 32 and
/// its scales apply per 16) and −Σ x̂ of each 32 as a float (exact; what Q4_K's and Q5_K's minimums multiply), once
/// per pool run and thread (<see cref="RunInput"/>), into thread-local scratch grown to the widest matrix and largest
/// batch seen (no allocation after that). The only differences of a kernel's dot products from the dequantized rows
/// times x in float are this rounding, at most s/2 per element (1.5e-5 of the super-block's largest input), and the
/// summation order.
/// </summary>
internal static unsafe class KQuantInput
{
    [ThreadStatic]
    private static Scratch? t_scratch;

    /// <summary>x quantized for a matrix-vector product over <paramref name="matrix"/>.</summary>
    public static Quantized For(WeightMatrix matrix, float* x) => ForTokens(x, matrix.Cols, 1, matrix.Cols);

    /// <summary><paramref name="tokens"/> inputs of <paramref name="cols"/>, <paramref name="xStride"/> floats apart,
    /// quantized.</summary>
    public static Quantized ForTokens(float* x, int xStride, int tokens, int cols)
    {
        int blocks = cols / KQuantBlocks.BlockSize;
        var scratch = t_scratch;
        if (scratch == null || scratch.Cols < cols || scratch.Tokens < tokens)
            t_scratch = scratch = new Scratch(Math.Max(cols, scratch?.Cols ?? 0), Math.Max(tokens, scratch?.Tokens ?? 0));
        var key = RunInput.Of(x, xStride, tokens, cols, 0);
        if (!key.IsHeldIn(scratch.Held))
        {
            for (int t = 0; t < tokens; t++)
                Quantize(x + (long)t * xStride, blocks, scratch.Input + (long)t * cols, scratch.Scales + t * blocks, scratch.Offsets + t * (cols / 16),
                    scratch.NegatedSums + t * (cols / 32));
            scratch.Held = key;
        }
        return new Quantized(scratch.Input, scratch.Scales, scratch.Offsets, scratch.NegatedSums);
    }

    /// <summary>
    /// Quantizes <paramref name="blocks"/> super-blocks of 256 floats to int16: per super-block s = max|x| / 32767 and
    /// x̂ = round(x · (32767 / max|x|)), ties to even (all zero when the super-block is). Writes x̂ to
    /// <paramref name="input"/>, s to <paramref name="scales"/>[b], −32·Σ x̂ of each 16 to <paramref name="offsets"/> and −Σ x̂
    /// of each 32 to <paramref name="negatedSums"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Quantize(float* x, int blocks, short* input, float* scales, int* offsets, float* negatedSums)
    {
        const int size = KQuantBlocks.BlockSize;
        for (int b = 0; b < blocks; b++, x += size, input += size, offsets += size / 16, negatedSums += size / 32)
        {
            float max = QuantizedMatVec.MaxMagnitude(x, size);
            scales[b] = max / QuantizedMatVec.InputMax;
            for (int j = 0; j < size / 32; j++)
            {
                int total = QuantizedMatVec.Round(x + 32 * j, max, input + 32 * j, out int first);
                offsets[2 * j] = -32 * first;
                offsets[2 * j + 1] = -32 * (total - first);
                negatedSums[j] = -total;
            }
        }
    }

    /// <summary>Inputs quantized one after another: x̂ [tokens][cols], the scales [tokens][cols / 256], −32·Σ x̂ per 16
    /// [tokens][cols / 16], −Σ x̂ per 32 [tokens][cols / 32].</summary>
    internal readonly struct Quantized(short* values, float* scales, int* offsets, float* negatedSums)
    {
        /// <summary>Token <paramref name="t"/>'s, for inputs of <paramref name="cols"/>.</summary>
        public Token Token(int t, int cols) =>
            new(values + (long)t * cols, scales + t * (cols / KQuantBlocks.BlockSize), offsets + t * (cols / 16), negatedSums + t * (cols / 32));
    }

    /// <summary>One quantized input: x̂, the scale s of each super-block, −32·Σ x̂ of each 16, −Σ x̂ of each 32.</summary>
    internal readonly struct Token(short* values, float* scales, int* offsets, float* negatedSums)
    {
        public short* Values { get; } = values;

        public float* Scales { get; } = scales;

        public int* Offsets { get; } = offsets;

        public float* NegatedSums { get; } = negatedSums;
    }

    /// <summary>A worker thread's buffers, grown (never shrunk) to the widest matrix and largest batch it has seen.</summary>
    private sealed class Scratch
    {
        private readonly NativeBuffer _buffer;

        public Scratch(int cols, int tokens)
        {
            Cols = cols;
            Tokens = tokens;
            long input = NativeBuffer.Align((long)tokens * cols * sizeof(short));
            long scales = NativeBuffer.Align((long)tokens * (cols / KQuantBlocks.BlockSize) * sizeof(float));
            long offsets = NativeBuffer.Align((long)tokens * (cols / 16) * sizeof(int));
            _buffer = new NativeBuffer(input + scales + offsets + NativeBuffer.Align((long)tokens * (cols / 32) * sizeof(float)));
            byte* p = (byte*)_buffer.Pointer;
            Input = (short*)p;
            Scales = (float*)(p + input);
            Offsets = (int*)(p + input + scales);
            NegatedSums = (float*)(p + input + scales + offsets);
        }

        public int Cols { get; }

        public int Tokens { get; }

        /// <summary>What the buffers hold, for the run's later chunks (<see cref="RunInput"/>).</summary>
        public RunInput Held { get; set; }

        /// <summary>x̂ of every token, [tokens][cols].</summary>
        public short* Input { get; }

        /// <summary>The input scale of each token's super-blocks, [tokens][cols / 256].</summary>
        public float* Scales { get; }

        /// <summary>−32·Σ x̂ over each 16 inputs, [tokens][cols / 16].</summary>
        public int* Offsets { get; }

        /// <summary>−Σ x̂ over each 32 inputs, [tokens][cols / 32].</summary>
        public float* NegatedSums { get; }
    }
}
