using System.Runtime.CompilerServices;
using System.Threading.Channels;
using Microsoft.Extensions.AI;

namespace GemmaGen;

/// <summary>
/// A <see cref="IChatClient"/> (Microsoft.Extensions.AI) over a <see cref="GemmaModel"/>, in the Gemma chat format.
/// Concurrent requests run together on a <see cref="GenerationScheduler"/>: up to
/// <see cref="GemmaChatClientOptions.MaxConcurrentRequests"/> decode in shared steps (each weight read once per step
/// for all of them), later ones wait their turn. Finished conversations keep their KV caches: a request whose
/// messages extend one of them (the usual chat loop: the history, the last reply, a new user message) processes only
/// its new tokens.
/// </summary>
/// <remarks>
/// <para>From <see cref="ChatOptions"/> the client honours <see cref="ChatOptions.Temperature"/> (0: greedy),
/// <see cref="ChatOptions.TopP"/>, <see cref="ChatOptions.TopK"/>, <see cref="ChatOptions.Seed"/>,
/// <see cref="ChatOptions.MaxOutputTokens"/>, <see cref="ChatOptions.StopSequences"/> (the reply ends before the
/// first one, which is not returned) and <see cref="ChatOptions.Instructions"/> (as a system message); settings it
/// leaves open come from <see cref="GemmaChatClientOptions"/>. Tools, response formats and the frequency and
/// presence penalties are not supported and are ignored.</para>
/// <para>System messages are folded into the first user turn (Gemma has no system role); assistant messages are the
/// model's turns. Only the text of a message is rendered.</para>
/// </remarks>
public sealed class GemmaChatClient : IChatClient
{
    /// <summary>The provider name in the client's <see cref="ChatClientMetadata"/>.</summary>
    public const string ProviderName = "gemmagen";

    private readonly GemmaModel _model;
    private readonly GemmaChatClientOptions _options;
    private readonly GemmaChatFormat _format;
    private readonly ChatClientMetadata _metadata;
    private readonly Lazy<GenerationScheduler> _scheduler;

    private readonly ReplyMemory _replies = new();
    private readonly HashSet<int> _endTokens;

    /// <summary>A client over <paramref name="model"/>, which must have a tokenizer with the Gemma chat pieces. The
    /// client does not own the model: dispose the model after the client.</summary>
    /// <exception cref="TokenizerException">The model was loaded without a tokenizer.</exception>
    /// <exception cref="InvalidOperationException">The tokenizer has no <c>&lt;start_of_turn&gt;</c> or <c>&lt;end_of_turn&gt;</c>.</exception>
    public GemmaChatClient(GemmaModel model, GemmaChatClientOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        _model = model;
        _options = options ?? new GemmaChatClientOptions();
        _format = new GemmaChatFormat(model.RequireTokenizer());
        _endTokens = GenerationSession.EndTokensOf(model);
        ModelId = _options.ModelId ?? model.DefaultModelId;
        _metadata = new ChatClientMetadata(ProviderName, providerUri: null, defaultModelId: ModelId);
        var schedulerOptions = new GenerationSchedulerOptions { MaxSequences = _options.MaxConcurrentRequests, MaxContext = _options.MaxContext };
        schedulerOptions.Validate();
        _scheduler = new Lazy<GenerationScheduler>(() => model.CreateScheduler(schedulerOptions));
    }

    /// <summary>The model id in responses and metadata.</summary>
    public string ModelId { get; }

    /// <summary>Generates the model's reply to <paramref name="messages"/>.</summary>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    /// <exception cref="InvalidOperationException">The conversation does not fit in the context.</exception>
    public async Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(messages);
        ChatMessage[] conversation = [.. messages];
        string id = NewResponseId();
        Reply reply = await Task.Run(() => ReplyAsync(conversation, options, onText: null, id, cancellationToken), cancellationToken).ConfigureAwait(false);
        var message = new ChatMessage(ChatRole.Assistant, reply.Text) { MessageId = reply.Id, CreatedAt = reply.CreatedAt };
        return new ChatResponse(message)
        {
            ResponseId = reply.Id,
            ModelId = ModelId,
            CreatedAt = reply.CreatedAt,
            FinishReason = reply.FinishReason,
            Usage = reply.Usage,
        };
    }

    /// <summary>Generates the model's reply to <paramref name="messages"/>, one update per piece of text as it is
    /// decoded; the last update carries the finish reason and the usage (a <see cref="UsageContent"/>). Leaving
    /// the enumeration early stops the generation.</summary>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    /// <exception cref="InvalidOperationException">The conversation does not fit in the context.</exception>
    public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(messages);
        ChatMessage[] conversation = [.. messages];
        string id = NewResponseId();
        var pieces = Channel.CreateUnbounded<string>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        Task<Reply> generation = Task.Run(async () =>
        {
            try
            {
                return await ReplyAsync(conversation, options, text => pieces.Writer.TryWrite(text), id, stop.Token).ConfigureAwait(false);
            }
            finally
            {
                pieces.Writer.Complete();
            }
        }, CancellationToken.None);
        try
        {
            await foreach (string text in pieces.Reader.ReadAllAsync(CancellationToken.None).ConfigureAwait(false))
            {
                // The generation runs ahead of the reader: after a cancellation, pass on none of the text it queued.
                cancellationToken.ThrowIfCancellationRequested();
                yield return new ChatResponseUpdate(ChatRole.Assistant, text) { ResponseId = id, MessageId = id, ModelId = ModelId };
            }
            Reply reply = await generation.ConfigureAwait(false);
            yield return new ChatResponseUpdate(ChatRole.Assistant, [new UsageContent(reply.Usage)])
            {
                ResponseId = id,
                MessageId = id,
                ModelId = ModelId,
                CreatedAt = reply.CreatedAt,
                FinishReason = reply.FinishReason,
            };
        }
        finally
        {
            // The caller stopped reading (or an update failed): stop generating and wait until the model is free.
            stop.Cancel();
            await ((Task)generation).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }
    }

    /// <summary>The client's <see cref="ChatClientMetadata"/> (provider <see cref="ProviderName"/>, the model id), its
    /// <see cref="GemmaModel"/>, or the client itself; null for anything else or any key.</summary>
    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        if (serviceKey != null) return null;
        if (serviceType == typeof(ChatClientMetadata)) return _metadata;
        if (serviceType == typeof(GemmaModel)) return _model;
        return serviceType.IsInstanceOfType(this) ? this : null;
    }

    /// <summary>Stops the client's scheduler (requests still running end as cancelled) and lets the KV caches go; the
    /// model stays loaded.</summary>
    public void Dispose()
    {
        if (_scheduler.IsValueCreated) _scheduler.Value.Dispose();
    }

    /// <summary>A reply: its text, why it ended and the token counts.</summary>
    private sealed record Reply(string Id, string Text, ChatFinishReason FinishReason, UsageDetails Usage, DateTimeOffset CreatedAt);

    /// <summary>Renders the conversation and generates the reply on the scheduler, passing text on as it is decoded
    /// (on the scheduler's thread).</summary>
    private async Task<Reply> ReplyAsync(ChatMessage[] conversation, ChatOptions? options, Action<string>? onText, string id,
        CancellationToken cancellationToken)
    {
        var generation = new GenerationOptions { MaxTokens = options?.MaxOutputTokens ?? _options.MaxOutputTokens, Sampling = Sampling(options) };
        int[] prompt = _replies.Render(_format, conversation, options?.Instructions);
        var scheduler = _scheduler.Value;
        if (prompt.Length > scheduler.MaxContext)
            throw new InvalidOperationException($"the conversation is {prompt.Length} tokens; the context holds {scheduler.MaxContext}");

        // A stop sequence ends the reply: the scheduler stops the request before its next step, as when cancelled.
        using var stopped = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var filter = new StopSequenceFilter(options?.StopSequences);
        StreamingDecoder decoder = _model.RequireTokenizer().CreateStreamingDecoder();
        GenerationResult result = await scheduler.GenerateAsync(prompt, generation, token =>
        {
            if (_endTokens.Contains(token) || filter.Stopped) return;
            string text = filter.Push(decoder.Push(token));
            if (text.Length > 0) onText?.Invoke(text);
            if (filter.Stopped) stopped.Cancel();
        }, stopped.Token).ConfigureAwait(false);
        cancellationToken.ThrowIfCancellationRequested();
        if (!filter.Stopped)
        {
            string rest = filter.Push(decoder.Flush()) + filter.Flush();
            if (rest.Length > 0) onText?.Invoke(rest);
        }

        int[] generated = result.Tokens;
        // A reply cut at a stop sequence is shorter than its tokens: a history that repeats it re-renders it.
        if (!filter.Stopped) _replies.Remember(_format, filter.Text, generated);

        var usage = new UsageDetails
        {
            InputTokenCount = prompt.Length,
            CachedInputTokenCount = result.Stats.CachedTokens,
            OutputTokenCount = generated.Length,
            TotalTokenCount = prompt.Length + generated.Length,
        };
        ChatFinishReason finish = filter.Stopped || result.StopReason == StopReason.EndToken ? ChatFinishReason.Stop : ChatFinishReason.Length;
        return new Reply(id, filter.Text, finish, usage, DateTimeOffset.UtcNow);
    }

    /// <summary>The client's sampling with what <paramref name="options"/> sets.</summary>
    private SamplingOptions Sampling(ChatOptions? options)
    {
        SamplingOptions defaults = _options.Sampling;
        if (options == null) return defaults;
        return defaults with
        {
            Temperature = options.Temperature ?? defaults.Temperature,
            TopP = options.TopP ?? defaults.TopP,
            TopK = options.TopK ?? defaults.TopK,
            Seed = options.Seed is long seed ? SamplingOptions.FoldSeed(seed) : defaults.Seed,
        };
    }

    private static string NewResponseId() => "gemmagen-" + Guid.NewGuid().ToString("N");
}
