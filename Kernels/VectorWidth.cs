using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace GemmaGen.Kernels;

/// <summary>
/// One vector width of float32 (<typeparamref name="TV"/>, 16 lanes with AVX-512 or 8 with AVX2), so that a kernel is
/// written once as a generic method over <see cref="Width512"/> and <see cref="Width256"/>: the JIT compiles each
/// instantiation separately, with the members inlined and the constants folded.
/// </summary>
/// <typeparam name="TV">The vector type.</typeparam>
internal unsafe interface IVectorWidth<TV> where TV : struct
{
    /// <summary>Lanes per vector.</summary>
    static abstract int Count { get; }

    /// <summary>Whether the JIT compiles this width to hardware vectors.</summary>
    static abstract bool IsHardwareAccelerated { get; }

    /// <summary>Tokens per block of the blocked kernel: as many accumulator pairs (two vectors of rows per token) as
    /// fit the registers alongside the two weight vectors and a broadcast.</summary>
    static abstract int TokenBlock { get; }

    /// <summary>Tokens per block of the blocked kernel once fewer than <see cref="TokenBlock"/> are left.</summary>
    static abstract int SmallBlock { get; }

    /// <summary>All lanes zero.</summary>
    static abstract TV Zero { get; }

    /// <summary><see cref="Count"/> floats from <paramref name="p"/>.</summary>
    static abstract TV Load(float* p);

    /// <summary><see cref="Count"/> weights from element <paramref name="index"/> of <paramref name="row"/>, as float32.</summary>
    static abstract TV Load<TW>(void* row, int index) where TW : struct, IWeightElements;

    /// <summary>2·<see cref="Count"/> weights from element <paramref name="index"/> as two vectors, in the order of
    /// <see cref="IWeightElements.PairsInterleaved"/>.</summary>
    static abstract void LoadPair<TW>(void* row, int index, out TV first, out TV second) where TW : struct, IWeightElements;

    /// <summary><see cref="Count"/> KV cache elements from element <paramref name="index"/> of <paramref name="row"/>
    /// (block scales, if any, at <paramref name="scales"/>), as float32.</summary>
    static abstract TV Load<TK>(void* row, ushort* scales, int index) where TK : struct, IKvElements;

    /// <summary>Stores <paramref name="v"/> at <paramref name="p"/>.</summary>
    static abstract void Store(TV v, float* p);

    /// <summary>Lane <paramref name="i"/> of <paramref name="v"/>.</summary>
    static abstract float Lane(TV v, int i);

    /// <summary><paramref name="value"/> in every lane.</summary>
    static abstract TV Broadcast(float value);

    /// <summary>a·b + c, rounded once (the blocked kernel runs only where this is a hardware FMA).</summary>
    static abstract TV FusedMultiplyAdd(TV a, TV b, TV c);

    /// <summary>a·b + c, fused where the hardware can (the dot-product kernel runs on any CPU).</summary>
    static abstract TV MultiplyAddEstimate(TV a, TV b, TV c);

    /// <summary>a + b.</summary>
    static abstract TV Add(TV a, TV b);

    /// <summary>The sum of the lanes.</summary>
    static abstract float Sum(TV v);

    /// <summary>
    /// Rows [first, first + <see cref="Count"/>) of <paramref name="w"/> (those from <paramref name="present"/> on read
    /// as zero), columns [0, <paramref name="columns"/>) (a multiple of <see cref="Count"/>), as float32 and transposed
    /// through registers, a square of <see cref="Count"/> × <see cref="Count"/> at a time: o[k·stride + i] = W[first + i][k].
    /// </summary>
    static abstract void TransposeRows<TW>(void* w, long rowBytes, int first, int present, int columns, float* o, int stride)
        where TW : struct, IWeightElements;
}

/// <summary>AVX-512: 16 lanes, 32 registers (24 accumulators of 32 rows × 12 tokens).</summary>
internal readonly unsafe partial struct Width512 : IVectorWidth<Vector512<float>>
{
    public static int Count => 16;
    public static bool IsHardwareAccelerated => Vector512.IsHardwareAccelerated;
    public static int TokenBlock => 12;
    public static int SmallBlock => 4;
    public static Vector512<float> Zero => Vector512<float>.Zero;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Load(float* p) => Vector512.Load(p);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Load<TW>(void* row, int index) where TW : struct, IWeightElements => TW.Load512(row, index);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void LoadPair<TW>(void* row, int index, out Vector512<float> first, out Vector512<float> second) where TW : struct, IWeightElements =>
        TW.LoadPair512(row, index, out first, out second);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Load<TK>(void* row, ushort* scales, int index) where TK : struct, IKvElements => TK.Load512(row, scales, index);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Store(Vector512<float> v, float* p) => v.Store(p);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Lane(Vector512<float> v, int i) => v.GetElement(i);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Broadcast(float value) => Vector512.Create(value);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> FusedMultiplyAdd(Vector512<float> a, Vector512<float> b, Vector512<float> c) => Vector512.FusedMultiplyAdd(a, b, c);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Add(Vector512<float> a, Vector512<float> b) => a + b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> MultiplyAddEstimate(Vector512<float> a, Vector512<float> b, Vector512<float> c) => Vector512.MultiplyAddEstimate(a, b, c);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Sum(Vector512<float> v) => Vector512.Sum(v);

    /// <summary>A 16×16 transpose: unpacks of pairs of floats, then of pairs of doubles, then two rounds of 128-bit
    /// lane shuffles.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void TransposeRows<TW>(void* w, long rowBytes, int first, int present, int columns, float* o, int stride)
        where TW : struct, IWeightElements
    {
        for (int c = 0; c < columns; c += Count, o += Count * stride)
        {
            var r0 = Row<TW>(w, rowBytes, first, 0, present, c);
            var r1 = Row<TW>(w, rowBytes, first, 1, present, c);
            var r2 = Row<TW>(w, rowBytes, first, 2, present, c);
            var r3 = Row<TW>(w, rowBytes, first, 3, present, c);
            var r4 = Row<TW>(w, rowBytes, first, 4, present, c);
            var r5 = Row<TW>(w, rowBytes, first, 5, present, c);
            var r6 = Row<TW>(w, rowBytes, first, 6, present, c);
            var r7 = Row<TW>(w, rowBytes, first, 7, present, c);
            var r8 = Row<TW>(w, rowBytes, first, 8, present, c);
            var r9 = Row<TW>(w, rowBytes, first, 9, present, c);
            var r10 = Row<TW>(w, rowBytes, first, 10, present, c);
            var r11 = Row<TW>(w, rowBytes, first, 11, present, c);
            var r12 = Row<TW>(w, rowBytes, first, 12, present, c);
            var r13 = Row<TW>(w, rowBytes, first, 13, present, c);
            var r14 = Row<TW>(w, rowBytes, first, 14, present, c);
            var r15 = Row<TW>(w, rowBytes, first, 15, present, c);
            Vector512<float> t0 = Avx512F.UnpackLow(r0, r1), t1 = Avx512F.UnpackHigh(r0, r1);
            Vector512<float> t2 = Avx512F.UnpackLow(r2, r3), t3 = Avx512F.UnpackHigh(r2, r3);
            Vector512<float> t4 = Avx512F.UnpackLow(r4, r5), t5 = Avx512F.UnpackHigh(r4, r5);
            Vector512<float> t6 = Avx512F.UnpackLow(r6, r7), t7 = Avx512F.UnpackHigh(r6, r7);
            Vector512<float> t8 = Avx512F.UnpackLow(r8, r9), t9 = Avx512F.UnpackHigh(r8, r9);
            Vector512<float> t10 = Avx512F.UnpackLow(r10, r11), t11 = Avx512F.UnpackHigh(r10, r11);
            Vector512<float> t12 = Avx512F.UnpackLow(r12, r13), t13 = Avx512F.UnpackHigh(r12, r13);
            Vector512<float> t14 = Avx512F.UnpackLow(r14, r15), t15 = Avx512F.UnpackHigh(r14, r15);
            Vector512<float> u0 = Avx512F.UnpackLow(t0.AsDouble(), t2.AsDouble()).AsSingle(), u1 = Avx512F.UnpackHigh(t0.AsDouble(), t2.AsDouble()).AsSingle();
            Vector512<float> u2 = Avx512F.UnpackLow(t1.AsDouble(), t3.AsDouble()).AsSingle(), u3 = Avx512F.UnpackHigh(t1.AsDouble(), t3.AsDouble()).AsSingle();
            Vector512<float> u4 = Avx512F.UnpackLow(t4.AsDouble(), t6.AsDouble()).AsSingle(), u5 = Avx512F.UnpackHigh(t4.AsDouble(), t6.AsDouble()).AsSingle();
            Vector512<float> u6 = Avx512F.UnpackLow(t5.AsDouble(), t7.AsDouble()).AsSingle(), u7 = Avx512F.UnpackHigh(t5.AsDouble(), t7.AsDouble()).AsSingle();
            Vector512<float> u8 = Avx512F.UnpackLow(t8.AsDouble(), t10.AsDouble()).AsSingle(), u9 = Avx512F.UnpackHigh(t8.AsDouble(), t10.AsDouble()).AsSingle();
            Vector512<float> u10 = Avx512F.UnpackLow(t9.AsDouble(), t11.AsDouble()).AsSingle(), u11 = Avx512F.UnpackHigh(t9.AsDouble(), t11.AsDouble()).AsSingle();
            Vector512<float> u12 = Avx512F.UnpackLow(t12.AsDouble(), t14.AsDouble()).AsSingle(), u13 = Avx512F.UnpackHigh(t12.AsDouble(), t14.AsDouble()).AsSingle();
            Vector512<float> u14 = Avx512F.UnpackLow(t13.AsDouble(), t15.AsDouble()).AsSingle(), u15 = Avx512F.UnpackHigh(t13.AsDouble(), t15.AsDouble()).AsSingle();
            Quarter(u0, u4, u8, u12, o, stride);
            Quarter(u1, u5, u9, u13, o + stride, stride);
            Quarter(u2, u6, u10, u14, o + 2 * stride, stride);
            Quarter(u3, u7, u11, u15, o + 3 * stride, stride);
        }
    }

    /// <summary>Columns j, j + 4, j + 8, j + 12 from the unpacked rows: 128-bit lanes regrouped twice.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Quarter(Vector512<float> p, Vector512<float> q, Vector512<float> r, Vector512<float> s, float* o, int stride)
    {
        Vector512<float> a = Avx512F.Shuffle4x128(p, q, 0x44), b = Avx512F.Shuffle4x128(r, s, 0x44);
        Vector512<float> c = Avx512F.Shuffle4x128(p, q, 0xEE), d = Avx512F.Shuffle4x128(r, s, 0xEE);
        Avx512F.Shuffle4x128(a, b, 0x88).Store(o);
        Avx512F.Shuffle4x128(a, b, 0xDD).Store(o + 4 * stride);
        Avx512F.Shuffle4x128(c, d, 0x88).Store(o + 8 * stride);
        Avx512F.Shuffle4x128(c, d, 0xDD).Store(o + 12 * stride);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Row<TW>(void* w, long rowBytes, int first, int i, int present, int c)
        where TW : struct, IWeightElements =>
        i < present ? TW.Load512((byte*)w + (first + i) * rowBytes, c) : Vector512<float>.Zero;
}

/// <summary>AVX2: 8 lanes, 16 registers (12 accumulators of 16 rows × 6 tokens).</summary>
internal readonly unsafe partial struct Width256 : IVectorWidth<Vector256<float>>
{
    public static int Count => 8;
    public static bool IsHardwareAccelerated => Vector256.IsHardwareAccelerated;
    public static int TokenBlock => 6;
    public static int SmallBlock => 2;
    public static Vector256<float> Zero => Vector256<float>.Zero;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load(float* p) => Vector256.Load(p);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load<TW>(void* row, int index) where TW : struct, IWeightElements => TW.Load256(row, index);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void LoadPair<TW>(void* row, int index, out Vector256<float> first, out Vector256<float> second) where TW : struct, IWeightElements =>
        TW.LoadPair256(row, index, out first, out second);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load<TK>(void* row, ushort* scales, int index) where TK : struct, IKvElements => TK.Load256(row, scales, index);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Store(Vector256<float> v, float* p) => v.Store(p);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Lane(Vector256<float> v, int i) => v.GetElement(i);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Broadcast(float value) => Vector256.Create(value);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> FusedMultiplyAdd(Vector256<float> a, Vector256<float> b, Vector256<float> c) => Vector256.FusedMultiplyAdd(a, b, c);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Add(Vector256<float> a, Vector256<float> b) => a + b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> MultiplyAddEstimate(Vector256<float> a, Vector256<float> b, Vector256<float> c) => Vector256.MultiplyAddEstimate(a, b, c);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Sum(Vector256<float> v) => Vector256.Sum(v);

    /// <summary>An 8×8 transpose: unpacks of pairs of floats, shuffles of pairs, then 128-bit lane permutes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void TransposeRows<TW>(void* w, long rowBytes, int first, int present, int columns, float* o, int stride)
        where TW : struct, IWeightElements
    {
        for (int c = 0; c < columns; c += Count, o += Count * stride)
        {
            var r0 = Row<TW>(w, rowBytes, first, 0, present, c);
            var r1 = Row<TW>(w, rowBytes, first, 1, present, c);
            var r2 = Row<TW>(w, rowBytes, first, 2, present, c);
            var r3 = Row<TW>(w, rowBytes, first, 3, present, c);
            var r4 = Row<TW>(w, rowBytes, first, 4, present, c);
            var r5 = Row<TW>(w, rowBytes, first, 5, present, c);
            var r6 = Row<TW>(w, rowBytes, first, 6, present, c);
            var r7 = Row<TW>(w, rowBytes, first, 7, present, c);
            Vector256<float> t0 = Avx.UnpackLow(r0, r1), t1 = Avx.UnpackHigh(r0, r1);
            Vector256<float> t2 = Avx.UnpackLow(r2, r3), t3 = Avx.UnpackHigh(r2, r3);
            Vector256<float> t4 = Avx.UnpackLow(r4, r5), t5 = Avx.UnpackHigh(r4, r5);
            Vector256<float> t6 = Avx.UnpackLow(r6, r7), t7 = Avx.UnpackHigh(r6, r7);
            Vector256<float> u0 = Avx.Shuffle(t0, t2, 0x44), u1 = Avx.Shuffle(t0, t2, 0xEE);
            Vector256<float> u2 = Avx.Shuffle(t1, t3, 0x44), u3 = Avx.Shuffle(t1, t3, 0xEE);
            Vector256<float> u4 = Avx.Shuffle(t4, t6, 0x44), u5 = Avx.Shuffle(t4, t6, 0xEE);
            Vector256<float> u6 = Avx.Shuffle(t5, t7, 0x44), u7 = Avx.Shuffle(t5, t7, 0xEE);
            Avx.Permute2x128(u0, u4, 0x20).Store(o);
            Avx.Permute2x128(u0, u4, 0x31).Store(o + 4 * stride);
            Avx.Permute2x128(u1, u5, 0x20).Store(o + 1 * stride);
            Avx.Permute2x128(u1, u5, 0x31).Store(o + 5 * stride);
            Avx.Permute2x128(u2, u6, 0x20).Store(o + 2 * stride);
            Avx.Permute2x128(u2, u6, 0x31).Store(o + 6 * stride);
            Avx.Permute2x128(u3, u7, 0x20).Store(o + 3 * stride);
            Avx.Permute2x128(u3, u7, 0x31).Store(o + 7 * stride);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Row<TW>(void* w, long rowBytes, int first, int i, int present, int c)
        where TW : struct, IWeightElements =>
        i < present ? TW.Load256((byte*)w + (first + i) * rowBytes, c) : Vector256<float>.Zero;
}
