using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace GemmaGen.Kernels;

/// <summary>bfloat16 ⇄ float32 conversions. bf16 is the upper half of a float32, so widening is exact.</summary>
public static class BFloat16
{
    /// <summary>Widens one bf16 value, given as its bits, to float32 (exact).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float ToSingle(ushort bits) => BitConverter.Int32BitsToSingle(bits << 16);

    /// <summary>Rounds to the nearest bf16, ties to even; NaN stays NaN.</summary>
    public static ushort FromSingle(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        if (float.IsNaN(value)) return (ushort)((bits >> 16) | 0x40);
        uint rounding = 0x7FFF + ((bits >> 16) & 1);
        return (ushort)((bits + rounding) >> 16);
    }

    /// <summary>Widens every element of <paramref name="source"/> into <paramref name="destination"/>.</summary>
    public static unsafe void Widen(ReadOnlySpan<ushort> source, Span<float> destination)
    {
        if (destination.Length < source.Length) throw new ArgumentException("destination too short", nameof(destination));
        int n = source.Length, i = 0;
        fixed (ushort* s = source)
        fixed (float* d = destination)
        {
            if (Vector256.IsHardwareAccelerated)
            {
                for (; i <= n - 16; i += 16)
                {
                    var v = Vector256.Load(s + i);
                    (Vector256.WidenLower(v) << 16).AsSingle().Store(d + i);
                    (Vector256.WidenUpper(v) << 16).AsSingle().Store(d + i + 8);
                }
            }
            for (; i < n; i++) d[i] = ToSingle(s[i]);
        }
    }

    /// <summary>Rounds every element of <paramref name="source"/> to bf16.</summary>
    public static void Narrow(ReadOnlySpan<float> source, Span<ushort> destination)
    {
        if (destination.Length < source.Length) throw new ArgumentException("destination too short", nameof(destination));
        for (int i = 0; i < source.Length; i++) destination[i] = FromSingle(source[i]);
    }
}
