using GemmaGen.Specs;

namespace GemmaGen.Kernels;

/// <summary>
/// Keys and values of every layer, allocated once. Layout per layer: [kv head][slot][head_dim], so one kv
/// head's keys are contiguous. A local layer keeps a ring of W slots (a query sees W keys, itself included; a
/// model that writes batches asks for W + rows − 1), a global layer one slot per position.
/// </summary>
public sealed unsafe class KvCache
{
    // One pair of arrays per layer, of the cache's precision (the other pair is null).
    private readonly float[][]? _keys;
    private readonly float[][]? _values;
    private readonly ushort[][]? _keysBF16;
    private readonly ushort[][]? _valuesBF16;

    /// <param name="config">The model.</param>
    /// <param name="maxContext">Positions a global layer holds.</param>
    /// <param name="maxBatch">Rows of one sequence a forward pass writes before any of them attends (the model's
    /// <see cref="Gemma2Forward.MaxRows"/>): a local layer's ring holds W + maxBatch − 1 slots, so writing a batch
    /// never overwrites a key an earlier row of that batch still sees.</param>
    /// <param name="precision">How keys and values are stored: float32, or bfloat16 (half the memory and the bytes
    /// attention reads; each value rounded to nearest even once, when stored).</param>
    public KvCache(Gemma2Config config, int maxContext, int maxBatch = 1, KvPrecision precision = KvPrecision.F32)
    {
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
            else
            {
                _keys![l] = GC.AllocateUninitializedArray<float>(length, pinned: true);
                _values![l] = GC.AllocateUninitializedArray<float>(length, pinned: true);
            }
        }
        ByteLength = Slots.Sum(slots => (long)KvHeads * slots * HeadDim) * 2 * ElementSize(precision);
    }

    /// <summary>Bytes of one stored key or value element.</summary>
    public static int ElementSize(KvPrecision precision) => precision == KvPrecision.BF16 ? sizeof(ushort) : sizeof(float);

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
        return checked((LayerSchedule.LocalLayers(layers) * local + LayerSchedule.GlobalLayers(layers) * global) * 2 * config.NumKeyValueHeads * config.HeadDim * ElementSize(precision));
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

    /// <summary>Stores one head's key (<paramref name="key"/>) or value at element offset <paramref name="at"/> of
    /// <paramref name="layer"/>, rounded to the cache's precision.</summary>
    public void Store(int layer, bool key, long at, ReadOnlySpan<float> head)
    {
        if (Precision == KvPrecision.BF16)
            BFloat16.Narrow(head, new Span<ushort>((key ? KeysBF16(layer) : ValuesBF16(layer)) + at, head.Length));
        else
            head.CopyTo(new Span<float>((key ? Keys(layer) : Values(layer)) + at, head.Length));
    }

    /// <summary>Reads one head's key or value at element offset <paramref name="at"/> of <paramref name="layer"/> as float32.</summary>
    public void Load(int layer, bool key, long at, Span<float> head)
    {
        if (Precision == KvPrecision.BF16)
            BFloat16.Widen(new ReadOnlySpan<ushort>((key ? KeysBF16(layer) : ValuesBF16(layer)) + at, head.Length), head);
        else
            new ReadOnlySpan<float>((key ? Keys(layer) : Values(layer)) + at, head.Length).CopyTo(head);
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
}
