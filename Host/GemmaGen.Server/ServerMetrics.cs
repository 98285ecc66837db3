using System.Diagnostics;
using Prometheus;

namespace GemmaGen.Server;

/// <summary>
/// The server's Prometheus metrics (prometheus-net), in a registry of its own (two servers in one process keep
/// theirs apart). <c>GET /metrics</c> exports them in the text format; the queue and running gauges and the
/// tokens-per-second gauges are read at each scrape.
/// </summary>
internal sealed class ServerMetrics
{
    /// <summary>The window of the tokens-per-second gauges.</summary>
    public static readonly TimeSpan RateWindow = TimeSpan.FromSeconds(10);

    private readonly Counter _requests;
    private readonly Counter _promptTokens;
    private readonly Counter _cachedTokens;
    private readonly Counter _generatedTokens;
    private readonly Histogram _timeToFirstToken;
    private readonly Counter _generations;
    private readonly SlidingCount _prefill = new(RateWindow);
    private readonly SlidingCount _decode = new(RateWindow);

    public ServerMetrics(Func<GenerationScheduler?> scheduler)
    {
        Registry = Metrics.NewCustomRegistry();
        var factory = Metrics.WithCustomRegistry(Registry);
        _requests = factory.CreateCounter("gemmagen_requests_total", "HTTP requests answered, by endpoint and status code", "endpoint", "status");
        _promptTokens = factory.CreateCounter("gemmagen_prompt_tokens_total", "Prompt tokens of finished requests (cached ones included)");
        _cachedTokens = factory.CreateCounter("gemmagen_prompt_cached_tokens_total", "Prompt tokens found in a KV cache (prompt caching), not prefilled again");
        _generatedTokens = factory.CreateCounter("gemmagen_generated_tokens_total", "Tokens generated");
        _generations = factory.CreateCounter("gemmagen_generations_total", "Generations ended, by finish reason: stop (an end token or a stop sequence), length (max tokens or the context's end), cancelled (the client left or the server stopped)", "finish_reason");
        _timeToFirstToken = factory.CreateHistogram("gemmagen_time_to_first_token_seconds", "From a request's arrival at the scheduler to its first token (queueing and prefill)",
            new HistogramConfiguration { Buckets = Histogram.ExponentialBuckets(0.005, 2, 14) });
        var running = factory.CreateGauge("gemmagen_requests_running", "Requests generating now (at most --parallel)");
        var waiting = factory.CreateGauge("gemmagen_queue_length", "Requests waiting for a free sequence (at most --queue)");
        var prefillRate = factory.CreateGauge("gemmagen_prefill_tokens_per_second", $"Prompt tokens prefilled per second over the last {RateWindow.TotalSeconds:F0} s, all requests together (counted as requests end)");
        var decodeRate = factory.CreateGauge("gemmagen_decode_tokens_per_second", $"Tokens generated per second over the last {RateWindow.TotalSeconds:F0} s, all requests together");
        Registry.AddBeforeCollectCallback(() =>
        {
            var s = scheduler();
            running.Set(s?.Running ?? 0);
            waiting.Set(s?.Waiting ?? 0);
            prefillRate.Set(_prefill.PerSecond());
            decodeRate.Set(_decode.PerSecond());
        });
    }

    /// <summary>The registry <c>/metrics</c> exports.</summary>
    public CollectorRegistry Registry { get; }

    /// <summary>A response was sent.</summary>
    public void Answered(string endpoint, int status) => _requests.WithLabels(endpoint, status.ToString(System.Globalization.CultureInfo.InvariantCulture)).Inc();

    /// <summary>A token was generated (on the scheduler's thread).</summary>
    public void Generated()
    {
        _generatedTokens.Inc();
        _decode.Add(1);
    }

    /// <summary>A generation ended, with <paramref name="finishReason"/> (null: cancelled).</summary>
    public void Completed(GenerationResult result, string? finishReason)
    {
        _generations.WithLabels(finishReason ?? "cancelled").Inc();
        var stats = result.Stats;
        _promptTokens.Inc(stats.PromptTokens + stats.CachedTokens);
        _cachedTokens.Inc(stats.CachedTokens);
        _prefill.Add(stats.PromptTokens);
        if (stats.GeneratedTokens > 0) _timeToFirstToken.Observe(stats.TimeToFirstToken.TotalSeconds);
    }

    /// <summary>Counts in one-second buckets over a sliding window.</summary>
    private sealed class SlidingCount(TimeSpan window)
    {
        private readonly long[] _counts = new long[(int)window.TotalSeconds];
        private readonly long[] _seconds = new long[(int)window.TotalSeconds];
        private readonly Stopwatch _clock = Stopwatch.StartNew();

        public void Add(long count)
        {
            long second = (long)_clock.Elapsed.TotalSeconds;
            int slot = (int)(second % _counts.Length);
            lock (_counts)
            {
                if (_seconds[slot] != second)
                {
                    _seconds[slot] = second;
                    _counts[slot] = 0;
                }
                _counts[slot] += count;
            }
        }

        /// <summary>The count of the window's whole seconds (or of the time since start, when shorter) per second.</summary>
        public double PerSecond()
        {
            double elapsed = _clock.Elapsed.TotalSeconds;
            long now = (long)elapsed;
            long sum = 0;
            lock (_counts)
            {
                for (int i = 0; i < _counts.Length; i++)
                {
                    if (_seconds[i] > now - _counts.Length && _seconds[i] <= now) sum += _counts[i];
                }
            }
            return sum / Math.Min(_counts.Length, Math.Max(elapsed, 1));
        }
    }
}
