using GemmaGen.Specs;

namespace GemmaGen.Kernels;

/// <summary>
/// Keys and values of every layer, allocated once. Layout per layer: [kv head][slot][head_dim], so one kv
/// head's keys are contiguous. A local layer keeps a ring of W slots (a query sees W keys, itself included; a
/// model that writes batches asks for W + rows − 1), a global layer one slot per position.
/// </summary>
public sealed unsafe class KvCache
{
    // One pair of arrays per layer, of the cache's precision (the others are null); a q8_0 cache also holds one bf16
    // scale per block of 32 elements, block b of a layer's elements at index b.
    private readonly float[][]? _keys;
    private readonly float[][]? _values;
    private readonly ushort[][]? _keysBF16;
    private readonly ushort[][]? _valuesBF16;
    private readonly sbyte[][]? _keysQ8;
    private readonly sbyte[][]? _valuesQ8;
    private readonly ushort[][]? _keyScales;
    private readonly ushort[][]? _valueScales;

    /// <param name="config">The model.</param>
    /// <param name="maxContext">Positions a global layer holds.</param>
    /// <param name="maxBatch">Rows of one sequence a forward pass writes before any of them attends (the model's
    /// <see cref="Gemma2Forward.MaxRows"/>): a local layer's ring holds W + maxBatch − 1 slots, so writing a batch
    /// never overwrites a key an earlier row of that batch still sees.</param>
    /// <param name="precision">How keys and values are stored: float32, bfloat16 (half the memory and the bytes
    /// attention reads; each value rounded to nearest even once, when stored) or q8_0 (blocks of 32 int8 with a bf16
    /// scale, 17/64 of the memory; each head row quantized once, when stored).</param>
    /// <exception cref="ArgumentException"><paramref name="precision"/> cannot store this model's heads (see
    /// <see cref="Refusal"/>).</exception>
    public KvCache(Gemma2Config config, int maxContext, int maxBatch = 1, KvPrecision precision = KvPrecision.F32)
    {
        if (Refusal(config, precision) is { } refusal) throw new ArgumentException(refusal, nameof(precision));
        Precision = precision;
        MaxContext = maxContext;
        Window = config.SlidingWindow;
        LocalSlots = SlotsOf(config, true, maxContext, maxBatch);
        KvHeads = config.NumKeyValueHeads;
        HeadDim = config.HeadDim;
        int layers = config.NumHiddenLayers;
        Slots = new int[layers];
        if (precision == KvPrecision.BF16)
        {
            _keysBF16 = new ushort[layers][];
            _valuesBF16 = new ushort[layers][];
        }
        else if (precision == KvPrecision.Q8_0)
        {
            _keysQ8 = new sbyte[layers][];
            _valuesQ8 = new sbyte[layers][];
            _keyScales = new ushort[layers][];
            _valueScales = new ushort[layers][];
        }
        else
        {
            _keys = new float[layers][];
            _values = new float[layers][];
        }
        for (int l = 0; l < layers; l++)
        {
            Slots[l] = SlotsOf(config, l, maxContext, maxBatch);
            int length = checked((int)((long)KvHeads * Slots[l] * HeadDim));
            if (precision == KvPrecision.BF16)
            {
                _keysBF16![l] = GC.AllocateUninitializedArray<ushort>(length, pinned: true);
                _valuesBF16![l] = GC.AllocateUninitializedArray<ushort>(length, pinned: true);
            }
            else if (precision == KvPrecision.Q8_0)
            {
                _keysQ8![l] = GC.AllocateUninitializedArray<sbyte>(length, pinned: true);
                _valuesQ8![l] = GC.AllocateUninitializedArray<sbyte>(length, pinned: true);
                _keyScales![l] = GC.AllocateUninitializedArray<ushort>(length / Q8Block, pinned: true);
                _valueScales![l] = GC.AllocateUninitializedArray<ushort>(length / Q8Block, pinned: true);
            }
            else
            {
                _keys![l] = GC.AllocateUninitializedArray<float>(length, pinned: true);
                _values![l] = GC.AllocateUninitializedArray<float>(length, pinned: true);
            }
        }
        ByteLength = Slots.Sum(slots => (long)KvHeads * slots) * 2 * RowBytes(precision, HeadDim);
    }

    /// <summary>Elements of a q8_0 block: each holds 32 int8 and one bf16 scale.</summary>
    public const int Q8Block = QuantizedLayout.BlockSize;

    /// <summary>Bytes one stored key or value head row of <paramref name="headDim"/> elements takes: 4·d (f32), 2·d (bf16),
    /// d + 2·d/32 (q8_0: an int8 per element and a bf16 scale per block of 32, 1.0625 bytes an element).</summary>
    public static long RowBytes(KvPrecision precision, int headDim) => precision switch
    {
        KvPrecision.BF16 => (long)headDim * sizeof(ushort),
        KvPrecision.Q8_0 => headDim + (long)headDim / Q8Block * sizeof(ushort),
        _ => (long)headDim * sizeof(float),
    };

    /// <summary>Why a cache of <paramref name="precision"/> cannot hold <paramref name="config"/>'s heads, or null when
    /// it can: q8_0 quantizes each head row in blocks of 32, so head_dim must be a multiple of 32 (every Gemma 2
    /// shape's is).</summary>
    public static string? Refusal(Gemma2Config config, KvPrecision precision) =>
        precision == KvPrecision.Q8_0 && config.HeadDim % Q8Block != 0
            ? $"a q8_0 KV cache stores each head in blocks of {Q8Block} values, but head_dim is {config.HeadDim} (not a multiple of {Q8Block}); a f32 or bf16 cache has no such limit"
            : null;

    /// <summary>How keys and values are stored.</summary>
    public KvPrecision Precision { get; }

    /// <summary>Slots per kv head of <paramref name="layer"/>: W + maxBatch − 1 (at most maxContext) on a local layer,
    /// maxContext on a global one.</summary>
    public static int SlotsOf(Gemma2Config config, int layer, int maxContext, int maxBatch = 1) =>
        SlotsOf(config, LayerSchedule.IsLocal(layer), maxContext, maxBatch);

    private static int SlotsOf(Gemma2Config config, bool local, int maxContext, int maxBatch) =>
        local ? (int)Math.Min((long)config.SlidingWindow + maxBatch - 1, maxContext) : maxContext;

    /// <summary>Bytes a cache of <paramref name="maxContext"/> positions takes for <paramref name="config"/>, keys and values.</summary>
    /// <exception cref="OverflowException">The total exceeds <see cref="long.MaxValue"/> (an absurd config).</exception>
    public static long ByteLengthOf(Gemma2Config config, int maxContext, int maxBatch = 1, KvPrecision precision = KvPrecision.F32)
    {
        long layers = config.NumHiddenLayers, local = SlotsOf(config, true, maxContext, maxBatch), global = SlotsOf(config, false, maxContext, maxBatch);
        return checked((LayerSchedule.LocalLayers(layers) * local + LayerSchedule.GlobalLayers(layers) * global) * 2 * config.NumKeyValueHeads * RowBytes(precision, config.HeadDim));
    }

    /// <summary>Positions a global layer holds.</summary>
    public int MaxContext { get; }

    /// <summary>W: keys a query of a local layer sees, itself included.</summary>
    public int Window { get; }

    /// <summary>Slots per kv head of a local layer: positions [Length − LocalSlots, Length) are in its ring.</summary>
    public int LocalSlots { get; }

    /// <summary>Key/value heads of each layer.</summary>
    public int KvHeads { get; }

    /// <summary>Width of one head.</summary>
    public int HeadDim { get; }

    /// <summary>Slots per kv head of each layer.</summary>
    public int[] Slots { get; }

    /// <summary>Bytes held by keys and values together.</summary>
    public long ByteLength { get; }

    /// <summary>Keys of <paramref name="layer"/> of a float32 cache: element [h, slot, i] at (h·Slots + slot)·d + i.</summary>
    public float* Keys(int layer) => (float*)System.Runtime.CompilerServices.Unsafe.AsPointer(ref _keys![layer][0]);

    /// <summary>Values of <paramref name="layer"/> of a float32 cache, laid out as <see cref="Keys"/>.</summary>
    public float* Values(int layer) => (float*)System.Runtime.CompilerServices.Unsafe.AsPointer(ref _values![layer][0]);

    /// <summary>Keys of <paramref name="layer"/> of a bfloat16 cache, laid out as <see cref="Keys"/>.</summary>
    public ushort* KeysBF16(int layer) => (ushort*)System.Runtime.CompilerServices.Unsafe.AsPointer(ref _keysBF16![layer][0]);

    /// <summary>Values of <paramref name="layer"/> of a bfloat16 cache, laid out as <see cref="Keys"/>.</summary>
    public ushort* ValuesBF16(int layer) => (ushort*)System.Runtime.CompilerServices.Unsafe.AsPointer(ref _valuesBF16![layer][0]);

    /// <summary>Keys of <paramref name="layer"/> of a q8_0 cache, laid out as <see cref="Keys"/>: element i is
    /// q·d with q this int8 and d the bf16 scale of its block, <see cref="KeyScales"/>[i / 32].</summary>
    public sbyte* KeysQ8(int layer) => (sbyte*)System.Runtime.CompilerServices.Unsafe.AsPointer(ref _keysQ8![layer][0]);

    /// <summary>Values of <paramref name="layer"/> of a q8_0 cache, laid out as <see cref="Keys"/>, scaled by
    /// <see cref="ValueScales"/>.</summary>
    public sbyte* ValuesQ8(int layer) => (sbyte*)System.Runtime.CompilerServices.Unsafe.AsPointer(ref _valuesQ8![layer][0]);

    /// <summary>The bf16 scales of <see cref="KeysQ8"/>: block b (elements 32·b .. 32·b + 31) at index b.</summary>
    public ushort* KeyScales(int layer) => (ushort*)System.Runtime.CompilerServices.Unsafe.AsPointer(ref _keyScales![layer][0]);

    /// <summary>The bf16 scales of <see cref="ValuesQ8"/>, laid out as <see cref="KeyScales"/>.</summary>
    public ushort* ValueScales(int layer) => (ushort*)System.Runtime.CompilerServices.Unsafe.AsPointer(ref _valueScales![layer][0]);

    /// <summary>Stores one head's key (<paramref name="key"/>) or value at element offset <paramref name="at"/> of
    /// <paramref name="layer"/>, rounded to the cache's precision.</summary>
    public void Store(int layer, bool key, long at, ReadOnlySpan<float> head)
    {
        if (Precision == KvPrecision.BF16)
            BFloat16.Narrow(head, new Span<ushort>((key ? KeysBF16(layer) : ValuesBF16(layer)) + at, head.Length));
        else if (Precision == KvPrecision.Q8_0)
            StoreQ8(head, (key ? KeysQ8(layer) : ValuesQ8(layer)) + at, (key ? KeyScales(layer) : ValueScales(layer)) + at / Q8Block);
        else
            head.CopyTo(new Span<float>((key ? Keys(layer) : Values(layer)) + at, head.Length));
    }

    /// <summary>Reads one head's key or value at element offset <paramref name="at"/> of <paramref name="layer"/> as float32.</summary>
    public void Load(int layer, bool key, long at, Span<float> head)
    {
        if (Precision == KvPrecision.BF16)
            BFloat16.Widen(new ReadOnlySpan<ushort>((key ? KeysBF16(layer) : ValuesBF16(layer)) + at, head.Length), head);
        else if (Precision == KvPrecision.Q8_0)
            LoadQ8((key ? KeysQ8(layer) : ValuesQ8(layer)) + at, (key ? KeyScales(layer) : ValueScales(layer)) + at / Q8Block, head);
        else
            new ReadOnlySpan<float>((key ? Keys(layer) : Values(layer)) + at, head.Length).CopyTo(head);
    }

    // Each block of 32 as the Q8_0 weight format quantizes a block (one rule): d = max|x| / 127 rounded up to bf16,
    // q = round(x / d) ties to even, so |x − q·d| ≤ d/2.
    private static void StoreQ8(ReadOnlySpan<float> head, sbyte* quants, ushort* scales)
    {
        fixed (float* x = head)
            for (int b = 0; b < head.Length / Q8Block; b++)
                scales[b] = Q8_0Block<BF16Scale>.QuantizeSigned(x + b * Q8Block, quants + b * Q8Block);
    }

    private static void LoadQ8(sbyte* quants, ushort* scales, Span<float> head)
    {
        for (int i = 0; i < head.Length; i++) head[i] = quants[i] * BFloat16.ToSingle(scales[i / Q8Block]);
    }

    /// <summary>The slot that holds <paramref name="position"/> in <paramref name="layer"/>.</summary>
    public int Slot(int layer, int position) => position % Slots[layer];
}

/// <summary>How a KV cache stores keys and values.</summary>
public enum KvPrecision
{
    /// <summary>float32, exactly as computed.</summary>
    F32,

    /// <summary>bfloat16: half the memory and half the bytes attention reads; each value rounded to nearest even once.</summary>
    BF16,

    /// <summary>q8_0: each head row in blocks of 32 int8 and one bf16 scale (d = max|x| / 127 rounded up, q = round(x / d)
    /// ties to even), 1.0625 bytes an element, 17/64 of float32; quantized once, when stored. Needs head_dim a
    /// multiple of 32.</summary>
    Q8_0,
}
