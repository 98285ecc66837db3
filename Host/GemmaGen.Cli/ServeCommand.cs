using System.CommandLine;
using System.Net;
using GemmaGen.Server;

namespace GemmaGen.Cli;

/// <summary>
/// <c>gemmagen serve</c>: an OpenAI-compatible HTTP server (<see cref="GemmaServer"/>) over one model (the built-in demo
/// model unless <c>--model</c> is given). It listens at once (<c>/health</c> answers 503 while the model loads), serves
/// until Ctrl+C or SIGTERM, then cancels the generations in flight and exits with 0.
/// </summary>
internal static class ServeCommand
{
    /// <summary>The environment variable read for the API key when <c>--api-key</c> is not given.</summary>
    public const string ApiKeyVariable = "GEMMAGEN_API_KEY";

    public static Command Create(TextWriter stderr)
    {
        var options = new GenerationOptionSet();
        var host = new Option<string>("--host")
        {
            Description = "The address to listen on: 127.0.0.1 (this machine only), 0.0.0.0 or :: (every interface), or one interface's address",
            HelpName = "ADDRESS",
            DefaultValueFactory = _ => "127.0.0.1",
        };
        var port = new Option<int>("--port")
        {
            Description = "The TCP port (0: a free one)",
            HelpName = "N",
            DefaultValueFactory = _ => 8080,
            CustomParser = NumberOptions.Integer(0, 65535),
        };
        int maxRows = GemmaGen.Specs.SpecParser.MaxBatchRows;
        var parallel = new Option<int>("--parallel")
        {
            Description = "Requests generating at once, in shared decoding steps (each holds a KV cache of --context positions)",
            HelpName = "N",
            DefaultValueFactory = _ => 4,
            CustomParser = NumberOptions.Integer(1, maxRows, "the most rows of a forward pass"),
        };
        var queue = new Option<int>("--queue")
        {
            Description = "Requests that may wait for a free slot; more get 429 with Retry-After",
            HelpName = "N",
            DefaultValueFactory = _ => 64,
            CustomParser = NumberOptions.Integer(0),
        };
        var apiKey = new Option<string?>("--api-key")
        {
            Description = $"Require 'Authorization: Bearer KEY' on every request but GET /health (default: the {ApiKeyVariable} environment variable; none: no key)",
            HelpName = "KEY",
        };
        var maxBody = new Option<int>("--max-body")
        {
            Description = "Largest request body in bytes; larger ones get 413",
            HelpName = "BYTES",
            DefaultValueFactory = _ => (int)GemmaServerOptions.DefaultMaxRequestBodyBytes,
            CustomParser = NumberOptions.Integer(1),
        };
        var command = new Command("serve", "Serve the model over HTTP with an OpenAI-compatible API (the built-in demo model unless --model is given)");
        foreach (var option in new Option[] { options.Model, host, port, parallel, queue, options.Context, options.Quant, options.Kv, options.Activations, options.Threads, apiKey, maxBody, options.Reference, options.NoCheck })
            command.Options.Add(option);
        command.SetAction(parse => Program.Guard(stderr, () =>
        {
            string hostText = parse.GetValue(host)!;
            IPAddress address = ParseHost(hostText);
            string? key = parse.GetValue(apiKey) ?? Environment.GetEnvironmentVariable(ApiKeyVariable);
            if (key is { Length: 0 }) key = null;
            if (!IPAddress.IsLoopback(address) && key == null)
                stderr.WriteLine($"warning: --host {hostText} accepts connections from other machines and no --api-key is set: anyone who reaches the port can use the model");
            var serverOptions = new GemmaServerOptions
            {
                Address = address,
                Port = parse.GetValue(port),
                Parallel = parse.GetValue(parallel),
                Queue = parse.GetValue(queue),
                ApiKey = key,
                MaxRequestBodyBytes = parse.GetValue(maxBody),
            };
            return Serve(parse, options, serverOptions, stderr).GetAwaiter().GetResult();
        }));
        return command;
    }

    private static async Task<int> Serve(ParseResult parse, GenerationOptionSet options, GemmaServerOptions serverOptions, TextWriter stderr)
    {
        await using var server = await GemmaServer.StartAsync(serverOptions, stderr).ConfigureAwait(false);
        string addresses = string.Join(", ", server.Addresses);
        stderr.WriteLine($"listening on {addresses} (loading the model)");
        using var model = options.Load(parse, stderr);
        server.SetModel(model);
        stderr.WriteLine($"[{model.ExecutionPath}] serving {server.ModelId} on {addresses}: {serverOptions.Parallel} at once, {serverOptions.Queue} queued, " +
            $"context {server.Scheduler!.MaxContext}{(serverOptions.ApiKey != null ? ", API key required" : "")}; Ctrl+C stops");
        await server.WaitForShutdownAsync().ConfigureAwait(false);
        await server.DisposeAsync().ConfigureAwait(false);
        stderr.WriteLine("[stopped]");
        return Program.Success;
    }

    /// <summary>The address <c>--host</c> names: an IP address, or <c>localhost</c> (127.0.0.1).</summary>
    /// <exception cref="UsageException">It is neither.</exception>
    internal static IPAddress ParseHost(string host)
    {
        if (string.Equals(host, "localhost", StringComparison.OrdinalIgnoreCase)) return IPAddress.Loopback;
        if (IPAddress.TryParse(host, out var address)) return address;
        throw new UsageException($"--host {host}: expected an IP address, such as 127.0.0.1 (this machine only), 0.0.0.0 or :: (every interface), or localhost");
    }
}
