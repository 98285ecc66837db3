using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.AI;

namespace GemmaGen.Server;

/// <summary>
/// An OpenAI-compatible HTTP server over one <see cref="GemmaModel"/> (ASP.NET Core, Kestrel, minimal APIs):
/// <c>POST /v1/chat/completions</c>, <c>POST /v1/completions</c>, <c>GET /v1/models</c>, <c>GET /health</c> and
/// <c>GET /metrics</c>. Every request generates on one <see cref="GenerationScheduler"/>: up to
/// <see cref="GemmaServerOptions.Parallel"/> decode together in shared steps, up to
/// <see cref="GemmaServerOptions.Queue"/> more wait (then 429), and a prompt that starts with what a finished
/// request's KV cache holds continues from there (prompt caching).
/// </summary>
/// <remarks>Start it with <see cref="StartAsync"/> (it listens at once; <c>/health</c> answers 503 until
/// <see cref="SetModel"/>), then wait with <see cref="WaitForShutdownAsync"/>: Ctrl+C or SIGTERM stops it, cancelling
/// the generations in flight (a stream ends with an error event, a waiting reply with 503).</remarks>
public sealed class GemmaServer : IAsyncDisposable
{

    private readonly GemmaServerOptions _options;
    private readonly WebApplication _app;
    private readonly ServerMetrics _metrics;
    private readonly TextWriter _log;
    private readonly byte[]? _apiKeyHash;
    private volatile Loaded? _loaded;
    private bool _disposed;

    private GemmaServer(GemmaServerOptions options, TextWriter? log)
    {
        _options = options;
        _log = log ?? TextWriter.Null;
        _apiKeyHash = options.ApiKey is { } key ? SHA256.HashData(Encoding.UTF8.GetBytes(key)) : null;
        _metrics = new ServerMetrics(() => _loaded?.Scheduler);

        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions
        {
            Args = [],
            EnvironmentName = Environments.Production,
            ContentRootPath = AppContext.BaseDirectory,
            ApplicationName = typeof(GemmaServer).Assembly.GetName().Name,
        });
        builder.Logging.ClearProviders();
        builder.Services.Configure<HostOptions>(host => host.ShutdownTimeout = options.ShutdownTimeout);
        builder.Services.Configure<ConsoleLifetimeOptions>(console => console.SuppressStatusMessages = true);
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.AddServerHeader = false;
            kestrel.Limits.MaxRequestBodySize = options.MaxRequestBodyBytes;
            kestrel.Listen(options.Address, options.Port);
        });
        _app = builder.Build();
        _app.Use(GuardAsync);
        _app.Use(AuthorizeAsync);
        _app.MapPost("/v1/chat/completions", context => CompleteAsync(context, chat: true));
        _app.MapPost("/v1/completions", context => CompleteAsync(context, chat: false));
        _app.MapGet("/v1/models", ModelsAsync);
        _app.MapGet("/health", HealthAsync);
        _app.MapGet("/metrics", MetricsAsync);
    }

    /// <summary>Starts listening; the model comes later (<see cref="SetModel"/>).</summary>
    /// <param name="options">Where to listen and how to share the model.</param>
    /// <param name="log">Receives one line per unexpected failure (never sent to a client); null: none.</param>
    /// <param name="cancellationToken">Stops the start.</param>
    /// <exception cref="ArgumentOutOfRangeException">An option is out of range.</exception>
    /// <exception cref="IOException">The address is in use or cannot be bound.</exception>
    public static async Task<GemmaServer> StartAsync(GemmaServerOptions options, TextWriter? log = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        var server = new GemmaServer(options, log);
        try
        {
            await server._app.StartAsync(cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            await server._app.DisposeAsync().ConfigureAwait(false);
            throw;
        }
        return server;
    }

    /// <summary>The addresses the server listens on, with the port it bound (also when <see cref="GemmaServerOptions.Port"/> was 0).</summary>
    public IReadOnlyList<Uri> Addresses =>
        [.. (_app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()?.Addresses ?? []).Select(a => new Uri(a))];

    /// <summary>Whether the model is loaded: <c>/health</c> answers 200 and the completion endpoints serve.</summary>
    public bool IsReady => _loaded != null;

    /// <summary>The scheduler the requests share, once the model is set.</summary>
    public GenerationScheduler? Scheduler => _loaded?.Scheduler;

    /// <summary>The model id of <c>/v1/models</c> and of responses, once the model is set.</summary>
    public string? ModelId => _loaded?.ModelId;

    /// <summary>Serves <paramref name="model"/> from now on; the server does not own it (dispose it after the server).</summary>
    /// <exception cref="InvalidOperationException">A model is already set.</exception>
    /// <exception cref="TokenizerException">The model was loaded without a tokenizer.</exception>
    public void SetModel(GemmaModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (_loaded != null) throw new InvalidOperationException("the server already serves a model");
        var tokenizer = model.RequireTokenizer();
        GemmaChatFormat? format = null;
        string? noChat = null;
        try
        {
            format = new GemmaChatFormat(tokenizer);
        }
        catch (InvalidOperationException e)
        {
            noChat = e.Message;
        }
        var scheduler = model.CreateScheduler(new GenerationSchedulerOptions { MaxSequences = _options.Parallel, MaxQueue = _options.Queue, MaxContext = _options.MaxContext });
        string modelId = _options.ModelId ?? model.DefaultModelId;
        _loaded = new Loaded(model, scheduler, format, noChat, GenerationSession.EndTokensOf(model), modelId, DateTimeOffset.UtcNow.ToUnixTimeSeconds(), new ReplyMemory());
    }

    /// <summary>Completes when the server has stopped: Ctrl+C, SIGTERM, <see cref="StopAsync"/> or <paramref name="cancellationToken"/>.</summary>
    public Task WaitForShutdownAsync(CancellationToken cancellationToken = default) => _app.WaitForShutdownAsync(cancellationToken);

    /// <summary>Stops listening and cancels the generations in flight, waiting up to
    /// <see cref="GemmaServerOptions.ShutdownTimeout"/> for their requests to end.</summary>
    public Task StopAsync() => _app.StopAsync();

    /// <summary>Stops the server (if running) and its scheduler; the model stays loaded.</summary>
    public async ValueTask DisposeAsync()
    {
        if (_disposed) return;
        _disposed = true;
        try
        {
            await _app.StopAsync().ConfigureAwait(false);
        }
        finally
        {
            await _app.DisposeAsync().ConfigureAwait(false);
            _loaded?.Scheduler.Dispose();
        }
    }

    /// <summary>The model and what serving it needs.</summary>
    private sealed record Loaded(GemmaModel Model, GenerationScheduler Scheduler, GemmaChatFormat? Format, string? NoChat,
        HashSet<int> EndTokens, string ModelId, long Created, ReplyMemory Replies);

    /// <summary>The outermost middleware: any failure becomes an OpenAI-style error body (never a stack trace), an
    /// empty 404 or 405 gets one too, and each response is counted.</summary>
    private async Task GuardAsync(HttpContext context, RequestDelegate next)
    {
        try
        {
            await next(context).ConfigureAwait(false);
            if (context.Response.StatusCode is 404 or 405 && !context.Response.HasStarted)
            {
                await WriteErrorAsync(context, context.Response.StatusCode == 404
                    ? new ApiError(404, $"no endpoint {context.Request.Method} {context.Request.Path}; the server has POST /v1/chat/completions, POST /v1/completions, GET /v1/models, GET /health and GET /metrics")
                    : new ApiError(405, $"{context.Request.Method} is not allowed on {context.Request.Path}")).ConfigureAwait(false);
            }
        }
        catch (ApiError e) when (!context.Response.HasStarted)
        {
            await WriteErrorAsync(context, e).ConfigureAwait(false);
        }
        catch (BadHttpRequestException e) when (!context.Response.HasStarted)
        {
            await WriteErrorAsync(context, e.StatusCode == StatusCodes.Status413PayloadTooLarge
                ? new ApiError(413, $"the request body is larger than {_options.MaxRequestBodyBytes} bytes, the server's limit")
                : new ApiError(e.StatusCode, e.Message)).ConfigureAwait(false);
        }
        catch (Exception) when (context.RequestAborted.IsCancellationRequested)
        {
            // The client left: nobody to answer.
        }
        catch (Exception e)
        {
            _log.WriteLine($"error: {context.Request.Method} {context.Request.Path}: {e.GetType().Name}: {e.Message}");
            if (!context.Response.HasStarted)
                await WriteErrorAsync(context, new ApiError(500, "internal error: " + e.Message, type: "server_error")).ConfigureAwait(false);
        }
        finally
        {
            _metrics.Answered(EndpointLabel(context.Request.Path), context.Response.StatusCode);
        }
    }

    private static string EndpointLabel(PathString path) => path.Value switch
    {
        "/v1/chat/completions" or "/v1/completions" or "/v1/models" or "/health" or "/metrics" => path.Value,
        _ => "other",
    };

    /// <summary>With an API key, every request but <c>GET /health</c> needs <c>Authorization: Bearer KEY</c>; the keys
    /// are compared in constant time (as SHA-256 hashes, so neither their length leaks).</summary>
    private Task AuthorizeAsync(HttpContext context, RequestDelegate next)
    {
        if (_apiKeyHash == null || context.Request.Path == "/health") return next(context);
        string? header = context.Request.Headers.Authorization;
        const string scheme = "Bearer ";
        bool ok = header != null && header.StartsWith(scheme, StringComparison.OrdinalIgnoreCase)
            && CryptographicOperations.FixedTimeEquals(SHA256.HashData(Encoding.UTF8.GetBytes(header[scheme.Length..].Trim())), _apiKeyHash);
        if (ok) return next(context);
        context.Response.Headers.WWWAuthenticate = "Bearer";
        throw new ApiError(401, header == null
            ? "no API key: send the header 'Authorization: Bearer KEY' with the key the server was started with (--api-key)"
            : "the API key is not the server's", type: ApiError.InvalidRequest, code: "invalid_api_key");
    }

    private Loaded Require()
    {
        return _loaded ?? throw new ApiError(503, "the model is still loading; try again shortly", type: "server_error", code: "model_loading");
    }

    private async Task HealthAsync(HttpContext context)
    {
        var loaded = _loaded;
        context.Response.StatusCode = loaded == null ? 503 : 200;
        await context.Response.WriteAsJsonAsync(loaded == null ? new { status = "loading" } : (object)new { status = "ok", model = loaded.ModelId }, Json.Options).ConfigureAwait(false);
    }

    private Task ModelsAsync(HttpContext context)
    {
        var loaded = Require();
        return context.Response.WriteAsJsonAsync(new ModelList([new ModelCard(loaded.ModelId, loaded.Created)]), Json.Options);
    }

    private async Task MetricsAsync(HttpContext context)
    {
        context.Response.ContentType = "text/plain; version=0.0.4; charset=utf-8";
        await _metrics.Registry.CollectAndExportAsTextAsync(context.Response.Body, context.RequestAborted).ConfigureAwait(false);
    }

    /// <summary>A chat completion or a completion, whole or streamed.</summary>
    private async Task CompleteAsync(HttpContext context, bool chat)
    {
        var loaded = Require();
        JsonElement body = await ReadBodyAsync(context).ConfigureAwait(false);
        var defaults = _options.Defaults;
        OpenAiRequest request = chat ? OpenAiRequest.Chat(body, defaults) : OpenAiRequest.Completion(body, defaults);
        int[] prompt = chat ? RenderChat(loaded, request.Messages!) : loaded.Model.RequireTokenizer().Encode(request.Prompt!, addBos: true);
        int context_ = loaded.Scheduler.MaxContext;
        if (prompt.Length > context_)
        {
            throw new ApiError(400, $"{(chat ? "messages" : "prompt")}: the prompt is {prompt.Length} tokens; the server's context holds {context_} (prompt and reply together)",
                chat ? "messages" : "prompt", code: "context_length_exceeded");
        }

        var lifetime = _app.Services.GetRequiredService<IHostApplicationLifetime>();
        using var cancellation = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted, lifetime.ApplicationStopping);
        using var job = new CompletionJob(loaded.Model, prompt, request, _metrics, loaded.EndTokens, cancellation.Token,
            chat && loaded.Format is { } chatFormat ? (text, tokens) => loaded.Replies.Remember(chatFormat, text, tokens) : null);
        try
        {
            job.Start(loaded.Scheduler);
        }
        catch (SchedulerFullException e)
        {
            context.Response.Headers.RetryAfter = "1";
            throw new ApiError(429, $"the server is busy: {e.Message}; retry later", type: "rate_limit_error", code: "queue_full");
        }

        string id = (chat ? "chatcmpl-" : "cmpl-") + Guid.NewGuid().ToString("N");
        long created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        if (!request.Stream)
        {
            CompletionOutcome outcome = await job.CompleteAsync().ConfigureAwait(false);
            if (outcome.FinishReason == null) throw Cancelled(context);
            object response = chat
                ? new ChatCompletion(id, created, loaded.ModelId, [new ChatChoice(0, new ChatMessageBody("assistant", outcome.Text), outcome.FinishReason)], outcome.Usage)
                : new TextCompletion(id, created, loaded.ModelId, [new TextChoice(0, outcome.Text, outcome.FinishReason)], outcome.Usage);
            await context.Response.WriteAsJsonAsync(response, response.GetType(), Json.Options, context.RequestAborted).ConfigureAwait(false);
            return;
        }

        Task<CompletionOutcome> completion = job.CompleteAsync();
        try
        {
            var response = context.Response;
            response.ContentType = "text/event-stream; charset=utf-8";
            response.Headers.CacheControl = "no-cache";
            response.Headers["X-Accel-Buffering"] = "no";
            CancellationToken aborted = context.RequestAborted;
            if (chat) await SendAsync(response, new ChatCompletionChunk(id, created, loaded.ModelId, [new ChatChunkChoice(0, new ChatDelta("assistant", ""), null)]), aborted).ConfigureAwait(false);
            else await response.StartAsync(aborted).ConfigureAwait(false);
            await foreach (string piece in job.Pieces.ReadAllAsync(aborted).ConfigureAwait(false))
            {
                object chunk = chat
                    ? new ChatCompletionChunk(id, created, loaded.ModelId, [new ChatChunkChoice(0, new ChatDelta(null, piece), null)])
                    : new TextCompletion(id, created, loaded.ModelId, [new TextChoice(0, piece, null)]);
                await SendAsync(response, chunk, aborted).ConfigureAwait(false);
            }
            CompletionOutcome outcome = await completion.ConfigureAwait(false);
            if (outcome.FinishReason == null)
            {
                if (aborted.IsCancellationRequested) return;
                await SendAsync(response, Cancelled(context).Body, aborted).ConfigureAwait(false);
                return;
            }
            object last = chat
                ? new ChatCompletionChunk(id, created, loaded.ModelId, [new ChatChunkChoice(0, new ChatDelta(null, null), outcome.FinishReason)])
                : new TextCompletion(id, created, loaded.ModelId, [new TextChoice(0, "", outcome.FinishReason)]);
            await SendAsync(response, last, aborted).ConfigureAwait(false);
            if (request.IncludeUsage)
            {
                object usage = chat
                    ? new ChatCompletionChunk(id, created, loaded.ModelId, [], outcome.Usage)
                    : new TextCompletion(id, created, loaded.ModelId, [], outcome.Usage);
                await SendAsync(response, usage, aborted).ConfigureAwait(false);
            }
            await response.WriteAsync("data: [DONE]\n\n", aborted).ConfigureAwait(false);
            await response.Body.FlushAsync(aborted).ConfigureAwait(false);
        }
        finally
        {
            // However the stream ended (the client left, a write failed), the generation stops and frees its sequence.
            job.Cancel();
            await ((Task)completion).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }
    }

    /// <summary>Why a generation was cancelled when its client did not leave: the server is stopping.</summary>
    private static ApiError Cancelled(HttpContext context) =>
        context.RequestAborted.IsCancellationRequested
            ? new ApiError(499, "the client closed the request")
            : new ApiError(503, "the server is shutting down; the generation was cancelled", type: "server_error", code: "shutting_down");

    private int[] RenderChat(Loaded loaded, List<ChatMessage> messages)
    {
        if (loaded.Format == null) throw new ApiError(400, $"the model cannot chat: {loaded.NoChat}; use /v1/completions", "messages");
        try
        {
            return loaded.Replies.Render(loaded.Format, messages, instructions: null);
        }
        catch (ArgumentException e)
        {
            throw ApiError.BadField("messages", e.Message.Split(" (Parameter")[0] + " (the messages are empty)");
        }
    }

    private static async Task<JsonElement> ReadBodyAsync(HttpContext context)
    {
        try
        {
            using var document = await JsonDocument.ParseAsync(context.Request.Body, new JsonDocumentOptions { MaxDepth = 64 }, context.RequestAborted).ConfigureAwait(false);
            return document.RootElement.Clone();
        }
        catch (JsonException e)
        {
            throw new ApiError(400, $"the request body is not valid JSON: {e.Message}");
        }
    }

    private static async Task SendAsync(HttpResponse response, object chunk, CancellationToken cancellationToken)
    {
        string json = JsonSerializer.Serialize(chunk, chunk.GetType(), Json.Options);
        await response.WriteAsync("data: " + json + "\n\n", cancellationToken).ConfigureAwait(false);
        await response.Body.FlushAsync(cancellationToken).ConfigureAwait(false);
    }

    private static Task WriteErrorAsync(HttpContext context, ApiError error)
    {
        context.Response.StatusCode = error.Status;
        return context.Response.WriteAsJsonAsync(error.Body, Json.Options);
    }
}
