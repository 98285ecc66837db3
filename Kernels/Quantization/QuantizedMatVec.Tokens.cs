using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace GemmaGen.Kernels;

public static unsafe partial class QuantizedMatVec
{
    /// <summary>Tokens one pass over a chunk of a group's blocks multiplies at once (the accumulators of four tokens and
    /// the widened weights fill the sixteen 256-bit registers).</summary>
    private const int PassTokens = 4;

    [ThreadStatic]
    private static TokenScratch<short>? t_tokens;

    /// <summary>Whether this CPU runs <see cref="TokenRows{TBlock}"/> on vectors (AVX2 and FMA); otherwise it is the
    /// float fallback.</summary>
    internal static bool TokensSupported => Avx2.IsSupported && Fma.IsSupported;

    /// <summary>
    /// y[t·yStride + r] = W[r]·x_t for rows [start, end) and tokens [0, tokens): this matrix-vector kernel's 256-bit
    /// form run for several tokens per pass over the weights. Every token's x is quantized to int16 as the one-token
    /// kernel does it (once per call and thread); then for each group of sixteen rows and each chunk of
    /// <see cref="QuantizedMatMul.ChunkBlocks"/> of its blocks (a chunk stays in the first-level cache), up to four
    /// tokens at a time meet every widened four columns of the chunk (<c>vpmaddwd</c>), the integer block sums scaled
    /// into each token's float sums by the same operations in the same order as <see cref="Dots256{TBlock}"/>: where
    /// the one-token kernel is 256-bit (AVX2 without AVX-512 BW), each token's result is the same floats, bit for bit,
    /// as <see cref="Rows{TBlock}"/> gives for that token alone; elsewhere the same integer sums, scaled in another
    /// order. The weights are widened once per four tokens instead of once per token, and the stream is read once per
    /// batch. (A 512-bit form is not written: no machine this was measured on could run it.)
    /// <para>
    /// This is the batched product of GGUF's blocks as stored in batches smaller than
    /// <see cref="WeightFormat.ByteTokensFrom"/> (which compute as exactly as decoding does) and of the block formats
    /// whose int8 kernels this CPU does not run: integer products where the alternative was dequantizing every row to
    /// float32.
    /// </para>
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void TokenRows<TBlock>(WeightMatrix matrix, float* x, int xStride, int tokens, float* y, int yStride, int start, int end)
        where TBlock : struct, IQuantizedBlock
    {
        matrix.CheckRows(start, end);
        if (start >= end || tokens <= 0) return;
        if (!TokensSupported)
        {
            FloatMatMulRows(matrix, x, xStride, tokens, y, yStride, start, end);
            return;
        }

        const int n = QuantizedLayout.GroupRows, size = QuantizedLayout.BlockSize;
        int cols = matrix.Cols, blocks = cols / size;
        var scratch = TokenScratch<short>.Fit(ref t_tokens, cols, tokens);
        var key = RunInput.Of(x, xStride, tokens, cols, TBlock.Offset);
        if (!key.IsHeldIn(scratch.Held))
        {
            for (int t = 0; t < tokens; t++)
            {
                int* starts = scratch.InputStarts + t * blocks;
                QuantizeInput(x + (long)t * xStride, blocks, scratch.Input + (long)t * cols, scratch.InputScales + t * blocks, starts);
                for (int b = 0; b < blocks; b++) starts[b] *= -TBlock.Offset;
            }
            scratch.Held = key;
        }

        int scaleBytes = QuantizedLayout.ScaleBytes(cols), recordBytes = TBlock.QuantBytes * n;
        long groupBytes = scaleBytes + (long)blocks * recordBytes;
        float* sums = scratch.Sums;
        for (int r = start / n * n; r < end; r += n)
        {
            byte* group = (byte*)matrix.Data + r / n * groupBytes;
            new Span<float>(sums, tokens * n).Clear();
            for (int b0 = 0; b0 < blocks; b0 += QuantizedMatMul.ChunkBlocks)
            {
                int count = Math.Min(QuantizedMatMul.ChunkBlocks, blocks - b0);
                byte* records = group + scaleBytes + (long)b0 * recordBytes;
                ushort* scales = (ushort*)group + b0 * n;
                for (int t = 0; t < tokens; t += PassTokens)
                {
                    short* input = scratch.Input + (long)t * cols + b0 * size;
                    float* xs = scratch.InputScales + t * blocks + b0, o = sums + t * n;
                    int* starts = scratch.InputStarts + t * blocks + b0;
                    var pass = new TokenPass(records, scales, count, input, cols, xs, starts, blocks, o, t == 0);
                    switch (Math.Min(PassTokens, tokens - t))
                    {
                        case 4: Pass256<TBlock, Count4>(pass); break;
                        case 3: Pass256<TBlock, Count3>(pass); break;
                        case 2: Pass256<TBlock, Count2>(pass); break;
                        default: Pass256<TBlock, Count1>(pass); break;
                    }
                }
            }
            int first = Math.Max(start, r), last = Math.Min(end, r + n);
            for (int t = 0; t < tokens; t++)
            {
                float* o = sums + t * n, row = y + (long)t * yStride;
                for (int i = first; i < last; i++) row[i] = o[GatheredLane(i - r)];
            }
        }
    }

    /// <summary>One pass of up to four tokens over a chunk of a group's blocks: the records and scales from the chunk's
    /// first block, the first token's quantized input, scales and block starts at the chunk's first block (token t's at
    /// t·<see cref="Stride"/> and t·<see cref="BlockStride"/>), and its float sums [token][16].</summary>
    private readonly struct TokenPass(byte* records, ushort* scales, int count, short* input, int stride, float* inputScales, int* inputStarts, int blockStride, float* sums, bool prefetch)
    {
        public readonly byte* Records = records;
        public readonly ushort* Scales = scales;
        public readonly int Count = count;
        public readonly short* Input = input;
        public readonly int Stride = stride;
        public readonly float* InputScales = inputScales;
        public readonly int* InputStarts = inputStarts;
        public readonly int BlockStride = blockStride;
        public readonly float* Sums = sums;

        /// <summary>Whether this pass prefetches the stream ahead (the first of the chunk's passes: the later ones find
        /// the chunk in cache).</summary>
        public readonly bool Prefetch = prefetch;
    }

    /// <summary>
    /// <see cref="Dots256{TBlock}"/> for <typeparamref name="TCount"/> tokens: per block and half, each four columns
    /// widened once and multiplied with every token's inputs; each token's sums of the half gathered as the one-token
    /// kernel gathers them and scaled into its float sums of that half (rows 0..7 into the first eight, 8..15 into the
    /// next, each half in the gathered order: one accumulator per half, in block order, as there).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Pass256<TBlock, TCount>(in TokenPass pass)
        where TBlock : struct, IQuantizedBlock
        where TCount : struct, ICount
    {
        int recordBytes = TBlock.QuantBytes * QuantizedLayout.GroupRows, stride = pass.Stride, blockStride = pass.BlockStride;
        byte* record = pass.Records;
        short* x = pass.Input;
        for (int b = 0; b < pass.Count; b++, record += recordBytes, x += QuantizedLayout.BlockSize)
        {
            if (pass.Prefetch) PrefetchRecord<TBlock>(record + PrefetchBytes);
            for (int half = 0; half < 2; half++)
            {
                Vector256<int> a0 = default, c0 = default, a1 = default, c1 = default, a2 = default, c2 = default, a3 = default, c3 = default;
                Group256<TBlock, TCount>(record, 0, half, x, stride, ref a0, ref c0, ref a1, ref c1, ref a2, ref c2, ref a3, ref c3);
                Group256<TBlock, TCount>(record, 1, half, x, stride, ref a0, ref c0, ref a1, ref c1, ref a2, ref c2, ref a3, ref c3);
                Group256<TBlock, TCount>(record, 2, half, x, stride, ref a0, ref c0, ref a1, ref c1, ref a2, ref c2, ref a3, ref c3);
                Group256<TBlock, TCount>(record, 3, half, x, stride, ref a0, ref c0, ref a1, ref c1, ref a2, ref c2, ref a3, ref c3);
                // The scales in the order the gathered sums come in (rows 0, 1, 4, 5 | 2, 3, 6, 7), once for every token.
                var weightScales = Avx2.Permute4x64(TBlock.Scales256(pass.Scales + b * QuantizedLayout.GroupRows + 8 * half).AsDouble(), GatherOrder).AsSingle();
                float* o = pass.Sums + 8 * half;
                int* starts = pass.InputStarts + b;
                float* scales = pass.InputScales + b;
                Scale256(a0, c0, starts, weightScales * scales[0], o);
                if (TCount.Value > 1) Scale256(a1, c1, starts + blockStride, weightScales * scales[blockStride], o + QuantizedLayout.GroupRows);
                if (TCount.Value > 2) Scale256(a2, c2, starts + 2 * blockStride, weightScales * scales[2 * blockStride], o + 2 * QuantizedLayout.GroupRows);
                if (TCount.Value > 3) Scale256(a3, c3, starts + 3 * blockStride, weightScales * scales[3 * blockStride], o + 3 * QuantizedLayout.GroupRows);
            }
        }
    }

    /// <summary>Columns 4<paramref name="g"/>..4g+3 and 4(g+4)..4(g+4)+3 of a half's eight rows, widened once, against
    /// every token's inputs of those columns: a·, c· (rows 0..3, 4..7 in lane pairs) += the products.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Group256<TBlock, TCount>(byte* record, int g, int half, short* x, int stride,
        ref Vector256<int> a0, ref Vector256<int> c0, ref Vector256<int> a1, ref Vector256<int> c1,
        ref Vector256<int> a2, ref Vector256<int> c2, ref Vector256<int> a3, ref Vector256<int> c3)
        where TBlock : struct, IQuantizedBlock
        where TCount : struct, ICount
    {
        TBlock.Widened256(record, g, half, out var low, out var high, out var laterLow, out var laterHigh);
        Token256(low, high, laterLow, laterHigh, x + 4 * g, ref a0, ref c0);
        if (TCount.Value > 1) Token256(low, high, laterLow, laterHigh, x + stride + 4 * g, ref a1, ref c1);
        if (TCount.Value > 2) Token256(low, high, laterLow, laterHigh, x + 2 * stride + 4 * g, ref a2, ref c2);
        if (TCount.Value > 3) Token256(low, high, laterLow, laterHigh, x + 3 * stride + 4 * g, ref a3, ref c3);
    }

    /// <summary>One token's share of <see cref="Group256{TBlock, TCount}"/>: its inputs at <paramref name="x"/> (columns
    /// 4g..) and 16 on (columns 4(g+4)..). Also the one-token kernel's products (<see cref="Half256{TBlock}"/>), so that a
    /// token of a batch gets the same integer sums as decoding it alone.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Token256(Vector256<short> low, Vector256<short> high, Vector256<short> laterLow, Vector256<short> laterHigh,
        short* x, ref Vector256<int> a, ref Vector256<int> c)
    {
        Vector256<short> input = Vector256.Create(*(long*)x).AsInt16(), later = Vector256.Create(*(long*)(x + 16)).AsInt16();
        a += Avx2.MultiplyAddAdjacent(low, input) + Avx2.MultiplyAddAdjacent(laterLow, later);
        c += Avx2.MultiplyAddAdjacent(high, input) + Avx2.MultiplyAddAdjacent(laterHigh, later);
    }

    /// <summary>The 64-bit lanes' order that <see cref="Half256{TBlock}"/> permutes its horizontal add by to put rows in
    /// order (it is its own inverse): the 256-bit kernel applies it to the scales instead, once for all tokens, and
    /// keeps each token's float sums of a half in the gathered order (<see cref="GatheredLane"/>).</summary>
    private const byte GatherOrder = 0b11_01_10_00;

    /// <summary>Where row <paramref name="row"/> (0..15) of a group is in a token's float sums of the 256-bit kernel.</summary>
    private static int GatheredLane(int row) => row & ~6 | (row & 2) << 1 | (row & 4) >> 1;

    /// <summary>A token's half-block sums (<paramref name="a"/>: rows 0, 1 | 2, 3 in lane pairs; <paramref name="c"/>:
    /// rows 4, 5 | 6, 7) gathered by a horizontal add (rows 0, 1, 4, 5 | 2, 3, 6, 7), the block's start (−offset·Σ x̂)
    /// added, and added to the eight float sums at <paramref name="o"/> times <paramref name="scale"/> (in the same
    /// order): per row the same operations as <see cref="Dots256{TBlock}"/>'s.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Scale256(Vector256<int> a, Vector256<int> c, int* start, Vector256<float> scale, float* o)
    {
        var rows = Avx2.HorizontalAdd(a, c) + Vector256.Create(*start);
        Fma.MultiplyAdd(Avx.ConvertToVector256Single(rows), scale, Vector256.Load(o)).Store(o);
    }
}
