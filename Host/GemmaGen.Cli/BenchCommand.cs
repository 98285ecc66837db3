using System.CommandLine;
using System.Text.Json.Nodes;
using GemmaGen.Kernels;

namespace GemmaGen.Cli;

/// <summary>
/// <c>gemmagen bench --spec gemma-2-2b|gemma-2-9b|gemma-2-27b|FILE</c>: prefill and decode of a model shape with
/// synthetic weights (or, with <c>--model</c>, of a checkpoint's own weights), the decode rate against a bandwidth probe
/// in the same process, peak memory, and with <c>--compare reference</c> the runtime-shape path on the same weights.
/// </summary>
internal static class BenchCommand
{
    /// <summary>The formats synthetic weights can be held in: the conversion targets and the formats of GGUF's blocks as
    /// stored (filled by their quantizers, so that their kernels can be measured at any shape).</summary>
    internal static IReadOnlyList<WeightFormat> SyntheticFormats { get; } = [.. WeightFormat.All, .. WeightFormat.AsStored];

    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var spec = new Option<string>("--spec") { Description = "gemma-2-2b, gemma-2-9b, gemma-2-27b, gemma-2-demo or a config.json file (synthetic weights)", HelpName = "SPEC" };
        var model = new Option<string>("--model")
        {
            Description = "Measure a checkpoint's own weights instead of synthetic ones: a GGUF file (its blocks as stored), " +
                "a directory holding exactly one, or a Hugging Face checkpoint directory",
            HelpName = "DIR|FILE.gguf",
        };
        var format = new Option<string?>("--format", "--quant")
        {
            Description = $"Weight format: {WeightFormat.ListNames(WeightFormat.All)} (converted at load; --quant as on run and chat); " +
                $"for synthetic weights also GGUF's blocks as stored, {WeightFormat.ListNames(WeightFormat.AsStored)}. " +
                "Default: bf16 for synthetic weights, the checkpoint's own with --model",
            HelpName = "FORMAT",
        };
        var layers = new Option<int?>("--layers")
        {
            Description = "Run the first N layers and extrapolate to the whole model",
            HelpName = "N",
            CustomParser = NumberOptions.OptionalInteger(1),
        };
        var threads = GenerationOptionSet.CreateThreads();
        var prompt = new Option<int>("--prompt")
        {
            Description = "Prompt tokens of the prefill",
            HelpName = "N",
            DefaultValueFactory = _ => 128,
            CustomParser = NumberOptions.Integer(1),
        };
        var tokens = new Option<int>("--tokens") { Description = "Decoded tokens", HelpName = "N", DefaultValueFactory = _ => 32, CustomParser = NumberOptions.Integer(1) };
        var repeat = new Option<int>("--repeat")
        {
            Description = "Repetitions of each measurement; the fastest counts (stops after 30 s per decoder)",
            HelpName = "N",
            DefaultValueFactory = _ => 3,
            CustomParser = NumberOptions.Integer(1),
        };
        var batch = new Option<int>("--batch")
        {
            Description = $"Also measure N sequences decoding together, one row each per step (1 to {Specs.SpecParser.MaxBatchRows})",
            HelpName = "N",
            DefaultValueFactory = _ => 1,
            CustomParser = NumberOptions.Integer(1, Specs.SpecParser.MaxBatchRows),
        };
        var kv = GenerationOptionSet.CreateKv();
        var activations = GenerationOptionSet.CreateActivations();
        var compare = new Option<string?>("--compare") { Description = "reference: also measure the runtime-shape path", HelpName = "PATH" };
        var json = new Option<bool>("--json") { Description = "Print one JSON object instead of a table" };
        var command = new Command("bench", "Measure prefill and decode of a model shape with synthetic weights, or of a checkpoint");
        foreach (var option in new Option[] { spec, model, format, layers, threads, prompt, tokens, repeat, batch, kv, activations, compare, json }) command.Options.Add(option);
        command.SetAction(parse => Program.Guard(stderr, () =>
        {
            string? specName = parse.GetValue(spec), modelPath = parse.GetValue(model), formatName = parse.GetValue(format);
            if ((specName == null) == (modelPath == null))
                throw new UsageException("give either --spec SPEC (synthetic weights) or --model DIR|FILE.gguf (a checkpoint's weights)");
            using var checkpoint = modelPath != null ? ModelSourceOptions.OpenModel(modelPath) : null;
            var config = checkpoint?.Config ?? Checkpoint.LoadConfig(ResolveSpec(specName!));
            string name = modelPath != null ? Path.GetFileNameWithoutExtension(Path.TrimEndingDirectorySeparator(modelPath)) : Path.GetFileNameWithoutExtension(specName!);
            string compareWith = parse.GetValue(compare) ?? "";
            if (compareWith is not ("" or "reference")) throw new UsageException($"--compare {compareWith}: the only comparison is 'reference'");
            int promptTokens = parse.GetValue(prompt), decodeTokens = parse.GetValue(tokens);
            TokenList.CheckContext((long)promptTokens + decodeTokens, config, "--prompt and --tokens");
            var report = ModelBenchmark.Run(new BenchmarkOptions
            {
                Config = config,
                Weights = checkpoint?.Tensors,
                Format = formatName == null ? null : GenerationOptionSet.ParseFormat("--format", formatName, checkpoint == null ? SyntheticFormats : WeightFormat.All),
                Layers = parse.GetValue(layers),
                Threads = parse.GetValue(threads) ?? Environment.ProcessorCount,
                PromptTokens = promptTokens,
                DecodeTokens = decodeTokens,
                Repeats = parse.GetValue(repeat),
                Batch = parse.GetValue(batch),
                KvCache = GenerationOptionSet.ParseKv(parse.GetValue(kv)),
                Activations = GenerationOptionSet.ParseActivations(parse.GetValue(activations)),
                CompareReference = compareWith == "reference",
            }, name, stderr);
            if (parse.GetValue(json)) stdout.WriteLine(ToJson(report).ToJsonString());
            else WriteTable(stdout, report);
            return Program.Success;
        }));
        return command;
    }

    /// <summary>A built-in spec name (shipped next to the command) or a config.json path.</summary>
    internal static string ResolveSpec(string spec)
    {
        string builtIn = Path.Combine(AppContext.BaseDirectory, "specs", spec + ".json");
        if (File.Exists(builtIn)) return builtIn;
        if (File.Exists(spec)) return spec;
        string known = string.Join(", ", Directory.EnumerateFiles(Path.Combine(AppContext.BaseDirectory, "specs"), "*.json").Select(Path.GetFileNameWithoutExtension).Order());
        throw new UsageException($"--spec {spec}: neither a built-in spec ({known}) nor an existing file");
    }

    internal static JsonObject ToJson(BenchmarkReport r)
    {
        JsonObject Measurement(DecoderMeasurement m) => new()
        {
            ["path"] = m.ExecutionPath,
            ["spec"] = r.Spec,
            ["format"] = r.Format.Name,
            ["threads"] = r.Threads,
            ["layers_run"] = r.LayersRun,
            ["extrapolated"] = r.Extrapolated,
            ["prefill_tok_s"] = m.PrefillTokensPerSecond,
            ["decode_tok_s"] = m.DecodeTokensPerSecond,
            ["decode_gb_s"] = m.DecodeGigabytesPerSecond,
            ["bandwidth_gb_s"] = r.BandwidthGigabytesPerSecond,
            ["bandwidth_fraction"] = m.BandwidthFraction,
            ["peak_rss_bytes"] = r.PeakRssBytes,
            ["prefill_s_per_layer_token"] = m.PrefillSecondsPerLayer,
            ["decode_s_per_layer_token"] = m.DecodeSecondsPerLayer,
        };
        JsonObject WithBatch(DecoderMeasurement m)
        {
            var o = Measurement(m);
            if (m.AggregateDecodeTokensPerSecond is not double aggregate) return o;
            o["batch"] = r.Batch;
            o["aggregate_decode_tok_s"] = aggregate;
            o["batch_speedup"] = m.BatchSpeedup;
            return o;
        }
        var json = WithBatch(r.Compiled);
        json["formats"] = new JsonArray([.. r.Formats.Select(f => JsonValue.Create(f.Name))]);
        json["layers"] = r.Layers;
        json["prompt_tokens"] = r.PromptTokens;
        json["decode_tokens"] = r.DecodeTokens;
        json["weight_bytes_per_token"] = r.WeightBytesPerToken;
        json["repeats"] = r.Repeats;
        json["kv"] = GenerationOptionSet.KvName(r.KvCache);
        json["activations"] = GenerationOptionSet.ActivationsName(r.Activations);
        if (r.Reference is { } reference)
        {
            json["reference"] = WithBatch(reference);
            json["speedup_vs_reference"] = r.SpeedupVsReference;
            json["prefill_speedup_vs_reference"] = r.PrefillSpeedupVsReference;
        }
        return json;
    }

    private static void WriteTable(TextWriter stdout, BenchmarkReport r)
    {
        string scope = r.Extrapolated ? $"{r.LayersRun} of {r.Layers} layers run; whole-model figures extrapolated" : $"all {r.Layers} layers";
        string activations = r.Activations == DecodeActivations.Int8 ? ", int8 activations" : "";
        stdout.WriteLine($"{r.Spec}, {WeightFormat.Describe(r.Formats)}{activations}, {r.Threads} threads, {scope}");
        stdout.WriteLine($"weights read per token {InfoCommand.Bytes(r.WeightBytesPerToken)}; bandwidth probe {r.BandwidthGigabytesPerSecond:F1} GB/s; peak RSS {InfoCommand.Bytes(r.PeakRssBytes)}");
        stdout.WriteLine($"{"path",-26} {"prefill tok/s",14} {"decode tok/s",13} {"decode GB/s",12} {"of probe",9}");
        foreach (var m in new[] { r.Compiled, r.Reference }.OfType<DecoderMeasurement>())
            stdout.WriteLine($"{m.ExecutionPath,-26} {m.PrefillTokensPerSecond,14:F2} {m.DecodeTokensPerSecond,13:F2} {m.DecodeGigabytesPerSecond,12:F1} {m.BandwidthFraction,9:P0}");
        foreach (var m in new[] { r.Compiled, r.Reference }.OfType<DecoderMeasurement>())
        {
            if (m.AggregateDecodeTokensPerSecond is double aggregate)
                stdout.WriteLine($"{m.ExecutionPath}: {r.Batch} sequences decoding together {aggregate:F2} tok/s in all ({m.BatchSpeedup:F2}x one sequence)");
        }
        if (r.SpeedupVsReference is double speedup)
            stdout.WriteLine($"compiled vs reference: decode {speedup:F2}x, prefill {r.PrefillSpeedupVsReference:F2}x");
    }
}
