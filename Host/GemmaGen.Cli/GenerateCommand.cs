using System.CommandLine;

namespace GemmaGen.Cli;

/// <summary>
/// <c>gemmagen generate</c>: greedy continuation of a token prompt through the KV cache (the built-in demo model
/// unless a model is given); prints the generated ids, comma-separated, on one line of stdout and <c>path: ...</c>
/// on stderr. Generation runs for exactly <c>--max-new-tokens</c> tokens unless <c>--stop-at-eos</c> is given.
/// </summary>
internal static class GenerateCommand
{
    /// <summary>Creates the command; its output goes to <paramref name="stdout"/> and <paramref name="stderr"/>.</summary>
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var model = new ModelSourceOptions();
        var tokens = new Option<string>("--tokens")
        {
            Description = "The prompt as comma-separated token ids, BOS included (for example 2,651,6037)",
            HelpName = "IDS",
            Required = true,
        };
        var maxNewTokens = new Option<int>("--max-new-tokens")
        {
            Description = "Tokens to generate",
            HelpName = "N",
            Required = true,
            CustomParser = NumberOptions.Integer(1),
        };
        // Kept so that scripts written when they were required still run.
        var greedy = new Option<bool>("--greedy") { Description = "Has no effect: greedy decoding is the default and the only one" };
        var ids = new Option<bool>("--ids") { Description = "Has no effect: token ids are the default and the only output" };
        var stopAtEos = new Option<bool>("--stop-at-eos") { Description = "Stop after a token of the config's eos_token_id" };
        var command = new Command("generate", "Continue a token prompt greedily and print the generated token ids (the built-in demo model unless --model or --config is given)");
        model.AddTo(command);
        command.Options.Add(tokens);
        command.Options.Add(maxNewTokens);
        command.Options.Add(greedy);
        command.Options.Add(ids);
        command.Options.Add(stopAtEos);
        command.SetAction(parse => Program.Guard(stderr, () =>
        {
            int[] prompt = TokenList.Parse(parse.GetValue(tokens)!);
            int count = parse.GetValue(maxNewTokens);
            using var engine = Load(model, parse, prompt, count);
            Program.Warn(stderr, engine.Warnings);
            int[] generated = engine.GenerateGreedy(prompt, count, parse.GetValue(stopAtEos));
            stderr.WriteLine($"path: {engine.ExecutionPath}");
            stdout.WriteLine(string.Join(",", generated));
            return Program.Success;
        }));
        return command;
    }

    private static GemmaModel Load(ModelSourceOptions model, ParseResult parse, int[] prompt, int count)
    {
        using var source = model.Open(parse);
        TokenList.CheckVocabulary(prompt, source.Config);
        // The last generated token is never fed back, so the cache needs prompt + count - 1 positions.
        long positions = (long)prompt.Length + count - 1;
        TokenList.CheckContext(positions, source.Config, "--tokens and --max-new-tokens");
        return source.Load(model.ForceReference(parse), maxContext: (int)positions, model.CheckWeights(parse));
    }
}
