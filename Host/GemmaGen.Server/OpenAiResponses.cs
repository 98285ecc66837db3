using System.Text.Json;
using System.Text.Json.Serialization;

namespace GemmaGen.Server;

// The response bodies, in OpenAI's shapes (snake_case, nulls left out unless a field says otherwise).

internal sealed record Usage(int PromptTokens, int CompletionTokens, int TotalTokens, PromptTokensDetails PromptTokensDetails);

internal sealed record PromptTokensDetails(int CachedTokens);

internal sealed record ChatMessageBody(string Role, string Content);

internal sealed record ChatDelta(string? Role, string? Content);

internal sealed record ChatChoice(int Index, ChatMessageBody Message, string FinishReason)
{
    [JsonIgnore(Condition = JsonIgnoreCondition.Never)]
    public object? Logprobs => null;
}

internal sealed record ChatChunkChoice(int Index, ChatDelta Delta, [property: JsonIgnore(Condition = JsonIgnoreCondition.Never)] string? FinishReason);

internal sealed record ChatCompletion(string Id, long Created, string Model, ChatChoice[] Choices, Usage Usage)
{
    public string Object => "chat.completion";
}

internal sealed record ChatCompletionChunk(string Id, long Created, string Model, ChatChunkChoice[] Choices, Usage? Usage = null)
{
    public string Object => "chat.completion.chunk";
}

internal sealed record TextChoice(int Index, string Text, [property: JsonIgnore(Condition = JsonIgnoreCondition.Never)] string? FinishReason)
{
    [JsonIgnore(Condition = JsonIgnoreCondition.Never)]
    public object? Logprobs => null;
}

internal sealed record TextCompletion(string Id, long Created, string Model, TextChoice[] Choices, Usage? Usage = null)
{
    public string Object => "text_completion";
}

internal sealed record ModelCard(string Id, long Created)
{
    public string Object => "model";
    public string OwnedBy => "gemmagen";
}

internal sealed record ModelList(ModelCard[] Data)
{
    public string Object => "list";
}

internal static class Json
{
    /// <summary>Options of every response body.</summary>
    public static readonly JsonSerializerOptions Options = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        // Text as it is ("I'll", not "I\u0027ll"): the bodies are JSON for API clients, never inlined in HTML.
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };
}
