using System.Diagnostics;
using GemmaGen.Kernels;
using GemmaGen.Specs;

namespace GemmaGen;

/// <summary>What <see cref="ModelBenchmark"/> measures.</summary>
public sealed record BenchmarkOptions
{
    /// <summary>The model shape (with <see cref="Weights"/>, the checkpoint's own config).</summary>
    public required Gemma2Config Config { get; init; }

    /// <summary>A checkpoint (a GGUF file or a Hugging Face directory, opened by the caller, who disposes it) whose
    /// weights are measured; null (default) measures synthetic weights (the fixture formula) of <see cref="Config"/>.</summary>
    public ITensorSource? Weights { get; init; }

    /// <summary>Storage format of the matrices; null (default) is BF16 for synthetic weights and the checkpoint's own
    /// for <see cref="Weights"/> (a GGUF file's blocks as stored).</summary>
    public WeightFormat? Format { get; init; }

    /// <summary>Run only the first N layers and extrapolate to the whole model; null runs every layer.</summary>
    public int? Layers { get; init; }

    /// <summary>Worker threads, the caller's included.</summary>
    public int Threads { get; init; } = Environment.ProcessorCount;

    /// <summary>Prompt tokens of the prefill measurement.</summary>
    public int PromptTokens { get; init; } = 128;

    /// <summary>Tokens of the decode measurement.</summary>
    public int DecodeTokens { get; init; } = 32;

    /// <summary>Sequences decoding together in the batched measurement: each step is one forward pass of one row per
    /// sequence, so every weight is read once for all of them. 1 (default) skips it; at most
    /// <see cref="SpecParser.MaxBatchRows"/>.</summary>
    public int Batch { get; init; } = 1;

    /// <summary>How the KV caches store keys and values. Default float32.</summary>
    public KvPrecision KvCache { get; init; } = KvPrecision.F32;

    /// <summary>How the Q4_0 blocks' products round activations (<see cref="GemmaModelOptions.Activations"/>). Default int16.</summary>
    public DecodeActivations Activations { get; init; } = DecodeActivations.Int16;

    /// <summary>Also measure the runtime-shape reference decoder on the same weights.</summary>
    public bool CompareReference { get; init; }

    /// <summary>
    /// Most repetitions of each measurement (prefill, then the decode steps); the fastest counts, which filters out
    /// the moments another process had the cores. Repetitions stop early once one decoder has been measured for
    /// <see cref="RepeatBudget"/>. Default 3.
    /// </summary>
    public int Repeats { get; init; } = 3;

    /// <summary>Time after which no further repetition of a measurement starts. Default 30 seconds.</summary>
    public TimeSpan RepeatBudget { get; init; } = TimeSpan.FromSeconds(30);
}

/// <summary>Prefill and decode rates of one decoder; whole-model values (extrapolated when fewer layers ran).</summary>
/// <param name="ExecutionPath"><c>compiled &lt;ClassName&gt;</c> or <c>reference</c>.</param>
/// <param name="PrefillTokensPerSecond">Prompt tokens per second.</param>
/// <param name="DecodeTokensPerSecond">Generated tokens per second.</param>
/// <param name="DecodeGigabytesPerSecond">Weight bytes read per second while decoding (every weight once per token).</param>
/// <param name="BandwidthFraction">Decode rate as a fraction of the bandwidth probe of the same run.</param>
/// <param name="PrefillSecondsPerLayer">Prefill time of one layer (the per-layer cost the extrapolation uses).</param>
/// <param name="DecodeSecondsPerLayer">Decode time of one layer per token.</param>
/// <param name="AggregateDecodeTokensPerSecond">With <see cref="BenchmarkOptions.Batch"/> N &gt; 1: tokens per second of N
/// sequences decoding together (N per step), else null.</param>
public sealed record DecoderMeasurement(
    string ExecutionPath,
    double PrefillTokensPerSecond,
    double DecodeTokensPerSecond,
    double DecodeGigabytesPerSecond,
    double BandwidthFraction,
    double PrefillSecondsPerLayer,
    double DecodeSecondsPerLayer,
    double? AggregateDecodeTokensPerSecond = null)
{
    /// <summary>Aggregate decode rate of the batch over the decode rate of one sequence, when a batch ran.</summary>
    public double? BatchSpeedup => AggregateDecodeTokensPerSecond / DecodeTokensPerSecond;
}

/// <summary>The result of a benchmark run: <c>Spec</c> names the spec or the checkpoint, <c>Format</c> is the format
/// holding the most weight bytes and <c>Formats</c> every format the weights are held in, most bytes first (several for
/// a checkpoint whose tensors differ in type).</summary>
public sealed record BenchmarkReport(
    string Spec,
    WeightFormat Format,
    IReadOnlyList<WeightFormat> Formats,
    int Threads,
    int LayersRun,
    int Layers,
    bool Extrapolated,
    int PromptTokens,
    int DecodeTokens,
    int Repeats,
    int Batch,
    KvPrecision KvCache,
    DecodeActivations Activations,
    long WeightBytesPerToken,
    double BandwidthGigabytesPerSecond,
    long PeakRssBytes,
    DecoderMeasurement Compiled,
    DecoderMeasurement? Reference)
{
    /// <summary>Decode speed of the compiled path over the reference path, when both ran.</summary>
    public double? SpeedupVsReference => Reference is { } r ? Compiled.DecodeTokensPerSecond / r.DecodeTokensPerSecond : null;

    /// <summary>Prefill speed of the compiled path over the reference path, when both ran.</summary>
    public double? PrefillSpeedupVsReference => Reference is { } r ? Compiled.PrefillTokensPerSecond / r.PrefillTokensPerSecond : null;
}

/// <summary>
/// <c>gemmagen bench</c>: runs a model shape with synthetic weights, or a checkpoint's own weights, and measures prefill and decode, the rate at which
/// decoding reads weights, and that rate against a bandwidth probe in the same process. With fewer layers than
/// the model has, it also runs the model with no layers (embedding, final norm and logits only) and extrapolates:
/// time(L) = time(0) + L × (time(N) − time(0)) / N.
/// </summary>
public static class ModelBenchmark
{
    /// <summary>Runs the benchmark <paramref name="options"/> describe; <paramref name="specName"/> names the shape in the report,
    /// and <paramref name="log"/>, when given, receives a line as each phase starts.</summary>
    public static BenchmarkReport Run(BenchmarkOptions options, string specName, TextWriter? log = null)
    {
        var full = options.Config;
        int layers = Math.Min(options.Layers ?? full.NumHiddenLayers, full.NumHiddenLayers);
        if (layers < 1) throw new ArgumentOutOfRangeException(nameof(options), layers, "at least one layer must run");
        if (options.PromptTokens < 1 || options.DecodeTokens < 1) throw new ArgumentOutOfRangeException(nameof(options), "prompt and decode tokens must be at least 1");
        if (options.Repeats < 1) throw new ArgumentOutOfRangeException(nameof(options), options.Repeats, "at least one repetition must run");
        if (options.Batch < 1 || options.Batch > SpecParser.MaxBatchRows)
            throw new ArgumentOutOfRangeException(nameof(options), options.Batch, $"the batch must be 1 to {SpecParser.MaxBatchRows} sequences");
        bool extrapolate = layers < full.NumHiddenLayers;
        using var pool = new WorkerPool(options.Threads);
        // The probe runs before and after the measurements and its fastest pass counts: the machine's bandwidth moves
        // from minute to minute, and the decode rate is the fastest repetition too.
        log?.WriteLine($"bandwidth probe ({options.Threads} threads)...");
        double bandwidth = BandwidthProbe.Measure(pool);

        var compiled = CompiledModelRegistry.Find(full.Shape);
        var paths = new List<bool> { compiled != null };
        if (options.CompareReference && compiled != null) paths.Add(false);
        var timings = paths.ToDictionary(p => p, _ => new List<(int Layers, Timing Timing)>());
        long layerBytes = 0, headBytes = 0;
        var format = options.Format ?? (options.Weights == null ? WeightFormat.BF16 : null);
        IReadOnlyList<WeightFormat> formats = [];
        foreach (int n in extrapolate ? new[] { layers, 0 } : new[] { layers })
        {
            var config = full with { NumHiddenLayers = n };
            using var synthetic = options.Weights == null ? new SyntheticWeights(config) : null;
            ITensorSource source = synthetic ?? options.Weights!;
            // The checks of loading a model, memory first: a shape too large for this machine is refused, not killed.
            var plan = LoadPlan.Create(config, source, new GemmaModelOptions { Format = format, KvCache = options.KvCache, MaxContext = options.PromptTokens + options.DecodeTokens });
            plan.RequireMemory();
            if (n == layers) formats = plan.Formats;
            log?.WriteLine($"loading {n} layer(s) of {(synthetic != null ? "synthetic weights" : source.Description)} as {plan.FormatNames}...");
            // The synthetic formula is finite by construction: no scan; a checkpoint's weights are checked as on loading.
            using var weights = ModelWeights.Load(config, source, format, checkFinite: synthetic == null);
            weights.DecodeActivations = options.Activations;
            long output = weights.Output.ByteLength;
            if (n > 0) layerBytes = (weights.ByteLength - weights.Embed.ByteLength - (weights.LmHead?.ByteLength ?? 0)) / n;
            headBytes = output;
            foreach (bool onCompiled in paths)
            {
                int context = options.PromptTokens + options.DecodeTokens;
                var model = onCompiled ? compiled!.Create(weights, context, pool) : new ReferenceForward(weights, context, pool);
                model.KvPrecision = options.KvCache;
                var decoder = new Gemma2Decoder(model, context);
                log?.WriteLine($"measuring {decoder.ExecutionPath} with {n} layer(s)...");
                timings[onCompiled].Add((n, Measure(decoder, options)));
            }
        }

        log?.WriteLine($"bandwidth probe again ({options.Threads} threads)...");
        bandwidth = Math.Max(bandwidth, BandwidthProbe.Measure(pool));
        long bytesPerToken = headBytes + full.NumHiddenLayers * layerBytes;
        DecoderMeasurement Summarize(bool onCompiled)
        {
            var runs = timings[onCompiled];
            var measured = runs.First(r => r.Layers == layers).Timing;
            var head = extrapolate ? runs.First(r => r.Layers == 0).Timing : default;
            // A layer never costs less than nothing: where noise makes N layers measure faster than none (tiny shapes,
            // a busy machine), the layers count as free rather than making the whole-model figure negative.
            double prefillPerLayer = extrapolate ? Math.Max(0, measured.PrefillSeconds - head.PrefillSeconds) / layers : measured.PrefillSeconds / layers;
            double decodePerLayer = extrapolate ? Math.Max(0, measured.DecodeSecondsPerToken - head.DecodeSecondsPerToken) / layers : measured.DecodeSecondsPerToken / layers;
            double prefill = extrapolate ? head.PrefillSeconds + full.NumHiddenLayers * prefillPerLayer : measured.PrefillSeconds;
            double decode = extrapolate ? head.DecodeSecondsPerToken + full.NumHiddenLayers * decodePerLayer : measured.DecodeSecondsPerToken;
            double gbs = bytesPerToken / decode / 1e9;
            double? aggregate = null;
            if (options.Batch > 1)
            {
                double stepPerLayer = extrapolate ? Math.Max(0, measured.BatchStepSeconds - head.BatchStepSeconds) / layers : measured.BatchStepSeconds / layers;
                double step = extrapolate ? head.BatchStepSeconds + full.NumHiddenLayers * stepPerLayer : measured.BatchStepSeconds;
                aggregate = options.Batch / step;
            }
            return new DecoderMeasurement(onCompiled ? "compiled " + compiled!.ClassName : "reference",
                options.PromptTokens / prefill, 1 / decode, gbs, gbs / bandwidth, prefillPerLayer / options.PromptTokens, decodePerLayer, aggregate);
        }

        using var process = Process.GetCurrentProcess();
        process.Refresh();
        return new BenchmarkReport(specName, formats[0], formats, options.Threads, layers, full.NumHiddenLayers, extrapolate,
            options.PromptTokens, options.DecodeTokens, options.Repeats, options.Batch, options.KvCache, options.Activations, bytesPerToken, bandwidth, process.PeakWorkingSet64,
            Summarize(paths[0]), paths.Count > 1 ? Summarize(false) : null);
    }

    private readonly record struct Timing(double PrefillSeconds, double DecodeSecondsPerToken, double BatchStepSeconds);

    /// <summary>
    /// One warm-up pass, then up to <see cref="BenchmarkOptions.Repeats"/> times the prompt as a prefill and the decode
    /// steps, each timed; the fastest prefill and the fastest decode run count.
    /// </summary>
    private static Timing Measure(Gemma2Decoder decoder, BenchmarkOptions options)
    {
        int v = decoder.Config.VocabSize;
        var prompt = Enumerable.Range(0, options.PromptTokens).Select(i => (int)((2 + i * 7919L) % v)).ToArray();
        var logits = new float[v];
        decoder.Forward(prompt.AsSpan(0, Math.Min(8, prompt.Length)), 0, logits);

        double bestPrefill = double.PositiveInfinity, bestDecode = double.PositiveInfinity;
        var budget = Stopwatch.StartNew();
        for (int run = 0; run < options.Repeats && (run == 0 || budget.Elapsed < options.RepeatBudget); run++)
        {
            decoder.Reset();
            var clock = Stopwatch.StartNew();
            decoder.Forward(prompt, 0, logits);
            bestPrefill = Math.Min(bestPrefill, clock.Elapsed.TotalSeconds);

            clock.Restart();
            for (int i = 0; i < options.DecodeTokens; i++)
            {
                int next = GemmaModel.ArgMax(logits);
                decoder.Step(next, decoder.Length, logits);
            }
            bestDecode = Math.Min(bestDecode, clock.Elapsed.TotalSeconds / options.DecodeTokens);
        }
        double bestStep = options.Batch > 1 ? MeasureBatch(decoder.Model, options, prompt) : double.NaN;
        return new Timing(bestPrefill, bestDecode, bestStep);
    }

    /// <summary>
    /// <see cref="BenchmarkOptions.Batch"/> sequences, each prefilled with its own prompt, then decoding together: each
    /// step is one forward pass with one row per sequence. Returns the fastest repetition's seconds per step.
    /// </summary>
    private static double MeasureBatch(Gemma2Forward model, BenchmarkOptions options, int[] prompt)
    {
        int n = options.Batch, v = model.Config.VocabSize, context = options.PromptTokens + options.DecodeTokens;
        var decoders = Enumerable.Range(0, n).Select(_ => new Gemma2Decoder(model, context)).ToArray();
        // Each sequence's prompt differs (shifted ids), so the rows attend different keys.
        var prompts = Enumerable.Range(0, n).Select(s => prompt.Select(id => (id + s) % v).ToArray()).ToArray();
        var batch = new ForwardBatch(model.MaxRows);
        var logits = new float[n * v];
        double best = double.PositiveInfinity;
        var budget = Stopwatch.StartNew();
        for (int run = 0; run < options.Repeats && (run == 0 || budget.Elapsed < options.RepeatBudget); run++)
        {
            for (int s = 0; s < n; s++)
            {
                decoders[s].Reset();
                decoders[s].Forward(prompts[s], 0, logits.AsSpan(s * v, v));
            }
            var clock = Stopwatch.StartNew();
            for (int step = 0; step < options.DecodeTokens; step++)
            {
                batch.Clear();
                for (int s = 0; s < n; s++) batch.Add(decoders[s].Sequence, GemmaModel.ArgMax(logits.AsSpan(s * v, v)), decoders[s].Length, logits: true);
                model.Forward(batch, logits);
            }
            best = Math.Min(best, clock.Elapsed.TotalSeconds / options.DecodeTokens);
        }
        return best;
    }
}
