using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace GemmaGen.Kernels;

/// <summary>
/// A vector width the quantized matrix-vector loops (<see cref="QuantizedMatVec"/>) are written over once: the loops
/// are generic in the width, and each width supplies the few operations whose instructions differ. A block type
/// supplies its product of one row's block at a width as an <see cref="IRowProduct{TAcc}"/>. The widths are the
/// float kernels' (<see cref="IVectorWidth{TV}"/>): one struct per width carries both sets of operations.
/// </summary>
/// <typeparam name="TAcc">The float accumulator vector.</typeparam>
internal unsafe interface IPanelWidth<TAcc> : IVectorWidth<TAcc> where TAcc : struct
{
    /// <summary>scales[i] = bf16 weight scale i · input scale i for <see cref="IVectorWidth{TV}.Count"/> scales; returns
    /// acc + scales · inputSums.</summary>
    static abstract TAcc ScaleProducts(ushort* weightScales, float* inputScales, float* inputSums, float* scales, TAcc acc);

    /// <summary>a + b.</summary>
    static abstract TAcc Add(TAcc a, TAcc b);

    /// <summary>The lanes summed in groups of four strided by four: lane r is Σ acc[4k + r].</summary>
    static abstract Vector128<float> Fold(TAcc acc);
}

/// <summary>One row's block product of a block type at one width: what the shared panel loop
/// (<see cref="QuantizedMatVec"/>) calls for each row of a panel.</summary>
/// <typeparam name="TAcc">The float accumulator vector of the width.</typeparam>
internal unsafe interface IRowProduct<TAcc> where TAcc : struct
{
    /// <summary>acc + scale · Σ (stored integer · x̂) over one row's block at <paramref name="q"/> and the block's 32
    /// int16 inputs at <paramref name="x"/> (before the block type's <see cref="IQuantizedBlock.DotsOffset"/>
    /// correction).</summary>
    static abstract TAcc Row(byte* q, short* x, float scale, TAcc acc);
}

/// <summary>AVX-512 (BW for the int16 products).</summary>
internal readonly unsafe partial struct Width512 : IPanelWidth<Vector512<float>>
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> ScaleProducts(ushort* weightScales, float* inputScales, float* inputSums, float* scales, Vector512<float> acc)
    {
        var s = (Avx512F.ConvertToVector512Int32(Vector256.Load(weightScales)) << 16).AsSingle() * Vector512.Load(inputScales);
        s.Store(scales);
        return Avx512F.FusedMultiplyAdd(s, Vector512.Load(inputSums), acc);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Add(Vector512<float> a, Vector512<float> b) => a + b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Fold(Vector512<float> acc)
    {
        var half = acc.GetLower() + acc.GetUpper();
        return half.GetLower() + half.GetUpper();
    }
}

/// <summary>AVX2 with FMA.</summary>
internal readonly unsafe partial struct Width256 : IPanelWidth<Vector256<float>>
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> ScaleProducts(ushort* weightScales, float* inputScales, float* inputSums, float* scales, Vector256<float> acc)
    {
        var s = (Avx2.ConvertToVector256Int32(Vector128.Load(weightScales)) << 16).AsSingle() * Vector256.Load(inputScales);
        s.Store(scales);
        return Fma.MultiplyAdd(s, Vector256.Load(inputSums), acc);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Add(Vector256<float> a, Vector256<float> b) => a + b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Fold(Vector256<float> acc) => acc.GetLower() + acc.GetUpper();
}
