using System.CommandLine;

namespace GemmaGen.Cli;

/// <summary>
/// <c>gemmagen logits</c>: one full forward pass over the given tokens; writes the logits of every position to a
/// safetensors file as one F32 tensor <c>logits</c> [L, V], and prints <c>path: ...</c> on stderr.
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
        var command = new Command("logits", "Run one forward pass over tokens and write the logits of every position");
        model.AddTo(command);
        command.Options.Add(tokens);
        command.Options.Add(output);
        command.SetAction(parse => Program.Guard(stderr, () =>
        {
            int[] ids = TokenList.Parse(parse.GetValue(tokens)!);
            string path = parse.GetValue(output)!;
            using var engine = Load(model, parse, ids);
            float[] logits = engine.ComputeLogits(ids);
            new SafetensorsWriter().AddF32(TensorName, logits, ids.Length, engine.Config.VocabSize).Save(path);
            stderr.WriteLine($"path: {engine.ExecutionPath}");
            return Program.Success;
        }));
        return command;
    }

    private static GemmaModel Load(ModelSourceOptions model, ParseResult parse, int[] ids)
    {
        using var source = model.Open(parse);
        TokenList.CheckVocabulary(ids, source.Config);
        TokenList.CheckContext(ids.Length, source.Config, "--tokens");
        return source.Load(model.ForceReference(parse), maxContext: ids.Length, model.CheckWeights(parse));
    }
}
