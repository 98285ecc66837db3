using System.Diagnostics;
using GemmaGen.Kernels;

namespace GemmaGen;

/// <summary>What to generate: how many tokens at most, how to choose them, and which tokens end the text.</summary>
public sealed record GenerationOptions
{
    /// <summary>Tokens to generate at most. Default 256.</summary>
    public int MaxTokens { get; init; } = 256;

    /// <summary>How tokens are chosen. Default: temperature 1, no filters.</summary>
    public SamplingOptions Sampling { get; init; } = new();

    /// <summary>Keep going past end tokens (for benchmarks and reproducing reference continuations).</summary>
    public bool IgnoreEndTokens { get; init; }
}

/// <summary>
/// A running sequence on one decoder: the tokens so far live in its KV cache, so each call only processes what
/// is new. A token that ended a call (an end token, or the last one allowed) is not in the cache yet: the next call
/// feeds it first. Not thread-safe: one call at a time.
/// </summary>
public sealed class GenerationSession
{
    private readonly GemmaModel _model;
    private readonly Gemma2Decoder _decoder;
    private readonly float[] _logits;
    private readonly List<int> _tokens;
    private readonly HashSet<int> _endTokens;
    private int? _pending;

    // True when _logits are those of the last token in the cache and no token has been chosen from them yet (after a
    // call that stopped before its first token, or after Append): a call with no input chooses from them.
    private bool _logitsReady;

    internal GenerationSession(GemmaModel model, Gemma2Decoder decoder)
    {
        _model = model;
        _decoder = decoder;
        _logits = new float[model.Config.VocabSize];
        _tokens = new List<int>(decoder.MaxContext + 1);
        _endTokens = EndTokensOf(model);
    }

    /// <summary>The tokens that end generation on <paramref name="model"/>: the config's eos ids, and the tokenizer's
    /// <c>&lt;eos&gt;</c> and <c>&lt;end_of_turn&gt;</c>.</summary>
    internal static HashSet<int> EndTokensOf(GemmaModel model)
    {
        HashSet<int> end = [.. model.Config.EosTokenIds];
        if (model.Tokenizer is { } tokenizer)
        {
            end.Add(tokenizer.EosId);
            if (tokenizer.EndOfTurnId is int endOfTurn) end.Add(endOfTurn);
        }
        return end;
    }

    /// <summary>Positions the session can hold.</summary>
    public int MaxContext => _decoder.MaxContext;

    /// <summary>Every token of the sequence so far: prompt, generated, and a pending last token.</summary>
    public IReadOnlyList<int> Tokens => _tokens;

    /// <summary>Tokens of the sequence that are not yet in the cache (0 or 1).</summary>
    public int PendingTokens => _pending.HasValue ? 1 : 0;

    /// <summary><c>compiled &lt;ClassName&gt;</c> or <c>reference</c>.</summary>
    public string ExecutionPath => _decoder.ExecutionPath;

    /// <summary>Tokens that end generation: the config's eos ids, <c>&lt;eos&gt;</c> and <c>&lt;end_of_turn&gt;</c>.</summary>
    public IReadOnlySet<int> EndTokens => _endTokens;

    /// <summary>Forgets the sequence.</summary>
    public void Reset()
    {
        _decoder.Reset();
        _tokens.Clear();
        _pending = null;
        _logitsReady = false;
    }

    /// <summary>Whether <paramref name="count"/> more tokens fit in the context (a pending token counts).</summary>
    public bool Fits(int count) => _decoder.Length + PendingTokens + count <= MaxContext;

    /// <summary>
    /// Appends <paramref name="input"/> to the sequence and generates up to <see cref="GenerationOptions.MaxTokens"/>
    /// tokens, calling <paramref name="onToken"/> with each as soon as it is chosen.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">The input does not fit in the context (named <c>input</c>). A
    /// continuation that reaches the end of the context is not refused: it stops there with
    /// <see cref="StopReason.ContextFull"/>.</exception>
    /// <exception cref="GenerationException">The logits of a step are not finite (NaN or infinite).</exception>
    public GenerationResult Generate(ReadOnlySpan<int> input, GenerationOptions options, Action<int>? onToken = null, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(options.MaxTokens);
        var sampler = new Sampler(options.Sampling, _model.Config.VocabSize);
        int promptTokens = input.Length + PendingTokens;
        if (promptTokens == 0 && !_logitsReady)
            throw new ArgumentException("nothing to continue: the input is empty and the session has no tokens", nameof(input));

        var clock = Stopwatch.StartNew();
        Append(input);
        double prefill = clock.Elapsed.TotalSeconds;
        var generated = new List<int>(Math.Min(options.MaxTokens, MaxContext));
        TimeSpan firstToken = TimeSpan.Zero;
        var reason = StopReason.MaxTokens;
        while (generated.Count < options.MaxTokens)
        {
            if (cancellationToken.IsCancellationRequested)
            {
                reason = StopReason.Cancelled;
                break;
            }
            if (generated.Count > 0)
            {
                if (!Fits(0))
                {
                    reason = StopReason.ContextFull;
                    break;
                }
                Feed(_pending!.Value);
            }
            if (!FiniteCheck.AllFinite(_logits)) throw NotFinite(_logits, generated.Count + 1, _decoder.Length - 1);
            int next = sampler.Sample(_logits, TokenSpan());
            _logitsReady = false;
            _pending = next;
            _tokens.Add(next);
            generated.Add(next);
            if (generated.Count == 1) firstToken = clock.Elapsed;
            onToken?.Invoke(next);
            if (!options.IgnoreEndTokens && _endTokens.Contains(next))
            {
                reason = StopReason.EndToken;
                break;
            }
        }
        double decode = generated.Count > 1 ? clock.Elapsed.TotalSeconds - firstToken.TotalSeconds : 0;
        return new GenerationResult(generated.ToArray(), reason,
            new GenerationStats(promptTokens, prefill, firstToken, generated.Count, decode));
    }

    /// <summary>Feeds the pending token and <paramref name="input"/> into the cache, leaving the logits of the last.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The input does not fit in the context (named <c>input</c>).</exception>
    public void Append(ReadOnlySpan<int> input)
    {
        CheckFits(input.Length);
        if (_pending is int pending) Feed(pending);
        if (input.IsEmpty) return;
        _decoder.Forward(input, _decoder.Length, _logits);
        foreach (int id in input) _tokens.Add(id);
        _logitsReady = true;
    }

    private void CheckFits(int count)
    {
        if (!Fits(count))
            throw new ArgumentOutOfRangeException("input", count,
                $"the input is {count} tokens; {MaxContext - _decoder.Length - PendingTokens} of the context's {MaxContext} positions are free");
    }

    /// <summary>Says which step and position gave logits that are not finite, and how many are NaN or infinite.</summary>
    internal static GenerationException NotFinite(ReadOnlySpan<float> logits, int step, int position)
    {
        int nan = 0, infinite = 0;
        foreach (float logit in logits)
        {
            if (float.IsNaN(logit)) nan++;
            else if (float.IsInfinity(logit)) infinite++;
        }
        return new GenerationException(
            $"the logits are not finite at step {step} (position {position}): {nan} NaN and {infinite} infinite of {logits.Length}; " +
            "the model's weights or activations are not finite");
    }

    private void Feed(int token)
    {
        _decoder.Step(token, _decoder.Length, _logits);
        _pending = null;
        _logitsReady = true;
    }

    private ReadOnlySpan<int> TokenSpan() => System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_tokens);
}
