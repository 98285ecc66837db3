using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace GemmaGen.Kernels;

/// <summary>The element types of a KV cache that <see cref="Attention"/> reads: a row of one cached position's head
/// (<see cref="KvF32"/>, <see cref="KvBF16"/>, <see cref="KvQ8"/>), each element loaded as float32.</summary>
public unsafe interface IKvElements
{
    /// <summary>16 elements from element <paramref name="index"/> of <paramref name="row"/> (whose block scales, if the
    /// type has them, start at <paramref name="scales"/>).</summary>
    static abstract Vector512<float> Load512(void* row, ushort* scales, int index);

    /// <summary>8 elements from element <paramref name="index"/> of <paramref name="row"/>.</summary>
    static abstract Vector256<float> Load256(void* row, ushort* scales, int index);

    /// <summary>Element <paramref name="index"/> of <paramref name="row"/>.</summary>
    static abstract float Load(void* row, ushort* scales, int index);

    /// <summary>Bytes per element.</summary>
    static abstract int Size { get; }

    /// <summary>Elements per block scale (0: the type has no scales).</summary>
    static abstract int Block { get; }
}

/// <summary>A float32 cache (<see cref="KvPrecision.F32"/>).</summary>
public readonly unsafe struct KvF32 : IKvElements
{
    /// <inheritdoc/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Load512(void* row, ushort* scales, int index) => F32Elements.Load512(row, index);

    /// <inheritdoc/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load256(void* row, ushort* scales, int index) => F32Elements.Load256(row, index);

    /// <inheritdoc/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Load(void* row, ushort* scales, int index) => F32Elements.Load(row, index);

    /// <inheritdoc/>
    public static int Size => sizeof(float);

    /// <inheritdoc/>
    public static int Block => 0;
}

/// <summary>A bfloat16 cache (<see cref="KvPrecision.BF16"/>), widened to float32 as loaded.</summary>
public readonly unsafe struct KvBF16 : IKvElements
{
    /// <inheritdoc/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Load512(void* row, ushort* scales, int index) => BF16Elements.Load512(row, index);

    /// <inheritdoc/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load256(void* row, ushort* scales, int index) => BF16Elements.Load256(row, index);

    /// <inheritdoc/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Load(void* row, ushort* scales, int index) => BF16Elements.Load(row, index);

    /// <inheritdoc/>
    public static int Size => sizeof(ushort);

    /// <inheritdoc/>
    public static int Block => 0;
}

/// <summary>A Q8_0 cache (<see cref="KvPrecision.Q8_0"/>): int8 elements and a bfloat16 scale per block of
/// <see cref="KvCache.Q8Block"/>, dequantized as loaded (the int8 as float times its block's scale; a vector never
/// straddles blocks).</summary>
public readonly unsafe struct KvQ8 : IKvElements
{
    /// <inheritdoc/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Load512(void* row, ushort* scales, int index) =>
        Vector512.ConvertToSingle(Avx512F.ConvertToVector512Int32(Vector128.Load((sbyte*)row + index))) * Vector512.Create(BFloat16.ToSingle(scales[index / KvCache.Q8Block]));

    /// <inheritdoc/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load256(void* row, ushort* scales, int index) =>
        Vector256.ConvertToSingle(Avx2.ConvertToVector256Int32((sbyte*)row + index)) * Vector256.Create(BFloat16.ToSingle(scales[index / KvCache.Q8Block]));

    /// <inheritdoc/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Load(void* row, ushort* scales, int index) => ((sbyte*)row)[index] * BFloat16.ToSingle(scales[index / KvCache.Q8Block]);

    /// <inheritdoc/>
    public static int Size => sizeof(sbyte);

    /// <inheritdoc/>
    public static int Block => KvCache.Q8Block;
}

/// <summary>
/// Attention of the G query heads that share one kv head (grouped-query attention), over one layer's cache of that kv
/// head in one sequence: the scores (each key row read once for a run of queries), soft-cap and scale, softmax, and the
/// weighted sum of the values (each value row read once for a run of queries). Written once for every cache element
/// type, group size and head size, and over the vector width (<see cref="IVectorWidth{TV}"/>).
/// <para>
/// Each score sums its products in eight accumulators (vector i into accumulator i mod 8), reduced as a balanced
/// tree, then its lanes, then the scalar tail; each output element sums its products over the positions in order.
/// That is the order the compiled layers' attention had when it was generated per shape, so the floats are the same;
/// measured against that generated kernel in one process (BENCHMARKS.md, "Specialization"), the constant head size
/// bought nothing, so the layers call this one.
/// </para>
/// </summary>
public static unsafe class Attention
{
    /// <summary>Accumulators per query of a score: enough independent sums to keep the FMA units busy.</summary>
    private const int ScoreAccumulators = 8;

    /// <summary>
    /// Local attention (window <paramref name="window"/>) of the query at <paramref name="position"/>: it sees keys
    /// position − window + 1 .. position (itself included), key j in slot j mod <paramref name="ring"/> (a ring of at
    /// least <paramref name="window"/> slots; int.MaxValue and a window of int.MaxValue: global attention, keys
    /// 0 .. position).
    /// </summary>
    /// <param name="q">The group's queries, head after head (<paramref name="group"/> · <paramref name="headDim"/>).</param>
    /// <param name="keys">Slot 0's key row of this kv head; slot s at s · headDim elements.</param>
    /// <param name="keyScales">Their block scales (Q8_0; slot s at s · headDim / block), else null.</param>
    /// <param name="values">Slot 0's value row.</param>
    /// <param name="valueScales">Their block scales, else null.</param>
    /// <param name="position">The query's position.</param>
    /// <param name="window">Keys the query sees at most.</param>
    /// <param name="ring">Slots of the cache (keys wrap around).</param>
    /// <param name="headDim">Elements of a head.</param>
    /// <param name="group">Query heads of the group.</param>
    /// <param name="softcap">The scores' soft-cap (cap·tanh(s / cap)); 0: none.</param>
    /// <param name="queryScale">What the scores are multiplied by first (query_pre_attn_scalar^(-1/2)).</param>
    /// <param name="scores">Scratch for the scores: query g's in row g, rows <paramref name="stride"/> apart (at least
    /// the number of keys seen).</param>
    /// <param name="stride">The scores' row stride.</param>
    /// <param name="output">The group's outputs, head after head.</param>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Attend<TK>(float* q, void* keys, ushort* keyScales, void* values, ushort* valueScales, int position, int window, int ring,
        int headDim, int group, float softcap, float queryScale, float* scores, long stride, float* output)
        where TK : struct, IKvElements
    {
        int first = window == int.MaxValue || position < window ? 0 : position - window + 1;
        int firstSlot = ring == int.MaxValue ? first : first % ring;
        AttendSlots<TK>(q, keys, keyScales, values, valueScales, firstSlot, position - first + 1, ring, headDim, group, softcap, queryScale, scores, stride, output);
    }

    /// <summary><see cref="Attend{TK}"/> over <paramref name="count"/> keys starting at ring slot
    /// <paramref name="firstSlot"/> (slots wrap at <paramref name="ring"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void AttendSlots<TK>(float* q, void* keys, ushort* keyScales, void* values, ushort* valueScales, int firstSlot, int count, int ring,
        int headDim, int group, float softcap, float queryScale, float* scores, long stride, float* output)
        where TK : struct, IKvElements
    {
        var a = new Arguments(q, (byte*)keys, keyScales, (byte*)values, valueScales, firstSlot, count, ring, headDim, scores, stride, output);
        if (Vector512.IsHardwareAccelerated) Scores<Width512, Vector512<float>, TK>(a, group);
        else Scores<Width256, Vector256<float>, TK>(a, group);
        for (int g = 0; g < group; g++)
        {
            var s = new Span<float>(scores + g * stride, count);
            Activations.SoftCap(s, softcap, queryScale);
            Activations.Softmax(s);
        }
        if (Vector512.IsHardwareAccelerated) WeightedValues<Width512, Vector512<float>, TK>(a, group);
        else WeightedValues<Width256, Vector256<float>, TK>(a, group);
    }

    /// <summary>What every step of one call reads and writes.</summary>
    private readonly struct Arguments(float* q, byte* keys, ushort* keyScales, byte* values, ushort* valueScales, int firstSlot, int count, int ring,
        int headDim, float* scores, long stride, float* output)
    {
        public readonly float* Q = q;
        public readonly byte* Keys = keys;
        public readonly ushort* KeyScales = keyScales;
        public readonly byte* Values = values;
        public readonly ushort* ValueScales = valueScales;
        public readonly int FirstSlot = firstSlot;
        public readonly int Count = count;
        public readonly int Ring = ring;
        public readonly int HeadDim = headDim;
        public readonly float* Scores = scores;
        public readonly long Stride = stride;
        public readonly float* Output = output;
    }

    /// <summary>scores[g·stride + n] = q_g·k_n: key after key (each read from memory once), against every query in
    /// runs of as many queries as the registers hold accumulators for (at 512 bits three, or two, whichever divides the
    /// group; at 256 one).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Scores<TS, TV, TK>(in Arguments a, int group)
        where TS : struct, IVectorWidth<TV> where TV : struct where TK : struct, IKvElements
    {
        if (TS.Count == 16 && group % 3 == 0) Scores<TS, TV, TK, Count3>(a, group);
        else if (TS.Count == 16 && group % 2 == 0) Scores<TS, TV, TK, Count2>(a, group);
        else Scores<TS, TV, TK, Count1>(a, group);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Scores<TS, TV, TK, TRun>(in Arguments a, int group)
        where TS : struct, IVectorWidth<TV> where TV : struct where TK : struct, IKvElements where TRun : struct, ICount
    {
        int d = a.HeadDim, lanes = TS.Count, step = ScoreAccumulators * lanes;
        long rowBytes = (long)d * TK.Size, stride = a.Stride;
        int scalesPerRow = TK.Block == 0 ? 0 : d / TK.Block;
        int slot = a.FirstSlot;
        byte* k = a.Keys + slot * rowBytes;
        ushort* ks = a.KeyScales + (long)slot * scalesPerRow;
        for (int n = 0; n < a.Count; n++)
        {
            for (int g = 0; g < group; g += TRun.Value)
            {
                float* q0 = a.Q + g * d, q1 = q0 + d, q2 = q1 + d, s = a.Scores + g * stride + n;
                if (!TS.IsHardwareAccelerated)
                {
                    float sum = 0f;
                    for (int i = 0; i < d; i++) sum += q0[i] * TK.Load(k, ks, i);
                    *s = sum;
                    continue;
                }
                // written here rather than called: the JIT does not inline a body this size, and a call per key costs
                TV a0 = TS.Zero, a1 = TS.Zero, a2 = TS.Zero, a3 = TS.Zero, a4 = TS.Zero, a5 = TS.Zero, a6 = TS.Zero, a7 = TS.Zero;
                TV b0 = TS.Zero, b1 = TS.Zero, b2 = TS.Zero, b3 = TS.Zero, b4 = TS.Zero, b5 = TS.Zero, b6 = TS.Zero, b7 = TS.Zero;
                TV c0 = TS.Zero, c1 = TS.Zero, c2 = TS.Zero, c3 = TS.Zero, c4 = TS.Zero, c5 = TS.Zero, c6 = TS.Zero, c7 = TS.Zero;
                int i0 = 0;
                // pointers bumped once a pass and constant offsets from them
                float* x0 = q0, x1 = q1, x2 = q2;
                byte* key = k;
                ushort* scales = ks;
                for (int full = d - d % step; i0 < full; i0 += step, x0 += step, x1 += step, x2 += step, key += step * TK.Size, scales += TK.Block == 0 ? 0 : step / TK.Block)
                {
                    Step<TS, TV, TK, TRun>(x0, x1, x2, key, scales, 0, ref a0, ref b0, ref c0);
                    Step<TS, TV, TK, TRun>(x0, x1, x2, key, scales, lanes, ref a1, ref b1, ref c1);
                    Step<TS, TV, TK, TRun>(x0, x1, x2, key, scales, 2 * lanes, ref a2, ref b2, ref c2);
                    Step<TS, TV, TK, TRun>(x0, x1, x2, key, scales, 3 * lanes, ref a3, ref b3, ref c3);
                    Step<TS, TV, TK, TRun>(x0, x1, x2, key, scales, 4 * lanes, ref a4, ref b4, ref c4);
                    Step<TS, TV, TK, TRun>(x0, x1, x2, key, scales, 5 * lanes, ref a5, ref b5, ref c5);
                    Step<TS, TV, TK, TRun>(x0, x1, x2, key, scales, 6 * lanes, ref a6, ref b6, ref c6);
                    Step<TS, TV, TK, TRun>(x0, x1, x2, key, scales, 7 * lanes, ref a7, ref b7, ref c7);
                }
                if (i0 + lanes <= d)
                {
                    // fewer than eight vectors left: the next accumulators in turn
                    Step<TS, TV, TK, TRun>(q0, q1, q2, k, ks, i0, ref a0, ref b0, ref c0);
                    if ((i0 += lanes) + lanes <= d) { Step<TS, TV, TK, TRun>(q0, q1, q2, k, ks, i0, ref a1, ref b1, ref c1); i0 += lanes; }
                    if (i0 + lanes <= d) { Step<TS, TV, TK, TRun>(q0, q1, q2, k, ks, i0, ref a2, ref b2, ref c2); i0 += lanes; }
                    if (i0 + lanes <= d) { Step<TS, TV, TK, TRun>(q0, q1, q2, k, ks, i0, ref a3, ref b3, ref c3); i0 += lanes; }
                    if (i0 + lanes <= d) { Step<TS, TV, TK, TRun>(q0, q1, q2, k, ks, i0, ref a4, ref b4, ref c4); i0 += lanes; }
                    if (i0 + lanes <= d) { Step<TS, TV, TK, TRun>(q0, q1, q2, k, ks, i0, ref a5, ref b5, ref c5); i0 += lanes; }
                    if (i0 + lanes <= d) { Step<TS, TV, TK, TRun>(q0, q1, q2, k, ks, i0, ref a6, ref b6, ref c6); i0 += lanes; }
                }
                s[0] = Finish<TS, TV, TK>(a0, a1, a2, a3, a4, a5, a6, a7, q0, k, ks, i0, d);
                if (TRun.Value > 1) s[stride] = Finish<TS, TV, TK>(b0, b1, b2, b3, b4, b5, b6, b7, q1, k, ks, i0, d);
                if (TRun.Value > 2) s[2 * stride] = Finish<TS, TV, TK>(c0, c1, c2, c3, c4, c5, c6, c7, q2, k, ks, i0, d);
            }
            k += rowBytes;
            ks += scalesPerRow;
            if (++slot == a.Ring)
            {
                slot = 0;
                k = a.Keys;
                ks = a.KeyScales;
            }
        }
    }

    /// <summary>One key vector at <paramref name="i"/> times each query's, into that query's accumulator.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Step<TS, TV, TK, TRun>(float* q0, float* q1, float* q2, byte* k, ushort* ks, int i, ref TV a, ref TV b, ref TV c)
        where TS : struct, IVectorWidth<TV> where TV : struct where TK : struct, IKvElements where TRun : struct, ICount
    {
        var key = TS.Load<TK>(k, ks, i);
        a = TS.MultiplyAddEstimate(TS.Load(q0 + i), key, a);
        if (TRun.Value > 1) b = TS.MultiplyAddEstimate(TS.Load(q1 + i), key, b);
        if (TRun.Value > 2) c = TS.MultiplyAddEstimate(TS.Load(q2 + i), key, c);
    }

    /// <summary>A score: its accumulators summed as a balanced tree, then the lanes, then the elements from
    /// <paramref name="i"/> on (a head that is not a multiple of the width).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Finish<TS, TV, TK>(TV a0, TV a1, TV a2, TV a3, TV a4, TV a5, TV a6, TV a7, float* q, byte* k, ushort* ks, int i, int d)
        where TS : struct, IVectorWidth<TV> where TV : struct where TK : struct, IKvElements
    {
        float sum = TS.Sum(TS.Add(TS.Add(TS.Add(a0, a1), TS.Add(a2, a3)), TS.Add(TS.Add(a4, a5), TS.Add(a6, a7))));
        for (; i < d; i++) sum += q[i] * TK.Load(k, ks, i);
        return sum;
    }

    /// <summary>output_g = Σ_n p_g[n]·v_n for every query, in runs of two queries (each value vector loaded once for
    /// the run) and tiles of the head that stay in registers across the whole sum (eight vectors at 512 bits, six at
    /// 256: the accumulators of two queries, a value vector and two broadcast weights fit the registers).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void WeightedValues<TS, TV, TK>(in Arguments a, int group)
        where TS : struct, IVectorWidth<TV> where TV : struct where TK : struct, IKvElements
    {
        int d = a.HeadDim, lanes = TS.Count;
        int vectors = TS.IsHardwareAccelerated ? d / lanes : 0, tile = lanes == 16 ? 8 : 6;
        for (int g = 0; g < group; g += 2)
        {
            bool pair = g + 1 < group;
            // tiles of (nearly) equal widths (a narrow last tile would pay a pass over the weights for little), in whole
            // blocks of a cache with block scales (a tile's scale of element i is that of block i / Block)
            int unit = TK.Block == 0 ? 1 : TK.Block / lanes, units = vectors / unit, tileUnits = Math.Max(1, tile / unit);
            int tiles = (units + tileUnits - 1) / tileUnits;
            for (int t = 0; t < tiles; t++)
            {
                int from = units * t / tiles * unit, width = units * (t + 1) / tiles * unit - from;
                if (pair) Tile<TS, TV, TK, Count2>(a, g, from * lanes, width);
                else Tile<TS, TV, TK, Count1>(a, g, from * lanes, width);
            }
        }
        // the elements past the last whole vector (or all of them without vectors)
        long rowBytes = (long)d * TK.Size;
        int scalesPerRow = TK.Block == 0 ? 0 : d / TK.Block;
        for (int g = 0; g < group; g++)
        {
            for (int i = vectors * lanes; i < d; i++)
            {
                float sum = 0f;
                int slot = a.FirstSlot;
                for (int n = 0; n < a.Count; n++)
                {
                    sum += a.Scores[g * a.Stride + n] * TK.Load(a.Values + slot * rowBytes, a.ValueScales + (long)slot * scalesPerRow, i);
                    if (++slot == a.Ring) slot = 0;
                }
                a.Output[g * d + i] = sum;
            }
        }
    }

    /// <summary>Output elements <paramref name="offset"/> .. + <paramref name="width"/> vectors of queries
    /// <paramref name="g"/> (and g + 1 for a pair), summed over every position in registers.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tile<TS, TV, TK, TQ>(in Arguments a, int g, int offset, int width)
        where TS : struct, IVectorWidth<TV> where TV : struct where TK : struct, IKvElements where TQ : struct, ICount
    {
        switch (width)
        {
            case 8: Tile<TS, TV, TK, TQ, Count8>(a, g, offset); break;
            case 7: Tile<TS, TV, TK, TQ, Count7>(a, g, offset); break;
            case 6: Tile<TS, TV, TK, TQ, Count6>(a, g, offset); break;
            case 5: Tile<TS, TV, TK, TQ, Count5>(a, g, offset); break;
            case 4: Tile<TS, TV, TK, TQ, Count4>(a, g, offset); break;
            case 3: Tile<TS, TV, TK, TQ, Count3>(a, g, offset); break;
            case 2: Tile<TS, TV, TK, TQ, Count2>(a, g, offset); break;
            default: Tile<TS, TV, TK, TQ, Count1>(a, g, offset); break;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tile<TS, TV, TK, TQ, TW>(in Arguments a, int g, int offset)
        where TS : struct, IVectorWidth<TV> where TV : struct where TK : struct, IKvElements where TQ : struct, ICount where TW : struct, ICount
    {
        TV o0 = TS.Zero, o1 = TS.Zero, o2 = TS.Zero, o3 = TS.Zero, o4 = TS.Zero, o5 = TS.Zero, o6 = TS.Zero, o7 = TS.Zero;
        TV r0 = TS.Zero, r1 = TS.Zero, r2 = TS.Zero, r3 = TS.Zero, r4 = TS.Zero, r5 = TS.Zero, r6 = TS.Zero, r7 = TS.Zero;
        int d = a.HeadDim, lanes = TS.Count;
        long rowBytes = (long)d * TK.Size;
        int scalesPerRow = TK.Block == 0 ? 0 : d / TK.Block;
        float* p = a.Scores + g * a.Stride, r = p + a.Stride;
        // the tile's first element of slot 0, and of the current slot: constant offsets from it
        byte* first = a.Values + (long)offset * TK.Size;
        ushort* firstScales = a.ValueScales + (TK.Block == 0 ? 0 : offset / TK.Block);
        int slot = a.FirstSlot;
        byte* v = first + slot * rowBytes;
        ushort* vs = firstScales + (long)slot * scalesPerRow;
        for (int n = 0; n < a.Count; n++)
        {
            var w0 = TS.Broadcast(p[n]);
            var w1 = TQ.Value > 1 ? TS.Broadcast(r[n]) : w0;
            Weigh<TS, TV, TK, TQ>(v, vs, 0, w0, w1, ref o0, ref r0);
            if (TW.Value > 1) Weigh<TS, TV, TK, TQ>(v, vs, lanes, w0, w1, ref o1, ref r1);
            if (TW.Value > 2) Weigh<TS, TV, TK, TQ>(v, vs, 2 * lanes, w0, w1, ref o2, ref r2);
            if (TW.Value > 3) Weigh<TS, TV, TK, TQ>(v, vs, 3 * lanes, w0, w1, ref o3, ref r3);
            if (TW.Value > 4) Weigh<TS, TV, TK, TQ>(v, vs, 4 * lanes, w0, w1, ref o4, ref r4);
            if (TW.Value > 5) Weigh<TS, TV, TK, TQ>(v, vs, 5 * lanes, w0, w1, ref o5, ref r5);
            if (TW.Value > 6) Weigh<TS, TV, TK, TQ>(v, vs, 6 * lanes, w0, w1, ref o6, ref r6);
            if (TW.Value > 7) Weigh<TS, TV, TK, TQ>(v, vs, 7 * lanes, w0, w1, ref o7, ref r7);
            v += rowBytes;
            vs += scalesPerRow;
            if (++slot == a.Ring)
            {
                slot = 0;
                v = first;
                vs = firstScales;
            }
        }
        float* out0 = a.Output + g * d + offset, out1 = out0 + d;
        Store<TS, TV, TQ>(o0, r0, out0, out1, 0);
        if (TW.Value > 1) Store<TS, TV, TQ>(o1, r1, out0, out1, lanes);
        if (TW.Value > 2) Store<TS, TV, TQ>(o2, r2, out0, out1, 2 * lanes);
        if (TW.Value > 3) Store<TS, TV, TQ>(o3, r3, out0, out1, 3 * lanes);
        if (TW.Value > 4) Store<TS, TV, TQ>(o4, r4, out0, out1, 4 * lanes);
        if (TW.Value > 5) Store<TS, TV, TQ>(o5, r5, out0, out1, 5 * lanes);
        if (TW.Value > 6) Store<TS, TV, TQ>(o6, r6, out0, out1, 6 * lanes);
        if (TW.Value > 7) Store<TS, TV, TQ>(o7, r7, out0, out1, 7 * lanes);
    }

    /// <summary>One value vector times each query's weight, into that query's accumulator.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Weigh<TS, TV, TK, TQ>(byte* v, ushort* vs, int i, TV w0, TV w1, ref TV o, ref TV r)
        where TS : struct, IVectorWidth<TV> where TV : struct where TK : struct, IKvElements where TQ : struct, ICount
    {
        var value = TS.Load<TK>(v, vs, i);
        o = TS.MultiplyAddEstimate(value, w0, o);
        if (TQ.Value > 1) r = TS.MultiplyAddEstimate(value, w1, r);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store<TS, TV, TQ>(TV o, TV r, float* out0, float* out1, int i)
        where TS : struct, IVectorWidth<TV> where TV : struct where TQ : struct, ICount
    {
        TS.Store(o, out0 + i);
        if (TQ.Value > 1) TS.Store(r, out1 + i);
    }
}
