using System.CommandLine;
using System.Text.Json;

namespace GemmaGen.Cli;

/// <summary>
/// <c>gemmagen tokenize --model DIR</c>: reads text on stdin and prints its token ids, comma-separated (from
/// <c>DIR/tokenizer.model</c>, checked against <c>DIR/config.json</c> when there is one). With <c>--jsonl</c> every
/// input line is a JSON string and every output line the ids of that string: one output line per input line, an
/// empty line read as the empty string.
/// </summary>
internal static class TokenizeCommand
{
    public static Command Create(TextReader stdin, TextWriter stdout, TextWriter stderr)
    {
        var model = new Option<string>("--model") { Description = "Directory with tokenizer.model, or a GGUF file (default: the built-in demo model)", HelpName = "DIR|FILE.gguf" };
        var jsonl = new Option<bool>("--jsonl") { Description = "Each input line is a JSON string (an empty line: \"\"); print one line of ids per input line" };
        var bos = new Option<bool>("--bos") { Description = "Start with the BOS token" };
        var command = new Command("tokenize", "Print the token ids of the text on stdin");
        command.Options.Add(model);
        command.Options.Add(jsonl);
        command.Options.Add(bos);
        command.SetAction(parse => Program.Guard(stderr, () =>
        {
            string directory = parse.GetValue(model) ?? BuiltInModel.Directory;
            GemmaTokenizer tokenizer;
            if (!File.Exists(Path.Combine(directory, GemmaModel.TokenizerFileName)) && GgufCheckpoint.FindModelFile(directory) is { } gguf)
            {
                // A GGUF file's config takes its vocabulary size from the same token list.
                tokenizer = GemmaTokenizer.LoadGguf(gguf);
            }
            else
            {
                tokenizer = GemmaTokenizer.Load(Path.Combine(directory, GemmaModel.TokenizerFileName));
                // A tokenizer folder may hold no model; a checkpoint's tokenizer must match its config.
                string config = Path.Combine(directory, Checkpoint.ConfigFileName);
                if (File.Exists(config)) LoadPlan.RequireMatchingVocabulary(Checkpoint.LoadConfig(config), tokenizer);
            }
            bool addBos = parse.GetValue(bos);
            if (!parse.GetValue(jsonl))
            {
                stdout.WriteLine(string.Join(",", tokenizer.Encode(stdin.ReadToEnd(), addBos)));
                return Program.Success;
            }
            int number = 0;
            while (stdin.ReadLine() is { } line)
            {
                number++;
                string text = "";
                try
                {
                    if (line.Length > 0) text = JsonSerializer.Deserialize<string>(line) ?? throw new JsonException("null is not a string");
                }
                catch (JsonException e)
                {
                    throw new UsageException($"stdin line {number}: expected a JSON string ({e.Message})");
                }
                stdout.WriteLine(string.Join(",", tokenizer.Encode(text, addBos)));
            }
            return Program.Success;
        }));
        return command;
    }
}
