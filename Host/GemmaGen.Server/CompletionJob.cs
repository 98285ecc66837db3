using System.Threading.Channels;

namespace GemmaGen.Server;

/// <summary>How a completion ended, in OpenAI's terms.</summary>
internal sealed record CompletionOutcome(string Text, string? FinishReason, GenerationResult Result, int PromptTokens)
{
    /// <summary>The usage: prompt tokens (cached ones among them), generated tokens (an end token included).</summary>
    public Usage Usage => new(PromptTokens, Result.Tokens.Length, PromptTokens + Result.Tokens.Length, new PromptTokensDetails(Result.Stats.CachedTokens));
}

/// <summary>
/// One request's generation on the server's <see cref="GenerationScheduler"/>: the tokens become text as they come
/// (<see cref="StreamingDecoder"/>), cut before the first stop sequence (<see cref="StopSequenceFilter"/>, which then
/// cancels the request, as <see cref="GemmaChatClient"/> does); end tokens are not text. The text is passed on in
/// pieces through <see cref="Pieces"/> when streaming.
/// </summary>
internal sealed class CompletionJob : IDisposable
{
    private readonly int[] _prompt;
    private readonly HashSet<int> _endTokens;
    private readonly StopSequenceFilter _filter;
    private readonly StreamingDecoder _decoder;
    private readonly CancellationTokenSource _stop;
    private readonly Channel<string>? _pieces;
    private readonly ServerMetrics _metrics;
    private Task<GenerationResult>? _generation;

    private readonly Action<string, int[]>? _remember;

    /// <param name="model">The model (its tokenizer turns tokens into text).</param>
    /// <param name="prompt">The prompt's tokens.</param>
    /// <param name="request">The validated request: stop sequences, streaming, sampling, max tokens.</param>
    /// <param name="metrics">Where tokens and outcomes are counted.</param>
    /// <param name="endTokens">Tokens that end a reply and are not text.</param>
    /// <param name="cancellation">Cancels the generation (the client left, the server stops).</param>
    /// <param name="remember">Called with a whole reply's text and tokens (not one cut at a stop sequence), so a
    /// conversation that repeats it renders the same tokens.</param>
    public CompletionJob(GemmaModel model, int[] prompt, OpenAiRequest request, ServerMetrics metrics, HashSet<int> endTokens, CancellationToken cancellation,
        Action<string, int[]>? remember = null)
    {
        _remember = remember;
        _prompt = prompt;
        _endTokens = endTokens;
        _metrics = metrics;
        _filter = new StopSequenceFilter(request.Stop);
        _decoder = model.RequireTokenizer().CreateStreamingDecoder();
        _stop = CancellationTokenSource.CreateLinkedTokenSource(cancellation);
        if (request.Stream) _pieces = Channel.CreateUnbounded<string>(new UnboundedChannelOptions { SingleReader = true });
        Options = new GenerationOptions { MaxTokens = request.MaxTokens, Sampling = request.Sampling };
    }

    public GenerationOptions Options { get; }

    /// <summary>The text as it is decoded (streaming requests only); completed when the generation ends.</summary>
    public ChannelReader<string> Pieces => _pieces?.Reader ?? throw new InvalidOperationException("not a streaming request");

    /// <summary>Queues the request on <paramref name="scheduler"/>.</summary>
    /// <exception cref="SchedulerFullException">The queue is full.</exception>
    public void Start(GenerationScheduler scheduler) => _generation = scheduler.GenerateAsync(_prompt, Options, OnToken, _stop.Token);

    /// <summary>Stops the generation before its next step.</summary>
    public void Cancel() => _stop.Cancel();

    /// <summary>Waits for the generation to end and passes on the text held back; the finish reason is
    /// <c>stop</c> (an end token or a stop sequence), <c>length</c> (max tokens or the context's end), or null when
    /// the request was cancelled.</summary>
    public async Task<CompletionOutcome> CompleteAsync()
    {
        try
        {
            GenerationResult result = await _generation!.ConfigureAwait(false);
            if (!_filter.Stopped)
            {
                string rest = _filter.Push(_decoder.Flush()) + _filter.Flush();
                if (rest.Length > 0) _pieces?.Writer.TryWrite(rest);
            }
            string? finish = _filter.Stopped || result.StopReason == StopReason.EndToken ? "stop"
                : result.StopReason is StopReason.MaxTokens or StopReason.ContextFull ? "length"
                : null;
            _metrics.Completed(result, finish);
            if (!_filter.Stopped && finish != null) _remember?.Invoke(_filter.Text, result.Tokens);
            return new CompletionOutcome(_filter.Text, finish, result, _prompt.Length);
        }
        finally
        {
            _pieces?.Writer.TryComplete();
        }
    }

    /// <summary>On the scheduler's thread: each token as it is chosen.</summary>
    private void OnToken(int token)
    {
        _metrics.Generated();
        if (_endTokens.Contains(token) || _filter.Stopped) return;
        string text = _filter.Push(_decoder.Push(token));
        if (text.Length > 0) _pieces?.Writer.TryWrite(text);
        if (_filter.Stopped) _stop.Cancel();
    }

    public void Dispose() => _stop.Dispose();
}
