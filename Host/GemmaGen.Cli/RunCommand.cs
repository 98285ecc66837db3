using System.CommandLine;

namespace GemmaGen.Cli;

/// <summary>
/// <c>gemmagen run [PROMPT]</c>: streams a continuation of the prompt (read from stdin when not given), or with
/// <c>--chat</c> a reply in the Gemma chat format. With no <c>--model</c> it runs the built-in demo model. Ctrl+C
/// stops the generation; what was generated and the statistics line are printed, and the exit code is 130.
/// </summary>
internal static class RunCommand
{
    public static Command Create(TextReader stdin, TextWriter stdout, TextWriter stderr)
    {
        var options = new GenerationOptionSet();
        var prompt = new Argument<string?>("PROMPT") { Description = "The text to continue (default: read stdin, less its final line end)", Arity = ArgumentArity.ZeroOrOne };
        var chat = new Option<bool>("--chat") { Description = "Wrap the prompt in the chat format and print the model's reply" };
        var system = new Option<string?>("--system") { Description = "A system prompt, folded into the user turn (with --chat)", HelpName = "TEXT" };
        var ignoreEos = new Option<bool>("--ignore-eos") { Description = "Keep generating past end tokens" };
        var command = new Command("run", "Generate text from a prompt (the built-in demo model unless --model is given)");
        command.Arguments.Add(prompt);
        command.Options.Add(chat);
        command.Options.Add(system);
        command.Options.Add(ignoreEos);
        options.AddTo(command);
        command.SetAction(parse => Program.Guard(stderr, () =>
        {
            string text = parse.GetValue(prompt) ?? ReadStdin(stdin);
            var generation = options.Generation(parse, parse.GetValue(ignoreEos));
            if (parse.GetValue(system) != null && !parse.GetValue(chat)) throw new UsageException("--system goes with --chat");
            using var model = options.Load(parse, stderr);
            using var cancellation = new Cancellation();
            GenerationResult result;
            if (parse.GetValue(chat))
            {
                var session = ChatCommand.CreateChat(model, parse.GetValue(system));
                ChatCommand.NoteDemo(parse, options, stderr);
                using (var scope = cancellation.Begin())
                    result = session.Send(text, generation, piece => Write(stdout, piece), scope.Token).Result;
                if (result.StopReason == StopReason.ContextFull && result.Tokens.Length == 0)
                    throw new UsageException($"the prompt does not fit in the context of {session.Session.MaxContext} tokens");
            }
            else
            {
                var tokenizer = model.RequireTokenizer();
                int[] ids = tokenizer.Encode(text, addBos: true);
                var session = model.CreateSession();
                if (!session.Fits(ids.Length + 1))
                    throw new UsageException($"the prompt is {ids.Length} tokens; the context holds {session.MaxContext}");
                var stream = tokenizer.CreateStreamingDecoder();
                using (var scope = cancellation.Begin())
                    result = session.Generate(ids, generation, id => Write(stdout, stream.Push(id)), scope.Token);
                Write(stdout, stream.Flush());
            }
            stdout.WriteLine();
            Report(stderr, result, model, parse.GetValue(options.Stats));
            return result.StopReason == StopReason.Cancelled ? Program.Interrupted : Program.Success;
        }));
        return command;
    }

    internal static void Write(TextWriter stdout, string text)
    {
        if (text.Length == 0) return;
        stdout.Write(text);
        stdout.Flush();
    }

    /// <summary>The stats line (and why generation stopped early) on stderr.</summary>
    internal static void Report(TextWriter stderr, GenerationResult result, GemmaModel model, bool quiet)
    {
        if (result.StopReason == StopReason.ContextFull) stderr.WriteLine("[stopped: the context is full]");
        if (result.StopReason == StopReason.Cancelled) stderr.WriteLine("[stopped]");
        if (!quiet) stderr.WriteLine($"[{model.ExecutionPath}] {result.Stats}");
    }

    private static string ReadStdin(TextReader stdin)
    {
        bool console = ReferenceEquals(stdin, Console.In);
        if (console && !Console.IsInputRedirected) throw new UsageException("no prompt: give one as an argument or on stdin");
        string text = stdin.ReadToEnd();
        // The line end that closes the input (echo "x" | gemmagen run) is not part of the prompt: the same tokens as
        // gemmagen run "x".
        if (text.EndsWith("\r\n", StringComparison.Ordinal)) text = text[..^2];
        else if (text.EndsWith('\n')) text = text[..^1];
        if (text.Length == 0) throw new UsageException("no prompt: give one as an argument or on stdin");
        return text;
    }
}
