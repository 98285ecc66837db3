using System.Runtime.CompilerServices;
using System.Threading.Channels;
using Microsoft.Extensions.AI;

namespace GemmaGen;

/// <summary>
/// A <see cref="IChatClient"/> (Microsoft.Extensions.AI) over a <see cref="GemmaModel"/>, in the Gemma chat format.
/// The client keeps one conversation in a KV cache: a request whose messages extend the previous conversation (the
/// usual chat loop: the history, the last reply, a new user message) processes only its new tokens; any other
/// request starts over. Requests run one at a time, in the order they come; concurrent callers wait their turn.
/// The model's sessions share its worker pool: while a request runs, nothing else may run on the model.
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
    private readonly SemaphoreSlim _turn = new(1, 1);
    private GenerationSession? _session;

    /// <summary>Token ids of the replies in the KV cache, by their text, so a history that repeats them renders
    /// exactly the cached tokens.</summary>
    private Dictionary<string, int[]> _replies = [];

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
        ModelId = _options.ModelId
            ?? (model.Directory is { } directory ? Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(directory))) : null)
            ?? "gemma2";
        _metadata = new ChatClientMetadata(ProviderName, providerUri: null, defaultModelId: ModelId);
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

    /// <summary>Lets the conversation's KV cache go; the model stays loaded. Call it once no request is running.</summary>
    public void Dispose()
    {
        _session = null;
        _turn.Dispose();
    }

    /// <summary>A reply: its text, why it ended and the token counts.</summary>
    private sealed record Reply(string Id, string Text, ChatFinishReason FinishReason, UsageDetails Usage, DateTimeOffset CreatedAt);

    /// <summary>Waits for the model, then generates one reply on this thread, passing text on as it is decoded.</summary>
    private async Task<Reply> ReplyAsync(ChatMessage[] conversation, ChatOptions? options, Action<string>? onText, string id,
        CancellationToken cancellationToken)
    {
        var generation = new GenerationOptions { MaxTokens = options?.MaxOutputTokens ?? _options.MaxOutputTokens, Sampling = Sampling(options) };
        await _turn.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            return GenerateReply(conversation, options, generation, onText, id, cancellationToken);
        }
        catch
        {
            // A reply cut short (cancelled, failed) leaves a sequence no conversation has: start over next time.
            _session?.Reset();
            _replies = [];
            throw;
        }
        finally
        {
            _turn.Release();
        }
    }

    /// <summary>Renders the conversation, reuses the KV cache when the conversation extends it, and generates.</summary>
    private Reply GenerateReply(ChatMessage[] conversation, ChatOptions? options, GenerationOptions generation, Action<string>? onText,
        string id, CancellationToken cancellationToken)
    {
        var used = new HashSet<string>();
        int[] prompt = _format.Render(conversation, options?.Instructions, _replies, used);
        GenerationSession session = _session ??= _model.CreateSession(_options.MaxContext);
        if (prompt.Length > session.MaxContext)
            throw new InvalidOperationException($"the conversation is {prompt.Length} tokens; the context holds {session.MaxContext}");

        int cached = Extends(prompt, session.Tokens) ? session.Tokens.Count : 0;
        if (cached == 0)
        {
            session.Reset();
            _replies = _replies.Where(r => used.Contains(r.Key)).ToDictionary();
        }

        // A stop sequence ends the reply: the session stops before the next token, as it does when cancelled.
        using var stopped = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var filter = new StopSequenceFilter(options?.StopSequences);
        StreamingDecoder decoder = _model.RequireTokenizer().CreateStreamingDecoder();
        GenerationResult result = session.Generate(prompt.AsSpan(cached), generation, token =>
        {
            if (session.EndTokens.Contains(token)) return;
            string text = filter.Push(decoder.Push(token));
            if (text.Length > 0) onText?.Invoke(text);
            if (filter.Stopped) stopped.Cancel();
        }, stopped.Token);
        cancellationToken.ThrowIfCancellationRequested();
        if (!filter.Stopped)
        {
            string rest = filter.Push(decoder.Flush()) + filter.Flush();
            if (rest.Length > 0) onText?.Invoke(rest);
        }

        int[] generated = result.Tokens;
        // The reply as the cache holds it, less a final <end_of_turn>, which the rendering adds to every model turn:
        // a reply that ended at another end token (<eos>) keeps it, and <end_of_turn> follows, as in ChatSession.
        // A reply cut at a stop sequence is shorter than its tokens: a history that repeats it re-renders it.
        bool endOfTurn = generated.Length > 0 && generated[^1] == _format.EndOfTurn;
        if (!filter.Stopped) _replies[filter.Text] = endOfTurn ? generated[..^1] : generated;

        var usage = new UsageDetails
        {
            InputTokenCount = prompt.Length,
            CachedInputTokenCount = cached,
            OutputTokenCount = generated.Length,
            TotalTokenCount = prompt.Length + generated.Length,
        };
        ChatFinishReason finish = filter.Stopped || result.StopReason == StopReason.EndToken ? ChatFinishReason.Stop : ChatFinishReason.Length;
        return new Reply(id, filter.Text, finish, usage, DateTimeOffset.UtcNow);
    }

    /// <summary>Whether <paramref name="prompt"/> is the conversation in the cache followed by more tokens.</summary>
    private static bool Extends(int[] prompt, IReadOnlyList<int> cache)
    {
        if (cache.Count == 0 || cache.Count >= prompt.Length) return false;
        for (int i = 0; i < cache.Count; i++)
        {
            if (cache[i] != prompt[i]) return false;
        }
        return true;
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
            // The sampler's seed is 32 bits: fold the high half in, so seeds that differ anywhere differ.
            Seed = options.Seed is long seed ? (int)(seed ^ (seed >>> 32)) : defaults.Seed,
        };
    }

    private static string NewResponseId() => "gemmagen-" + Guid.NewGuid().ToString("N");
}
