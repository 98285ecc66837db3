using System.Text.Json.Serialization;

namespace GemmaGen.Server;

/// <summary>A request the server refuses, answered with <see cref="Status"/> and an OpenAI-style error body:
/// <c>{"error": {"message", "type", "param", "code"}}</c>.</summary>
internal sealed class ApiError(int status, string message, string? param = null, string type = ApiError.InvalidRequest, string? code = null)
    : Exception(message)
{
    public const string InvalidRequest = "invalid_request_error";

    public int Status { get; } = status;
    public string? Param { get; } = param;
    public string Type { get; } = type;
    public string? Code { get; } = code;

    /// <summary>A 400 naming the field (<paramref name="param"/>, as a JSON path such as <c>messages[0].role</c>).</summary>
    public static ApiError BadField(string param, string message) => new(400, $"{param}: {message}", param);

    /// <summary>The response body.</summary>
    public ErrorBody Body => new(new ErrorDetail(Message, Type, Param, Code));
}

/// <summary>The body of an error response.</summary>
internal sealed record ErrorBody(ErrorDetail Error);

/// <summary>What went wrong: the message names the field (<see cref="Param"/>) and what was expected.</summary>
internal sealed record ErrorDetail(
    string Message,
    string Type,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.Never)] string? Param,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.Never)] string? Code);
