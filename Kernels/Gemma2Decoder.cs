using System.Runtime.CompilerServices;
using GemmaGen.Specs;

namespace GemmaGen.Kernels;

/// <summary>Receives intermediate activations (for tests and debugging): <c>embed</c>, <c>layer_out.{i}</c>,
/// <c>final_norm</c>, each [D] for one position.</summary>
public interface IActivationObserver
{
    /// <summary>Receives activation <paramref name="name"/> of the token at <paramref name="position"/>; <paramref name="values"/>
    /// is valid during the call only.</summary>
    void Observe(string name, int position, ReadOnlySpan<float> values);
}

/// <summary>
/// One decoding state over shared weights: every activation buffer and the KV cache are allocated here, once;
/// a step allocates nothing. Subclasses are the compiled (generated) kernels and the runtime-shape
/// <see cref="ReferenceDecoder"/>; both compute exactly the Gemma 2 forward pass.
/// </summary>
public abstract unsafe class Gemma2Decoder
{
    private readonly string[] _layerNames;
    private readonly List<float[]> _buffers = [];

    /// <param name="weights">The model's weights (shared, read-only).</param>
    /// <param name="maxContext">Positions the KV cache holds.</param>
    /// <param name="pool">The workers that run the kernels.</param>
    /// <param name="maxBatch">Tokens a subclass processes at once in <see cref="ForwardCore"/>; local layers keep
    /// W + maxBatch − 1 ring slots so a batch never overwrites a key an earlier token of it still sees.</param>
    protected Gemma2Decoder(ModelWeights weights, int maxContext, WorkerPool pool, int maxBatch = 1)
    {
        var c = weights.Config;
        CheckContext(c, maxContext, maxBatch);
        if (maxBatch < 1) throw new ArgumentOutOfRangeException(nameof(maxBatch), maxBatch, "a batch holds at least one token");
        Weights = weights;
        Config = c;
        MaxContext = maxContext;
        MaxBatch = maxBatch;
        Pool = pool;
        Cache = new KvCache(c, maxContext, maxBatch);
        Rope = new RopeTable(c.HeadDim, c.RopeTheta, maxContext);
        int qkvRows = (c.NumAttentionHeads + 2 * c.NumKeyValueHeads) * c.HeadDim;
        X = Allocate(c.HiddenSize);
        U = Allocate(c.HiddenSize);
        Qkv = Allocate(qkvRows);
        Attention = Allocate(c.NumAttentionHeads * c.HeadDim);
        Branch = Allocate(c.HiddenSize);
        Mlp = Allocate(c.IntermediateSize);
        Scores = Allocate(c.NumAttentionHeads * maxContext);
        _layerNames = Enumerable.Range(0, c.NumHiddenLayers).Select(i => $"layer_out.{i}").ToArray();
    }

    /// <summary>
    /// Refuses a context before anything is allocated: fewer than one position, a buffer longer than an array holds
    /// (<see cref="Array.MaxLength"/>), or buffers (KV cache, RoPE tables, attention scores) larger than the memory
    /// available (<see cref="AvailableMemory"/>, the figure loading checks the weights against; where it is unknown, the
    /// GC's <see cref="GCMemoryInfo.TotalAvailableMemoryBytes"/>). Sizes are computed in 64 bits.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">Named <c>maxContext</c>, with the sizes.</exception>
    public static void CheckContext(Gemma2Config config, int maxContext, int maxBatch = 1)
    {
        if (maxContext < 1) throw new ArgumentOutOfRangeException(nameof(maxContext), maxContext, "the context must hold at least one token");
        long cacheLayer = 0;
        for (int l = 0; l < config.NumHiddenLayers; l++)
            cacheLayer = Math.Max(cacheLayer, (long)config.NumKeyValueHeads * KvCache.SlotsOf(config, l, maxContext, maxBatch) * config.HeadDim);
        long rope = (long)maxContext * (config.HeadDim / 2);
        long scores = (long)config.NumAttentionHeads * maxContext;
        long largest = Math.Max(cacheLayer, Math.Max(rope, scores));
        if (largest > Array.MaxLength)
            throw new ArgumentOutOfRangeException(nameof(maxContext), maxContext,
                $"a context of {maxContext} positions needs a buffer of {largest} floats; an array holds at most {Array.MaxLength}");
        long bytes = KvCache.ByteLengthOf(config, maxContext, maxBatch) + (2 * rope + scores) * sizeof(float);
        long available = AvailableMemory.Read() ?? GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
        if (bytes > available)
            throw new ArgumentOutOfRangeException(nameof(maxContext), maxContext,
                $"a context of {maxContext} positions needs {bytes / 1e9:F1} GB (KV cache, RoPE tables, attention scores); " +
                $"{available / 1e9:F1} GB of memory is available");
    }

    /// <summary>The model's weights (shared, read-only).</summary>
    public ModelWeights Weights { get; }

    /// <summary>The model's config.</summary>
    public Gemma2Config Config { get; }

    /// <summary>Positions the KV cache holds; a step at a later position is refused.</summary>
    public int MaxContext { get; }

    /// <summary>The workers that run the kernels.</summary>
    public WorkerPool Pool { get; }

    /// <summary>Tokens processed at once by <see cref="Forward"/> (1: one at a time).</summary>
    public int MaxBatch { get; }

    /// <summary>Tokens in the cache: positions [0, Length) have been processed.</summary>
    public int Length { get; private set; }

    /// <summary><c>compiled &lt;ClassName&gt;</c> or <c>reference</c>: which code runs.</summary>
    public abstract string ExecutionPath { get; }

    /// <summary>Called with intermediate activations when set.</summary>
    public IActivationObserver? Observer { get; set; }

    /// <summary>Keys and values of every layer.</summary>
    protected KvCache Cache { get; }

    /// <summary>Rotary embedding tables for every position of the context.</summary>
    protected RopeTable Rope { get; }

    /// <summary>Residual stream [D].</summary>
    protected float* X { get; }

    /// <summary>Normed input of a block [D].</summary>
    protected float* U { get; }

    /// <summary>q, k, v of the current token [(H + 2K)·d]; q is roped in place, k and v go to the cache.</summary>
    protected float* Qkv { get; }

    /// <summary>Attention output, heads concatenated [H·d].</summary>
    protected float* Attention { get; }

    /// <summary>Output of a block's projection, before its post-norm [D].</summary>
    protected float* Branch { get; }

    /// <summary>gelu(gate)·up [I].</summary>
    protected float* Mlp { get; }

    /// <summary>Attention probabilities, one row of MaxContext per query head [H, MaxContext].</summary>
    protected float* Scores { get; }

    /// <summary>Forgets every cached position.</summary>
    public void Reset() => Length = 0;

    /// <summary>
    /// Runs token <paramref name="token"/> at <paramref name="position"/> (at most <see cref="Length"/>: a position
    /// before it rewinds the cache) and writes its logits [V] when <paramref name="logits"/> is not empty.
    /// </summary>
    public void Step(int token, int position, Span<float> logits)
    {
        if ((uint)token >= (uint)Config.VocabSize)
            throw new ArgumentOutOfRangeException(nameof(token), token, $"token id must be in [0, {Config.VocabSize})");
        if (position < 0 || position > Length)
            throw new ArgumentOutOfRangeException(nameof(position), position, $"the next position is {Length}");
        if (position >= MaxContext)
            throw new InvalidOperationException($"the context is full ({MaxContext} tokens)");
        if (!logits.IsEmpty && logits.Length != Config.VocabSize)
            throw new ArgumentException($"logits must hold {Config.VocabSize} values", nameof(logits));
        Length = position;
        fixed (float* output = logits) StepCore(token, position, output);
        Length = position + 1;
    }

    /// <summary>
    /// Runs <paramref name="tokens"/> at positions <paramref name="start"/>, start+1, ...; <paramref name="logits"/>
    /// is empty, [V] for the last position, or [n·V] for every position.
    /// </summary>
    public void Forward(ReadOnlySpan<int> tokens, int start, Span<float> logits)
    {
        int v = Config.VocabSize;
        bool every = logits.Length == tokens.Length * v && tokens.Length > 1;
        if (!logits.IsEmpty && !every && logits.Length != v)
            throw new ArgumentException($"logits must hold 0, {v} or {tokens.Length}×{v} values", nameof(logits));
        if (tokens.IsEmpty) return;
        if (start < 0 || start > Length)
            throw new ArgumentOutOfRangeException(nameof(start), start, $"the next position is {Length}");
        if ((long)start + tokens.Length > MaxContext)
            throw new InvalidOperationException($"the context is full ({MaxContext} tokens)");
        foreach (int token in tokens)
        {
            if ((uint)token >= (uint)v) throw new ArgumentOutOfRangeException(nameof(tokens), token, $"token id must be in [0, {v})");
        }
        Length = start;
        ForwardCore(tokens, start, logits, every);
        Length = start + tokens.Length;
    }

    /// <summary>
    /// Runs validated <paramref name="tokens"/> from <paramref name="start"/>; writes the logits of every position when
    /// <paramref name="every"/>, of the last one when <paramref name="logits"/> holds one row, none when it is empty.
    /// The default runs one token at a time; compiled decoders process batches.
    /// </summary>
    protected virtual void ForwardCore(ReadOnlySpan<int> tokens, int start, Span<float> logits, bool every)
    {
        int v = Config.VocabSize;
        for (int i = 0; i < tokens.Length; i++)
        {
            Span<float> target = every ? logits.Slice(i * v, v) : i == tokens.Length - 1 ? logits : default;
            Step(tokens[i], start + i, target);
        }
    }

    /// <summary>One token through every layer; <paramref name="logits"/> is null when not wanted.</summary>
    protected abstract void StepCore(int token, int position, float* logits);

    /// <summary>Reports the scaled embedding [D] at <paramref name="x"/> (default: the residual stream).</summary>
    protected void ObserveEmbed(int position, float* x = null) => Observe("embed", position, x != null ? x : X);

    /// <summary>Reports the residual stream after <paramref name="layer"/>.</summary>
    protected void ObserveLayer(int layer, int position, float* x = null) => Observe(_layerNames[layer], position, x != null ? x : X);

    /// <summary>Reports the output of the final norm.</summary>
    protected void ObserveFinalNorm(int position, float* u = null) => Observe("final_norm", position, u != null ? u : U);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void Observe(string name, int position, float* values) =>
        Observer?.Observe(name, position, new ReadOnlySpan<float>(values, Config.HiddenSize));

    /// <summary>A pinned buffer that lives as long as this decoder.</summary>
    protected float* Allocate(int length)
    {
        var buffer = GC.AllocateArray<float>(Math.Max(length, 1), pinned: true);
        _buffers.Add(buffer);
        return (float*)Unsafe.AsPointer(ref buffer[0]);
    }
}
