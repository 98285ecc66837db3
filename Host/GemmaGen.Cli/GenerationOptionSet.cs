using GemmaGen.Kernels;
using System.CommandLine;

namespace GemmaGen.Cli;

/// <summary>The options that shape text generation, shared by <c>run</c> and <c>chat</c>.</summary>
internal sealed class GenerationOptionSet
{
    public Option<string> Model { get; } = new("--model")
    {
        Description = "Hugging Face checkpoint directory (config.json, *.safetensors, tokenizer.model); default: the built-in demo model",
        HelpName = "DIR",
    };

    public Option<int> MaxTokens { get; } = new("--max-tokens")
    {
        Description = "Tokens to generate at most",
        HelpName = "N",
        DefaultValueFactory = _ => 128,
    };

    public Option<bool> Greedy { get; } = new("--greedy") { Description = "Always take the most likely token (exact, repeatable output)" };

    public Option<float> Temperature { get; } = new("--temperature")
    {
        Description = "Sampling temperature; 0 is greedy",
        HelpName = "T",
        DefaultValueFactory = _ => 0.8f,
    };

    public Option<int> TopK { get; } = new("--top-k") { Description = "Keep the k most likely tokens (0: all)", HelpName = "K", DefaultValueFactory = _ => 40 };

    public Option<float> TopP { get; } = new("--top-p") { Description = "Keep the most likely tokens up to probability P (1: all)", HelpName = "P", DefaultValueFactory = _ => 0.95f };

    public Option<float> MinP { get; } = new("--min-p") { Description = "Drop tokens below P times the top probability (0: none)", HelpName = "P" };

    public Option<float> RepetitionPenalty { get; } = new("--repeat-penalty")
    {
        Description = "Penalty for tokens already in the context (1: off)",
        HelpName = "R",
        DefaultValueFactory = _ => 1f,
    };

    public Option<int?> Seed { get; } = new("--seed") { Description = "Random seed: the same seed gives the same text", HelpName = "N" };

    public Option<int?> Threads { get; } = new("--threads") { Description = "Worker threads (default: all cores)", HelpName = "N" };

    public Option<int?> Context { get; } = new("--context") { Description = "Positions of the KV cache (default: the model's, at most 8192)", HelpName = "N" };

    public Option<string?> Quant { get; } = new("--quant")
    {
        Description = $"Convert the weights at load to {WeightFormat.ListNames(WeightFormat.All)} (bf16: F32/F16 checkpoints in half the memory; q8_0, q4_0: 8- and 4-bit blocks)",
        HelpName = "FORMAT",
    };

    public Option<bool> Reference { get; } = new("--reference")
    {
        Description = "Run the runtime-shape reference decoder even when a compiled spec matches the model",
    };

    public Option<bool> Stats { get; } = new("--no-stats") { Description = "Do not print the statistics line after generation" };

    public void AddTo(Command command)
    {
        foreach (var option in new Option[] { Model, MaxTokens, Greedy, Temperature, TopK, TopP, MinP, RepetitionPenalty, Seed, Threads, Context, Quant, Reference, Stats })
            command.Options.Add(option);
    }

    /// <summary>The generation options given on the command line, validated.</summary>
    /// <exception cref="UsageException">A value is out of range.</exception>
    public GenerationOptions Generation(ParseResult parse, bool ignoreEndTokens = false)
    {
        int maxTokens = parse.GetValue(MaxTokens);
        if (maxTokens < 1) throw new UsageException($"--max-tokens is {maxTokens}; expected 1 or more");
        var sampling = new SamplingOptions
        {
            Greedy = parse.GetValue(Greedy),
            Temperature = Check(parse, Temperature, value => new SamplingOptions { Temperature = value }),
            TopK = Check(parse, TopK, value => new SamplingOptions { TopK = value }),
            TopP = Check(parse, TopP, value => new SamplingOptions { TopP = value }),
            MinP = Check(parse, MinP, value => new SamplingOptions { MinP = value }),
            RepetitionPenalty = Check(parse, RepetitionPenalty, value => new SamplingOptions { RepetitionPenalty = value }),
            Seed = parse.GetValue(Seed),
        };
        return new GenerationOptions { MaxTokens = maxTokens, Sampling = sampling, IgnoreEndTokens = ignoreEndTokens };
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

    /// <summary>The registered format <paramref name="name"/> names, for option <paramref name="option"/>.</summary>
    /// <exception cref="UsageException">No format has that name; the message lists them.</exception>
    internal static WeightFormat ParseFormat(string option, string name) =>
        WeightFormat.Find(name) ?? throw new UsageException($"{option} {name}: expected {WeightFormat.ListNames(WeightFormat.All)}");

    /// <summary>Loads the model (the built-in demo when no --model is given), drawing a progress bar on a terminal.</summary>
    public GemmaModel Load(ParseResult parse, TextWriter stderr)
    {
        string directory = parse.GetValue(Model) ?? BuiltInModel.Directory;
        int? threads = parse.GetValue(Threads), context = parse.GetValue(Context);
        if (threads is < 1) throw new UsageException($"--threads is {threads}; expected 1 or more");
        if (context is < 1) throw new UsageException($"--context is {context}; expected 1 or more");
        var format = QuantFormat(parse.GetValue(Quant));
        using var progress = new ProgressBar(stderr, "loading " + Path.GetFileName(Path.GetFullPath(directory).TrimEnd(Path.DirectorySeparatorChar)));
        var model = GemmaModel.Load(directory, new GemmaModelOptions
        {
            ForceReference = parse.GetValue(Reference),
            Format = format,
            Threads = threads,
            MaxContext = context,
            LoadProgress = progress.Report,
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
