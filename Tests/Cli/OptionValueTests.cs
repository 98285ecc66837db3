using System.CommandLine;
using GemmaGen.Tests.Generation;
using CliProgram = GemmaGen.Cli.Program;

namespace GemmaGen.Tests.Cli;

/// <summary>Option values: unparsable or out of range, named with the accepted range; options without effect warned about.</summary>
public sealed class OptionValueTests
{
    [Theory]
    [InlineData("--seed", "99999999999999999999", "an integer from -2147483648 to 2147483647")]
    [InlineData("--threads", "abc", "an integer from 1 to")]
    [InlineData("--temperature", "x", "a number, 0 or more")]
    [InlineData("--max-tokens", "1.5", "an integer, 1 or more")]
    [InlineData("--context", "", "an integer, 1 or more")]
    public void AnUnparsableValueNamesTheOptionAndTheAcceptedRange(string option, string value, string range)
    {
        var run = CliProcess.Run("run", "The jury said", option, value);
        CliAssert.BadInput(run, $"{option} {(value.Length == 0 ? "''" : value)}: expected {range}");
        Assert.DoesNotContain("System.", run.Stderr);
    }

    /// <summary>Every option of every command that takes a number, given a word: the error is the option's own, never
    /// System.CommandLine's, which names a .NET type.</summary>
    [Fact]
    public void EveryNumericOptionNamesItsRange()
    {
        var root = CliProgram.CreateRoot(TextReader.Null, TextWriter.Null, TextWriter.Null);
        var numeric = root.Subcommands.SelectMany(c => c.Options.Where(o => o.ValueType != typeof(string) && o.ValueType != typeof(bool)).Select(o => (c.Name, o.Name))).ToList();
        Assert.Contains(("bench", "--layers"), numeric);
        Assert.Contains(("generate", "--max-new-tokens"), numeric);
        Assert.Contains(("chat", "--top-p"), numeric);
        foreach (var (command, option) in numeric)
        {
            var stderr = new StringWriter();
            int exit = CliProgram.Run([command, option, "many"], TextWriter.Null, stderr);
            Assert.Equal(CliProgram.BadInput, exit);
            string[] lines = stderr.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.Contains(lines, line => line.StartsWith($"error: {option} many: expected a", StringComparison.Ordinal));
            Assert.DoesNotContain("System.", stderr.ToString());
        }
    }

    [Fact]
    public void ThreadsBeyondTheProcessorCountAreRefused()
    {
        string threads = (Environment.ProcessorCount + 1).ToString();
        string range = $"an integer from 1 to {Environment.ProcessorCount} (the processor count)";
        CliAssert.BadInput(CliProcess.Run("run", "The jury said", "--threads", threads), $"--threads {threads}: expected {range}");
        CliAssert.BadInput(CliProcess.Piped("hello\n", "chat", "--threads", threads), $"--threads {threads}: expected {range}");
        CliAssert.BadInput(CliProcess.Run("bench", "--spec", "gemma-2-demo", "--threads", threads), $"--threads {threads}: expected {range}");
    }

    [Fact]
    public void BenchRefusesMorePositionsThanTheModelsContext() =>
        // The demo model's max_position_embeddings is 1024.
        CliAssert.BadInput(CliProcess.Run("bench", "--spec", "gemma-2-demo", "--prompt", "1000", "--tokens", "25"),
            "--prompt and --tokens", "1025 positions", "context of 1024");

    [Theory]
    [InlineData(new[] { "--greedy", "--temperature", "0.5" }, new[] { "--temperature" }, "--greedy")]
    [InlineData(new[] { "--greedy", "--top-k", "5", "--top-p", "0.5", "--min-p", "0.1", "--seed", "3" }, new[] { "--top-k", "--top-p", "--min-p", "--seed" }, "--greedy")]
    [InlineData(new[] { "--temperature", "0", "--top-k", "5", "--seed", "3" }, new[] { "--top-k", "--seed" }, "--temperature 0 (greedy decoding)")]
    public void OptionsWithoutEffectAreWarnedAbout(string[] options, string[] ignored, string because)
    {
        var golden = DemoModel.Cases[0];
        var run = CliProcess.Run(["run", golden.Prompt, "--max-tokens", "4", "--ignore-eos", "--no-stats", .. options]);

        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Equal(DemoTokenizer().Decode(golden.GreedyIds[..4]) + "\n", run.Stdout);
        Assert.Equal(ignored.Select(o => $"warning: {o} has no effect with {because}"), run.StderrLines);
    }

    [Theory]
    [InlineData("--greedy")]
    [InlineData("--greedy", "--repeat-penalty", "1.2")]
    [InlineData("--temperature", "0.7", "--top-k", "5", "--seed", "3")]
    public void OptionsThatTakeEffectAreNotWarnedAbout(params string[] options)
    {
        var run = CliProcess.Run(["run", "The jury said", "--max-tokens", "2", "--no-stats", .. options]);
        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Equal("", run.Stderr);
    }

    private static GemmaTokenizer DemoTokenizer() => GemmaTokenizer.Load(Path.Combine(DemoModel.Directory, "tokenizer.model"));
}
