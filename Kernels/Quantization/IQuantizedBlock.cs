using System.Runtime.Intrinsics;

namespace GemmaGen.Kernels;

/// <summary>
/// What one block format of <see cref="QuantizedLayout"/> provides: a row's block of 32 columns as
/// <see cref="QuantBytes"/> bytes of small integers and a bf16 scale, how it is quantized and dequantized, and its
/// integer dot products with a quantized input. The shared code (<see cref="QuantizedFormat{TBlock}"/>,
/// <see cref="QuantizedMatVec"/>, <see cref="QuantizedMatMul"/>) is specialized per block type, so these calls
/// inline.
/// </summary>
internal unsafe interface IQuantizedBlock
{
    /// <summary>Bytes of one row's block of quantized values.</summary>
    static abstract int QuantBytes { get; }

    /// <summary>What the integers <see cref="PanelDots"/> sums exceed the weights by: its sums are corrected by
    /// −offset·Σ x̂ per block.</summary>
    static abstract int DotsOffset { get; }

    /// <summary>What <see cref="Unsigned"/>'s bytes exceed the weights by.</summary>
    static abstract int UnsignedOffset { get; }

    /// <summary>The largest byte <see cref="Unsigned"/> returns.</summary>
    static abstract int MaxUnsigned { get; }

    /// <summary>Quantizes 32 floats at <paramref name="x"/> into <paramref name="q"/>; returns the scale's bf16 bits.</summary>
    static abstract ushort Quantize(float* x, byte* q);

    /// <summary>y[0..32) = the block's values times <paramref name="d"/> (exact: a small integer times a bf16).</summary>
    static abstract void Dequantize(byte* q, float d, float* y);

    /// <summary>
    /// The four rows of a panel against an int16 input: dots[i] = Σ over <paramref name="blocks"/> blocks b of
    /// s[4b + i] · Σ (stored integer · x̂) for the panel's quants at <paramref name="q"/> (before the
    /// <see cref="DotsOffset"/> correction): the shared loop (<see cref="QuantizedMatVec.PanelDots{TW, TAcc, TRow}"/>)
    /// over the block type's row products at the widest vector the CPU has, or scalar code.
    /// </summary>
    static abstract void PanelDots(byte* q, int blocks, short* x, float* s, float* dots);

    /// <summary>One row's block as 32 unsigned bytes in column order, each its weight plus <see cref="UnsignedOffset"/>.</summary>
    static abstract Vector256<int> Unsigned(byte* q);

    /// <summary>A panel's block at <paramref name="q"/> (its four rows' blocks, one after another) as two 512-bit vectors
    /// of two rows each (rows 0, 1 and rows 2, 3), each row's 32 bytes made unsigned as <see cref="Unsigned"/> makes
    /// them, in column order (the AVX-512 repack of the integer matrix-matrix kernel). Needs AVX-512.</summary>
    static abstract void UnsignedPanel(byte* q, out Vector512<int> rows01, out Vector512<int> rows23);
}
