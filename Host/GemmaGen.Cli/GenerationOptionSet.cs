using GemmaGen.Kernels;
using System.CommandLine;

namespace GemmaGen.Cli;

/// <summary>The options that shape text generation, shared by <c>run</c> and <c>chat</c>.</summary>
internal sealed class GenerationOptionSet
{
    public Option<string> Model { get; } = new("--model")
    {
        Description = ModelSourceOptions.Description,
        HelpName = "DIR|FILE.gguf",
    };

    public Option<int> MaxTokens { get; } = new("--max-tokens")
    {
        Description = "Tokens to generate at most",
        HelpName = "N",
        DefaultValueFactory = _ => 128,
        CustomParser = NumberOptions.Integer(1),
    };

    public Option<bool> Greedy { get; } = new("--greedy") { Description = "Always take the most likely token (exact, repeatable output)" };

    public Option<float> Temperature { get; } = new("--temperature")
    {
        Description = "Sampling temperature; 0 is greedy",
        HelpName = "T",
        DefaultValueFactory = _ => 0.8f,
        CustomParser = NumberOptions.Number("a number, 0 or more (0 is greedy)"),
    };

    public Option<int> TopK { get; } = new("--top-k")
    {
        Description = "Keep the k most likely tokens (0: all)",
        HelpName = "K",
        DefaultValueFactory = _ => 40,
        CustomParser = NumberOptions.Integer(0),
    };

    public Option<float> TopP { get; } = new("--top-p")
    {
        Description = "Keep the most likely tokens up to probability P (1: all)",
        HelpName = "P",
        DefaultValueFactory = _ => 0.95f,
        CustomParser = NumberOptions.Number("a number above 0, at most 1"),
    };

    public Option<float> MinP { get; } = new("--min-p")
    {
        Description = "Drop tokens below P times the top probability (0: none)",
        HelpName = "P",
        CustomParser = NumberOptions.Number("a number, 0 or more and below 1"),
    };

    public Option<float> RepetitionPenalty { get; } = new("--repeat-penalty")
    {
        Description = "Penalty for tokens already in the context (1: off)",
        HelpName = "R",
        DefaultValueFactory = _ => 1f,
        CustomParser = NumberOptions.Number("a number above 0 (1 is off)"),
    };

    public Option<int?> Seed { get; } = new("--seed")
    {
        Description = "Random seed: the same seed gives the same text",
        HelpName = "N",
        CustomParser = NumberOptions.OptionalInteger(int.MinValue),
    };

    public Option<int?> Threads { get; } = CreateThreads();

    public Option<int?> Context { get; } = new("--context")
    {
        Description = "Positions of the KV cache (default: the model's, at most 8192)",
        HelpName = "N",
        CustomParser = NumberOptions.OptionalInteger(1),
    };

    public Option<string?> Quant { get; } = new("--quant")
    {
        Description = $"Convert the weights at load to {WeightFormat.ListNames(WeightFormat.All)} (bf16: F32/F16 checkpoints in half the memory; q8_0, q4_0: 8- and 4-bit blocks)",
        HelpName = "FORMAT",
    };

    public Option<string?> Kv { get; } = CreateKv();

    /// <summary><c>--kv f32|bf16|q8_0</c>: how the KV cache stores keys and values; also on <c>bench</c> and <c>serve</c>.</summary>
    internal static Option<string?> CreateKv() => new("--kv")
    {
        Description = "KV cache precision: f32 (the default; exact), bf16 (half the memory and the bytes attention reads) "
            + "or q8_0 (int8 blocks of 32 with a bf16 scale: 17/64 of the memory; head_dim a multiple of 32)",
        HelpName = "PRECISION",
    };

    /// <summary>Each KV precision by the name <c>--kv</c> takes and reports.</summary>
    private static readonly (string Name, KvPrecision Precision)[] KvNames =
        [("f32", KvPrecision.F32), ("bf16", KvPrecision.BF16), ("q8_0", KvPrecision.Q8_0)];

    /// <summary>The name <c>--kv</c> gives <paramref name="precision"/>.</summary>
    internal static string KvName(KvPrecision precision) => KvNames.First(n => n.Precision == precision).Name;

    /// <summary>The precision <c>--kv</c> names (null: f32).</summary>
    /// <exception cref="UsageException">Not one of the names.</exception>
    internal static KvPrecision ParseKv(string? kv)
    {
        if (kv == null) return KvPrecision.F32;
        foreach (var (name, precision) in KvNames)
            if (string.Equals(name, kv, StringComparison.OrdinalIgnoreCase)) return precision;
        string names = string.Join(", ", KvNames[..^1].Select(n => n.Name)) + " or " + KvNames[^1].Name;
        throw new UsageException($"--kv {kv}: expected {names}");
    }

    public Option<string?> Activations { get; } = CreateActivations();

    /// <summary><c>--activations int16|int8</c>: how the Q4_0 blocks' products round activations; also on <c>bench</c>
    /// and <c>serve</c>.</summary>
    internal static Option<string?> CreateActivations() => new("--activations")
    {
        Description = "How the Q4_0 blocks' products round activations in decoding: int16 (the default; within about 1e-3 "
            + "of the exact logits) or int8 (per 16 values, as llama.cpp rounds them: faster where the CPU, not the memory, "
            + "bounds decoding; logits about as far from the exact ones as llama.cpp's). Other formats ignore it",
        HelpName = "PRECISION",
    };

    /// <summary>Each activation rounding by the name <c>--activations</c> takes and reports.</summary>
    private static readonly (string Name, DecodeActivations Value)[] ActivationNames =
        [("int16", DecodeActivations.Int16), ("int8", DecodeActivations.Int8)];

    /// <summary>The name <c>--activations</c> gives <paramref name="value"/>.</summary>
    internal static string ActivationsName(DecodeActivations value) => ActivationNames.First(n => n.Value == value).Name;

    /// <summary>The rounding <c>--activations</c> names (null: int16).</summary>
    /// <exception cref="UsageException">Not one of the names.</exception>
    internal static DecodeActivations ParseActivations(string? name)
    {
        if (name == null) return DecodeActivations.Int16;
        foreach (var (known, value) in ActivationNames)
            if (string.Equals(known, name, StringComparison.OrdinalIgnoreCase)) return value;
        throw new UsageException($"--activations {name}: expected int16 or int8");
    }

    public Option<bool> Reference { get; } = new("--reference")
    {
        Description = "Run the runtime-shape reference decoder even when a compiled spec matches the model",
    };

    public Option<bool> Stats { get; } = new("--no-stats") { Description = "Do not print the statistics line after generation" };

    /// <summary><c>--threads N</c>, at most one per processor (more would only take turns on the cores); also on <c>bench</c>.</summary>
    internal static Option<int?> CreateThreads() => new("--threads")
    {
        Description = $"Worker threads, 1 to the processor count ({Environment.ProcessorCount}; the default)",
        HelpName = "N",
        CustomParser = NumberOptions.OptionalInteger(1, Environment.ProcessorCount, "the processor count"),
    };

    public Option<bool> NoCheck { get; } = ModelSourceOptions.NoCheckOption();

    public void AddTo(Command command)
    {
        foreach (var option in new Option[] { Model, MaxTokens, Greedy, Temperature, TopK, TopP, MinP, RepetitionPenalty, Seed, Threads, Context, Quant, Kv, Activations, Reference, Stats, NoCheck })
            command.Options.Add(option);
    }

    /// <summary>The generation options given on the command line, validated; sampling options that greedy decoding
    /// ignores are warned about on stderr.</summary>
    /// <exception cref="UsageException">A value is out of range.</exception>
    public GenerationOptions Generation(ParseResult parse, bool ignoreEndTokens = false)
    {
        var sampling = new SamplingOptions
        {
            Greedy = parse.GetValue(Greedy),
            Temperature = Check(parse, Temperature, value => new SamplingOptions { Temperature = value }),
            TopK = parse.GetValue(TopK),
            TopP = Check(parse, TopP, value => new SamplingOptions { TopP = value }),
            MinP = Check(parse, MinP, value => new SamplingOptions { MinP = value }),
            RepetitionPenalty = Check(parse, RepetitionPenalty, value => new SamplingOptions { RepetitionPenalty = value }),
            Seed = parse.GetValue(Seed),
        };
        WarnIneffective(parse, sampling);
        return new GenerationOptions { MaxTokens = parse.GetValue(MaxTokens), Sampling = sampling, IgnoreEndTokens = ignoreEndTokens };
    }

    /// <summary>
    /// <c>warning: ...</c> on stderr for each sampling option typed on the command line that greedy decoding
    /// (<c>--greedy</c>, or <c>--temperature 0</c>) ignores; defaults are not warned about.
    /// </summary>
    private void WarnIneffective(ParseResult parse, SamplingOptions sampling)
    {
        string? greedy = sampling.Greedy ? "--greedy" : sampling.Temperature == 0 ? "--temperature 0 (greedy decoding)" : null;
        if (greedy is null) return;
        var stderr = parse.InvocationConfiguration.Error;
        foreach (var option in new Option[] { Temperature, TopK, TopP, MinP, Seed })
        {
            if (option == Temperature && !sampling.Greedy) continue;
            if (parse.GetResult(option) is { Implicit: false })
                stderr.WriteLine($"warning: {option.Name} has no effect with {greedy}");
        }
    }

    /// <summary>The value of one sampling option, validated on its own so that the error names the option as typed.</summary>
    private static T Check<T>(ParseResult parse, Option<T> option, Func<T, SamplingOptions> alone)
    {
        T value = parse.GetValue(option)!;
        try
        {
            alone(value).Validate();
        }
        catch (ArgumentException e)
        {
            throw new UsageException($"{option.Name}: {e.Message}");
        }
        return value;
    }

    /// <summary>The format <c>--quant</c> names, or null to keep the checkpoint's.</summary>
    internal static WeightFormat? QuantFormat(string? quant) => quant == null ? null : ParseFormat("--quant", quant);

    /// <summary>The format of <paramref name="among"/> (default <see cref="WeightFormat.All"/>, the conversion targets)
    /// <paramref name="name"/> names, for option <paramref name="option"/>.</summary>
    /// <exception cref="UsageException">No format has that name; the message lists them.</exception>
    internal static WeightFormat ParseFormat(string option, string name, IReadOnlyList<WeightFormat>? among = null) =>
        WeightFormat.Find(name, among) ?? throw new UsageException($"{option} {name}: expected {WeightFormat.ListNames(among ?? WeightFormat.All)}");

    /// <summary>Loads the model (the built-in demo when no --model is given), drawing a progress bar on a terminal.</summary>
    public GemmaModel Load(ParseResult parse, TextWriter stderr)
    {
        string directory = parse.GetValue(Model) ?? BuiltInModel.Directory;
        int? threads = parse.GetValue(Threads), context = parse.GetValue(Context);
        var format = QuantFormat(parse.GetValue(Quant));
        var kv = ParseKv(parse.GetValue(Kv));
        var activations = ParseActivations(parse.GetValue(Activations));
        using var progress = new ProgressBar(stderr, "loading " + Path.GetFileName(Path.GetFullPath(directory).TrimEnd(Path.DirectorySeparatorChar)));
        var model = GemmaModel.Load(directory, new GemmaModelOptions
        {
            ForceReference = parse.GetValue(Reference),
            Format = format,
            KvCache = kv,
            Activations = activations,
            Threads = threads,
            MaxContext = context,
            LoadProgress = progress.Report,
            CheckWeights = !parse.GetValue(NoCheck),
        });
        try
        {
            Program.Warn(stderr, model.Warnings);
            model.RequireTokenizer();
            if (context > model.Config.MaxPositionEmbeddings)
                throw new UsageException($"--context is {context}, more than the model's context of {model.Config.MaxPositionEmbeddings} (max_position_embeddings)");
            return model;
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }
}

/// <summary>The demo model shipped with the command (copied next to it at build time).</summary>
internal static class BuiltInModel
{
    public static string Directory => Path.Combine(AppContext.BaseDirectory, "models", "gemma2-demo");
}
