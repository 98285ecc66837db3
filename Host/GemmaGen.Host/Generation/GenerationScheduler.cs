using System.Diagnostics;
using GemmaGen.Kernels;

namespace GemmaGen;

/// <summary>How a <see cref="GenerationScheduler"/> shares the model between requests.</summary>
public sealed record GenerationSchedulerOptions
{
    /// <summary>Requests that run at once (each holds a sequence with its own KV cache); the rest wait in order. Default
    /// 8; at most <see cref="Specs.SpecParser.MaxBatchRows"/>.</summary>
    public int MaxSequences { get; init; } = 8;

    /// <summary>Positions each sequence holds; null: the model's <see cref="GemmaModel.MaxContext"/>.</summary>
    public int? MaxContext { get; init; }

    /// <summary>Requests that may wait for a free sequence; one more is refused with a
    /// <see cref="SchedulerFullException"/>. Null (default): no limit.</summary>
    public int? MaxQueue { get; init; }

    internal void Validate()
    {
        if (MaxSequences < 1 || MaxSequences > Specs.SpecParser.MaxBatchRows)
            throw new ArgumentOutOfRangeException(nameof(MaxSequences), MaxSequences, $"must be 1 to {Specs.SpecParser.MaxBatchRows}");
        if (MaxContext is < 1) throw new ArgumentOutOfRangeException(nameof(MaxContext), MaxContext, "must be at least 1");
        if (MaxQueue is < 0) throw new ArgumentOutOfRangeException(nameof(MaxQueue), MaxQueue, "must not be negative");
    }
}

/// <summary>A request was refused because <see cref="GenerationSchedulerOptions.MaxQueue"/> requests already wait.</summary>
public sealed class SchedulerFullException(string message) : Exception(message);

/// <summary>
/// Runs many generations on one model in shared forward passes (continuous batching): every step is one
/// <see cref="Gemma2Forward.Forward"/> over a batch with one row per decoding request, filled up with the prompt
/// tokens of requests that are starting, so each weight matrix is read once per step for all of them. Requests join
/// and leave at any step; up to <see cref="GenerationSchedulerOptions.MaxSequences"/> run at once, later ones wait
/// in order. A finished request's sequence keeps its KV cache: a later prompt that starts with the same tokens (a
/// chat that resends its history) continues from there and pays only for the rest
/// (<see cref="GenerationStats.CachedTokens"/>). One thread runs the steps; callbacks run on it.
/// </summary>
public sealed class GenerationScheduler : IDisposable
{
    private readonly GemmaModel _model;
    private readonly Gemma2Forward _forward;
    private readonly GenerationSchedulerOptions _options;
    private readonly int _maxContext;
    private readonly object _gate = new();
    private readonly Queue<Request> _waiting = new();
    private readonly List<Request> _running = [];
    private readonly List<Slot> _slots = [];
    private readonly ForwardBatch _batch;
    private readonly Request?[] _rowRequest;
    private readonly float[] _logits;
    private readonly Request[] _step;
    private readonly Thread _thread;
    private readonly HashSet<int> _endTokens;
    private long _uses;
    private bool _disposed;

    /// <summary>A scheduler over <paramref name="model"/>; its thread starts at once and sleeps while nothing runs.</summary>
    /// <exception cref="ArgumentOutOfRangeException">An option is out of range, or the KV caches of MaxSequences sequences
    /// of MaxContext positions need more memory than is available (the message gives both).</exception>
    public GenerationScheduler(GemmaModel model, GenerationSchedulerOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        _options = options ?? new GenerationSchedulerOptions();
        _options.Validate();
        _model = model;
        _forward = model.Forward;
        _maxContext = _options.MaxContext ?? model.MaxContext;
        Sequence.CheckContext(model.Config, _maxContext, _forward.MaxRows, _forward.KvPrecision);
        // Every sequence may come to hold a KV cache of the whole context: refuse a scheduler whose caches cannot all
        // be held, before any request depends on it.
        long perSequence = KvCache.ByteLengthOf(model.Config, _maxContext, _forward.MaxRows, _forward.KvPrecision);
        long available = AvailableMemory.Read() ?? GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
        if ((double)perSequence * _options.MaxSequences > available)
            throw new ArgumentOutOfRangeException(nameof(options), _options.MaxSequences,
                $"{_options.MaxSequences} sequences of {_maxContext} positions need {perSequence * (double)_options.MaxSequences / 1e9:F1} GB of KV cache " +
                $"({perSequence / 1e9:F2} GB each); {available / 1e9:F1} GB of memory is available: run fewer sequences (MaxSequences) or a shorter context (MaxContext)");
        _batch = new ForwardBatch(_forward.MaxRows);
        _rowRequest = new Request?[_forward.MaxRows];
        // a request has at most one row with logits per step: its decoding row, or its prompt's last
        _logits = new float[(long)_options.MaxSequences * model.Config.VocabSize];
        _step = new Request[_options.MaxSequences];
        _endTokens = GenerationSession.EndTokensOf(model);
        _thread = new Thread(Loop) { IsBackground = true, Name = "gemmagen-scheduler" };
        _thread.Start();
    }

    /// <summary>Positions each sequence holds.</summary>
    public int MaxContext => _maxContext;

    /// <summary>Requests running now.</summary>
    public int Running
    {
        get
        {
            lock (_gate) return _running.Count;
        }
    }

    /// <summary>Requests waiting for a free sequence.</summary>
    public int Waiting
    {
        get
        {
            lock (_gate) return _waiting.Count;
        }
    }

    /// <summary>
    /// Generates from <paramref name="prompt"/> (a whole sequence from position 0, BOS included) up to
    /// <see cref="GenerationOptions.MaxTokens"/> tokens, sharing each step with the other running requests.
    /// <paramref name="onToken"/> is called with each token as soon as it is chosen, on the scheduler's thread (keep it
    /// short; an exception from it fails this request only). Cancelling stops the request before its next step: the
    /// result then has <see cref="StopReason.Cancelled"/> and the tokens generated so far.
    /// </summary>
    /// <exception cref="ArgumentException">The prompt is empty.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The prompt does not fit in a sequence's context (named <c>prompt</c>).</exception>
    /// <exception cref="SchedulerFullException">The queue is full.</exception>
    /// <exception cref="GenerationException">The logits of a step are not finite (the task faults with it).</exception>
    public Task<GenerationResult> GenerateAsync(ReadOnlyMemory<int> prompt, GenerationOptions options, Action<int>? onToken = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentOutOfRangeException.ThrowIfNegative(options.MaxTokens);
        if (prompt.IsEmpty) throw new ArgumentException("at least one prompt token is needed", nameof(prompt));
        if (prompt.Length > _maxContext)
            throw new ArgumentOutOfRangeException(nameof(prompt), prompt.Length, $"the prompt is {prompt.Length} tokens; a sequence holds {_maxContext}");
        int v = _model.Config.VocabSize;
        foreach (int id in prompt.Span)
        {
            if ((uint)id >= (uint)v) throw new ArgumentOutOfRangeException(nameof(prompt), id, $"token id must be in [0, {v})");
        }
        var request = new Request(prompt.ToArray(), options, new Sampler(options.Sampling, v), onToken, cancellationToken);
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_options.MaxQueue is int limit && _running.Count >= _options.MaxSequences && _waiting.Count >= limit)
                throw new SchedulerFullException($"{_waiting.Count} requests are waiting, the most the scheduler queues (MaxQueue {limit})");
            _waiting.Enqueue(request);
            Monitor.PulseAll(_gate);
        }
        return request.Completion.Task;
    }

    /// <summary>Stops the scheduler thread after the step in flight; requests still running or waiting end with
    /// <see cref="StopReason.Cancelled"/>. The model stays loaded.</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed) return;
            _disposed = true;
            Monitor.PulseAll(_gate);
        }
        _thread.Join();
    }

    /// <summary>One request: its prompt, its sampler and what it has generated.</summary>
    private sealed class Request(int[] prompt, GenerationOptions options, Sampler sampler, Action<int>? onToken, CancellationToken cancellation)
    {
        public readonly int[] Prompt = prompt;
        public readonly GenerationOptions Options = options;
        public readonly Sampler Sampler = sampler;
        public readonly Action<int>? OnToken = onToken;
        public readonly CancellationToken Cancellation = cancellation;
        public readonly TaskCompletionSource<GenerationResult> Completion = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public readonly Stopwatch Clock = Stopwatch.StartNew();

        /// <summary>Prompt then generated tokens: the context of the repetition penalty.</summary>
        public readonly List<int> Tokens = [.. prompt];
        public Slot? Slot;
        public int Fed;            // tokens of Tokens in the cache
        public int Cached;         // prompt tokens found in the cache
        public int Generated;
        public double PrefillSeconds;
        public TimeSpan FirstToken;
        public bool Prefilled => Fed >= Prompt.Length;
    }

    /// <summary>A sequence and the tokens its cache holds, kept across requests for prefix reuse.</summary>
    private sealed class Slot(Sequence sequence)
    {
        public readonly Sequence Sequence = sequence;
        public readonly List<int> Tokens = [];
        public bool Busy;
        public long LastUse;
    }

    private void Loop()
    {
        while (true)
        {
            lock (_gate)
            {
                while (!_disposed && _waiting.Count == 0 && _running.Count == 0) Monitor.Wait(_gate);
                if (_disposed) break;
                DropCancelledWaiting();
                Admit();
            }
            Step();
        }
        // Disposed: whatever is left ends as cancelled.
        lock (_gate)
        {
            foreach (var r in _running.ToArray()) Finish(r, StopReason.Cancelled);
            while (_waiting.TryDequeue(out var r)) Finish(r, StopReason.Cancelled);
            _running.Clear();
        }
    }

    /// <summary>Ends the waiting requests whose callers cancelled them, keeping the others in order (under the gate).</summary>
    private void DropCancelledWaiting()
    {
        int count = _waiting.Count;
        for (int i = 0; i < count; i++)
        {
            var r = _waiting.Dequeue();
            if (r.Cancellation.IsCancellationRequested) Finish(r, StopReason.Cancelled);
            else _waiting.Enqueue(r);
        }
    }

    /// <summary>Moves waiting requests into free sequences (under the gate).</summary>
    private void Admit()
    {
        while (_running.Count < _options.MaxSequences && _waiting.TryPeek(out var request))
        {
            if (request.Cancellation.IsCancellationRequested)
            {
                _waiting.Dequeue();
                Finish(request, StopReason.Cancelled);
                continue;
            }
            Slot? slot;
            int reuse;
            try
            {
                slot = ChooseSlot(request.Prompt, out reuse);
            }
            catch (Exception e) when (e is ArgumentOutOfRangeException or OutOfMemoryException)
            {
                // No memory for another KV cache after all (something else took it since the scheduler started).
                _waiting.Dequeue();
                request.Completion.TrySetException(new InvalidOperationException($"no memory for another sequence of {_maxContext} positions: {e.Message}", e));
                continue;
            }
            if (slot == null) break;  // no free sequence (the request stays first in line)
            _waiting.Dequeue();
            slot.Busy = true;
            slot.LastUse = ++_uses;
            slot.Sequence.RewindTo(reuse);
            slot.Tokens.RemoveRange(reuse, slot.Tokens.Count - reuse);
            request.Slot = slot;
            request.Fed = reuse;
            request.Cached = reuse;
            _running.Add(request);
        }
    }

    /// <summary>The free sequence whose cache shares the longest usable prefix with <paramref name="prompt"/> (at least one
    /// prompt token is left to feed, for its logits); else a new one while fewer than MaxSequences exist; else the least
    /// recently used free one.</summary>
    private Slot? ChooseSlot(int[] prompt, out int reuse)
    {
        Slot? longest = null, oldest = null;
        reuse = 0;
        foreach (var slot in _slots)
        {
            if (slot.Busy) continue;
            int common = 0, limit = Math.Min(slot.Tokens.Count, prompt.Length - 1);
            while (common < limit && slot.Tokens[common] == prompt[common]) common++;
            while (common > 0 && !slot.Sequence.CanRewindTo(common)) common--;
            if (common > reuse)
            {
                longest = slot;
                reuse = common;
            }
            if (oldest == null || slot.LastUse < oldest.LastUse) oldest = slot;
        }
        if (reuse > 0) return longest;
        if (_slots.Count < _options.MaxSequences)
        {
            var created = new Slot(_forward.CreateSequence(_maxContext));
            _slots.Add(created);
            return created;
        }
        return oldest;
    }

    /// <summary>One forward pass: a row for each decoding request, then prompt rows of starting ones while rows are left;
    /// then each row that produced logits picks its request's next token.</summary>
    private void Step()
    {
        int active;
        lock (_gate)
        {
            active = _running.Count;
            _running.CopyTo(_step);
        }
        var running = new ReadOnlySpan<Request>(_step, 0, active);
        _batch.Clear();
        int rows = _forward.MaxRows;
        foreach (var r in running)
        {
            // the pending token: generated, not yet in the cache (at the end of the context, finished below instead)
            if (r.Cancellation.IsCancellationRequested || !r.Prefilled || r.Fed >= r.Tokens.Count || r.Fed + 1 > _maxContext) continue;
            _rowRequest[_batch.Count] = r;
            _batch.Add(r.Slot!.Sequence, r.Tokens[r.Fed], r.Fed, logits: true);
        }
        foreach (var r in running)
        {
            if (r.Cancellation.IsCancellationRequested || r.Prefilled) continue;
            int count = Math.Min(r.Prompt.Length - r.Fed, rows - _batch.Count);
            for (int i = 0; i < count; i++)
            {
                int position = r.Fed + i;
                _rowRequest[_batch.Count] = r;
                _batch.Add(r.Slot!.Sequence, r.Prompt[position], position, logits: position == r.Prompt.Length - 1);
            }
            if (_batch.Count == rows) break;
        }

        if (_batch.Count > 0)
        {
            try
            {
                _forward.Forward(_batch, _logits.AsSpan(0, _batch.LogitRows * _model.Config.VocabSize));
            }
            catch (Exception e)
            {
                // A pass that failed leaves every sequence in it unusable: fail their requests, forget their caches.
                lock (_gate)
                {
                    foreach (var r in running)
                    {
                        if (InBatch(r)) Fail(r, e);
                    }
                }
                Array.Clear(_rowRequest);
                return;
            }
        }

        int v = _model.Config.VocabSize, logitRow = 0;
        for (int t = 0; t < _batch.Count; t++)
        {
            var r = _rowRequest[t]!;
            _rowRequest[t] = null;
            r.Slot!.Tokens.Add(_batch.Token(t));
            r.Fed++;
            if (!_batch.WantsLogits(t)) continue;
            var logits = _logits.AsSpan(logitRow++ * v, v);
            if (r.Generated == 0 && r.Prefilled) r.PrefillSeconds = r.Clock.Elapsed.TotalSeconds;
            Choose(r, logits);
        }

        lock (_gate)
        {
            foreach (var r in running)
            {
                if (r.Completion.Task.IsCompleted) continue;
                if (r.Cancellation.IsCancellationRequested) Finish(r, StopReason.Cancelled);
                else if (r.Prefilled && r.Generated >= r.Options.MaxTokens) Finish(r, StopReason.MaxTokens);
                else if (r.Prefilled && r.Generated > 0 && r.Fed + 1 > _maxContext) Finish(r, StopReason.ContextFull);
            }
        }

        bool InBatch(Request r)
        {
            for (int t = 0; t < _batch.Count; t++)
            {
                if (_rowRequest[t] == r) return true;
            }
            return false;
        }
    }

    /// <summary>Picks <paramref name="r"/>'s next token from <paramref name="logits"/> and passes it on.</summary>
    private void Choose(Request r, Span<float> logits)
    {
        if (r.Generated >= r.Options.MaxTokens) return;
        if (!FiniteCheck.AllFinite(logits))
        {
            lock (_gate) Fail(r, GenerationSession.NotFinite(logits, r.Generated + 1, r.Fed - 1));
            return;
        }
        int next = r.Sampler.Sample(logits, System.Runtime.InteropServices.CollectionsMarshal.AsSpan(r.Tokens));
        r.Tokens.Add(next);
        r.Generated++;
        if (r.Generated == 1) r.FirstToken = r.Clock.Elapsed;
        try
        {
            r.OnToken?.Invoke(next);
        }
        catch (Exception e)
        {
            lock (_gate) Fail(r, e);
            return;
        }
        if (!r.Options.IgnoreEndTokens && _endTokens.Contains(next))
        {
            lock (_gate) Finish(r, StopReason.EndToken);
        }
    }

    /// <summary>Completes <paramref name="r"/> and frees its sequence, whose cache keeps what was fed (under the gate).</summary>
    private void Finish(Request r, StopReason reason)
    {
        Release(r);
        double decode = r.Generated > 1 ? r.Clock.Elapsed.TotalSeconds - r.FirstToken.TotalSeconds : 0;
        var generated = r.Tokens.GetRange(r.Prompt.Length, r.Generated).ToArray();
        var stats = new GenerationStats(r.Prompt.Length - r.Cached, r.PrefillSeconds, r.FirstToken, r.Generated, decode) { CachedTokens = r.Cached };
        r.Completion.TrySetResult(new GenerationResult(generated, reason, stats));
    }

    /// <summary>Fails <paramref name="r"/>; its sequence forgets everything (under the gate).</summary>
    private void Fail(Request r, Exception e)
    {
        if (r.Slot is { } slot)
        {
            slot.Sequence.Reset();
            slot.Tokens.Clear();
        }
        Release(r);
        r.Completion.TrySetException(e);
    }

    private void Release(Request r)
    {
        _running.Remove(r);
        if (r.Slot is { } slot)
        {
            slot.Busy = false;
            // the cache holds exactly the tokens fed; the last generated token is not in it
            if (slot.Tokens.Count != slot.Sequence.Length)
            {
                slot.Sequence.Reset();
                slot.Tokens.Clear();
            }
        }
        r.Slot = null;
    }
}
