using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using GemmaGen.Kernels;

namespace GemmaGen.Cli;

/// <summary>
/// <c>gemmagen bench-serve</c>: the load <c>gemmagen serve</c> sees, on a model shape with synthetic weights. For each
/// client count C, a <see cref="GenerationScheduler"/> with C sequences (<c>serve --parallel C</c>) takes C clients that
/// each send requests one after another (a prompt of distinct random tokens, so no prefix is reused; a fixed number of
/// tokens generated, end tokens ignored); it reports the aggregate generated tokens per second (over the wall time,
/// prefills included), the aggregate decode rate while all clients decode together, and the p50 and p95 time to the
/// first token. Synthetic weights have no tokenizer, so the load
/// goes to the scheduler the server runs on, not through HTTP (whose cost is a few microseconds per token).
/// </summary>
internal static class ServeBenchCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var spec = new Option<string>("--spec") { Description = "gemma-2-2b, gemma-2-9b, gemma-2-27b, gemma-2-demo or a config.json file", HelpName = "SPEC", DefaultValueFactory = _ => "gemma-2-2b" };
        var quant = new Option<string>("--quant") { Description = $"Weight format: {WeightFormat.ListNames(WeightFormat.All)}", HelpName = "FORMAT", DefaultValueFactory = _ => "q8_0" };
        var threads = GenerationOptionSet.CreateThreads();
        var clients = new Option<string>("--clients") { Description = "Client counts to measure, comma-separated (each also the scheduler's --parallel)", HelpName = "N,N,...", DefaultValueFactory = _ => "1,4,8,16" };
        var prompt = new Option<int>("--prompt") { Description = "Prompt tokens of each request", HelpName = "N", DefaultValueFactory = _ => 32, CustomParser = NumberOptions.Integer(1) };
        var tokens = new Option<int>("--tokens") { Description = "Tokens each request generates", HelpName = "N", DefaultValueFactory = _ => 32, CustomParser = NumberOptions.Integer(1) };
        var requests = new Option<int>("--requests") { Description = "Requests each client sends, one after another", HelpName = "N", DefaultValueFactory = _ => 2, CustomParser = NumberOptions.Integer(1) };
        var json = new Option<bool>("--json") { Description = "Print one JSON object instead of a table" };
        var command = new Command("bench-serve", "Measure serving throughput and time to first token at several client counts (synthetic weights)");
        foreach (var option in new Option[] { spec, quant, threads, clients, prompt, tokens, requests, json }) command.Options.Add(option);
        command.SetAction(parse => Program.Guard(stderr, () =>
        {
            string specName = parse.GetValue(spec)!;
            var config = Checkpoint.LoadConfig(BenchCommand.ResolveSpec(specName));
            var format = GenerationOptionSet.ParseFormat("--quant", parse.GetValue(quant)!);
            int[] counts = ParseClients(parse.GetValue(clients)!);
            int promptTokens = parse.GetValue(prompt), generated = parse.GetValue(tokens), perClient = parse.GetValue(requests);
            TokenList.CheckContext((long)promptTokens + generated, config, "--prompt and --tokens");
            int threadCount = parse.GetValue(threads) ?? Environment.ProcessorCount;

            stderr.WriteLine($"loading synthetic weights for {Path.GetFileNameWithoutExtension(specName)} as {format}...");
            using var source = new SyntheticWeights(config);
            // The synthetic formula is finite by construction: no scan.
            using var model = GemmaModel.Load(config, source, new GemmaModelOptions { Format = format, Threads = threadCount, MaxContext = promptTokens + generated, CheckWeights = false });
            // A first request compiles the code paths (JIT) and touches the weights; it is not measured.
            Measure(model, 1, 1, promptTokens, Math.Min(generated, 2));
            var rows = new List<Row>();
            foreach (int count in counts)
            {
                stderr.WriteLine($"{count} client(s) x {perClient} request(s): {promptTokens} prompt tokens, {generated} generated...");
                rows.Add(Measure(model, count, perClient, promptTokens, generated));
            }
            double single = rows.FirstOrDefault(r => r.Clients == 1)?.TokensPerSecond ?? 0;
            double singleDecode = rows.FirstOrDefault(r => r.Clients == 1)?.DecodeTokensPerSecond ?? 0;
            if (parse.GetValue(json))
            {
                var result = new JsonObject
                {
                    ["spec"] = Path.GetFileNameWithoutExtension(specName),
                    ["format"] = format.ToString(),
                    ["path"] = model.ExecutionPath,
                    ["threads"] = threadCount,
                    ["prompt_tokens"] = promptTokens,
                    ["generated_tokens"] = generated,
                    ["requests_per_client"] = perClient,
                    ["runs"] = new JsonArray([.. rows.Select(r => (JsonNode)new JsonObject
                    {
                        ["clients"] = r.Clients,
                        ["aggregate_tok_s"] = Math.Round(r.TokensPerSecond, 2),
                        ["speedup"] = single > 0 ? Math.Round(r.TokensPerSecond / single, 2) : null,
                        ["decode_tok_s"] = Math.Round(r.DecodeTokensPerSecond, 2),
                        ["decode_speedup"] = singleDecode > 0 ? Math.Round(r.DecodeTokensPerSecond / singleDecode, 2) : null,
                        ["ttft_p50_ms"] = Math.Round(r.P50.TotalMilliseconds, 1),
                        ["ttft_p95_ms"] = Math.Round(r.P95.TotalMilliseconds, 1),
                        ["wall_s"] = Math.Round(r.Wall.TotalSeconds, 2),
                    })]),
                };
                stdout.WriteLine(result.ToJsonString());
            }
            else
            {
                stdout.WriteLine($"{Path.GetFileNameWithoutExtension(specName)} {format} [{model.ExecutionPath}], {threadCount} threads, prompt {promptTokens}, generated {generated}, {perClient} request(s) per client");
                stdout.WriteLine("clients  aggregate tok/s  speedup  decode tok/s  speedup  TTFT p50 ms  TTFT p95 ms  wall s");
                foreach (var r in rows)
                {
                    string speedup = single > 0 ? (r.TokensPerSecond / single).ToString("F2", CultureInfo.InvariantCulture) + "x" : "-";
                    string decodeSpeedup = singleDecode > 0 ? (r.DecodeTokensPerSecond / singleDecode).ToString("F2", CultureInfo.InvariantCulture) + "x" : "-";
                    stdout.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"{r.Clients,7}  {r.TokensPerSecond,15:F2}  {speedup,7}  {r.DecodeTokensPerSecond,12:F2}  {decodeSpeedup,7}  {r.P50.TotalMilliseconds,11:F0}  {r.P95.TotalMilliseconds,11:F0}  {r.Wall.TotalSeconds,6:F1}"));
                }
            }
            return Program.Success;
        }));
        return command;
    }

    /// <param name="TokensPerSecond">Generated tokens over the wall time, prefills included.</param>
    /// <param name="DecodeTokensPerSecond">Tokens generated while every client decodes: from the moment the last
    /// request has its first token to the moment the first request ends (with one request per client; the requests
    /// share every step of that window).</param>
    private sealed record Row(int Clients, double TokensPerSecond, double DecodeTokensPerSecond, TimeSpan P50, TimeSpan P95, TimeSpan Wall);

    private static Row Measure(GemmaModel model, int clients, int perClient, int promptTokens, int generated)
    {
        using var scheduler = model.CreateScheduler(new GenerationSchedulerOptions { MaxSequences = clients, MaxContext = promptTokens + generated });
        var options = new GenerationOptions { MaxTokens = generated, Sampling = SamplingOptions.GreedyDecoding, IgnoreEndTokens = true };
        int vocab = model.Config.VocabSize;
        var clock = Stopwatch.StartNew();
        var stamps = new List<TimeSpan>[clients * perClient];
        var results = Task.WhenAll(Enumerable.Range(0, clients).Select(client => Task.Run(async () =>
        {
            var random = new Random(1000 * clients + client);
            var mine = new List<GenerationResult>();
            for (int i = 0; i < perClient; i++)
            {
                // BOS, then random ids: no two prompts share a prefix a cache could serve.
                int[] prompt = [2, .. Enumerable.Range(1, promptTokens - 1).Select(_ => random.Next(4, vocab))];
                var times = stamps[client * perClient + i] = new List<TimeSpan>(generated);
                mine.Add(await scheduler.GenerateAsync(prompt.AsMemory(0, promptTokens), options, _ => times.Add(clock.Elapsed)).ConfigureAwait(false));
            }
            return mine;
        }))).GetAwaiter().GetResult();
        var wall = clock.Elapsed;
        var all = results.SelectMany(r => r).ToArray();
        var firsts = all.Select(r => r.Stats.TimeToFirstToken).Order().ToArray();
        // The window in which the first request of every client is decoding.
        var firstRequests = Enumerable.Range(0, clients).Select(c => stamps[c * perClient]).ToArray();
        TimeSpan from = firstRequests.Max(t => t[0]), to = firstRequests.Min(t => t[^1]);
        int inWindow = firstRequests.Sum(t => t.Count(x => x > from && x <= to));
        double decode = to > from ? inWindow / (to - from).TotalSeconds : 0;
        return new Row(clients, all.Sum(r => r.Tokens.Length) / wall.TotalSeconds, decode, Percentile(firsts, 0.50), Percentile(firsts, 0.95), wall);
    }

    /// <summary>The nearest-rank percentile of sorted values.</summary>
    private static TimeSpan Percentile(TimeSpan[] sorted, double p) => sorted[Math.Clamp((int)Math.Ceiling(p * sorted.Length) - 1, 0, sorted.Length - 1)];

    private static int[] ParseClients(string text)
    {
        var counts = new List<int>();
        foreach (string part in text.Split(',', StringSplitOptions.TrimEntries))
        {
            if (!int.TryParse(part, NumberStyles.None, CultureInfo.InvariantCulture, out int n) || n < 1 || n > GemmaGen.Specs.SpecParser.MaxBatchRows)
                throw new UsageException($"--clients {text}: expected client counts from 1 to {GemmaGen.Specs.SpecParser.MaxBatchRows}, comma-separated");
            counts.Add(n);
        }
        return [.. counts];
    }
}
