using GemmaGen.Specs;

namespace GemmaGen.Kernels;

/// <summary>
/// One conversation's state: its KV cache (a ring of slots on local layers), how many positions it holds, and the
/// context it may reach. A sequence belongs to the <see cref="Gemma2Forward"/> that created it and is advanced only
/// by that model's forward passes, alone or in a batch with other sequences. The model holds no per-sequence state,
/// so any number of sequences share its weights and kernels.
/// </summary>
public sealed class Sequence
{
    // Scratch of the batch being validated (see Gemma2Forward.Forward): the batch's stamp and the next position of
    // this sequence's rows in it.
    internal long BatchStamp;
    internal int BatchNext;

    internal Sequence(Gemma2Forward model, int maxContext, KvPrecision precision)
    {
        Model = model;
        MaxContext = maxContext;
        Cache = new KvCache(model.Config, maxContext, model.MaxRows, precision);
    }

    /// <summary>The model whose forward passes advance this sequence.</summary>
    public Gemma2Forward Model { get; }

    /// <summary>Positions the sequence may hold.</summary>
    public int MaxContext { get; }

    /// <summary>Positions in the cache: [0, Length) have been processed.</summary>
    public int Length { get; internal set; }

    /// <summary>Keys and values of every layer.</summary>
    public KvCache Cache { get; }

    /// <summary>Forgets every position.</summary>
    public void Reset() => Length = 0;

    /// <summary>
    /// Whether the sequence can continue from <paramref name="length"/> (at most <see cref="Length"/>), keeping
    /// positions [0, length): global layers keep every position, but a local layer's ring keeps only the last
    /// <see cref="KvCache.LocalSlots"/>, so the keys the next position sees (the W − 1 before it) must not have been
    /// overwritten yet.
    /// </summary>
    public bool CanRewindTo(int length) =>
        length >= 0 && length <= Length && Math.Max(0, length - Cache.Window + 1) >= Length - Cache.LocalSlots;

    /// <summary>Keeps positions [0, <paramref name="length"/>) and forgets the rest, so the sequence continues from
    /// there (a prompt that shares a prefix with what the cache holds pays only for the rest).</summary>
    /// <exception cref="ArgumentOutOfRangeException">The cache cannot continue from there (see <see cref="CanRewindTo"/>).</exception>
    public void RewindTo(int length)
    {
        if (!CanRewindTo(length))
            throw new ArgumentOutOfRangeException(nameof(length), length,
                $"the sequence holds {Length} positions; its local layers keep the keys to continue from {Math.Max(0, Length - Cache.LocalSlots + Cache.Window - 1)} on");
        Length = length;
    }

    /// <summary>
    /// Refuses a context before anything is allocated: fewer than one position, a buffer longer than an array holds
    /// (<see cref="Array.MaxLength"/>), or buffers (KV cache, RoPE tables, attention scores) larger than the memory
    /// available (<see cref="AvailableMemory"/>, the figure loading checks the weights against; where it is unknown, the
    /// GC's <see cref="GCMemoryInfo.TotalAvailableMemoryBytes"/>). Sizes are computed in 64 bits.
    /// </summary>
    /// <param name="config">The model.</param>
    /// <param name="maxContext">Positions the sequence would hold.</param>
    /// <param name="maxRows">Rows a forward pass of the model takes at most (see <see cref="Gemma2Forward.MaxRows"/>).</param>
    /// <exception cref="ArgumentOutOfRangeException">Named <c>maxContext</c>, with the sizes.</exception>
    /// <param name="precision">How the KV cache stores keys and values.</param>
    public static void CheckContext(Gemma2Config config, int maxContext, int maxRows = 1, KvPrecision precision = KvPrecision.F32)
    {
        if (maxContext < 1) throw new ArgumentOutOfRangeException(nameof(maxContext), maxContext, "the context must hold at least one token");
        long cacheLayer = 0;
        for (int l = 0; l < config.NumHiddenLayers; l++)
            cacheLayer = Math.Max(cacheLayer, (long)config.NumKeyValueHeads * KvCache.SlotsOf(config, l, maxContext, maxRows) * config.HeadDim);
        long rope = (long)maxContext * (config.HeadDim / 2);
        long scores = (long)config.NumAttentionHeads * maxContext;
        long largest = Math.Max(cacheLayer, Math.Max(rope, scores));
        if (largest > Array.MaxLength)
            throw new ArgumentOutOfRangeException(nameof(maxContext), maxContext,
                $"a context of {maxContext} positions needs a buffer of {largest} floats; an array holds at most {Array.MaxLength}");
        long bytes = KvCache.ByteLengthOf(config, maxContext, maxRows, precision) + (2 * rope + scores) * sizeof(float);
        long available = AvailableMemory.Read() ?? GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
        if (bytes > available)
            throw new ArgumentOutOfRangeException(nameof(maxContext), maxContext,
                $"a context of {maxContext} positions needs {bytes / 1e9:F1} GB (KV cache, RoPE tables, attention scores); " +
                $"{available / 1e9:F1} GB of memory is available");
    }
}
