using System.ClientModel;
using System.Net;
using System.Text;
using System.Text.Json;
using GemmaGen.Server;
using OpenAI.Chat;

namespace GemmaGen.Tests.Server;

/// <summary>Every kind of bad request gets its status and an OpenAI-style error body naming the field, never a 500.</summary>
[Collection(ServerCollection.Name)]
public sealed class BadRequestTests(ServerFixture fixture)
{
    private const string Chat = "/v1/chat/completions";
    private const string Completions = "/v1/completions";
    private const string Hello = """[{"role": "user", "content": "Hello"}]""";

    public static TheoryData<string, string, string?> Refused => new()
    {
        // path, body, the field the error names (null: the body as a whole)
        { Chat, "{\"messages\": ", null },
        { Chat, "not json", null },
        { Chat, "", null },
        { Chat, "[1, 2]", null },
        { Chat, "{}", "messages" },
        { Chat, """{"messages": "Hello"}""", "messages" },
        { Chat, """{"messages": []}""", "messages" },
        { Chat, """{"messages": [{"content": "Hello"}]}""", "messages[0].role" },
        { Chat, """{"messages": [{"role": "tool", "content": "Hello"}]}""", "messages[0].role" },
        { Chat, """{"messages": [{"role": "wizard", "content": "Hello"}]}""", "messages[0].role" },
        { Chat, """{"messages": [{"role": 3, "content": "Hello"}]}""", "messages[0].role" },
        { Chat, """{"messages": [{"role": "user"}]}""", "messages[0].content" },
        { Chat, """{"messages": [{"role": "user", "content": 42}]}""", "messages[0].content" },
        { Chat, """{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}""", "messages[0].content[0].type" },
        { Chat, """{"messages": [{"role": "system", "content": ""}]}""", "messages" },
        { Chat, $$"""{"messages": {{Hello}}, "max_tokens": 0}""", "max_tokens" },
        { Chat, $$"""{"messages": {{Hello}}, "max_tokens": "ten"}""", "max_tokens" },
        { Chat, $$"""{"messages": {{Hello}}, "max_completion_tokens": 2.5}""", "max_completion_tokens" },
        { Chat, $$"""{"messages": {{Hello}}, "temperature": 3}""", "temperature" },
        { Chat, $$"""{"messages": {{Hello}}, "temperature": -0.5}""", "temperature" },
        { Chat, $$"""{"messages": {{Hello}}, "temperature": "hot"}""", "temperature" },
        { Chat, $$"""{"messages": {{Hello}}, "top_p": 0}""", "top_p" },
        { Chat, $$"""{"messages": {{Hello}}, "top_p": 1.5}""", "top_p" },
        { Chat, $$"""{"messages": {{Hello}}, "top_k": -1}""", "top_k" },
        { Chat, $$"""{"messages": {{Hello}}, "min_p": 1}""", "min_p" },
        { Chat, $$"""{"messages": {{Hello}}, "repetition_penalty": 0}""", "repetition_penalty" },
        { Chat, $$"""{"messages": {{Hello}}, "seed": "seven"}""", "seed" },
        { Chat, $$"""{"messages": {{Hello}}, "stream": "yes"}""", "stream" },
        { Chat, $$"""{"messages": {{Hello}}, "stop": 5}""", "stop" },
        { Chat, $$"""{"messages": {{Hello}}, "stop": ["a", 1]}""", "stop[1]" },
        { Chat, $$"""{"messages": {{Hello}}, "stop": ["a", "b", "c", "d", "e"]}""", "stop" },
        { Chat, $$"""{"messages": {{Hello}}, "n": 2}""", "n" },
        { Chat, $$"""{"messages": {{Hello}}, "frequency_penalty": 0.5}""", "frequency_penalty" },
        { Chat, $$"""{"messages": {{Hello}}, "presence_penalty": 3}""", "presence_penalty" },
        { Chat, $$$"""{"messages": {{{Hello}}}, "tools": [{"type": "function", "function": {"name": "f"}}]}""", "tools" },
        { Chat, $$$"""{"messages": {{{Hello}}}, "response_format": {"type": "json_object"}}""", "response_format.type" },
        { Chat, $$"""{"messages": {{Hello}}, "logprobs": true}""", "logprobs" },
        { Completions, "{}", "prompt" },
        { Completions, """{"prompt": 12}""", "prompt" },
        { Completions, """{"prompt": ["a", "b"]}""", "prompt" },
        { Completions, """{"prompt": "a", "echo": true}""", "echo" },
        { Completions, """{"prompt": "a", "max_tokens": -3}""", "max_tokens" },
    };

    [Theory]
    [MemberData(nameof(Refused))]
    public async Task BadRequest_Is400_NamingTheField(string path, string body, string? param)
    {
        using var response = await fixture.PostAsync(path, body);
        var error = await ErrorAsync(response, 400);
        Assert.Equal(param, error.GetProperty("param").GetString());
        if (param != null) Assert.Contains(param, error.GetProperty("message").GetString());
    }

    [Fact]
    public async Task PromptBeyondTheContext_Is400_ThroughTheOpenAiClientToo()
    {
        string longText = string.Join(' ', Enumerable.Repeat("the jury said that the court", 120));
        using var raw = await fixture.PostAsync(Completions, JsonSerializer.Serialize(new { prompt = longText, max_tokens = 4 }));
        var error = await ErrorAsync(raw, 400);
        Assert.Equal("context_length_exceeded", error.GetProperty("code").GetString());
        Assert.Contains($"holds {ServerFixture.Context}", error.GetProperty("message").GetString());

        var e = await Assert.ThrowsAsync<ClientResultException>(() => fixture.Chat().CompleteChatAsync([new UserChatMessage(longText)]));
        Assert.Equal(400, e.Status);
        Assert.Contains("context_length_exceeded", e.Message);
        Assert.Equal(0, fixture.Server.Scheduler!.Running);
    }

    [Fact]
    public async Task ApiKey_IsRequired_AndCompared()
    {
        await using var server = await fixture.StartAsync(new GemmaServerOptions { Port = 0, ApiKey = "s3cret-key" });
        string body = $$"""{"messages": {{Hello}}, "max_tokens": 2}""";
        using (var none = await fixture.PostAsync(Chat, body, server))
        {
            var error = await ErrorAsync(none, 401);
            Assert.Equal("invalid_api_key", error.GetProperty("code").GetString());
            Assert.Equal("Bearer", none.Headers.WwwAuthenticate.Single().Scheme);
        }
        using (var wrong = await fixture.PostAsync(Chat, body, server, apiKey: "s3cret-kez")) await ErrorAsync(wrong, 401);
        using (var longer = await fixture.PostAsync(Chat, body, server, apiKey: "s3cret-key2")) await ErrorAsync(longer, 401);
        using (var metrics = await fixture.Http.GetAsync(new Uri(server.Addresses[0], "/metrics"))) await ErrorAsync(metrics, 401);
        using (var right = await fixture.PostAsync(Chat, body, server, apiKey: "s3cret-key")) Assert.Equal(HttpStatusCode.OK, right.StatusCode);
        // /health stays open for load balancers.
        using (var health = await fixture.Http.GetAsync(new Uri(server.Addresses[0], "/health"))) Assert.Equal(HttpStatusCode.OK, health.StatusCode);

        // The OpenAI client sends its key as the bearer token.
        var completion = await fixture.Chat(server, "s3cret-key").CompleteChatAsync([new UserChatMessage("Hello")], new ChatCompletionOptions { MaxOutputTokenCount = 2 });
        Assert.Equal(2, completion.Value.Usage.OutputTokenCount);
        var refused = await Assert.ThrowsAsync<ClientResultException>(() => fixture.Chat(server, "guess").CompleteChatAsync([new UserChatMessage("Hello")]));
        Assert.Equal(401, refused.Status);
    }

    [Fact]
    public async Task BodyOverTheLimit_Is413()
    {
        await using var server = await fixture.StartAsync(new GemmaServerOptions { Port = 0, MaxRequestBodyBytes = 4096 });
        string big = JsonSerializer.Serialize(new { prompt = new string('a', 8192), max_tokens = 1 });
        using var response = await fixture.PostAsync(Completions, big, server);
        var error = await ErrorAsync(response, 413);
        Assert.Contains("4096 bytes", error.GetProperty("message").GetString());

        // The default limit is 1 MB.
        Assert.Equal(1 << 20, new GemmaServerOptions().MaxRequestBodyBytes);
        using var small = await fixture.PostAsync(Completions, JsonSerializer.Serialize(new { prompt = "a", max_tokens = 1 }), server);
        Assert.Equal(HttpStatusCode.OK, small.StatusCode);
    }

    [Fact]
    public async Task FullQueue_Is429_WithRetryAfter()
    {
        await using var server = await fixture.StartAsync(new GemmaServerOptions { Port = 0, Parallel = 1, Queue = 1 });
        string slow = """{"prompt": "Once upon a time", "max_tokens": 480, "temperature": 1.5, "seed": 11, "stream": true}""";
        using var leave = new CancellationTokenSource();
        using var running = await fixture.PostAsync(Completions, slow, server);
        Assert.Equal(HttpStatusCode.OK, running.StatusCode);
        var waiting = fixture.PostAsync(Completions, slow, server);
        Assert.True(await ServerFixture.EventuallyAsync(() => server.Scheduler!.Waiting == 1), "the second request did not queue");

        using (var refused = await fixture.PostAsync(Completions, slow, server))
        {
            var error = await ErrorAsync(refused, 429);
            Assert.Equal("queue_full", error.GetProperty("code").GetString());
            Assert.Equal(TimeSpan.FromSeconds(1), refused.Headers.RetryAfter?.Delta);
        }
        running.Dispose();
        (await waiting).Dispose();
        Assert.True(await ServerFixture.EventuallyAsync(() => server.Scheduler!.Running == 0 && server.Scheduler.Waiting == 0));
    }

    [Fact]
    public async Task UnknownEndpointAndMethod_GetJsonErrors()
    {
        using var missing = await fixture.Http.GetAsync(new Uri(fixture.BaseAddress, "/v1/embeddings"));
        await ErrorAsync(missing, 404);
        using var method = await fixture.Http.GetAsync(new Uri(fixture.BaseAddress, Chat));
        await ErrorAsync(method, 405);
    }

    /// <summary>Checks the status and the error body; returns its <c>error</c> object.</summary>
    private static async Task<JsonElement> ErrorAsync(HttpResponseMessage response, int status)
    {
        string text = await response.Content.ReadAsStringAsync();
        Assert.True((int)response.StatusCode == status, $"expected {status}, got {(int)response.StatusCode}: {text}");
        Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
        using var body = JsonDocument.Parse(text);
        var error = body.RootElement.GetProperty("error").Clone();
        Assert.False(string.IsNullOrWhiteSpace(error.GetProperty("message").GetString()));
        Assert.DoesNotContain("   at ", text); // no stack trace
        Assert.Equal(JsonValueKind.String, error.GetProperty("type").ValueKind);
        return error;
    }
}
