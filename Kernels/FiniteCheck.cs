using System.Numerics;

namespace GemmaGen.Kernels;

/// <summary>
/// Finds NaN and infinite values in float32, bfloat16 or float16 data by their bits: a value is not finite exactly
/// when its exponent bits are all ones, so one vector AND and compare per element decides, without widening. In a block
/// encoding (<see cref="TensorDType.Q8_0"/>, <see cref="TensorDType.Q4_0"/>, the K-quants) the values are small integers
/// times the block's half scales (a K-quant's d, and dmin where it has one), so they are finite exactly when every scale
/// is: those are checked (<see cref="TensorView.ScaleOffsets"/>).
/// </summary>
public static unsafe class FiniteCheck
{
    private const uint F32Exponent = 0x7F80_0000;
    private const ushort BF16Exponent = 0x7F80;
    private const ushort F16Exponent = 0x7C00;

    /// <summary>Whether every one of the <paramref name="count"/> elements of <paramref name="dtype"/> at
    /// <paramref name="data"/> is finite (for a block encoding, <paramref name="count"/> values in whole blocks: every
    /// block scale is).</summary>
    public static bool AllFinite(TensorDType dtype, byte* data, long count) => dtype switch
    {
        TensorDType.F32 => AllFinite((uint*)data, count, F32Exponent),
        TensorDType.BF16 => AllFinite((ushort*)data, count, BF16Exponent),
        TensorDType.F16 => AllFinite((ushort*)data, count, F16Exponent),
        _ when TensorView.IsBlocked(dtype) => ScalesFinite(dtype, data, count / TensorView.BlockSize(dtype)),
        _ => throw new ArgumentOutOfRangeException(nameof(dtype)),
    };

    /// <summary>Whether every half scale (<see cref="TensorView.ScaleOffsets"/>) of <paramref name="blocks"/> blocks of
    /// <paramref name="dtype"/> is finite.</summary>
    private static bool ScalesFinite(TensorDType dtype, byte* data, long blocks)
    {
        // One or two scales per 18 to 210 bytes: a strided scalar scan reads every cache line anyway, so it runs at
        // memory speed; every scale of a block is checked in the one pass over the blocks.
        int stride = TensorView.BlockBytes(dtype);
        var offsets = TensorView.ScaleOffsets(dtype);
        for (long b = 0; b < blocks; b++)
        {
            byte* block = data + b * stride;
            foreach (int offset in offsets)
            {
                if ((*(ushort*)(block + offset) & F16Exponent) == F16Exponent) return false;
            }
        }
        return true;
    }

    /// <summary>The first of a block's half scales that is not finite, else its first scale.</summary>
    private static float BlockScale(TensorDType dtype, byte* block)
    {
        foreach (int offset in TensorView.ScaleOffsets(dtype))
        {
            float scale = (float)*(Half*)(block + offset);
            if (!float.IsFinite(scale)) return scale;
        }
        return (float)*(Half*)(block + TensorView.ScaleOffsets(dtype)[0]);
    }

    /// <summary>Whether every value is finite (no NaN, no infinity).</summary>
    public static bool AllFinite(ReadOnlySpan<float> values)
    {
        fixed (float* p = values) return AllFinite((uint*)p, values.Length, F32Exponent);
    }

    /// <summary>How many of the elements are not finite, and the index of the first (-1 when all are finite); for
    /// the message after <see cref="AllFinite(TensorDType, byte*, long)"/> said no. For a block encoding: how many
    /// block scales are not finite, and the index of the first value of the first such block.</summary>
    public static (long Count, long First) Find(TensorDType dtype, byte* data, long count)
    {
        long found = 0, first = -1;
        int step = TensorView.BlockSize(dtype);
        for (long i = 0; i < count; i += step)
        {
            if (float.IsFinite(ElementAt(dtype, data, i))) continue;
            if (found++ == 0) first = i;
        }
        return (found, first);
    }

    /// <summary>Element <paramref name="index"/> widened to float32 (exactly: NaN stays NaN, infinities keep their sign);
    /// for a block encoding, the scale of the block that holds it (what decides whether its values are finite; of a block
    /// with two, the first that is not finite).</summary>
    public static float ElementAt(TensorDType dtype, byte* data, long index) => dtype switch
    {
        TensorDType.F32 => ((float*)data)[index],
        TensorDType.BF16 => BitConverter.UInt32BitsToSingle((uint)((ushort*)data)[index] << 16),
        TensorDType.F16 => (float)((Half*)data)[index],
        _ when TensorView.IsBlocked(dtype) => BlockScale(dtype, data + index / TensorView.BlockSize(dtype) * TensorView.BlockBytes(dtype)),
        _ => throw new ArgumentOutOfRangeException(nameof(dtype)),
    };

    /// <summary>"NaN", "+infinity" or "-infinity".</summary>
    public static string Describe(float value) =>
        float.IsNaN(value) ? "NaN" : float.IsPositiveInfinity(value) ? "+infinity" : float.IsNegativeInfinity(value) ? "-infinity" : "finite";

    // Memory-bound: four vectors per iteration keep enough loads in flight; the lanes are only tested at the end.
    private static bool AllFinite<T>(T* p, long count, T exponent)
        where T : unmanaged, IBinaryInteger<T>
    {
        long i = 0;
        int width = Vector<T>.Count;
        if (Vector.IsHardwareAccelerated && count >= 4 * width)
        {
            var mask = new Vector<T>(exponent);
            Vector<T> any = Vector<T>.Zero;
            for (long end = count - 4 * width; i <= end; i += 4 * width)
            {
                any |= Vector.Equals(Vector.Load(p + i) & mask, mask)
                     | Vector.Equals(Vector.Load(p + i + width) & mask, mask)
                     | Vector.Equals(Vector.Load(p + i + 2 * width) & mask, mask)
                     | Vector.Equals(Vector.Load(p + i + 3 * width) & mask, mask);
            }
            if (any != Vector<T>.Zero) return false;
        }
        for (; i < count; i++)
        {
            if ((p[i] & exponent) == exponent) return false;
        }
        return true;
    }
}
