using GemmaGen.Specs;

namespace GemmaGen.Kernels;

/// <summary>
/// Keys and values of every layer, allocated once. Layout per layer: [kv head][slot][head_dim], so one kv
/// head's keys are contiguous. A local layer keeps a ring of W slots (a query sees W keys, itself included; a
/// model that writes batches asks for W + rows − 1), a global layer one slot per position.
/// </summary>
public sealed unsafe class KvCache
{
    private readonly float[][] _keys;
    private readonly float[][] _values;

    /// <param name="config">The model.</param>
    /// <param name="maxContext">Positions a global layer holds.</param>
    /// <param name="maxBatch">Rows of one sequence a forward pass writes before any of them attends (the model's
    /// <see cref="Gemma2Forward.MaxRows"/>): a local layer's ring holds W + maxBatch − 1 slots, so writing a batch
    /// never overwrites a key an earlier row of that batch still sees.</param>
    public KvCache(Gemma2Config config, int maxContext, int maxBatch = 1)
    {
        MaxContext = maxContext;
        Window = config.SlidingWindow;
        LocalSlots = SlotsOf(config, true, maxContext, maxBatch);
        KvHeads = config.NumKeyValueHeads;
        HeadDim = config.HeadDim;
        int layers = config.NumHiddenLayers;
        _keys = new float[layers][];
        _values = new float[layers][];
        Slots = new int[layers];
        for (int l = 0; l < layers; l++)
        {
            Slots[l] = SlotsOf(config, l, maxContext, maxBatch);
            long length = (long)KvHeads * Slots[l] * HeadDim;
            _keys[l] = GC.AllocateUninitializedArray<float>(checked((int)length), pinned: true);
            _values[l] = GC.AllocateUninitializedArray<float>(checked((int)length), pinned: true);
        }
    }

    /// <summary>Slots per kv head of <paramref name="layer"/>: W + maxBatch − 1 (at most maxContext) on a local layer,
    /// maxContext on a global one.</summary>
    public static int SlotsOf(Gemma2Config config, int layer, int maxContext, int maxBatch = 1) =>
        SlotsOf(config, LayerSchedule.IsLocal(layer), maxContext, maxBatch);

    private static int SlotsOf(Gemma2Config config, bool local, int maxContext, int maxBatch) =>
        local ? (int)Math.Min((long)config.SlidingWindow + maxBatch - 1, maxContext) : maxContext;

    /// <summary>Bytes a cache of <paramref name="maxContext"/> positions takes for <paramref name="config"/>, keys and values.</summary>
    /// <exception cref="OverflowException">The total exceeds <see cref="long.MaxValue"/> (an absurd config).</exception>
    public static long ByteLengthOf(Gemma2Config config, int maxContext, int maxBatch = 1)
    {
        long layers = config.NumHiddenLayers, local = SlotsOf(config, true, maxContext, maxBatch), global = SlotsOf(config, false, maxContext, maxBatch);
        return checked((LayerSchedule.LocalLayers(layers) * local + LayerSchedule.GlobalLayers(layers) * global) * 2 * config.NumKeyValueHeads * config.HeadDim * sizeof(float));
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
    public long ByteLength => _keys.Sum(k => (long)k.Length) * 2 * sizeof(float);

    /// <summary>Keys of <paramref name="layer"/>: element [h, slot, i] at (h·Slots + slot)·d + i.</summary>
    public float* Keys(int layer) => (float*)System.Runtime.CompilerServices.Unsafe.AsPointer(ref _keys[layer][0]);

    /// <summary>Values of <paramref name="layer"/>, laid out as <see cref="Keys"/>.</summary>
    public float* Values(int layer) => (float*)System.Runtime.CompilerServices.Unsafe.AsPointer(ref _values[layer][0]);

    /// <summary>The slot that holds <paramref name="position"/> in <paramref name="layer"/>.</summary>
    public int Slot(int layer, int position) => position % Slots[layer];
}
