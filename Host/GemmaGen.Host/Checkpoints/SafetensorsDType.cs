namespace GemmaGen;

/// <summary>
/// The element types a safetensors header may name. Every one can be read; only <see cref="F32"/>,
/// <see cref="BF16"/> and <see cref="F16"/> can be model weights (the others appear in goldens and metadata
/// tensors: token ids are <see cref="I64"/>).
/// </summary>
public enum SafetensorsDType
{
    /// <summary>Boolean, one byte.</summary>
    BOOL,

    /// <summary>Unsigned 8-bit integer.</summary>
    U8,

    /// <summary>Signed 8-bit integer.</summary>
    I8,

    /// <summary>8-bit float, 5 exponent bits, 2 mantissa bits.</summary>
    F8_E5M2,

    /// <summary>8-bit float, 4 exponent bits, 3 mantissa bits.</summary>
    F8_E4M3,

    /// <summary>Signed 16-bit integer.</summary>
    I16,

    /// <summary>Unsigned 16-bit integer.</summary>
    U16,

    /// <summary>IEEE half precision.</summary>
    F16,

    /// <summary>bfloat16: the upper half of a float32.</summary>
    BF16,

    /// <summary>Signed 32-bit integer.</summary>
    I32,

    /// <summary>Unsigned 32-bit integer.</summary>
    U32,

    /// <summary>IEEE single precision.</summary>
    F32,

    /// <summary>Signed 64-bit integer.</summary>
    I64,

    /// <summary>Unsigned 64-bit integer.</summary>
    U64,

    /// <summary>IEEE double precision.</summary>
    F64,
}

/// <summary>Sizes and names of <see cref="SafetensorsDType"/> values.</summary>
public static class SafetensorsDTypes
{
    /// <summary>Bytes per element.</summary>
    public static int ElementSize(this SafetensorsDType dtype) => dtype switch
    {
        SafetensorsDType.BOOL or SafetensorsDType.U8 or SafetensorsDType.I8 or
        SafetensorsDType.F8_E5M2 or SafetensorsDType.F8_E4M3 => 1,
        SafetensorsDType.I16 or SafetensorsDType.U16 or SafetensorsDType.F16 or SafetensorsDType.BF16 => 2,
        SafetensorsDType.I32 or SafetensorsDType.U32 or SafetensorsDType.F32 => 4,
        SafetensorsDType.I64 or SafetensorsDType.U64 or SafetensorsDType.F64 => 8,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, null),
    };

    /// <summary>Parses a header's <c>dtype</c> string (exact, upper case as the format writes it).</summary>
    public static bool TryParse(string text, out SafetensorsDType dtype) =>
        Enum.TryParse(text, ignoreCase: false, out dtype) && Enum.IsDefined(dtype) && text == dtype.ToString();

    /// <summary>The weight dtype a kernel tensor view can hold, or null for the types weights never use.</summary>
    public static Kernels.TensorDType? ToTensorDType(this SafetensorsDType dtype) => dtype switch
    {
        SafetensorsDType.F32 => Kernels.TensorDType.F32,
        SafetensorsDType.BF16 => Kernels.TensorDType.BF16,
        SafetensorsDType.F16 => Kernels.TensorDType.F16,
        _ => null,
    };
}
