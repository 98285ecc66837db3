using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace GemmaGen.Kernels;

/// <summary>
/// GGUF's K-quant tensors (ggml's super-blocks, <see cref="KQuantBlocks"/>) rearranged at load into groups of
/// <see cref="RowsPerGroup"/> interleaved rows, so that the kernels' int32 lanes are the group's rows: each vector of
/// weights meets one broadcast pair of inputs (<c>vpmaddwd</c>), and every scale applies to eight rows at once, with no
/// per-row reduction or scale unpacking at run time. Every bit of the file's blocks is kept, so rows read back as the
/// file's values bit for bit. Each block type's layout and kernel is a <typeparamref name="TGroup"/>
/// (<see cref="MinKGroup{TBits}"/> for Q4_K and Q5_K, <see cref="Q6_KGroup"/>).
/// <para>
/// Group g (rows 8g..8g+7; the last group padded with zero rows) is <c>Cols / 256</c> group-blocks of
/// <see cref="IKQuantGroup.GroupBlockBytes"/> bytes, one per super-block. In every type the values' low nibbles take
/// the first 1024 bytes of a group-block the same way: the 32 values 32j..32j+31 at 128j, as 8 chunks of 16 bytes; in
/// chunk c, row r's bytes are 2r and 2r + 1: byte 2r holds the low nibbles of values 32j + 4c (low) and 32j + 4c + 2
/// (high), byte 2r + 1 those of 32j + 4c + 1 and 32j + 4c + 3. Widened to int16, a chunk's low nibbles are each row's
/// values 4c and 4c + 1 as one int32 lane of int16 pairs (lane r = row r), its high nibbles values 4c + 2 and 4c + 3.
/// </para>
/// <para>
/// Decode (<see cref="MatVecRows"/>) quantizes x to int16 per super-block of 256 (<see cref="KQuantInput"/>); each
/// row's sums are exact in its int32 lane per sub-block and are scaled
/// into a float lane per row. Batches of fewer than <see cref="WeightFormat.ByteTokensFrom"/> tokens run the same kernel over each
/// group while it is in cache, <see cref="PassTokens"/> tokens at a time (every widened vector of values used once per
/// token), as exact as decoding; larger ones round their inputs to int8 for byte products (<see cref="KQuantMatMul"/>),
/// as GemmaGen's own Q8_0 and Q4_0 prefill does. AVX2 and FMA; else scalar code over the dequantized rows (one token)
/// and the float kernel over them (<see cref="QuantizedMatVec.FloatMatMulRows"/>, batches).
/// </para>
/// </summary>
/// <param name="name">The format's name.</param>
internal sealed unsafe class KQuantGroupFormat<TGroup>(string name) : WeightFormat(name, KQuantBlocks.BlockSize, groupRows: RowsPerGroup)
    where TGroup : struct, IKQuantGroup
{
    /// <summary>Rows interleaved in one group: the eight int32 lanes of a 256-bit vector.</summary>
    public const int RowsPerGroup = 8;

    /// <summary>Tokens one group meets at a time.</summary>
    private const int PassTokens = 4;

    internal override TensorDType? SourceType => TGroup.SourceType;

    public override long ByteLength(int rows, int cols) =>
        (long)((rows + RowsPerGroup - 1) / RowsPerGroup) * (cols / KQuantBlocks.BlockSize) * TGroup.GroupBlockBytes;

    /// <summary>Group-block <paramref name="block"/> of the group holding row <paramref name="row"/>.</summary>
    private static byte* GroupBlock(WeightMatrix matrix, int row, int block) =>
        (byte*)matrix.Data + ((long)(row / RowsPerGroup) * (matrix.Cols / KQuantBlocks.BlockSize) + block) * TGroup.GroupBlockBytes;

    /// <summary>Batches from <see cref="WeightFormat.ByteTokensFrom"/> tokens round their inputs to int8 where the CPU runs the
    /// vector kernels.</summary>
    public override bool RoundsPrefillInputs => Supported;

    /// <summary>Whether this CPU runs the vector kernels (AVX2 and FMA).</summary>
    internal static bool Supported => Avx2.IsSupported && Fma.IsSupported;

    /// <summary>Zeroes the last group when rows pad it (zero scales: its padding rows compute to zero).</summary>
    internal override void Initialize(WeightMatrix matrix)
    {
        if (matrix.Rows % RowsPerGroup == 0) return;
        long groupBytes = (long)(matrix.Cols / KQuantBlocks.BlockSize) * TGroup.GroupBlockBytes;
        new Span<byte>(GroupBlock(matrix, matrix.Rows - 1, 0), checked((int)groupBytes)).Clear();
    }

    /// <summary>Quantizes the row super-block by super-block (<see cref="IKQuantGroup.Quantize"/>: a simple quantizer,
    /// not ggml's) and stores it.</summary>
    internal override void WriteRow(WeightMatrix matrix, int row, ReadOnlySpan<float> source)
    {
        byte* block = stackalloc byte[TGroup.SourceBytes];
        fixed (float* x = source)
        {
            for (int b = 0; b < source.Length / KQuantBlocks.BlockSize; b++)
            {
                TGroup.Quantize(x + b * KQuantBlocks.BlockSize, block);
                TGroup.Store(block, GroupBlock(matrix, row, b), row % RowsPerGroup);
            }
        }
    }

    /// <summary>A GGUF row of the type: each super-block rearranged into its group (every bit kept).</summary>
    internal override bool TryCopyRow(WeightMatrix matrix, int row, TensorDType dtype, ReadOnlySpan<byte> source)
    {
        if (dtype != TGroup.SourceType) return false;
        int blocks = matrix.Cols / KQuantBlocks.BlockSize;
        long bytes = (long)blocks * TGroup.SourceBytes;
        if (source.Length != bytes)
            throw new ArgumentException($"{source.Length} bytes are not one row of {matrix.Cols} {dtype} values ({bytes} bytes)", nameof(source));
        fixed (byte* s = source)
        {
            for (int b = 0; b < blocks; b++) TGroup.Store(s + b * TGroup.SourceBytes, GroupBlock(matrix, row, b), row % RowsPerGroup);
        }
        return true;
    }

    /// <summary>The row as ggml dequantizes it, bit for bit.</summary>
    internal override void ReadRow(WeightMatrix matrix, int row, Span<float> destination)
    {
        fixed (float* y = destination)
        {
            for (int b = 0; b < matrix.Cols / KQuantBlocks.BlockSize; b++)
                TGroup.Dequantize(GroupBlock(matrix, row, b), row % RowsPerGroup, y + b * KQuantBlocks.BlockSize);
        }
    }

    internal override void MatVecRows(WeightMatrix matrix, float* x, float* y, int start, int end)
    {
        matrix.CheckRows(start, end);
        if (start < end) Rows(matrix, KQuantInput.For(matrix, x), 1, y, 0, start, end);
    }

    internal override void MatMulRows(WeightMatrix matrix, float* x, int xStride, int tokens, float* y, int yStride, int start, int end)
    {
        matrix.CheckRows(start, end);
        if (start >= end || tokens <= 0) return;
        if (!Supported) QuantizedMatVec.FloatMatMulRows(matrix, x, xStride, tokens, y, yStride, start, end);
        else if (tokens >= ByteTokensFrom) KQuantMatMul.Rows<TGroup>(matrix, x, xStride, tokens, y, yStride, start, end);
        else Rows(matrix, KQuantInput.ForTokens(x, xStride, tokens, matrix.Cols), tokens, y, yStride, start, end);
    }

    /// <summary>
    /// y[t·yStride + r] = W[r]·x̂_t for rows [start, end) and the <paramref name="tokens"/> quantized inputs, group by
    /// group, <see cref="PassTokens"/> tokens at a time while the group's bytes stay in cache. A single token's whole
    /// group is written straight to y; the rest goes through scratch so that only the range's rows are written. Without
    /// AVX2 (one token only: batches take the float kernel there) each row is dequantized and multiplied in scalar code.
    /// </summary>
    private static void Rows(WeightMatrix matrix, KQuantInput.Quantized input, int tokens, float* y, int yStride, int start, int end)
    {
        float* dots = stackalloc float[PassTokens * RowsPerGroup];
        int cols = matrix.Cols, blocks = cols / KQuantBlocks.BlockSize;
        for (int group = start / RowsPerGroup; group <= (end - 1) / RowsPerGroup; group++)
        {
            byte* data = GroupBlock(matrix, group * RowsPerGroup, 0);
            int first = group * RowsPerGroup, from = Math.Max(start, first), to = Math.Min(end, first + RowsPerGroup);
            bool whole = from == first && to == first + RowsPerGroup;
            for (int t0 = 0; t0 < tokens; t0 += PassTokens)
            {
                int count = Math.Min(PassTokens, tokens - t0);
                bool direct = whole && count == 1;
                float* o = direct ? y + (long)t0 * yStride + first : dots;
                switch (count)
                {
                    case 4: TGroup.Dot256<Count4>(data, blocks, input, t0, cols, o); break;
                    case 3: TGroup.Dot256<Count3>(data, blocks, input, t0, cols, o); break;
                    case 2: TGroup.Dot256<Count2>(data, blocks, input, t0, cols, o); break;
                    default:
                        if (Supported) TGroup.Dot256<Count1>(data, blocks, input, t0, cols, o);
                        else DotScalar(data, blocks, input.Token(t0, cols), o);
                        break;
                }
                if (direct) continue;
                for (int i = 0; i < count; i++)
                {
                    float* row = y + (long)(t0 + i) * yStride;
                    for (int r = from; r < to; r++) row[r] = dots[RowsPerGroup * i + r - first];
                }
            }
        }
    }

    /// <summary>The group's rows times x̂ without vector instructions: each row's values (<see cref="ReadRow"/>'s) times
    /// x̂, scaled by s per super-block.</summary>
    private static void DotScalar(byte* group, int blocks, KQuantInput.Token x, float* y)
    {
        float* values = stackalloc float[KQuantBlocks.BlockSize];
        for (int r = 0; r < RowsPerGroup; r++)
        {
            float total = 0;
            for (int b = 0; b < blocks; b++)
            {
                TGroup.Dequantize(group + (long)b * TGroup.GroupBlockBytes, r, values);
                short* xs = x.Values + b * KQuantBlocks.BlockSize;
                float sum = 0;
                for (int i = 0; i < KQuantBlocks.BlockSize; i++) sum += values[i] * xs[i];
                total += sum * x.Scales[b];
            }
            y[r] = total;
        }
    }
}

/// <summary>
/// One K-quant type's layout in groups of eight rows (<see cref="KQuantGroupFormat{TGroup}"/>) and its kernel.
/// Specialized per type, so the calls inline.
/// </summary>
internal unsafe interface IKQuantGroup
{
    /// <summary>The GGUF block encoding.</summary>
    static abstract TensorDType SourceType { get; }

    /// <summary>Bytes of one super-block as the file stores it.</summary>
    static abstract int SourceBytes { get; }

    /// <summary>Bytes of one super-block of a group of eight rows.</summary>
    static abstract int GroupBlockBytes { get; }

    /// <summary>Quantizes 256 floats into a super-block as the file would store it (a simple quantizer, for synthetic
    /// weights).</summary>
    static abstract void Quantize(float* x, byte* block);

    /// <summary>The super-block at <paramref name="block"/> (as stored) as row <paramref name="r"/> of the group-block at
    /// <paramref name="group"/>.</summary>
    static abstract void Store(byte* block, byte* group, int r);

    /// <summary>Row <paramref name="r"/>'s 256 values of a group-block into <paramref name="y"/>, bit for bit as ggml
    /// dequantizes them.</summary>
    static abstract void Dequantize(byte* group, int r, float* y);

    /// <summary>How many of <see cref="KQuantMatMul"/>'s eight-value byte sums (two <c>vpmaddubsw</c> per row lane) int16
    /// holds before the scales widen them: 4 (a sub-block of 32), 2 or 1.</summary>
    static abstract int Int16Steps { get; }

    /// <summary>Whether values are d·sc·q − dmin·m (Q4_K, Q5_K) rather than d·sc·(q − 32) (Q6_K).</summary>
    static abstract bool Minimums { get; }

    /// <summary>The group-block at <paramref name="group"/> as <see cref="KQuantMatMul"/>'s tile of
    /// <see cref="KQuantMatMul.TileBytes"/> at <paramref name="tile"/>. AVX2.</summary>
    static abstract void Unpack(byte* group, byte* tile);

    /// <summary>The eight rows of a group (<paramref name="blocks"/> group-blocks from <paramref name="group"/>) times
    /// <typeparamref name="TTokens"/> quantized inputs (tokens <paramref name="t0"/>.. of <paramref name="input"/>,
    /// <paramref name="cols"/> wide): token i's eight results into y[8i..8i + 8). AVX2 and FMA.</summary>
    static abstract void Dot256<TTokens>(byte* group, int blocks, KQuantInput.Quantized input, int t0, int cols, float* y)
        where TTokens : struct, ICount;
}

/// <summary>What the group layouts share: the low nibbles' chunks (<see cref="KQuantGroupFormat{TGroup}"/>), their
/// packing, their gather for one row, the broadcast input pairs, and the kernels' per-token results.</summary>
internal static unsafe class GroupNibbles
{
    /// <summary>Stores the low nibbles of row <paramref name="r"/>'s 256 values <paramref name="q"/> into the first 1024
    /// bytes of a group-block.</summary>
    public static void Store(byte* q, byte* group, int r)
    {
        for (int j = 0; j < 8; j++)
        {
            for (int c = 0; c < 8; c++)
            {
                byte* v = q + 32 * j + 4 * c;
                byte* chunk = group + 128 * j + 16 * c + 2 * r;
                chunk[0] = (byte)((v[0] & 0xF) | (v[2] & 0xF) << 4);
                chunk[1] = (byte)((v[1] & 0xF) | (v[3] & 0xF) << 4);
            }
        }
    }

    /// <summary>Row r's two bytes of each chunk of values 32j..32j+31 (16 bytes apart from <paramref name="chunks"/>, the
    /// group-block + 128j + 2r), widened to int16, with the low and high nibbles put in value order: values 0..15 and
    /// 16..31 of the 32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static (Vector256<short> First, Vector256<short> Second) Gather(byte* chunks)
    {
        var pairs = Vector128.Create(*(ushort*)chunks, *(ushort*)(chunks + 16), *(ushort*)(chunks + 32), *(ushort*)(chunks + 48),
            *(ushort*)(chunks + 64), *(ushort*)(chunks + 80), *(ushort*)(chunks + 96), *(ushort*)(chunks + 112));
        var bytes = Avx2.ConvertToVector256Int16(pairs.AsByte());
        var low = bytes & Vector256.Create((short)0xF);
        var high = Vector256.ShiftRightLogical(bytes, 4);
        // Per 128-bit lane: unpacklo holds chunks 0, 1 (4, 5), unpackhi chunks 2, 3 (6, 7).
        var first = Avx2.UnpackLow(low.AsInt32(), high.AsInt32()).AsInt16();
        var second = Avx2.UnpackHigh(low.AsInt32(), high.AsInt32()).AsInt16();
        return (Avx2.Permute2x128(first, second, 0x20), Avx2.Permute2x128(first, second, 0x31));
    }

    /// <summary>Each row's pair of values (an int32 lane of <paramref name="values"/>) times each token's pair of inputs at
    /// <paramref name="x"/> (tokens <paramref name="cols"/> apart), broadcast, added to the token's int32 lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Pair<TTokens>(Vector256<short> values, short* x, int cols,
        ref Vector256<int> i0, ref Vector256<int> i1, ref Vector256<int> i2, ref Vector256<int> i3)
        where TTokens : struct, ICount
    {
        i0 += Avx2.MultiplyAddAdjacent(values, Vector256.Create(*(int*)x).AsInt16());
        if (TTokens.Value > 1) i1 += Avx2.MultiplyAddAdjacent(values, Vector256.Create(*(int*)(x + cols)).AsInt16());
        if (TTokens.Value > 2) i2 += Avx2.MultiplyAddAdjacent(values, Vector256.Create(*(int*)(x + 2 * cols)).AsInt16());
        if (TTokens.Value > 3) i3 += Avx2.MultiplyAddAdjacent(values, Vector256.Create(*(int*)(x + 3 * cols)).AsInt16());
    }

    /// <summary>A super-block's float sums per token (<paramref name="b0"/>..) times each token's input scale
    /// (<paramref name="scales"/>, tokens <paramref name="blocks"/> apart), added to its results.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Accumulate<TTokens>(float* scales, int blocks, Vector256<float> b0, Vector256<float> b1, Vector256<float> b2, Vector256<float> b3,
        ref Vector256<float> r0, ref Vector256<float> r1, ref Vector256<float> r2, ref Vector256<float> r3)
        where TTokens : struct, ICount
    {
        r0 = Fma.MultiplyAdd(b0, Vector256.Create(scales[0]), r0);
        if (TTokens.Value > 1) r1 = Fma.MultiplyAdd(b1, Vector256.Create(scales[blocks]), r1);
        if (TTokens.Value > 2) r2 = Fma.MultiplyAdd(b2, Vector256.Create(scales[2 * blocks]), r2);
        if (TTokens.Value > 3) r3 = Fma.MultiplyAdd(b3, Vector256.Create(scales[3 * blocks]), r3);
    }

    /// <summary>Token i's eight results into y[8i..8i + 8).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Store<TTokens>(float* y, Vector256<float> r0, Vector256<float> r1, Vector256<float> r2, Vector256<float> r3)
        where TTokens : struct, ICount
    {
        r0.Store(y);
        if (TTokens.Value > 1) r1.Store(y + 8);
        if (TTokens.Value > 2) r2.Store(y + 16);
        if (TTokens.Value > 3) r3.Store(y + 24);
    }

    /// <summary>Prefetches part <paramref name="part"/> of <paramref name="parts"/> equal parts of the
    /// <paramref name="bytes"/> of a group-block at <paramref name="ahead"/>, one part per step of the kernel's loop over
    /// the block, so that the prefetches spread evenly over it: prefetching the scales and high parts in a burst at the
    /// block's start, the nibbles as they came, left Q6_K at 10–11 GB/s from memory against 15–16 spread (one thread,
    /// Zen 3, whose hardware prefetcher alone reads this stream at ~5). A line from the part's first byte, then every 64
    /// bytes while the part lasts (at most 256 bytes, four lines; the counts fold to constants): a part's last line not
    /// reached that way is the next part's first (group-blocks follow one another).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void PrefetchPart(byte* ahead, int bytes, int part, int parts)
    {
        int lines = (bytes / parts + 63) / 64;
        byte* at = ahead + bytes * part / parts;
        Sse.Prefetch0(at);
        if (lines > 1) Sse.Prefetch0(at + 64);
        if (lines > 2) Sse.Prefetch0(at + 128);
        if (lines > 3) Sse.Prefetch0(at + 192);
    }
}
