using System.CommandLine;

namespace GemmaGen.Cli;

/// <summary>
/// <c>gemmagen logits</c>: one full forward pass over the given tokens (the built-in demo model unless a model is
/// given); writes the logits of every position to a safetensors file as one F32 tensor <c>logits</c> [L, V], and
/// prints <c>path: ...</c> on stderr.
/// </summary>
internal static class LogitsCommand
{
    /// <summary>The name of the tensor written.</summary>
    public const string TensorName = "logits";

    /// <summary>Creates the command; its output goes to <paramref name="stderr"/>.</summary>
    public static Command Create(TextWriter stderr)
    {
        var model = new ModelSourceOptions();
        var tokens = new Option<string>("--tokens")
        {
            Description = "Comma-separated token ids, BOS included (for example 2,651,6037)",
            HelpName = "IDS",
            Required = true,
        };
        var output = new Option<string>("--out")
        {
            Description = "The safetensors file to write: tensor 'logits', F32 [tokens, vocab]",
            HelpName = "FILE",
            Required = true,
        };
        output.Validators.Add(result =>
        {
            string path = result.GetValueOrDefault<string>() ?? "";
            if (OutputFileProblem(path) is { } problem) result.AddError($"--out {(path.Length == 0 ? "''" : path)}: {problem}");
        });
        var command = new Command("logits", "Run one forward pass over tokens and write the logits of every position (the built-in demo model unless --model or --config is given)");
        model.AddTo(command);
        command.Options.Add(tokens);
        command.Options.Add(output);
        command.SetAction(parse => Program.Guard(stderr, () =>
        {
            int[] ids = TokenList.Parse(parse.GetValue(tokens)!);
            string path = parse.GetValue(output)!;
            using var engine = Load(model, parse, ids);
            Program.Warn(stderr, engine.Warnings);
            float[] logits = engine.ComputeLogits(ids);
            new SafetensorsWriter().AddF32(TensorName, logits, ids.Length, engine.Config.VocabSize).Save(path);
            stderr.WriteLine($"path: {engine.ExecutionPath}");
            return Program.Success;
        }));
        return command;
    }

    /// <summary>Why <paramref name="path"/> cannot be the file to write, or null; checked before the model loads.</summary>
    private static string? OutputFileProblem(string path)
    {
        if (path.Length == 0) return "expected the name of a file to write";
        if (Directory.Exists(path) || Path.EndsInDirectorySeparator(path)) return "names a folder; expected a file to write";
        string folder = Path.GetDirectoryName(Path.GetFullPath(path))!;
        return Directory.Exists(folder) ? null : $"the folder {folder} does not exist";
    }

    private static GemmaModel Load(ModelSourceOptions model, ParseResult parse, int[] ids)
    {
        using var source = model.Open(parse);
        TokenList.CheckVocabulary(ids, source.Config);
        TokenList.CheckContext(ids.Length, source.Config, "--tokens");
        return source.Load(model.ForceReference(parse), maxContext: ids.Length, model.CheckWeights(parse));
    }
}
