using GemmaGen.Tests.Generation;

namespace GemmaGen.Tests.Cli;

/// <summary><c>gemmagen run</c> as a real process on the built-in demo model, against its goldens.</summary>
public sealed class RunCommandTests
{
    public static TheoryData<int> CaseIndices() => [0, 1, 2];

    private static GemmaTokenizer DemoTokenizer() => GemmaTokenizer.Load(Path.Combine(DemoModel.Directory, "tokenizer.model"));

    [Fact]
    public void TheBuiltInModelIsNextToTheCli()
    {
        Assert.True(File.Exists(CliProcess.Dll), $"{CliProcess.Dll} is missing");
        string builtIn = Path.Combine(AppContext.BaseDirectory, "models", "gemma2-demo");
        foreach (string file in new[] { "config.json", "model.safetensors", "tokenizer.model" })
            Assert.True(File.Exists(Path.Combine(builtIn, file)), $"{file} of the built-in model is not next to the CLI");
    }

    [Theory]
    [MemberData(nameof(CaseIndices))]
    public void GreedyRunPrintsTheGoldenText(int index)
    {
        var golden = DemoModel.Cases[index];

        var run = CliProcess.Run("run", golden.Prompt, "--greedy", "--max-tokens", "32", "--ignore-eos");

        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.EndsWith("\n", run.Stdout);
        Assert.Equal(golden.GreedyText, run.Stdout[..^1]);
        string stats = Assert.Single(run.StderrLines);
        Assert.Contains("decode", stats);
        Assert.Contains("tok/s", stats);
        Assert.Contains($"prompt {golden.PromptIds.Length} tokens", stats);
        Assert.Contains("generated 32 tokens", stats);
        Assert.Contains("compiled Gemma2_Demo", stats);
    }

    [Fact]
    public void RunStopsAtTheFirstEos()
    {
        var golden = DemoModel.Cases[0];
        int eos = Array.IndexOf(golden.GreedyIds, DemoModel.Eos);
        Assert.True(eos > 0);
        string expected = DemoTokenizer().Decode(golden.GreedyIds[..eos]);
        Assert.StartsWith(expected, golden.GreedyText);
        Assert.NotEqual(expected, golden.GreedyText);

        var run = CliProcess.Run("run", golden.Prompt, "--greedy", "--max-tokens", "32");

        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Equal(expected + "\n", run.Stdout);
        Assert.Contains($"generated {eos + 1} tokens", run.Stderr);
    }

    [Fact]
    public void NoStatsHidesTheStatisticsLine()
    {
        var golden = DemoModel.Cases[1];
        var run = CliProcess.Run("run", golden.Prompt, "--greedy", "--max-tokens", "32", "--ignore-eos", "--no-stats");
        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Equal(golden.GreedyText + "\n", run.Stdout);
        Assert.Equal("", run.Stderr);
    }

    [Fact]
    public void TheSameSeedGivesTheSameText()
    {
        string[] Args(int seed) => ["run", "Once upon a time", "--seed", seed.ToString(), "--max-tokens", "24", "--ignore-eos", "--no-stats"];

        var first = CliProcess.Run(Args(5));
        var second = CliProcess.Run(Args(5));
        var other = CliProcess.Run(Args(6));

        Assert.True(first.ExitCode == 0, first.ToString());
        Assert.True(other.ExitCode == 0, other.ToString());
        Assert.True(first.Stdout.Trim().Length > 10, first.ToString());
        Assert.Equal(first.Stdout, second.Stdout);
        Assert.NotEqual(first.Stdout, other.Stdout);
    }

    [Fact]
    public void ChatFlagPrintsTheReplyToTheChatFormattedPrompt()
    {
        // The reply, computed here: the chat ids built by hand, greedy decoding through a session (checked against
        // the goldens elsewhere), the end token not printed.
        using var model = DemoModel.Load();
        var tokenizer = model.Tokenizer!;
        int[] ids = [DemoModel.Bos, DemoModel.StartOfTurn, .. tokenizer.Encode("user\nAnswer briefly.\n\nThe jury said"), DemoModel.EndOfTurn,
                     .. tokenizer.Encode("\n"), DemoModel.StartOfTurn, .. tokenizer.Encode("model\n")];
        var reply = model.CreateSession().Generate(ids, new GenerationOptions { MaxTokens = 12, Sampling = SamplingOptions.GreedyDecoding });
        string expected = tokenizer.Decode(reply.Tokens.Where(id => id is not (DemoModel.Eos or DemoModel.EndOfTurn)).ToArray());

        var run = CliProcess.Run("run", "--chat", "The jury said", "--system", "Answer briefly.", "--greedy", "--max-tokens", "12");

        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Equal(expected + "\n", run.Stdout);
        Assert.Contains($"prompt {ids.Length} tokens", run.Stderr);
    }

    [Fact]
    public void ThePromptCanComeFromStdin()
    {
        var golden = DemoModel.Cases[2];
        var run = CliProcess.Piped(golden.Prompt, "run", "--greedy", "--max-tokens", "32", "--ignore-eos", "--no-stats");
        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Equal(golden.GreedyText + "\n", run.Stdout);
    }

    [Theory]
    [InlineData("\n")]
    [InlineData("\r\n")]
    public void AStdinPromptLosesItsFinalLineEnd(string lineEnd)
    {
        var golden = DemoModel.Cases[2];
        var run = CliProcess.Piped(golden.Prompt + lineEnd, "run", "--greedy", "--max-tokens", "32", "--ignore-eos");
        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Equal(golden.GreedyText + "\n", run.Stdout);
        Assert.Contains($"prompt {golden.PromptIds.Length} tokens", run.Stderr);
    }

    [Fact]
    public void AFullContextIsReported()
    {
        var golden = DemoModel.Cases[0];
        var run = CliProcess.Run("run", golden.Prompt, "--greedy", "--max-tokens", "32", "--ignore-eos", "--context", "12");
        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Contains("context is full", run.Stderr);
        Assert.Contains("generated 8 tokens", run.Stderr);
        Assert.Equal(DemoTokenizer().Decode(golden.GreedyIds[..8]) + "\n", run.Stdout);
    }

    [Fact]
    public void AContextBeyondTheModelsIsBadInput() =>
        CliAssert.BadInput(CliProcess.Run("run", "The jury said", "--context", "5000"), "--context", "1024", "max_position_embeddings");

    [Fact]
    public void APromptLongerThanTheContextIsBadInput()
    {
        var run = CliProcess.Run("run", "In the morning, the city", "--context", "4");
        CliAssert.BadInput(run, "context");
    }

    [SkippableFact]
    public void CtrlCStopsTheGeneration()
    {
        Skip.IfNot(CliProcess.CanInterrupt, "no SIGINT on this system");
        var running = CliProcess.Start(["run", "The jury said", "--greedy", "--max-tokens", "1000", "--ignore-eos"], out var process);
        process.StandardInput.Close();
        CliProcess.WaitFor(process, () => running.StdoutSoFar.Length >= 20);
        Assert.False(process.HasExited, "the generation ended before Ctrl+C");
        CliProcess.Interrupt(process);

        var run = running.Finish(process, null);

        Assert.True(run.ExitCode == 130, run.ToString());
        Assert.Equal("[stopped]", run.StderrLines[0]);
        // The statistics line, last.
        var generated = System.Text.RegularExpressions.Regex.Match(run.StderrLines[^1], @"^\[compiled Gemma2_Demo\] prompt \d+ tokens, .*generated (\d+) tokens, decode [\d.]+ tok/s$");
        Assert.True(generated.Success, run.ToString());
        Assert.InRange(int.Parse(generated.Groups[1].Value), 1, 999);
        Assert.StartsWith(DemoModel.Cases[0].GreedyText[..20], run.Stdout);
    }
}
