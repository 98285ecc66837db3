using GemmaGen.Specs;

namespace GemmaGen.Kernels;

/// <summary>
/// One sequence on a <see cref="Gemma2Forward"/> model, for callers that run one conversation: a token at a time
/// (<see cref="Step"/>) or many (<see cref="Forward"/>, in batches of up to <see cref="Gemma2Forward.MaxRows"/>
/// rows). The decoder owns its <see cref="Sequence"/> and a batch, allocated once; a step allocates nothing.
/// </summary>
public sealed class Gemma2Decoder
{
    private readonly ForwardBatch _batch;

    /// <summary>A decoder with a new sequence of up to <paramref name="maxContext"/> positions on <paramref name="model"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="maxContext"/> is not positive, or its buffers could
    /// not be allocated (see <see cref="Sequence.CheckContext"/>).</exception>
    public Gemma2Decoder(Gemma2Forward model, int maxContext)
    {
        ArgumentNullException.ThrowIfNull(model);
        Model = model;
        Sequence = model.CreateSequence(maxContext);
        _batch = new ForwardBatch(model.MaxRows);
    }

    /// <summary>The model that runs the forward passes.</summary>
    public Gemma2Forward Model { get; }

    /// <summary>The sequence this decoder advances.</summary>
    public Sequence Sequence { get; }

    /// <summary>The model's weights.</summary>
    public ModelWeights Weights => Model.Weights;

    /// <summary>The model's config.</summary>
    public Gemma2Config Config => Model.Config;

    /// <summary>Positions the sequence holds; a step at a later position is refused.</summary>
    public int MaxContext => Sequence.MaxContext;

    /// <summary>Tokens in the cache: positions [0, Length) have been processed.</summary>
    public int Length => Sequence.Length;

    /// <summary><c>compiled &lt;ClassName&gt;</c> or <c>reference</c>: which code runs.</summary>
    public string ExecutionPath => Model.ExecutionPath;

    /// <summary>Called with intermediate activations when set (on the model: every sequence's passes report).</summary>
    public IActivationObserver? Observer
    {
        get => Model.Observer;
        set => Model.Observer = value;
    }

    /// <summary>Forgets every cached position.</summary>
    public void Reset() => Sequence.Reset();

    /// <summary>
    /// Runs token <paramref name="token"/> at <paramref name="position"/> (at most <see cref="Length"/>: a position
    /// before it rewinds the cache, see <see cref="Sequence.CanRewindTo"/>) and writes its logits [V] when
    /// <paramref name="logits"/> is not empty.
    /// </summary>
    public void Step(int token, int position, Span<float> logits)
    {
        if ((uint)token >= (uint)Config.VocabSize)
            throw new ArgumentOutOfRangeException(nameof(token), token, $"token id must be in [0, {Config.VocabSize})");
        CheckStart(position, nameof(position));
        if (position >= MaxContext)
            throw new InvalidOperationException($"the context is full ({MaxContext} tokens)");
        if (!logits.IsEmpty && logits.Length != Config.VocabSize)
            throw new ArgumentException($"logits must hold {Config.VocabSize} values", nameof(logits));
        _batch.Clear();
        _batch.Add(Sequence, token, position, logits: !logits.IsEmpty);
        Model.Forward(_batch, logits);
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
        CheckStart(start, nameof(start));
        if ((long)start + tokens.Length > MaxContext)
            throw new InvalidOperationException($"the context is full ({MaxContext} tokens)");
        foreach (int token in tokens)
        {
            if ((uint)token >= (uint)v) throw new ArgumentOutOfRangeException(nameof(tokens), token, $"token id must be in [0, {v})");
        }
        for (int done = 0; done < tokens.Length; done += Model.MaxRows)
        {
            int n = Math.Min(Model.MaxRows, tokens.Length - done);
            bool last = done + n == tokens.Length;
            _batch.Clear();
            for (int i = 0; i < n; i++) _batch.Add(Sequence, tokens[done + i], start + done + i, logits: every || (last && i == n - 1 && !logits.IsEmpty));
            Span<float> target = every ? logits.Slice(done * v, n * v) : last ? logits : default;
            Model.Forward(_batch, target);
        }
    }

    private void CheckStart(int position, string name)
    {
        if (position < 0 || position > Length)
            throw new ArgumentOutOfRangeException(name, position, $"the next position is {Length}");
        if (!Sequence.CanRewindTo(position))
            throw new ArgumentOutOfRangeException(name, position,
                $"the cache holds {Length} positions and cannot continue from {position}: its local layers no longer hold the keys before it");
    }
}
