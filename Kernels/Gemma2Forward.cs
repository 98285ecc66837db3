using System.Runtime.CompilerServices;
using GemmaGen.Specs;

namespace GemmaGen.Kernels;

/// <summary>Receives intermediate activations (for tests and debugging): <c>embed</c>, <c>layer_out.{i}</c>,
/// <c>final_norm</c>, each [D] for one row of a forward pass.</summary>
public interface IActivationObserver
{
    /// <summary>Receives activation <paramref name="name"/> of the row at <paramref name="position"/> of its sequence;
    /// <paramref name="values"/> is valid during the call only.</summary>
    void Observe(string name, int position, ReadOnlySpan<float> values);
}

/// <summary>
/// The Gemma 2 forward pass over shared weights: one pass takes a <see cref="ForwardBatch"/> of rows, each a token of
/// some <see cref="Sequence"/> at some position, reads each weight matrix once for all of them, and writes the
/// logits of the rows that ask for them. The model holds the kernels, the worker pool and buffers for
/// <see cref="MaxRows"/> rows, allocated once; all per-conversation state lives in the sequences, so a pass
/// allocates nothing. Subclasses are the compiled (generated) kernels and the runtime-shape
/// <see cref="ReferenceForward"/>; both compute exactly the Gemma 2 forward pass. One pass runs at a time: callers on
/// several threads take turns.
/// </summary>
public abstract unsafe class Gemma2Forward
{
    private readonly string[] _layerNames;
    private readonly List<float[]> _buffers = [];
    private readonly object _gate = new();
    private long _stamp;

    /// <param name="weights">The model's weights (shared, read-only).</param>
    /// <param name="maxContext">Positions the RoPE tables cover at first (a sequence with a longer context extends them).</param>
    /// <param name="pool">The workers that run the kernels.</param>
    /// <param name="maxRows">Rows a forward pass takes at most; local layers of a sequence keep W + maxRows − 1 ring
    /// slots, so a pass never overwrites a key an earlier row of it still sees.</param>
    protected Gemma2Forward(ModelWeights weights, int maxContext, WorkerPool pool, int maxRows)
    {
        if (maxRows < 1) throw new ArgumentOutOfRangeException(nameof(maxRows), maxRows, "a batch holds at least one row");
        var c = weights.Config;
        Sequence.CheckContext(c, maxContext, maxRows);
        Weights = weights;
        Config = c;
        MaxRows = maxRows;
        Pool = pool;
        Rope = new RopeTable(c.HeadDim, c.RopeTheta, maxContext);
        _layerNames = Enumerable.Range(0, c.NumHiddenLayers).Select(i => $"layer_out.{i}").ToArray();
    }

    /// <summary>The model's weights (shared, read-only).</summary>
    public ModelWeights Weights { get; }

    /// <summary>The model's config.</summary>
    public Gemma2Config Config { get; }

    /// <summary>The workers that run the kernels.</summary>
    public WorkerPool Pool { get; }

    /// <summary>Rows a forward pass takes at most.</summary>
    public int MaxRows { get; }

    /// <summary><c>compiled &lt;ClassName&gt;</c> or <c>reference</c>: which code runs.</summary>
    public abstract string ExecutionPath { get; }

    /// <summary>Called with intermediate activations when set.</summary>
    public IActivationObserver? Observer { get; set; }

    /// <summary>Rotary embedding tables for every position a sequence of this model may reach.</summary>
    protected RopeTable Rope { get; private set; }

    /// <summary>How the KV caches of new sequences store keys and values unless <see cref="CreateSequence"/> says
    /// otherwise. Default <see cref="KvPrecision.F32"/>.</summary>
    public KvPrecision KvPrecision { get; set; } = KvPrecision.F32;

    /// <summary>A new, empty sequence of up to <paramref name="maxContext"/> positions, with its own KV cache of
    /// <paramref name="precision"/> (null: <see cref="KvPrecision"/>).</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="maxContext"/> is not positive, or its buffers could
    /// not be allocated (see <see cref="Sequence.CheckContext"/>).</exception>
    public Sequence CreateSequence(int maxContext, KvPrecision? precision = null)
    {
        var kv = precision ?? KvPrecision;
        Sequence.CheckContext(Config, maxContext, MaxRows, kv);
        lock (_gate)
        {
            if (Rope.MaxContext < maxContext) Rope = new RopeTable(Config.HeadDim, Config.RopeTheta, maxContext);
            return new Sequence(this, maxContext, kv);
        }
    }

    /// <summary>
    /// Runs every row of <paramref name="batch"/> through the model, appending each row's key and value to its
    /// sequence's cache, and writes the logits of the rows that ask for them to <paramref name="logits"/>, [V] per
    /// such row in row order (empty when none asks). A sequence whose first row is before its
    /// <see cref="Sequence.Length"/> rewinds to it (see <see cref="Sequence.CanRewindTo"/>); afterwards each
    /// sequence's length is one past its last row.
    /// </summary>
    /// <exception cref="ArgumentException">The batch has more than <see cref="MaxRows"/> rows, a row's token is outside
    /// the vocabulary, a sequence belongs to another model or its rows are not consecutive positions from at most its
    /// length, or <paramref name="logits"/> is not <see cref="ForwardBatch.LogitRows"/> × V long.</exception>
    /// <exception cref="InvalidOperationException">A row is beyond its sequence's context.</exception>
    public void Forward(ForwardBatch batch, Span<float> logits)
    {
        ArgumentNullException.ThrowIfNull(batch);
        int v = Config.VocabSize;
        if (logits.Length != (long)batch.LogitRows * v)
            throw new ArgumentException($"logits must hold {batch.LogitRows} × {v} values (the rows that ask for them)", nameof(logits));
        if (batch.Count == 0) return;
        if (batch.Count > MaxRows)
            throw new ArgumentException($"the batch has {batch.Count} rows; a forward pass takes at most {MaxRows}", nameof(batch));
        lock (_gate)
        {
            Validate(batch);
            for (int t = 0; t < batch.Count; t++)
            {
                // rows of a sequence are consecutive: the first one sets where the sequence continues from
                var sequence = batch.Sequence(t);
                sequence.Length = Math.Min(sequence.Length, batch.Position(t));
            }
            fixed (float* output = logits) ForwardCore(batch, output);
            for (int t = 0; t < batch.Count; t++)
            {
                var sequence = batch.Sequence(t);
                sequence.Length = Math.Max(sequence.Length, batch.Position(t) + 1);
            }
        }
    }

    /// <summary>Checks every row before anything is computed.</summary>
    private void Validate(ForwardBatch batch)
    {
        long stamp = ++_stamp;
        int v = Config.VocabSize;
        for (int t = 0; t < batch.Count; t++)
        {
            int token = batch.Token(t), position = batch.Position(t);
            var sequence = batch.Sequence(t);
            if ((uint)token >= (uint)v)
                throw new ArgumentException($"row {t}: token id {token} is outside the vocabulary [0, {v})", nameof(batch));
            if (sequence.Model != this)
                throw new ArgumentException($"row {t}: the sequence belongs to another model", nameof(batch));
            if (sequence.BatchStamp != stamp)
            {
                sequence.BatchStamp = stamp;
                if (position > sequence.Length || position < 0)
                    throw new ArgumentException($"row {t}: position {position}, but the sequence's next position is {sequence.Length}", nameof(batch));
                if (!sequence.CanRewindTo(position))
                    throw new ArgumentException($"row {t}: the sequence cannot continue from position {position} (its local layers no longer hold the keys before it)", nameof(batch));
            }
            else if (position != sequence.BatchNext)
            {
                throw new ArgumentException($"row {t}: position {position}, but the sequence's rows must be consecutive (expected {sequence.BatchNext})", nameof(batch));
            }
            if (position >= sequence.MaxContext)
                throw new InvalidOperationException($"the context is full ({sequence.MaxContext} tokens)");
            sequence.BatchNext = position + 1;
        }
    }

    /// <summary>Runs a validated batch; <paramref name="logits"/> is null when no row asks for logits, else
    /// [LogitRows × V].</summary>
    protected abstract void ForwardCore(ForwardBatch batch, float* logits);

    /// <summary>A thread's scratch for attention scores of at least <paramref name="length"/> floats, kept across passes
    /// (grown, never shrunk: a pass allocates only when a sequence with a longer context than any before attends).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float* ScoreScratch(int length)
    {
        var scores = t_scores;
        if (scores == null || scores.Length < length) scores = t_scores = GC.AllocateArray<float>(length, pinned: true);
        return (float*)Unsafe.AsPointer(ref scores[0]);
    }

    [ThreadStatic]
    private static float[]? t_scores;

    /// <summary>Reports the scaled embedding [D] of <paramref name="row"/> at <paramref name="x"/>.</summary>
    protected void ObserveEmbed(ForwardBatch batch, int row, float* x) => Observe("embed", batch.Position(row), x);

    /// <summary>Reports the residual stream [D] of <paramref name="row"/> after <paramref name="layer"/>.</summary>
    protected void ObserveLayer(int layer, ForwardBatch batch, int row, float* x) => Observe(_layerNames[layer], batch.Position(row), x);

    /// <summary>Reports the output [D] of the final norm of <paramref name="row"/>.</summary>
    protected void ObserveFinalNorm(ForwardBatch batch, int row, float* u) => Observe("final_norm", batch.Position(row), u);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void Observe(string name, int position, float* values) =>
        Observer?.Observe(name, position, new ReadOnlySpan<float>(values, Config.HiddenSize));

    /// <summary>A pinned buffer that lives as long as this model.</summary>
    protected float* Allocate(int length)
    {
        var buffer = GC.AllocateArray<float>(Math.Max(length, 1), pinned: true);
        _buffers.Add(buffer);
        return (float*)Unsafe.AsPointer(ref buffer[0]);
    }
}
