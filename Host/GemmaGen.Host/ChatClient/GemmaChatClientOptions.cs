namespace GemmaGen;

/// <summary>How a <see cref="GemmaChatClient"/> answers when a request's <c>ChatOptions</c> leave a setting open.</summary>
public sealed record GemmaChatClientOptions
{
    /// <summary>The model id the client reports; null: the checkpoint directory's name (or <c>gemma2</c>).</summary>
    public string? ModelId { get; init; }

    /// <summary>Sampling for settings a request does not give. Default: temperature 0.8, top-k 40, top-p 0.95, as
    /// the <c>gemmagen</c> command.</summary>
    public SamplingOptions Sampling { get; init; } = new() { Temperature = 0.8f, TopK = 40, TopP = 0.95f };

    /// <summary>Tokens a reply may have when the request does not set <c>MaxOutputTokens</c>. Default 256.</summary>
    public int MaxOutputTokens { get; init; } = 256;

    /// <summary>Positions a conversation may use (its KV cache); null: the model's <see cref="GemmaModel.MaxContext"/>.</summary>
    public int? MaxContext { get; init; }

    /// <summary>Requests answered at once, in shared decoding steps (each holds a KV cache of <see cref="MaxContext"/>
    /// positions); later ones wait their turn. Default 4.</summary>
    public int MaxConcurrentRequests { get; init; } = 4;
}
