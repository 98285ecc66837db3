using System.Net;

namespace GemmaGen.Server;

/// <summary>How a <see cref="GemmaServer"/> listens and shares its model.</summary>
public sealed record GemmaServerOptions
{
    /// <summary>The request body limit by default: 1 MB.</summary>
    public const long DefaultMaxRequestBodyBytes = 1 << 20;

    /// <summary>The address to listen on. Default: loopback (127.0.0.1), reachable from this machine only.</summary>
    public IPAddress Address { get; init; } = IPAddress.Loopback;

    /// <summary>The TCP port; 0 picks a free one (read it from <see cref="GemmaServer.Addresses"/>). Default 8080.</summary>
    public int Port { get; init; } = 8080;

    /// <summary>Requests that generate at once, in shared decoding steps (the scheduler's
    /// <see cref="GenerationSchedulerOptions.MaxSequences"/>; each holds a KV cache of <see cref="MaxContext"/>
    /// positions). Default 4.</summary>
    public int Parallel { get; init; } = 4;

    /// <summary>Requests that may wait for a free sequence; one more gets 429 with <c>Retry-After</c>. Default 64.</summary>
    public int Queue { get; init; } = 64;

    /// <summary>Positions a request may use (prompt and reply); null: the model's <see cref="GemmaModel.MaxContext"/>.</summary>
    public int? MaxContext { get; init; }

    /// <summary>When set, every request but <c>GET /health</c> needs <c>Authorization: Bearer</c> this key (401 otherwise).</summary>
    public string? ApiKey { get; init; }

    /// <summary>Request bodies larger than this are refused with 413. Default <see cref="DefaultMaxRequestBodyBytes"/>.</summary>
    public long MaxRequestBodyBytes { get; init; } = DefaultMaxRequestBodyBytes;

    /// <summary>How long a shutdown waits for requests to end once their generations are cancelled. Default 5 s.</summary>
    public TimeSpan ShutdownTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>The model id in <c>/v1/models</c> and responses; null: the checkpoint directory's name (or <c>gemma2</c>).</summary>
    public string? ModelId { get; init; }

    /// <summary>Sampling and reply length for what a request leaves out: the chat client's defaults (temperature 0.8,
    /// top-k 40, top-p 0.95, 256 tokens).</summary>
    public GemmaChatClientOptions Defaults { get; init; } = new();

    /// <summary>Throws <see cref="ArgumentOutOfRangeException"/> naming the first option out of range.</summary>
    public void Validate()
    {
        ArgumentNullException.ThrowIfNull(Address, nameof(Address));
        if (Port is < 0 or > 65535) throw new ArgumentOutOfRangeException(nameof(Port), Port, "must be 0 to 65535");
        if (Parallel < 1 || Parallel > Specs.SpecParser.MaxBatchRows)
            throw new ArgumentOutOfRangeException(nameof(Parallel), Parallel, $"must be 1 to {Specs.SpecParser.MaxBatchRows}");
        if (Queue < 0) throw new ArgumentOutOfRangeException(nameof(Queue), Queue, "must not be negative");
        if (MaxContext is < 1) throw new ArgumentOutOfRangeException(nameof(MaxContext), MaxContext, "must be at least 1");
        if (MaxRequestBodyBytes < 1) throw new ArgumentOutOfRangeException(nameof(MaxRequestBodyBytes), MaxRequestBodyBytes, "must be at least 1");
        if (ApiKey is { Length: 0 }) throw new ArgumentOutOfRangeException(nameof(ApiKey), "an API key must not be empty");
        if (ShutdownTimeout < TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(ShutdownTimeout), ShutdownTimeout, "must not be negative");
    }
}
