using System.Runtime.CompilerServices;

namespace GemmaGen.Kernels;

/// <summary>
/// How a weight matrix's elements are stored, and the kernels that read them: one object per format, registered in
/// <see cref="All"/>. A format says how many bytes a matrix takes and which widths it can store, packs float rows
/// (or rows already in its own encoding) at load, reads rows back as float32, and computes the matrix-vector product
/// of one token and the matrix-matrix product of a batch of tokens over a range of rows.
/// </summary>
public abstract unsafe class WeightFormat
{
    [ThreadStatic]
    private static float[]? t_gateUp;

    private protected WeightFormat(string name, int blockSize, int groupRows)
    {
        Name = name;
        BlockSize = blockSize;
        GroupRows = groupRows;
    }

    /// <summary>The format of a stack of parts that keep formats of their own (<see cref="WeightMatrix.Stack"/>); not a
    /// format a matrix can be converted to.</summary>
    internal static WeightFormat Stacked { get; } = new StackedFormat();

    /// <summary>IEEE float32, row-major.</summary>
    public static WeightFormat F32 { get; } = new F32Format();

    /// <summary>bfloat16 (the upper 16 bits of a float32, widened exactly by <c>bits &lt;&lt; 16</c>), row-major.</summary>
    public static WeightFormat BF16 { get; } = new BF16Format();

    /// <summary>Blocks of 32 int8 values and a bf16 scale, 1.0625 bytes per weight, rows interleaved in groups of 16
    /// (<see cref="QuantizedLayout"/>). Quantized when rows are written; the width must be a multiple of 32.</summary>
    public static WeightFormat Q8_0 { get; } = new QuantizedFormat<Q8_0Block<BF16Scale>>("q8_0", inputsPer16: false);

    /// <summary>Blocks of 32 four-bit values (offset 8) and a bf16 scale, 0.5625 bytes per weight, rows interleaved in
    /// groups of 16 (<see cref="QuantizedLayout"/>). Quantized when rows are written; the width must be a multiple of
    /// 32.</summary>
    public static WeightFormat Q4_0 { get; } = new QuantizedFormat<Q4_0Block<BF16Scale>>("q4_0", inputsPer16: false);

    /// <summary>GGUF's Q8_0 tensors as stored: ggml's blocks of 32 int8 values and an IEEE half scale, 1.0625 bytes per
    /// weight, laid out as <see cref="Q8_0"/> (<see cref="QuantizedLayout"/>) with the file's half scales kept as they
    /// are. The loader fills it from a GGUF Q8_0 tensor when no format is asked for; not a conversion target
    /// (<see cref="AsStored"/>). Batches of <see cref="ByteTokensFrom"/> tokens or more round their inputs to int8 per
    /// 16 values, not per 32 as <see cref="Q8_0"/>'s prefill and llama.cpp do: per 32 moved the GGUF fixtures' logits
    /// as far from the exact goldens as llama.cpp's own, sometimes further; per 16 they stay closer (README, "Running
    /// a GGUF file").</summary>
    public static WeightFormat Q8_0F16 { get; } = new QuantizedFormat<Q8_0Block<F16Scale>>("q8_0-f16", inputsPer16: true);

    /// <summary>GGUF's Q4_0 tensors as stored: ggml's blocks of 32 four-bit values (offset 8) and an IEEE half scale,
    /// 0.5625 bytes per weight, laid out as <see cref="Q4_0"/> with the file's half scales kept as they are; not a
    /// conversion target (<see cref="AsStored"/>). Its batches round their inputs as <see cref="Q8_0F16"/>'s do.</summary>
    public static WeightFormat Q4_0F16 { get; } = new QuantizedFormat<Q4_0Block<F16Scale>>("q4_0-f16", inputsPer16: true);

    /// <summary>GGUF's Q4_K tensors as stored: ggml's super-blocks of 256 four-bit values with 6-bit sub-block scales and
    /// minimums, every bit kept, rearranged at load into groups of eight interleaved rows with the scales unpacked
    /// (<see cref="MinKGroup{TBits}"/>), 0.59375 bytes per weight; not a conversion target (<see cref="AsStored"/>). Decode and
    /// batches on integer dot products (<see cref="KQuantGroupFormat{TGroup}"/>).</summary>
    public static WeightFormat Q4_K { get; } = new KQuantGroupFormat<MinKGroup<Count4>>("q4_k");

    /// <summary>GGUF's Q5_K tensors as stored: <see cref="Q4_K"/> with a fifth bit per value, 0.71875 bytes per weight.</summary>
    public static WeightFormat Q5_K { get; } = new KQuantGroupFormat<MinKGroup<Count5>>("q5_k");

    /// <summary>GGUF's Q6_K tensors as stored: ggml's super-blocks of 256 six-bit values with int8 scales per 16, every
    /// bit kept, rearranged at load into groups of eight interleaved rows (<see cref="Q6_KGroup"/>), 0.828 bytes per
    /// weight; as <see cref="Q4_K"/>.</summary>
    public static WeightFormat Q6_K { get; } = new KQuantGroupFormat<Q6_KGroup>("q6_k");

    /// <summary>Every format a model can be converted to at load, the one registration of them: option parsing
    /// (<c>--quant</c>), messages and tables enumerate this list.</summary>
    public static IReadOnlyList<WeightFormat> All { get; } = [F32, BF16, Q8_0, Q4_0];

    /// <summary>The formats that hold a checkpoint's own quantized blocks as stored (GGUF's Q8_0 and Q4_0, whose scales
    /// are IEEE halves, and the K-quants Q4_K, Q5_K, Q6_K), the one registration of them: the loader picks one for a
    /// tensor of its <see cref="TensorDType"/> (<see cref="ForStored"/>). Converting to them is not offered: a
    /// conversion is better served by <see cref="Q8_0"/> and <see cref="Q4_0"/>, which the kernels run at the same
    /// speed or faster (benchmarks may still fill them from synthetic weights).</summary>
    public static IReadOnlyList<WeightFormat> AsStored { get; } = [Q8_0F16, Q4_0F16, Q4_K, Q5_K, Q6_K];

    /// <summary>The format of <see cref="AsStored"/> that stores tensors of <paramref name="dtype"/> block for block,
    /// or null when none does.</summary>
    public static WeightFormat? ForStored(TensorDType dtype) => AsStored.FirstOrDefault(f => f.SourceType == dtype);

    /// <summary>The format of <paramref name="among"/> (default <see cref="All"/>) named <paramref name="name"/>
    /// (<see cref="Name"/>, any case), or null.</summary>
    public static WeightFormat? Find(string name, IEnumerable<WeightFormat>? among = null) =>
        (among ?? All).FirstOrDefault(f => string.Equals(f.Name, name, StringComparison.OrdinalIgnoreCase));

    /// <summary>The formats a model's weights are held in, for a message: <c>F32</c>, <c>F32 and Q4_0-F16</c>.</summary>
    public static string Describe(IReadOnlyList<WeightFormat> formats) => formats.Count == 1 ? formats[0].ToString()
        : string.Join(", ", formats.Take(formats.Count - 1)) + " and " + formats[^1];

    /// <summary>The names of <paramref name="formats"/> for a message: <c>bf16, q8_0 or q4_0</c>.</summary>
    public static string ListNames(IEnumerable<WeightFormat> formats)
    {
        var names = formats.Select(f => f.Name).ToArray();
        return names.Length < 2 ? string.Concat(names) : string.Join(", ", names[..^1]) + " or " + names[^1];
    }

    /// <summary>The lower-case name options and JSON use: <c>f32</c>, <c>bf16</c>, <c>q8_0</c>, <c>q4_0</c>.</summary>
    public string Name { get; }

    /// <summary>Columns stored together (1 for the element formats, 32 for the block formats): a matrix's width must
    /// be a multiple.</summary>
    public int BlockSize { get; }

    /// <summary>Rows interleaved in one group (1 when rows are stored one after another).</summary>
    public int GroupRows { get; }

    /// <summary>The checkpoint block encoding the format stores block for block (<see cref="TryCopyRow"/>), or null.</summary>
    internal virtual TensorDType? SourceType => null;

    /// <summary>Bytes of one element of a row-major format, or null for a block format.</summary>
    public virtual int? ElementSize => null;

    /// <summary>Whether a matrix of <paramref name="cols"/> columns can be stored: the width is a multiple of
    /// <see cref="BlockSize"/>.</summary>
    public bool CanStore(int cols) => cols % BlockSize == 0;

    /// <summary>Bytes a <paramref name="rows"/> × <paramref name="cols"/> matrix takes.</summary>
    public abstract long ByteLength(int rows, int cols);

    /// <summary>The upper-case name messages use (<c>BF16</c>, <c>Q8_0</c>).</summary>
    public override string ToString() => Name.ToUpperInvariant();

    /// <summary>Prepares freshly allocated (uninitialized) storage, e.g. zeroes padding rows.</summary>
    internal virtual void Initialize(WeightMatrix matrix) { }

    /// <summary>Writes float32 values into row <paramref name="row"/>, rounding or quantizing to the format.</summary>
    internal abstract void WriteRow(WeightMatrix matrix, int row, ReadOnlySpan<float> source);

    /// <summary>
    /// Stores row <paramref name="row"/> from a source row whose elements of type <paramref name="dtype"/> are already
    /// this format's encoding (copied, no rounding); false, with nothing written, when <paramref name="dtype"/> is
    /// not one this format stores verbatim and the row must go through <see cref="WriteRow"/>.
    /// </summary>
    internal virtual bool TryCopyRow(WeightMatrix matrix, int row, TensorDType dtype, ReadOnlySpan<byte> source) => false;

    /// <summary>Row <paramref name="row"/> widened or dequantized to float32 into <paramref name="destination"/>
    /// (exactly <see cref="WeightMatrix.Cols"/> values).</summary>
    internal abstract void ReadRow(WeightMatrix matrix, int row, Span<float> destination);

    /// <summary>Decode: y[r] = W[r]·x for rows [start, end).</summary>
    internal abstract void MatVecRows(WeightMatrix matrix, float* x, float* y, int start, int end);

    /// <summary>
    /// Decode: y[i] = gelu_tanh(W[2i]·x)·(W[2i+1]·x) for outputs [start, end) of an interleaved gate/up matrix. This
    /// default computes rows [2·start, 2·end) with <see cref="MatVecRows"/> into thread-local scratch and applies
    /// <see cref="Activations.GeluTanhGated"/>, the activation every path uses.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal virtual void GateUpRows(WeightMatrix matrix, float* x, float* y, int start, int end)
    {
        int count = 2 * (end - start);
        var scratch = t_gateUp is { } existing && existing.Length >= count ? existing : t_gateUp = new float[Math.Max(count, 64)];
        fixed (float* dots = scratch)
        {
            MatVecRows(matrix, x, dots - 2 * start, 2 * start, 2 * end);
            Activations.GeluTanhGated(dots, y + start, end - start);
        }
    }

    /// <summary>Whether <see cref="MatMulRows"/> on this CPU rounds the inputs of large batches to int8 for byte products
    /// (as llama.cpp does), rather than computing as exactly as decoding.</summary>
    public virtual bool RoundsPrefillInputs => false;

    /// <summary>
    /// GGUF's blocks as stored (the K-quants, and Q8_0 and Q4_0 with their half scales) round a batch's inputs to int8
    /// only from this many tokens; smaller batches (a short prompt, a few sequences decoding together) run the decode
    /// kernels' int16 products, as exact as decoding. Measured on an AMD EPYC Zen 3 (AVX2), the 2B Q4_K_M file, 2
    /// threads: 8 sequences decoding together ran 1.17–1.59x faster on the int16 kernel, 16 together 1.00–1.12x faster
    /// on the byte products, a 32-token prompt 1.07–1.47x faster on them. GGUF's Q8_0 and Q4_0 blocks take the same
    /// threshold (not measured apart), so that a file's matrices round alike.
    /// </summary>
    internal const int ByteTokensFrom = 16;

    /// <summary>Prefill: y[t·yStride + r] = W[r]·x[t·xStride ..] for rows [start, end) and tokens [0, tokens), each
    /// weight read once per call.</summary>
    internal abstract void MatMulRows(WeightMatrix matrix, float* x, int xStride, int tokens, float* y, int yStride, int start, int end);
}

/// <summary>
/// How the 4-bit block formats (<see cref="WeightFormat.Q4_0"/>, GGUF's Q4_0 blocks) round the activations their
/// integer products take in decoding and in batches below <see cref="WeightFormat.ByteTokensFrom"/> tokens. The other
/// formats compute as they always do: their int16 (or float) decode kernels are as fast as int8 ones would be.
/// </summary>
public enum DecodeActivations
{
    /// <summary>int16 per block of 32 (x̂ = round(x · 32767 / max|x|)): decode within about 1e-3 of the exact logits
    /// (the default).</summary>
    Int16,

    /// <summary>int8 per 16 values (x̂ = round(x · 127 / max|x|)) in every product, decode and batches alike, as the
    /// long prompts' prefill of GGUF's blocks does and as llama.cpp rounds all of its quantized products (per 32):
    /// byte products (<c>vpmaddubsw</c>, <see cref="QuantizedMatMul"/>'s per-16 kernel, whose one-token form is the
    /// decode) that run 1.45–1.8x the int16 kernel in cache on an AMD EPYC Zen 3, for decoding where the CPU and not the
    /// memory bounds it; the logits land about as far from the exact ones as llama.cpp's. Needs AVX2, else
    /// <see cref="Int16"/>.</summary>
    Int8,
}
