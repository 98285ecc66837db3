using System.CommandLine;
using RadLine;
using Spectre.Console;

namespace GemmaGen.Cli;

/// <summary>
/// <c>gemmagen chat</c>: an interactive multi-turn conversation. Each line of input is a user turn; <c>/reset</c>
/// starts over, <c>/exit</c> (or end of input, Ctrl+D) quits. On a terminal the prompt has line editing and history
/// (<see cref="ChatLineEditor"/>); piped stdin is read as it is, so it can be scripted. Ctrl+C stops the current reply
/// and keeps the conversation.
/// </summary>
internal static class ChatCommand
{
    public static Command Create(TextReader stdin, TextWriter stdout, TextWriter stderr)
    {
        var options = new GenerationOptionSet();
        var system = new Option<string?>("--system") { Description = "A system prompt, folded into the first user turn", HelpName = "TEXT" };
        var command = new Command("chat", "Chat with the model (the built-in demo model unless --model is given); /reset, /exit");
        command.Options.Add(system);
        options.AddTo(command);
        command.SetAction(parse => Program.Guard(stderr, () =>
        {
            var generation = options.Generation(parse);
            using var model = options.Load(parse, stderr);
            var chat = CreateChat(model, parse.GetValue(system));
            bool interactive = ReferenceEquals(stdin, Console.In) && !Console.IsInputRedirected;
            // Line editing where the terminal is both ends; a script on stdin is read as it is.
            LineEditor? editor = interactive && LineEditor.IsSupported(AnsiConsole.Console) ? ChatLineEditor.Create(AnsiConsole.Console) : null;
            using var cancellation = new Cancellation();
            NoteDemo(parse, options, stderr);
            if (interactive) stderr.WriteLine($"[{model.ExecutionPath}] /reset starts over, /exit or Ctrl+D quits");
            while (true)
            {
                string? line;
                if (editor != null)
                {
                    line = ChatLineEditor.Read(editor);
                }
                else
                {
                    if (interactive) stdout.Write("> ");
                    line = stdin.ReadLine();
                    // Ctrl+D leaves the cursor after the prompt: the shell's prompt goes on a line of its own.
                    if (line == null && interactive) stdout.WriteLine();
                }
                if (line == null || line.Trim() == "/exit") break;
                if (line.Trim() == "/reset")
                {
                    chat.Reset();
                    stderr.WriteLine("[conversation reset]");
                    continue;
                }
                if (line.Trim().Length == 0) continue;
                ChatReply reply;
                using (var scope = cancellation.Begin())
                    reply = chat.Send(line, generation, piece => RunCommand.Write(stdout, piece), scope.Token);
                stdout.WriteLine();
                if (reply.Result.StopReason == StopReason.ContextFull && reply.Result.Tokens.Length == 0)
                {
                    stderr.WriteLine($"[the context of {chat.Session.MaxContext} tokens is full: /reset to start over]");
                    continue;
                }
                RunCommand.Report(stderr, reply.Result, model, parse.GetValue(options.Stats));
            }
            return Program.Success;
        }));
        return command;
    }

    /// <summary>Says, before the first turn, that the built-in demo model (no <c>--model</c>) is no chat model.</summary>
    internal static void NoteDemo(ParseResult parse, GenerationOptionSet options, TextWriter stderr)
    {
        if (parse.GetValue(options.Model) == null)
            stderr.WriteLine("note: the built-in demo model is not instruction-tuned; give --model for a chat model");
    }

    /// <summary>A chat session, or a usage error when the tokenizer has no chat markers.</summary>
    internal static ChatSession CreateChat(GemmaModel model, string? system)
    {
        var tokenizer = model.RequireTokenizer();
        if (tokenizer.StartOfTurnId is null || tokenizer.EndOfTurnId is null)
        {
            string file = model.Directory is { } directory ? Path.Combine(directory, GemmaModel.TokenizerFileName) : "the tokenizer";
            throw new UsageException($"{file}: no <start_of_turn> and <end_of_turn> pieces; the chat format needs a Gemma chat vocabulary");
        }
        return model.CreateChat(system);
    }
}
