using System.CommandLine;
using GemmaGen.Kernels;
using GemmaGen.Specs;

namespace GemmaGen.Cli;

/// <summary>An opened model before its weights are loaded: the config (to check input against) and the tensors.</summary>
internal sealed class ModelSource(Gemma2Config config, ITensorSource tensors, IDisposable owner) : IDisposable
{
    /// <summary>The model's config.</summary>
    public Gemma2Config Config { get; } = config;

    /// <summary>Where the weights come from: a checkpoint or synthetic weights.</summary>
    public ITensorSource Tensors { get; } = tensors;

    /// <summary>Loads the weights and creates the decoder; this source may be disposed afterwards.</summary>
    public GemmaModel Load(bool forceReference, int maxContext, bool checkWeights) =>
        GemmaModel.Load(Config, Tensors, new GemmaModelOptions { ForceReference = forceReference, MaxContext = maxContext, CheckWeights = checkWeights });

    /// <summary>Releases the checkpoint's mapped files or the synthetic tensors.</summary>
    public void Dispose() => owner.Dispose();
}

/// <summary>The options that choose a model, shared by the commands that run one:
/// <c>--model DIR|FILE.gguf</c>, or <c>--config FILE --synthetic</c>, or neither for the built-in demo model; and <c>--reference</c>.</summary>
internal sealed class ModelSourceOptions
{
    /// <summary><c>--model DIR|FILE.gguf</c>: a Hugging Face checkpoint directory or a GGUF file.</summary>
    public Option<string> Model { get; } = new("--model")
    {
        Description = Description,
        HelpName = "DIR|FILE.gguf",
    };

    /// <summary>What <c>--model</c> takes, for every command's help.</summary>
    internal const string Description =
        "Hugging Face checkpoint directory (config.json and model.safetensors, or sharded with model.safetensors.index.json), " +
        "or a GGUF file (or a directory holding exactly one .gguf and no config.json); default: the built-in demo model";

    /// <summary><c>--config FILE</c>: a config.json to run with synthetic weights.</summary>
    public Option<string> Config { get; } = new("--config")
    {
        Description = "A Gemma 2 config.json to run with synthetic weights (with --synthetic) instead of a checkpoint",
        HelpName = "FILE",
    };

    /// <summary><c>--synthetic</c>: weights from the fixture formula.</summary>
    public Option<bool> Synthetic { get; } = new("--synthetic")
    {
        Description = "Use synthetic weights (the fixture formula) for the model --config describes",
    };

    /// <summary><c>--reference</c>: force the runtime-shape reference decoder.</summary>
    public Option<bool> Reference { get; } = new("--reference")
    {
        Description = "Run the runtime-shape reference decoder even when a compiled spec matches the model",
    };

    /// <summary><c>--no-check</c>: skip the scan for NaN and infinite weights.</summary>
    public Option<bool> NoCheck { get; } = NoCheckOption();

    /// <summary>A <c>--no-check</c> option (also used by <c>run</c> and <c>chat</c>).</summary>
    internal static Option<bool> NoCheckOption() => new("--no-check")
    {
        Description = "Do not scan the weights for NaN and infinite values at load",
    };

    /// <summary>Adds the options to <paramref name="command"/>.</summary>
    public void AddTo(Command command)
    {
        command.Options.Add(Model);
        command.Options.Add(Config);
        command.Options.Add(Synthetic);
        command.Options.Add(Reference);
        command.Options.Add(NoCheck);
    }

    /// <summary>Opens the checkpoint or GGUF file (the built-in demo model when neither --model nor --config is given), or reads
    /// the config and prepares synthetic weights.</summary>
    /// <exception cref="UsageException">The options conflict or are incomplete.</exception>
    /// <exception cref="CheckpointException">The checkpoint or config is missing or malformed.</exception>
    public ModelSource Open(ParseResult parse)
    {
        string? model = parse.GetValue(Model), config = parse.GetValue(Config);
        bool synthetic = parse.GetValue(Synthetic);
        if (model is not null && config is not null)
            throw new UsageException("give either --model DIR or --config FILE --synthetic, not both");
        if (config is not null)
        {
            if (!synthetic) throw new UsageException("--config FILE runs with synthetic weights: add --synthetic (or give a checkpoint with --model DIR)");
            var weights = new SyntheticWeights(Checkpoint.LoadConfig(config));
            return new ModelSource(weights.Config, weights, weights);
        }
        if (synthetic) throw new UsageException("--synthetic goes with --config FILE; a checkpoint has its own weights");
        return OpenModel(model ?? BuiltInModel.Directory);
    }

    /// <summary>Opens the GGUF file or Hugging Face checkpoint a <c>--model</c> path names.</summary>
    /// <exception cref="CheckpointException">The checkpoint is missing, ambiguous or malformed.</exception>
    public static ModelSource OpenModel(string path)
    {
        if (GgufCheckpoint.FindModelFile(path) is { } ggufPath)
        {
            var gguf = GgufCheckpoint.Open(ggufPath);
            return new ModelSource(gguf.Config, gguf, gguf);
        }
        var checkpoint = Checkpoint.Open(path);
        return new ModelSource(checkpoint.Config, checkpoint, checkpoint);
    }

    /// <summary>Whether <c>--reference</c> was given.</summary>
    public bool ForceReference(ParseResult parse) => parse.GetValue(Reference);

    /// <summary>Whether the weights are to be scanned (no <c>--no-check</c>).</summary>
    public bool CheckWeights(ParseResult parse) => !parse.GetValue(NoCheck);
}
