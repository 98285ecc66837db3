using System.ClientModel;
using System.ClientModel.Primitives;
using System.Net;
using System.Text;
using GemmaGen.Server;
using OpenAI;


namespace GemmaGen.Tests.Server;

/// <summary>The server tests share one demo model; they run one at a time (a model serves one scheduler at a time).</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class ServerCollection : ICollectionFixture<ServerFixture>
{
    public const string Name = "gemmagen serve";
}

/// <summary>The built-in demo model (two threads, a context of 512) and a server over it on a free loopback port:
/// 8 requests at once, 64 waiting.</summary>
public sealed class ServerFixture : IAsyncLifetime
{
    /// <summary>The context the tests' model and servers hold.</summary>
    public const int Context = 512;

    public GemmaModel Model { get; } = GemmaModel.Load(GemmaGen.Tests.ChatClient.ChatClientFixture.DemoDirectory, new GemmaModelOptions { Threads = 2, MaxContext = Context });

    /// <summary>The shared server (started in <see cref="InitializeAsync"/>).</summary>
    public GemmaServer Server { get; private set; } = null!;

    public HttpClient Http { get; } = new() { Timeout = TimeSpan.FromSeconds(120) };

    public Uri BaseAddress => Server.Addresses[0];

    public async Task InitializeAsync() => Server = await StartAsync(new GemmaServerOptions { Port = 0, Parallel = 8, Queue = 64 });

    /// <summary>Another server over the same model (stop the shared one's work first: none runs between tests).</summary>
    public async Task<GemmaServer> StartAsync(GemmaServerOptions options, bool withModel = true)
    {
        var server = await GemmaServer.StartAsync(options);
        if (withModel) server.SetModel(Model);
        return server;
    }

    /// <summary>The official OpenAI client, pointed at <paramref name="server"/> (the shared one by default); no retries,
    /// so a refusal shows as it is.</summary>
    public OpenAI.Chat.ChatClient Chat(GemmaServer? server = null, string apiKey = "unused")
    {
        var options = new OpenAIClientOptions
        {
            Endpoint = new Uri((server ?? Server).Addresses[0], "v1"),
            RetryPolicy = new ClientRetryPolicy(maxRetries: 0),
            NetworkTimeout = TimeSpan.FromSeconds(120),
        };
        return new OpenAI.Chat.ChatClient((server ?? Server).ModelId ?? "gemma2-demo", new ApiKeyCredential(apiKey), options);
    }

    /// <summary>POSTs <paramref name="json"/> to <paramref name="path"/> of <paramref name="server"/> (the shared one by default).</summary>
    public Task<HttpResponseMessage> PostAsync(string path, string json, GemmaServer? server = null, string? apiKey = null)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, new Uri((server ?? Server).Addresses[0], path))
        {
            Content = new StringContent(json, Encoding.UTF8, "application/json"),
        };
        if (apiKey != null) request.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", apiKey);
        return Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
    }

    /// <summary>Waits until <paramref name="condition"/> holds, up to <paramref name="seconds"/>.</summary>
    public static async Task<bool> EventuallyAsync(Func<bool> condition, double seconds = 30)
    {
        var deadline = DateTime.UtcNow.AddSeconds(seconds);
        while (DateTime.UtcNow < deadline)
        {
            if (condition()) return true;
            await Task.Delay(20);
        }
        return condition();
    }

    public async Task DisposeAsync()
    {
        if (Server != null) await Server.DisposeAsync();
        Http.Dispose();
        Model.Dispose();
    }
}
