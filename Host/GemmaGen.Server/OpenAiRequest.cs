using System.Globalization;
using System.Text.Json;
using Microsoft.Extensions.AI;

namespace GemmaGen.Server;

/// <summary>
/// What a completion request asks for, read from its JSON body and checked field by field: a missing field, a value
/// of the wrong type, one out of range or a feature the server does not have is an <see cref="ApiError"/> (400) that
/// names the field. Fields the server does not use (<c>model</c>, <c>user</c>, <c>metadata</c>, ...) are accepted
/// and ignored.
/// </summary>
internal sealed class OpenAiRequest
{
    /// <summary>Stop sequences a request may give at most (as OpenAI).</summary>
    public const int MaxStops = 4;

    /// <summary>The chat messages (chat completions), or null.</summary>
    public List<ChatMessage>? Messages { get; private set; }

    /// <summary>The raw prompt (completions), or null.</summary>
    public string? Prompt { get; private set; }

    /// <summary><c>stream</c>: answer with server-sent events.</summary>
    public bool Stream { get; private set; }

    /// <summary><c>stream_options.include_usage</c>: a last chunk with the usage and no choices.</summary>
    public bool IncludeUsage { get; private set; }

    /// <summary><c>max_completion_tokens</c> (or <c>max_tokens</c>), or the default.</summary>
    public int MaxTokens { get; private set; }

    /// <summary>The sampling: what the request sets over the defaults.</summary>
    public SamplingOptions Sampling { get; private set; } = SamplingOptions.GreedyDecoding;

    /// <summary><c>stop</c>: the reply ends before the first of these.</summary>
    public string[] Stop { get; private set; } = [];

    /// <summary>Reads a <c>POST /v1/chat/completions</c> body.</summary>
    /// <exception cref="ApiError">A field is missing, of the wrong type, out of range or not supported (400).</exception>
    public static OpenAiRequest Chat(JsonElement body, GemmaChatClientOptions defaults)
    {
        RequireObject(body);
        var request = new OpenAiRequest { Messages = ReadMessages(body) };
        Refuse(body, "tools", "tool calls are not supported");
        Refuse(body, "functions", "function calls are not supported");
        if (body.TryGetProperty("tool_choice", out var toolChoice) && toolChoice.ValueKind != JsonValueKind.Null
            && !(toolChoice.ValueKind == JsonValueKind.String && toolChoice.GetString() == "none"))
            throw ApiError.BadField("tool_choice", "tool calls are not supported; expected \"none\" or no tool_choice");
        if (body.TryGetProperty("response_format", out var format) && format.ValueKind != JsonValueKind.Null)
        {
            if (format.ValueKind != JsonValueKind.Object || !format.TryGetProperty("type", out var type) || type.ValueKind != JsonValueKind.String)
                throw ApiError.BadField("response_format", "expected an object with a string \"type\"");
            if (type.GetString() != "text")
                throw ApiError.BadField("response_format.type", $"'{type.GetString()}' is not supported; expected \"text\"");
        }
        if (OptionalBool(body, "logprobs") == true) throw ApiError.BadField("logprobs", "log probabilities are not supported; expected false");
        Refuse(body, "top_logprobs", "log probabilities are not supported");
        int? maxTokens = OptionalInteger(body, "max_completion_tokens", 1) ?? OptionalInteger(body, "max_tokens", 1);
        request.ReadCommon(body, defaults, maxTokens);
        return request;
    }

    /// <summary>Reads a <c>POST /v1/completions</c> body.</summary>
    /// <exception cref="ApiError">A field is missing, of the wrong type, out of range or not supported (400).</exception>
    public static OpenAiRequest Completion(JsonElement body, GemmaChatClientOptions defaults)
    {
        RequireObject(body);
        var request = new OpenAiRequest { Prompt = ReadPrompt(body) };
        if (OptionalBool(body, "echo") == true) throw ApiError.BadField("echo", "echoing the prompt is not supported; expected false");
        Refuse(body, "suffix", "a suffix (insertion) is not supported");
        if (OptionalInteger(body, "best_of", 1) is > 1) throw ApiError.BadField("best_of", "expected 1: one completion is generated per request");
        if (body.TryGetProperty("logprobs", out var logprobs) && logprobs.ValueKind is not (JsonValueKind.Null or JsonValueKind.False))
            throw ApiError.BadField("logprobs", "log probabilities are not supported; expected null");
        request.ReadCommon(body, defaults, OptionalInteger(body, "max_tokens", 1));
        return request;
    }

    /// <summary>The fields both endpoints share: streaming, length, sampling, stop sequences, n.</summary>
    private void ReadCommon(JsonElement body, GemmaChatClientOptions defaults, int? maxTokens)
    {
        OptionalString(body, "model");
        Stream = OptionalBool(body, "stream") ?? false;
        if (body.TryGetProperty("stream_options", out var streamOptions) && streamOptions.ValueKind != JsonValueKind.Null)
        {
            if (streamOptions.ValueKind != JsonValueKind.Object) throw ApiError.BadField("stream_options", $"expected an object, got {Kind(streamOptions)}");
            IncludeUsage = OptionalBool(streamOptions, "include_usage", "stream_options.") ?? false;
        }
        MaxTokens = maxTokens ?? defaults.MaxOutputTokens;
        if (OptionalInteger(body, "n", 1) is > 1) throw ApiError.BadField("n", "expected 1: one choice is generated per request");

        // OpenAI's penalties subtract from the logits; GemmaGen's sampler has the multiplicative repetition penalty
        // (repetition_penalty, as llama.cpp and vLLM take it) instead: a penalty that would silently differ is refused.
        foreach (string penalty in new[] { "frequency_penalty", "presence_penalty" })
        {
            if (OptionalNumber(body, penalty, -2, 2, "a number from -2 to 2") is float value && value != 0)
                throw ApiError.BadField(penalty, $"{value.ToString(CultureInfo.InvariantCulture)} is not supported: only 0; use repetition_penalty (a number above 0, 1 is off) for GemmaGen's multiplicative repetition penalty");
        }

        SamplingOptions sampling = defaults.Sampling;
        Sampling = sampling with
        {
            Temperature = OptionalNumber(body, "temperature", 0, 2, "a number from 0 to 2 (0 is greedy)") ?? sampling.Temperature,
            TopP = OptionalNumber(body, "top_p", 0, 1, "a number above 0, at most 1", minExclusive: true) ?? sampling.TopP,
            TopK = OptionalInteger(body, "top_k", 0) ?? sampling.TopK,
            MinP = OptionalNumber(body, "min_p", 0, 1, "a number, 0 or more and below 1", maxExclusive: true) ?? sampling.MinP,
            RepetitionPenalty = OptionalNumber(body, "repetition_penalty", 0, float.MaxValue, "a finite number above 0 (1 is off)", minExclusive: true)
                ?? sampling.RepetitionPenalty,
            Seed = OptionalSeed(body) ?? sampling.Seed,
        };
        try
        {
            Sampling.Validate();
        }
        catch (ArgumentException e)
        {
            throw new ApiError(400, e.Message);
        }
        Stop = ReadStop(body);
    }

    private static void RequireObject(JsonElement body)
    {
        if (body.ValueKind != JsonValueKind.Object) throw new ApiError(400, $"the request body must be a JSON object, got {Kind(body)}");
    }

    private static List<ChatMessage> ReadMessages(JsonElement body)
    {
        if (!body.TryGetProperty("messages", out var messages) || messages.ValueKind == JsonValueKind.Null)
            throw ApiError.BadField("messages", "missing; expected an array of messages");
        if (messages.ValueKind != JsonValueKind.Array) throw ApiError.BadField("messages", $"expected an array, got {Kind(messages)}");
        if (messages.GetArrayLength() == 0) throw ApiError.BadField("messages", "expected at least one message");
        var list = new List<ChatMessage>();
        int i = 0;
        foreach (var message in messages.EnumerateArray())
        {
            string at = $"messages[{i++}]";
            if (message.ValueKind != JsonValueKind.Object) throw ApiError.BadField(at, $"expected an object, got {Kind(message)}");
            if (!message.TryGetProperty("role", out var roleElement) || roleElement.ValueKind != JsonValueKind.String)
                throw ApiError.BadField(at + ".role", roleElement.ValueKind == JsonValueKind.Undefined ? "missing; expected system, developer, user or assistant" : $"expected a string, got {Kind(roleElement)}");
            string role = roleElement.GetString()!;
            ChatRole chatRole = role switch
            {
                "system" or "developer" => ChatRole.System,
                "user" => ChatRole.User,
                "assistant" => ChatRole.Assistant,
                _ => throw ApiError.BadField(at + ".role", $"'{role}' is not supported; expected system, developer, user or assistant (tool calls are not supported)"),
            };
            if (message.TryGetProperty("tool_calls", out var calls) && calls.ValueKind != JsonValueKind.Null)
                throw ApiError.BadField(at + ".tool_calls", "tool calls are not supported");
            if (message.TryGetProperty("name", out var name) && name.ValueKind is not (JsonValueKind.String or JsonValueKind.Null))
                throw ApiError.BadField(at + ".name", $"expected a string, got {Kind(name)}");
            list.Add(new ChatMessage(chatRole, ReadContent(message, at + ".content")));
        }
        return list;
    }

    /// <summary>A message's text: a string, or an array of <c>{"type": "text", "text": ...}</c> parts.</summary>
    private static string ReadContent(JsonElement message, string at)
    {
        if (!message.TryGetProperty("content", out var content) || content.ValueKind == JsonValueKind.Null)
            throw ApiError.BadField(at, "missing; expected a string or an array of text parts");
        if (content.ValueKind == JsonValueKind.String) return content.GetString()!;
        if (content.ValueKind != JsonValueKind.Array) throw ApiError.BadField(at, $"expected a string or an array of text parts, got {Kind(content)}");
        var text = new System.Text.StringBuilder();
        int i = 0;
        foreach (var part in content.EnumerateArray())
        {
            string partAt = $"{at}[{i++}]";
            if (part.ValueKind != JsonValueKind.Object) throw ApiError.BadField(partAt, $"expected an object, got {Kind(part)}");
            if (!part.TryGetProperty("type", out var type) || type.ValueKind != JsonValueKind.String)
                throw ApiError.BadField(partAt + ".type", "missing; expected \"text\"");
            if (type.GetString() != "text") throw ApiError.BadField(partAt + ".type", $"'{type.GetString()}' is not supported; expected \"text\"");
            if (!part.TryGetProperty("text", out var partText) || partText.ValueKind != JsonValueKind.String)
                throw ApiError.BadField(partAt + ".text", "missing; expected a string");
            text.Append(partText.GetString());
        }
        return text.ToString();
    }

    /// <summary>A completion's prompt: a string, or an array holding one string.</summary>
    private static string ReadPrompt(JsonElement body)
    {
        if (!body.TryGetProperty("prompt", out var prompt) || prompt.ValueKind == JsonValueKind.Null)
            throw ApiError.BadField("prompt", "missing; expected a string");
        if (prompt.ValueKind == JsonValueKind.String) return prompt.GetString()!;
        if (prompt.ValueKind == JsonValueKind.Array && prompt.GetArrayLength() == 1 && prompt[0].ValueKind == JsonValueKind.String)
            return prompt[0].GetString()!;
        throw ApiError.BadField("prompt", $"expected a string (or an array of one string: one completion per request), got {Kind(prompt)}");
    }

    private static string[] ReadStop(JsonElement body)
    {
        if (!body.TryGetProperty("stop", out var stop) || stop.ValueKind == JsonValueKind.Null) return [];
        if (stop.ValueKind == JsonValueKind.String) return [stop.GetString()!];
        if (stop.ValueKind != JsonValueKind.Array) throw ApiError.BadField("stop", $"expected a string or an array of strings, got {Kind(stop)}");
        if (stop.GetArrayLength() > MaxStops) throw ApiError.BadField("stop", $"{stop.GetArrayLength()} stop sequences; expected at most {MaxStops}");
        var stops = new List<string>();
        int i = 0;
        foreach (var item in stop.EnumerateArray())
        {
            if (item.ValueKind != JsonValueKind.String) throw ApiError.BadField($"stop[{i}]", $"expected a string, got {Kind(item)}");
            stops.Add(item.GetString()!);
            i++;
        }
        return [.. stops];
    }

    /// <summary>A field the server has no use for and must not ignore: refused unless null or empty.</summary>
    private static void Refuse(JsonElement body, string name, string why)
    {
        if (!body.TryGetProperty(name, out var value)) return;
        bool empty = value.ValueKind == JsonValueKind.Null
            || (value.ValueKind == JsonValueKind.Array && value.GetArrayLength() == 0)
            || (value.ValueKind == JsonValueKind.Object && !value.EnumerateObject().Any());
        if (!empty) throw ApiError.BadField(name, why);
    }

    private static string? OptionalString(JsonElement body, string name)
    {
        if (!body.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null) return null;
        if (value.ValueKind != JsonValueKind.String) throw ApiError.BadField(name, $"expected a string, got {Kind(value)}");
        return value.GetString();
    }

    private static bool? OptionalBool(JsonElement body, string name, string prefix = "")
    {
        if (!body.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null) return null;
        return value.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw ApiError.BadField(prefix + name, $"expected true or false, got {Kind(value)}"),
        };
    }

    private static int? OptionalInteger(JsonElement body, string name, int min)
    {
        if (!body.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null) return null;
        if (value.ValueKind != JsonValueKind.Number || !value.TryGetInt64(out long number))
            throw ApiError.BadField(name, $"expected an integer, {min} or more, got {Kind(value)}");
        if (number < min || number > int.MaxValue) throw ApiError.BadField(name, $"{number} is out of range; expected an integer from {min} to {int.MaxValue}");
        return (int)number;
    }

    private static float? OptionalNumber(JsonElement body, string name, float min, float max, string expected, bool minExclusive = false, bool maxExclusive = false)
    {
        if (!body.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null) return null;
        if (value.ValueKind != JsonValueKind.Number || !value.TryGetDouble(out double number))
            throw ApiError.BadField(name, $"expected {expected}, got {Kind(value)}");
        bool inRange = (minExclusive ? number > min : number >= min) && (maxExclusive ? number < max : number <= max) && double.IsFinite(number);
        if (!inRange) throw ApiError.BadField(name, $"{number.ToString(CultureInfo.InvariantCulture)} is out of range; expected {expected}");
        return (float)number;
    }

    /// <summary><c>seed</c>: any 64-bit integer, folded to the sampler's 32 bits as <see cref="GemmaChatClient"/> folds
    /// <c>ChatOptions.Seed</c> (<see cref="SamplingOptions.FoldSeed"/>).</summary>
    private static int? OptionalSeed(JsonElement body)
    {
        if (!body.TryGetProperty("seed", out var value) || value.ValueKind == JsonValueKind.Null) return null;
        if (value.ValueKind != JsonValueKind.Number || !value.TryGetInt64(out long seed))
            throw ApiError.BadField("seed", $"expected a 64-bit integer, got {Kind(value)}");
        return SamplingOptions.FoldSeed(seed);
    }

    /// <summary>How an error message names what was sent.</summary>
    private static string Kind(JsonElement value) => value.ValueKind switch
    {
        JsonValueKind.Object => "an object",
        JsonValueKind.Array => "an array",
        JsonValueKind.String => "a string",
        JsonValueKind.Number => $"the number {value.GetRawText()}",
        JsonValueKind.True or JsonValueKind.False => value.GetRawText(),
        JsonValueKind.Null => "null",
        _ => value.ValueKind.ToString(),
    };
}
