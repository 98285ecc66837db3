using System.Net;
using System.Text.Json;
using GemmaGen.Server;
using OpenAI;
using OpenAI.Chat;
using OpenAI.Models;

namespace GemmaGen.Tests.Server;

/// <summary>/v1/models, /health, /metrics, whole replies with their usage, prompt caching, shutdown.</summary>
[Collection(ServerCollection.Name)]
public sealed class EndpointTests(ServerFixture fixture)
{
    [Fact]
    public async Task Models_ListTheServedModel()
    {
        var client = new OpenAIModelClient(new System.ClientModel.ApiKeyCredential("unused"), new OpenAIClientOptions { Endpoint = new Uri(fixture.BaseAddress, "v1") });
        var models = (await client.GetModelsAsync()).Value;
        var model = Assert.Single(models);
        // The demo checkpoint's directory name.
        Assert.Equal(Path.GetFileName(ChatClient.ChatClientFixture.DemoDirectory), model.Id);
        Assert.Equal("gemmagen", model.OwnedBy);
    }

    [Fact]
    public async Task Health_Is503UntilTheModelIsSet()
    {
        await using var server = await fixture.StartAsync(new GemmaServerOptions { Port = 0 }, withModel: false);
        Assert.False(server.IsReady);
        using (var loading = await fixture.Http.GetAsync(new Uri(server.Addresses[0], "/health")))
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, loading.StatusCode);
            Assert.Contains("\"loading\"", await loading.Content.ReadAsStringAsync());
        }
        using (var early = await fixture.PostAsync("/v1/completions", """{"prompt": "a"}""", server))
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, early.StatusCode);
            Assert.Contains("model_loading", await early.Content.ReadAsStringAsync());
        }
        server.SetModel(fixture.Model);
        using var ready = await fixture.Http.GetAsync(new Uri(server.Addresses[0], "/health"));
        Assert.Equal(HttpStatusCode.OK, ready.StatusCode);
        Assert.Contains("\"ok\"", await ready.Content.ReadAsStringAsync());
        // The server listens on loopback by default.
        Assert.True(IPAddress.IsLoopback(IPAddress.Parse(server.Addresses[0].Host)));
        Assert.Equal(IPAddress.Loopback, new GemmaServerOptions().Address);
    }

    [Fact]
    public async Task Metrics_CountRequestsAndTokens()
    {
        double requests = await ConcurrentStreamingTests.MetricAsync(fixture, "gemmagen_requests_total{endpoint=\"/v1/completions\",status=\"200\"}", orZero: true);
        double generated = await ConcurrentStreamingTests.MetricAsync(fixture, "gemmagen_generated_tokens_total", orZero: true);
        using (var response = await fixture.PostAsync("/v1/completions", """{"prompt": "The jury said", "max_tokens": 5, "temperature": 0, "repetition_penalty": 1.1}"""))
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        using var metrics = await fixture.Http.GetAsync(new Uri(fixture.BaseAddress, "/metrics"));
        Assert.Equal("text/plain", metrics.Content.Headers.ContentType?.MediaType);
        string text = await metrics.Content.ReadAsStringAsync();
        foreach (string name in new[] { "gemmagen_requests_total", "gemmagen_prompt_tokens_total", "gemmagen_prompt_cached_tokens_total", "gemmagen_generated_tokens_total",
                     "gemmagen_generations_total", "gemmagen_requests_running", "gemmagen_queue_length", "gemmagen_prefill_tokens_per_second",
                     "gemmagen_decode_tokens_per_second", "gemmagen_time_to_first_token_seconds" })
            Assert.Contains($"# TYPE {name} ", text);
        Assert.Equal(requests + 1, await ConcurrentStreamingTests.MetricAsync(fixture, "gemmagen_requests_total{endpoint=\"/v1/completions\",status=\"200\"}"));
        Assert.True(await ConcurrentStreamingTests.MetricAsync(fixture, "gemmagen_generated_tokens_total") >= generated + 1);
        Assert.True(await ConcurrentStreamingTests.MetricAsync(fixture, "gemmagen_decode_tokens_per_second") > 0);
        Assert.Equal(0, await ConcurrentStreamingTests.MetricAsync(fixture, "gemmagen_queue_length"));
    }

    [Fact]
    public async Task AConversationThatGoesOn_ReusesItsCachedPrefix()
    {
        var chat = fixture.Chat();
        var options = new ChatCompletionOptions { MaxOutputTokenCount = 8, Temperature = 0 };
        List<ChatMessage> history = [new SystemChatMessage("Answer briefly."), new UserChatMessage("Tell me about the court.")];
        OpenAI.Chat.ChatCompletion first = (await chat.CompleteChatAsync(history, options)).Value;
        Assert.Equal(ChatFinishReason.Length, first.FinishReason);
        Assert.Equal(8, first.Usage.OutputTokenCount);
        Assert.Equal(first.Usage.InputTokenCount + 8, first.Usage.TotalTokenCount);
        string reply = Assert.Single(first.Content).Text;
        Assert.False(string.IsNullOrEmpty(reply));

        // The chat UI resends the history with the reply and a new turn: the first prompt is served from the cache.
        history.Add(new AssistantChatMessage(reply));
        history.Add(new UserChatMessage("And then?"));
        OpenAI.Chat.ChatCompletion second = (await chat.CompleteChatAsync(history, options)).Value;
        Assert.True(second.Usage.InputTokenDetails.CachedTokenCount >= first.Usage.InputTokenCount,
            $"cached {second.Usage.InputTokenDetails.CachedTokenCount} of {second.Usage.InputTokenCount}; the first prompt was {first.Usage.InputTokenCount}");
        Assert.True(second.Usage.InputTokenDetails.CachedTokenCount < second.Usage.InputTokenCount);

        // The prompt is the chat format's rendering of the messages, as GemmaChatClient renders them.
        var format = new GemmaChatFormat(fixture.Model.RequireTokenizer());
        int[] expected = format.Render([new(Microsoft.Extensions.AI.ChatRole.System, "Answer briefly."), new(Microsoft.Extensions.AI.ChatRole.User, "Tell me about the court.")],
            null, new Dictionary<string, int[]>(), new HashSet<string>());
        Assert.Equal(expected.Length, first.Usage.InputTokenCount);
    }

    [Fact]
    public async Task Shutdown_CancelsRunningStreams()
    {
        var server = await fixture.StartAsync(new GemmaServerOptions { Port = 0, ShutdownTimeout = TimeSpan.FromSeconds(10) });
        try
        {
            using var stream = await fixture.PostAsync("/v1/completions", """{"prompt": "Once upon a time", "max_tokens": 480, "temperature": 1.5, "seed": 11, "stream": true}""", server);
            Assert.Equal("text/event-stream", stream.Content.Headers.ContentType?.MediaType);
            using var reader = new StreamReader(await stream.Content.ReadAsStreamAsync());
            Assert.StartsWith("data: {", await reader.ReadLineAsync());
            Assert.Equal(1, server.Scheduler!.Running);

            var clock = System.Diagnostics.Stopwatch.StartNew();
            await server.StopAsync();
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5), $"stopping took {clock.Elapsed}");
            string rest = await reader.ReadToEndAsync();
            Assert.Contains("\"shutting_down\"", rest);
            Assert.DoesNotContain("[DONE]", rest);
            Assert.Equal(0, server.Scheduler.Running);
        }
        finally
        {
            await server.DisposeAsync();
        }
    }
}
