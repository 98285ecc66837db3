namespace GemmaGen;

/// <summary>
/// One ggml tensor type as a GGUF file names it: the id stored in a tensor info, its name, and how its data is laid
/// out along a row (<c>ne[0]</c>): <see cref="BlockSize"/> values stored in <see cref="BytesPerBlock"/> bytes.
/// </summary>
/// <param name="Id">The <c>ggml_type</c> id.</param>
/// <param name="Name">ggml's name for it (<c>Q4_0</c>, <c>Q6_K</c>, ...).</param>
/// <param name="BlockSize">Values per block; a row's width must be a multiple of it.</param>
/// <param name="BytesPerBlock">Bytes one block occupies.</param>
public sealed record GgmlType(uint Id, string Name, int BlockSize, int BytesPerBlock)
{
    /// <summary>32-bit IEEE float.</summary>
    public static readonly GgmlType F32 = new(0, "F32", 1, 4);

    /// <summary>16-bit IEEE half.</summary>
    public static readonly GgmlType F16 = new(1, "F16", 1, 2);

    /// <summary>fp16 scale + 32 4-bit values.</summary>
    public static readonly GgmlType Q4_0 = new(2, "Q4_0", 32, 18);

    /// <summary>fp16 scale and minimum + 32 4-bit values.</summary>
    public static readonly GgmlType Q4_1 = new(3, "Q4_1", 32, 20);

    /// <summary>fp16 scale + 32 5-bit values.</summary>
    public static readonly GgmlType Q5_0 = new(6, "Q5_0", 32, 22);

    /// <summary>fp16 scale and minimum + 32 5-bit values.</summary>
    public static readonly GgmlType Q5_1 = new(7, "Q5_1", 32, 24);

    /// <summary>fp16 scale + 32 int8 values.</summary>
    public static readonly GgmlType Q8_0 = new(8, "Q8_0", 32, 34);

    /// <summary>fp16 scale and sum + 32 int8 values.</summary>
    public static readonly GgmlType Q8_1 = new(9, "Q8_1", 32, 36);

    /// <summary>2-bit K-quant super-block.</summary>
    public static readonly GgmlType Q2_K = new(10, "Q2_K", 256, 84);

    /// <summary>3-bit K-quant super-block.</summary>
    public static readonly GgmlType Q3_K = new(11, "Q3_K", 256, 110);

    /// <summary>4-bit K-quant super-block.</summary>
    public static readonly GgmlType Q4_K = new(12, "Q4_K", 256, 144);

    /// <summary>5-bit K-quant super-block.</summary>
    public static readonly GgmlType Q5_K = new(13, "Q5_K", 256, 176);

    /// <summary>6-bit K-quant super-block.</summary>
    public static readonly GgmlType Q6_K = new(14, "Q6_K", 256, 210);

    /// <summary>8-bit K-quant super-block (float scale, 256 int8, 16 int16 group sums).</summary>
    public static readonly GgmlType Q8_K = new(15, "Q8_K", 256, 292);

    /// <summary>8-bit integer.</summary>
    public static readonly GgmlType I8 = new(24, "I8", 1, 1);

    /// <summary>16-bit integer.</summary>
    public static readonly GgmlType I16 = new(25, "I16", 1, 2);

    /// <summary>32-bit integer.</summary>
    public static readonly GgmlType I32 = new(26, "I32", 1, 4);

    /// <summary>64-bit integer.</summary>
    public static readonly GgmlType I64 = new(27, "I64", 1, 8);

    /// <summary>64-bit IEEE float.</summary>
    public static readonly GgmlType F64 = new(28, "F64", 1, 8);

    /// <summary>bfloat16.</summary>
    public static readonly GgmlType BF16 = new(30, "BF16", 1, 2);

    /// <summary>Every type this reader knows, by id: the one table of ggml types.</summary>
    public static IReadOnlyDictionary<uint, GgmlType> All { get; } = new[]
    {
        F32, F16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K, I8, I16, I32, I64, F64, BF16,
    }.ToDictionary(t => t.Id);

    /// <summary>Looks a type up by its id.</summary>
    public static bool TryGet(uint id, out GgmlType type) => All.TryGetValue(id, out type!);

    /// <inheritdoc/>
    public override string ToString() => Name;
}
