using GemmaGen.Kernels;

namespace GemmaGen.Tests.Quantization;

/// <summary>The block formats the kernel tests run, and what each stores, as the layout documents it
/// (<see cref="QuantizedLayout"/>): Q8_0 or Q4_0 values, and bf16 (GemmaGen's own) or IEEE half (GGUF's) scales.</summary>
internal static class BlockFormats
{
    /// <summary>GemmaGen's Q8_0 and Q4_0 and GGUF's blocks as stored.</summary>
    public static readonly WeightFormat[] All = [WeightFormat.Q8_0, WeightFormat.Q4_0, WeightFormat.Q8_0F16, WeightFormat.Q4_0F16];

    /// <summary>The block format named <paramref name="name"/>, GGUF's included (which <see cref="WeightFormat.Find"/>,
    /// the conversion targets' lookup, does not offer).</summary>
    public static WeightFormat Find(string name) => All.Single(f => f.Name == name);

    /// <summary>Whether the format stores Q8_0 blocks (32 bytes of int8 plus 128), else Q4_0 (16 bytes of nibbles).</summary>
    public static bool IsQ8(WeightFormat format) => format == WeightFormat.Q8_0 || format == WeightFormat.Q8_0F16;

    /// <summary>Whether the scales are IEEE halves (else bf16).</summary>
    public static bool HalfScales(WeightFormat format) => format == WeightFormat.Q8_0F16 || format == WeightFormat.Q4_0F16;

    /// <summary>A stored scale's value, widened by .NET's own conversions (not the kernels').</summary>
    public static float Scale(WeightFormat format, ushort bits) =>
        HalfScales(format) ? (float)BitConverter.UInt16BitsToHalf(bits) : BitConverter.Int32BitsToSingle(bits << 16);

    /// <summary>The stored integers' offset: 128 for Q8_0, 8 for Q4_0.</summary>
    public static int Offset(WeightFormat format) => IsQ8(format) ? 128 : 8;
}
