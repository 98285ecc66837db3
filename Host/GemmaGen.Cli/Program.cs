using System.CommandLine;
using System.CommandLine.Invocation;
using GemmaGen.Kernels;

namespace GemmaGen.Cli;

/// <summary>The <c>gemmagen</c> command line.</summary>
public static class Program
{
    /// <summary>Exit code of a run that succeeded.</summary>
    public const int Success = 0;

    /// <summary>Exit code of an unexpected failure (a bug): reported without a stack trace.</summary>
    public const int InternalError = 1;

    /// <summary>Exit code of bad input: unparsable arguments, a missing or malformed model (NaN weights included), a bad
    /// token list, a model whose logits are not finite.</summary>
    public const int BadInput = 2;

    /// <summary>Exit code of a run stopped by Ctrl+C (128 + SIGINT, as shells report it), after what was generated
    /// and the statistics line were printed.</summary>
    public const int Interrupted = 130;

    /// <summary>Runs the command line on the console.</summary>
    public static int Main(string[] args)
    {
        Console.OutputEncoding = System.Text.Encoding.UTF8;
        Console.InputEncoding = System.Text.Encoding.UTF8;
        return Run(args, Console.In, Console.Out, Console.Error);
    }

    /// <summary>Runs the command line with its output on the given writers.</summary>
    /// <returns>The exit code: <see cref="Success"/>, <see cref="BadInput"/>, <see cref="InternalError"/> or <see cref="Interrupted"/>.</returns>
    public static int Run(string[] args, TextWriter stdout, TextWriter stderr) => Run(args, TextReader.Null, stdout, stderr);

    /// <summary>Runs the command line with its input and output on the given reader and writers. With no arguments
    /// it prints the usage on <paramref name="stderr"/> and returns <see cref="BadInput"/>: no command was given.</summary>
    public static int Run(string[] args, TextReader stdin, TextWriter stdout, TextWriter stderr)
    {
        var root = CreateRoot(stdin, stdout, stderr);
        if (args.Length == 0)
        {
            root.Parse("--help").Invoke(new InvocationConfiguration { Output = stderr, Error = stderr });
            return BadInput;
        }
        var parse = root.Parse(args);
        if (parse.Action is ParseErrorAction)
        {
            foreach (var error in parse.Errors) stderr.WriteLine($"error: {error.Message}");
            return BadInput;
        }
        return parse.Invoke(new InvocationConfiguration { Output = stdout, Error = stderr, EnableDefaultExceptionHandler = false });
    }

    /// <summary>The command tree, with each command's input and output on the given reader and writers.</summary>
    internal static RootCommand CreateRoot(TextReader stdin, TextWriter stdout, TextWriter stderr) =>
        new("GemmaGen: Gemma 2 inference on kernels compiled from config.json specs")
        {
            RunCommand.Create(stdin, stdout, stderr),
            ChatCommand.Create(stdin, stdout, stderr),
            TokenizeCommand.Create(stdin, stdout, stderr),
            InfoCommand.Create(stdout, stderr),
            BenchCommand.Create(stdout, stderr),
            LogitsCommand.Create(stderr),
            GenerateCommand.Create(stdout, stderr),
            ServeCommand.Create(stderr),
            ServeBenchCommand.Create(stdout, stderr),
        };

    /// <summary>
    /// Runs a command's body; a failure becomes <c>error: message</c> on <paramref name="stderr"/> (one line per
    /// line of the message) and an exit code, never a stack trace.
    /// </summary>
    internal static int Guard(TextWriter stderr, Func<int> body)
    {
        try
        {
            return body();
        }
        catch (Exception e) when (e is UsageException or CheckpointException or WeightLoadException or TokenizerException or GenerationException or IOException or UnauthorizedAccessException)
        {
            return Fail(stderr, e.Message, BadInput);
        }
        catch (Exception e)
        {
            return Fail(stderr, $"internal error: {e.GetType().Name}: {e.Message}", InternalError);
        }
    }

    /// <summary>Prints each of a loaded model's warnings as <c>warning: ...</c> on <paramref name="stderr"/>.</summary>
    internal static void Warn(TextWriter stderr, IEnumerable<string> warnings)
    {
        foreach (string warning in warnings) stderr.WriteLine($"warning: {warning}");
    }

    private static int Fail(TextWriter stderr, string message, int exitCode)
    {
        foreach (string line in message.Split('\n')) stderr.WriteLine($"error: {line.TrimEnd('\r')}");
        return exitCode;
    }
}
