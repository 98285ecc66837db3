using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace GemmaGen.Kernels;

/// <summary>
/// Batches over the K-quant group layouts (<see cref="KQuantGroupFormat{TGroup}"/>) with int8 inputs and byte products,
/// as llama.cpp computes its K-quant products (its inputs are int8 per 256, these per 32). AVX2 and FMA.
/// <para>
/// Inputs: every token's x rounded to int8 per block of 32 (<see cref="QuantizedMatMul.QuantizeInput"/>, the rounding of
/// GemmaGen's own Q8_0 and Q4_0 prefill), with Σ x̂ of each 16 and each 32, once per pool run and thread
/// (<see cref="TokenScratch{TInput}"/>).
/// </para>
/// <para>
/// Weights: <see cref="ChunkBlocks"/> super-blocks of a group at a time are unpacked (<see cref="IKQuantGroup.Unpack"/>)
/// into a tile in the first-level cache, and every token runs over the tile before the next chunk: the unpacking is paid
/// once per batch, not once per token. In the tile a 32-byte vector holds four consecutive values of each of the eight
/// rows as unsigned bytes (lane r = row r), so four of a token's input bytes in every lane meet it in one
/// <c>vpmaddubsw</c> (int16 sums of byte pairs: a Q6_K pair is at most 2·63·127 = 16002); a token's sixteen inputs are
/// loaded once into both 128-bit halves and spread four at a time by <c>vpshufd</c>. The sums of as many vectors as int16 holds
/// (<see cref="IKQuantGroup.Int16Steps"/>) are multiplied by each row's sub-block scale and widened in one
/// <c>vpmaddwd</c>, and each 32 values' int32 sum is scaled by d·s into a float lane per row and token. The minimums
/// (Q4_K, Q5_K) are −dmin·m per row times s·Σ x̂; Q6_K's offset of 32 is −32·sc·Σ x̂ per 16, where the int32 sum starts.
/// A register block is eight rows × four tokens. Where int16 holds a whole sub-block (Q4_K), two groups run together
/// instead (<see cref="Pass16{TGroup, TTokens}"/>, sixteen rows × four tokens), as Q4_0's batches do: each token's four
/// input bytes broadcast from memory serve both groups' products, with no <c>vpshufd</c> (1.11x in cache).
/// </para>
/// <para>
/// A row's result differs from the dequantized row times x only by the input rounding (at most s/2 per element, 0.4% of
/// its block's largest input) and the float summation order.
/// </para>
/// </summary>
internal static unsafe class KQuantMatMul
{
    /// <summary>Super-blocks of a group unpacked at a time: a tile of 11 KiB (on the stack) that stays in the first-level
    /// cache.</summary>
    internal const int ChunkBlocks = 4;

    /// <summary>The tile of one super-block: 64 vectors of values, then 16 vectors of scales (int16 pairs, one per 16
    /// values), 8 of offsets (per 32 values: Q4_K's and Q5_K's −dmin·m as floats; Q6_K's −32·sc of each 16 as an int16
    /// pair), and d per row.</summary>
    internal const int ScalesOffset = 2048, OffsetsOffset = 2560, DOffset = 2816, TileBytes = 2848;

    [ThreadStatic]
    private static TokenScratch<sbyte>? t_scratch;

    /// <summary>y[t·yStride + r] = W[r]·x̂_t for rows [start, end) and <paramref name="tokens"/> tokens, x rounded to int8
    /// per 32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Rows<TGroup>(WeightMatrix matrix, float* x, int xStride, int tokens, float* y, int yStride, int start, int end)
        where TGroup : struct, IKQuantGroup
    {
        if (!KQuantGroupFormat<TGroup>.Supported) throw new PlatformNotSupportedException("the K-quant byte kernels need AVX2 and FMA");
        int cols = matrix.Cols, blocks = cols / KQuantBlocks.BlockSize, subs = cols / 32;
        var scratch = TokenScratch<sbyte>.Fit(ref t_scratch, cols, tokens);
        var key = RunInput.Of(x, xStride, tokens, cols, -1);
        if (!key.IsHeldIn(scratch.Held))
        {
            // Offset −1: the starts are Σ x̂ of each 32.
            for (int t = 0; t < tokens; t++)
            {
                QuantizedMatMul.QuantizeInput(x + (long)t * xStride, subs, -1, scratch.Input + (long)t * cols, scratch.InputScales + t * subs,
                    scratch.InputStarts + t * subs, (short*)(scratch.InputHalves + t * subs));
            }
            scratch.Held = key;
        }

        const int rows = KQuantGroupFormat<TGroup>.RowsPerGroup;
        long groupBytes = (long)blocks * TGroup.GroupBlockBytes;
        float* results = scratch.Sums;
        byte* chunk = stackalloc byte[2 * ChunkBlocks * TileBytes + 32];
        byte* tile = (byte*)(((nint)chunk + 31) & ~(nint)31);
        int lastGroup = (end - 1) / rows;
        for (int group = start / rows, width; group <= lastGroup; group += width)
        {
            // Two groups at a time where int16 holds a whole sub-block (Pass16), else one.
            width = TGroup.Int16Steps == 4 && TGroup.Minimums && group < lastGroup ? 2 : 1;
            byte* data = (byte*)matrix.Data + group * groupBytes;
            new Span<float>(results, tokens * rows * width).Clear();
            for (int b0 = 0; b0 < blocks; b0 += ChunkBlocks)
            {
                int count = Math.Min(ChunkBlocks, blocks - b0);
                for (int g = 0; g < width; g++)
                {
                    for (int b = 0; b < count; b++)
                        TGroup.Unpack(data + g * groupBytes + (long)(b0 + b) * TGroup.GroupBlockBytes, tile + (g * ChunkBlocks + b) * TileBytes);
                }
                // The next chunk of each group (else the next groups' first: groups follow one another), prefetched a
                // part per token pass while this one runs, as QuantizedMatMul's chunks are.
                bool lastChunk = b0 + ChunkBlocks >= blocks;
                int nextCount = !lastChunk ? Math.Min(ChunkBlocks, blocks - b0 - ChunkBlocks) : Math.Min(ChunkBlocks, blocks);
                byte* next = !lastChunk ? data + (long)(b0 + count) * TGroup.GroupBlockBytes : data + width * groupBytes;
                int visits = (tokens + 3) / 4;
                var prefetch = !lastChunk || (group + width) * rows < end
                    ? new QuantizedMatMul.Prefetch(next, nextCount * TGroup.GroupBlockBytes, visits) : default;
                var prefetchSecond = width == 2 && (!lastChunk || (group + width + 1) * rows < end)
                    ? new QuantizedMatMul.Prefetch(next + groupBytes, nextCount * TGroup.GroupBlockBytes, visits) : default;
                for (int t = 0; t < tokens; t += 4)
                {
                    prefetch.Visit(t / 4);
                    prefetchSecond.Visit(t / 4);
                    sbyte* xt = scratch.Input + (long)t * cols + b0 * KQuantBlocks.BlockSize;
                    int first = t * subs + b0 * 8;
                    float* s = scratch.InputScales + first, o = results + t * rows * width;
                    int* c = scratch.InputStarts + first, h = scratch.InputHalves + first;
                    byte* second = width == 2 ? tile + ChunkBlocks * TileBytes : null;
                    switch (Math.Min(4, tokens - t))
                    {
                        case 4: Passes<TGroup, Count4>(tile, second, count, xt, cols, s, c, h, subs, o); break;
                        case 3: Passes<TGroup, Count3>(tile, second, count, xt, cols, s, c, h, subs, o); break;
                        case 2: Passes<TGroup, Count2>(tile, second, count, xt, cols, s, c, h, subs, o); break;
                        default: Passes<TGroup, Count1>(tile, second, count, xt, cols, s, c, h, subs, o); break;
                    }
                }
            }
            int stride = rows * width, from = Math.Max(start, group * rows), to = Math.Min(end, group * rows + stride);
            for (int t = 0; t < tokens; t++)
            {
                float* row = y + (long)t * yStride;
                for (int r = from; r < to; r++) row[r] = results[t * stride + r - group * rows];
            }
        }
    }

    /// <summary>One pass of <typeparamref name="TTokens"/> tokens: over two groups' tiles where <paramref name="second"/>
    /// is given (<see cref="Pass16{TGroup, TTokens}"/>), else over one (<see cref="Pass{TGroup, TTokens}"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Passes<TGroup, TTokens>(byte* tile, byte* second, int count, sbyte* x, int cols, float* s, int* c, int* h, int subs, float* o)
        where TGroup : struct, IKQuantGroup
        where TTokens : struct, ICount
    {
        if (second != null) Pass16<TGroup, TTokens>(tile, second, count, x, cols, s, c, subs, o);
        else Pass<TGroup, TTokens>(tile, count, x, cols, s, c, h, subs, o);
    }

    /// <summary>
    /// Two groups (sixteen rows: <paramref name="first"/>'s tile, then <paramref name="second"/>'s) × <typeparamref name="TTokens"/>
    /// tokens over <paramref name="count"/> unpacked super-blocks, for a layout whose sub-block of 32 fits int16
    /// (<see cref="IKQuantGroup.Int16Steps"/> 4, Q4_K): as Q4_0's batches run, each token's four input bytes are
    /// broadcast from memory once for both groups' byte products, the int16 sums widened by the scales once per
    /// sub-block and scaled into the float sums in memory (token i's sixteen at o + 16i). Per row the same operations in
    /// the same order as <see cref="Pass{TGroup, TTokens}"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Pass16<TGroup, TTokens>(byte* first, byte* second, int count, sbyte* x, int cols, float* s, int* c, int subs, float* o)
        where TGroup : struct, IKQuantGroup
        where TTokens : struct, ICount
    {
        for (int b = 0; b < count; b++, first += TileBytes, second += TileBytes, x += KQuantBlocks.BlockSize, s += 8, c += 8)
        {
            for (int j = 0; j < 8; j++)
            {
                byte* qa = first + 256 * j, qb = second + 256 * j;
                sbyte* x0 = x + 32 * j, x1 = x0 + cols, x2 = x0 + 2 * cols, x3 = x0 + 3 * cols;
                Vector256<short> p0 = default, p1 = default, p2 = default, p3 = default, e0 = default, e1 = default, e2 = default, e3 = default;
                for (int g = 0; g < 8; g++)
                {
                    Vector256<byte> wa = Vector256.Load(qa + 32 * g), wb = Vector256.Load(qb + 32 * g);
                    var i0 = Vector256.Create(*(int*)(x0 + 4 * g)).AsSByte();
                    p0 += Avx2.MultiplyAddAdjacent(wa, i0);
                    e0 += Avx2.MultiplyAddAdjacent(wb, i0);
                    if (TTokens.Value > 1)
                    {
                        var i1 = Vector256.Create(*(int*)(x1 + 4 * g)).AsSByte();
                        p1 += Avx2.MultiplyAddAdjacent(wa, i1);
                        e1 += Avx2.MultiplyAddAdjacent(wb, i1);
                    }
                    if (TTokens.Value > 2)
                    {
                        var i2 = Vector256.Create(*(int*)(x2 + 4 * g)).AsSByte();
                        p2 += Avx2.MultiplyAddAdjacent(wa, i2);
                        e2 += Avx2.MultiplyAddAdjacent(wb, i2);
                    }
                    if (TTokens.Value > 3)
                    {
                        var i3 = Vector256.Create(*(int*)(x3 + 4 * g)).AsSByte();
                        p3 += Avx2.MultiplyAddAdjacent(wa, i3);
                        e3 += Avx2.MultiplyAddAdjacent(wb, i3);
                    }
                }
                Scale16(first, second, j, p0, e0, s[j], c[j], o);
                if (TTokens.Value > 1) Scale16(first, second, j, p1, e1, s[subs + j], c[subs + j], o + 16);
                if (TTokens.Value > 2) Scale16(first, second, j, p2, e2, s[2 * subs + j], c[2 * subs + j], o + 32);
                if (TTokens.Value > 3) Scale16(first, second, j, p3, e3, s[3 * subs + j], c[3 * subs + j], o + 48);
            }
        }
    }

    /// <summary>One token's sub-block <paramref name="j"/> of both groups (int16 sums <paramref name="p"/>, <paramref name="e"/>)
    /// widened by the scales and added to its sixteen float sums at <paramref name="o"/> as d·s times the integer sum, then
    /// the minimums times s·Σ x̂ (<paramref name="sum"/>), as <see cref="Pass{TGroup, TTokens}"/> does.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Scale16(byte* first, byte* second, int j, Vector256<short> p, Vector256<short> e, float s, int sum, float* o)
    {
        var minimum = Vector256.Create(s * sum);
        var a = Avx2.MultiplyAddAdjacent(p, Vector256.Load((short*)(first + ScalesOffset + 64 * j)));
        var f = Fma.MultiplyAdd(Avx.ConvertToVector256Single(a), Vector256.Load((float*)(first + DOffset)) * s, Vector256.Load(o));
        Fma.MultiplyAdd(Vector256.Load((float*)(first + OffsetsOffset + 32 * j)), minimum, f).Store(o);
        a = Avx2.MultiplyAddAdjacent(e, Vector256.Load((short*)(second + ScalesOffset + 64 * j)));
        f = Fma.MultiplyAdd(Avx.ConvertToVector256Single(a), Vector256.Load((float*)(second + DOffset)) * s, Vector256.Load(o + 8));
        Fma.MultiplyAdd(Vector256.Load((float*)(second + OffsetsOffset + 32 * j)), minimum, f).Store(o + 8);
    }

    /// <summary>
    /// <typeparamref name="TTokens"/> tokens over <paramref name="count"/> unpacked super-blocks: token i's inputs at
    /// x + i·<paramref name="cols"/>, its scales s, Σ x̂ per 32 (c) and per 16 (h) at s, c and h + i·<paramref name="subs"/>;
    /// its eight results added to o[8i..8i + 8).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Pass<TGroup, TTokens>(byte* tile, int count, sbyte* x, int cols, float* s, int* c, int* h, int subs, float* o)
        where TGroup : struct, IKQuantGroup
        where TTokens : struct, ICount
    {
        Vector256<float> f0 = Vector256.Load(o), f1 = default, f2 = default, f3 = default;
        if (TTokens.Value > 1) f1 = Vector256.Load(o + 8);
        if (TTokens.Value > 2) f2 = Vector256.Load(o + 16);
        if (TTokens.Value > 3) f3 = Vector256.Load(o + 24);
        for (int b = 0; b < count; b++, tile += TileBytes, x += KQuantBlocks.BlockSize, s += 8, c += 8, h += 8)
        {
            var d = Vector256.Load((float*)(tile + DOffset));
            for (int j = 0; j < 8; j++)
            {
                byte* q = tile + 256 * j;
                sbyte* xj = x + 32 * j;
                Vector256<int> a0 = default, a1 = default, a2 = default, a3 = default;
                if (!TGroup.Minimums)
                {
                    // Q6_K: −32·sc of each 16 times Σ x̂ of the 16, where the sums start.
                    var offsets = Vector256.Load((short*)(tile + OffsetsOffset + 32 * j));
                    a0 = Avx2.MultiplyAddAdjacent(offsets, Vector256.Create(h[j]).AsInt16());
                    if (TTokens.Value > 1) a1 = Avx2.MultiplyAddAdjacent(offsets, Vector256.Create(h[subs + j]).AsInt16());
                    if (TTokens.Value > 2) a2 = Avx2.MultiplyAddAdjacent(offsets, Vector256.Create(h[2 * subs + j]).AsInt16());
                    if (TTokens.Value > 3) a3 = Avx2.MultiplyAddAdjacent(offsets, Vector256.Create(h[3 * subs + j]).AsInt16());
                }
                short* scales = (short*)(tile + ScalesOffset + 64 * j);
                Vector256<short> p0 = default, p1 = default, p2 = default, p3 = default;
                for (int v = 0; v < 2; v++)
                {
                    // Values 32j + 16v.. (vectors 4v..4v + 3 of the sub-block): four inputs of each token broadcast from
                    // one 16-byte load.
                    byte* w = q + 128 * v;
                    Vector256<byte> w0 = Vector256.Load(w), w1 = Vector256.Load(w + 32), w2 = Vector256.Load(w + 64), w3 = Vector256.Load(w + 96);
                    var sc = Vector256.Load(scales + 16 * v);
                    sbyte* xv = xj + 16 * v;
                    Sixteen<TGroup>(w0, w1, w2, w3, xv, sc, ref p0, ref a0);
                    if (TTokens.Value > 1) Sixteen<TGroup>(w0, w1, w2, w3, xv + cols, sc, ref p1, ref a1);
                    if (TTokens.Value > 2) Sixteen<TGroup>(w0, w1, w2, w3, xv + 2 * cols, sc, ref p2, ref a2);
                    if (TTokens.Value > 3) Sixteen<TGroup>(w0, w1, w2, w3, xv + 3 * cols, sc, ref p3, ref a3);
                }
                if (TGroup.Int16Steps == 4) Widen<TTokens>(p0, p1, p2, p3, Vector256.Load(scales), ref a0, ref a1, ref a2, ref a3);
                f0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(a0), d * s[j], f0);
                if (TTokens.Value > 1) f1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(a1), d * s[subs + j], f1);
                if (TTokens.Value > 2) f2 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(a2), d * s[2 * subs + j], f2);
                if (TTokens.Value > 3) f3 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(a3), d * s[3 * subs + j], f3);
                if (TGroup.Minimums)
                {
                    var minimums = Vector256.Load((float*)(tile + OffsetsOffset + 32 * j));
                    f0 = Fma.MultiplyAdd(minimums, Vector256.Create(s[j] * c[j]), f0);
                    if (TTokens.Value > 1) f1 = Fma.MultiplyAdd(minimums, Vector256.Create(s[subs + j] * c[subs + j]), f1);
                    if (TTokens.Value > 2) f2 = Fma.MultiplyAdd(minimums, Vector256.Create(s[2 * subs + j] * c[2 * subs + j]), f2);
                    if (TTokens.Value > 3) f3 = Fma.MultiplyAdd(minimums, Vector256.Create(s[3 * subs + j] * c[3 * subs + j]), f3);
                }
            }
        }
        f0.Store(o);
        if (TTokens.Value > 1) f1.Store(o + 8);
        if (TTokens.Value > 2) f2.Store(o + 16);
        if (TTokens.Value > 3) f3.Store(o + 24);
    }

    /// <summary>
    /// Sixteen values of the eight rows (<paramref name="w0"/>..<paramref name="w3"/>, four each) times one token's
    /// sixteen inputs at <paramref name="x"/> (loaded once into both halves, each four broadcast within them): the byte
    /// products' int16 sums widened by the scales <paramref name="sc"/> into <paramref name="a"/> as soon as int16 holds
    /// no more (<see cref="IKQuantGroup.Int16Steps"/>), else added to <paramref name="p"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Sixteen<TGroup>(Vector256<byte> w0, Vector256<byte> w1, Vector256<byte> w2, Vector256<byte> w3, sbyte* x, Vector256<short> sc,
        ref Vector256<short> p, ref Vector256<int> a)
        where TGroup : struct, IKQuantGroup
    {
        var inputs = Avx2.BroadcastVector128ToVector256((int*)x);
        var sum = Avx2.MultiplyAddAdjacent(w0, Avx2.Shuffle(inputs, 0x00).AsSByte()) + Avx2.MultiplyAddAdjacent(w1, Avx2.Shuffle(inputs, 0x55).AsSByte());
        if (TGroup.Int16Steps == 1)
        {
            a += Avx2.MultiplyAddAdjacent(sum, sc);
            sum = Avx2.MultiplyAddAdjacent(w2, Avx2.Shuffle(inputs, 0xAA).AsSByte()) + Avx2.MultiplyAddAdjacent(w3, Avx2.Shuffle(inputs, 0xFF).AsSByte());
            a += Avx2.MultiplyAddAdjacent(sum, sc);
            return;
        }
        sum += Avx2.MultiplyAddAdjacent(w2, Avx2.Shuffle(inputs, 0xAA).AsSByte()) + Avx2.MultiplyAddAdjacent(w3, Avx2.Shuffle(inputs, 0xFF).AsSByte());
        if (TGroup.Int16Steps == 2) a += Avx2.MultiplyAddAdjacent(sum, sc);
        else p += sum;
    }

    /// <summary>Each token's int16 sums times its row's scale (an int16 pair per lane), widened and added to a·.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Widen<TTokens>(Vector256<short> p0, Vector256<short> p1, Vector256<short> p2, Vector256<short> p3, Vector256<short> scales,
        ref Vector256<int> a0, ref Vector256<int> a1, ref Vector256<int> a2, ref Vector256<int> a3)
        where TTokens : struct, ICount
    {
        a0 += Avx2.MultiplyAddAdjacent(p0, scales);
        if (TTokens.Value > 1) a1 += Avx2.MultiplyAddAdjacent(p1, scales);
        if (TTokens.Value > 2) a2 += Avx2.MultiplyAddAdjacent(p2, scales);
        if (TTokens.Value > 3) a3 += Avx2.MultiplyAddAdjacent(p3, scales);
    }

    /// <summary>Stores the values of the 16-byte chunk at <paramref name="lowNibbles"/> (eight rows' low and high nibbles,
    /// <see cref="KQuantGroupFormat{TGroup}"/>'s layout) with <paramref name="lowHigh"/> and <paramref name="highHigh"/>
    /// added (the upper bits of the same values, already in place) as one tile vector: lane r = row r's four values.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void StoreChunk(byte* lowNibbles, Vector128<byte> lowHigh, Vector128<byte> highHigh, byte* tile)
    {
        var v = Vector128.Load(lowNibbles);
        var nibble = Vector128.Create((byte)0xF);
        var low = (v & nibble) | lowHigh;
        var high = (Vector128.ShiftRightLogical(v.AsUInt16(), 4).AsByte() & nibble) | highHigh;
        Sse2.UnpackLow(low.AsInt16(), high.AsInt16()).Store((short*)tile);
        Sse2.UnpackHigh(low.AsInt16(), high.AsInt16()).Store((short*)(tile + 16));
    }

    /// <summary>Eight int32 values as int16 pairs (the value in both halves of its lane) at <paramref name="at"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void StorePairs(Vector256<int> values, byte* at) =>
        ((values & Vector256.Create(0xFFFF)) | Vector256.ShiftLeft(values, 16)).Store((int*)at);
}
