using System.Text.Json;
using GemmaGen.Tests.Generation;

namespace GemmaGen.Tests.Cli;

/// <summary><c>gemmagen chat</c> scripted through piped stdin.</summary>
public sealed class ChatCommandTests : IDisposable
{
    private readonly ScratchDirectory _temp = new();

    public void Dispose() => _temp.Dispose();

    [SkippableFact]
    public void CtrlCWhileWaitingForInputExits()
    {
        Skip.IfNot(CliProcess.CanInterrupt, "no SIGINT on this system");
        var running = CliProcess.Start(["chat", "--greedy", "--max-tokens", "3"], out var process);
        using (process)
        {
            process.StandardInput.Write("The jury said\n");
            process.StandardInput.Flush();
            CliProcess.WaitFor(process, () => running.StderrSoFar.Contains("decode"));
            // The statistics line is written after the reply's Ctrl+C scope has ended: from here on Ctrl+C quits.
            Assert.False(process.HasExited, running.StderrSoFar);

            CliProcess.Interrupt(process);

            bool exited = process.WaitForExit(TimeSpan.FromSeconds(15));
            if (!exited) process.Kill(entireProcessTree: true);
            Assert.True(exited, "Ctrl+C while idle did not end the chat");
            Assert.NotEqual(0, process.ExitCode);
        }
    }

    [Fact]
    public void ATokenizerWithoutChatMarkersIsBadInput()
    {
        // The demo model with its chat pieces renamed (same byte lengths, so the protobuf stays valid).
        string directory = _temp.NewDirectory("no-chat-pieces");
        File.Copy(Path.Combine(DemoModel.Directory, "config.json"), Path.Combine(directory, "config.json"));
        File.Copy(Path.Combine(DemoModel.Directory, "model.safetensors"), Path.Combine(directory, "model.safetensors"));
        byte[] bytes = File.ReadAllBytes(Path.Combine(DemoModel.Directory, "tokenizer.model"));
        Rename(bytes, "<start_of_turn>", "<start_of_tale>");
        Rename(bytes, "<end_of_turn>", "<end_of_tale>");
        string tokenizer = Path.Combine(directory, "tokenizer.model");
        File.WriteAllBytes(tokenizer, bytes);
        Assert.Null(GemmaTokenizer.Load(tokenizer).StartOfTurnId);

        CliAssert.BadInput(CliProcess.Piped("Hello\n", "chat", "--model", directory), tokenizer, "<start_of_turn>");
        CliAssert.BadInput(CliProcess.Run("run", "--chat", "Hello", "--model", directory), tokenizer, "<start_of_turn>");
        // Plain continuation needs no chat markers.
        var plain = CliProcess.Run("run", "The jury said", "--model", directory, "--greedy", "--max-tokens", "32", "--ignore-eos", "--no-stats");
        Assert.True(plain.ExitCode == 0, plain.ToString());
        Assert.Equal(DemoModel.Cases[0].GreedyText + "\n", plain.Stdout);
    }

    private static void Rename(byte[] bytes, string from, string to)
    {
        byte[] f = System.Text.Encoding.UTF8.GetBytes(from), t = System.Text.Encoding.UTF8.GetBytes(to);
        Assert.Equal(f.Length, t.Length);
        // Every occurrence: the piece, and the trainer spec's list of user-defined symbols.
        int found = 0;
        for (int at; (at = bytes.AsSpan().IndexOf(f)) >= 0; found++) t.CopyTo(bytes, at);
        Assert.True(found > 0, from);
    }

    [Fact]
    public void AScriptedChatWithResetAndExit()
    {
        // The replies, computed here from hand-built chat ids with greedy decoding through a session.
        const int maxTokens = 6;
        using var model = DemoModel.Load();
        var tokenizer = model.Tokenizer!;
        var options = new GenerationOptions { MaxTokens = maxTokens, Sampling = SamplingOptions.GreedyDecoding };
        int[] UserTurn(string text) =>
            [DemoModel.StartOfTurn, .. tokenizer.Encode("user\n" + text), DemoModel.EndOfTurn, .. tokenizer.Encode("\n"),
             DemoModel.StartOfTurn, .. tokenizer.Encode("model\n")];
        string Text(int[] reply) => tokenizer.Decode(reply.Where(id => id is not (DemoModel.Eos or DemoModel.EndOfTurn)).ToArray());

        int[] turn1 = [DemoModel.Bos, .. UserTurn("The jury said")];
        int[] reply1 = model.CreateSession().Generate(turn1, options).Tokens;
        int[] closing = reply1[^1] == DemoModel.EndOfTurn ? tokenizer.Encode("\n") : [DemoModel.EndOfTurn, .. tokenizer.Encode("\n")];
        int[] reply2 = model.CreateSession().Generate([.. turn1, .. reply1, .. closing, .. UserTurn("Once upon a time")], options).Tokens;
        int[] turn3 = [DemoModel.Bos, .. UserTurn("In the morning, the city")];
        int[] reply3 = model.CreateSession().Generate(turn3, options).Tokens;

        string script = "The jury said\nOnce upon a time\n/reset\n\nIn the morning, the city\n/exit\nThe jury said\n";
        var run = CliProcess.Piped(script, "chat", "--greedy", "--max-tokens", maxTokens.ToString());

        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Equal($"{Text(reply1)}\n{Text(reply2)}\n{Text(reply3)}\n", run.Stdout);
        var lines = run.StderrLines[1..];
        Assert.Equal(DemoNote, run.StderrLines[0]);
        Assert.Equal(4, lines.Length);
        Assert.Contains($"prompt {turn1.Length} tokens", lines[0]);
        Assert.Contains($"prompt {closing.Length + UserTurn("Once upon a time").Length + 1} tokens", lines[1]);
        Assert.Equal("[conversation reset]", lines[2]);
        Assert.Contains($"prompt {turn3.Length} tokens", lines[3]);
        Assert.All([lines[0], lines[1], lines[3]], line => Assert.Contains("decode", line));
    }

    [Fact]
    public void EndOfInputEndsTheChat()
    {
        var run = CliProcess.Piped("The jury said\n", "chat", "--greedy", "--max-tokens", "3", "--no-stats");
        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Single(run.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Equal(DemoNote + "\n", run.Stderr);
    }

    private const string DemoNote = "note: the built-in demo model is not instruction-tuned; give --model for a chat model";

    [Fact]
    public void TheDemoModelSaysItIsNotAChatModel()
    {
        var chat = CliProcess.Piped("The jury said\n", "chat", "--greedy", "--max-tokens", "3");
        var runChat = CliProcess.Run("run", "--chat", "The jury said", "--greedy", "--max-tokens", "3");
        var withModel = CliProcess.Piped("The jury said\n", "chat", "--model", DemoModel.Directory, "--greedy", "--max-tokens", "3", "--no-stats");
        var plainRun = CliProcess.Run("run", "The jury said", "--greedy", "--max-tokens", "3", "--no-stats");

        Assert.True(chat.ExitCode == 0, chat.ToString());
        Assert.Equal(DemoNote, chat.StderrLines[0]);
        Assert.Contains("decode", chat.StderrLines[1]);
        Assert.True(runChat.ExitCode == 0, runChat.ToString());
        Assert.Equal(DemoNote, runChat.StderrLines[0]);
        // A model that is given, and plain continuation, need no note.
        Assert.True(withModel.ExitCode == 0, withModel.ToString());
        Assert.Equal("", withModel.Stderr);
        Assert.True(plainRun.ExitCode == 0, plainRun.ToString());
        Assert.Equal("", plainRun.Stderr);
    }

    [Fact]
    public void AFullContextIsToldAndTheChatGoesOn()
    {
        string longLine = string.Join(" ", Enumerable.Repeat("the city was the largest city", 10));
        var run = CliProcess.Piped($"{longLine}\n/reset\nHi\n", "chat", "--greedy", "--max-tokens", "3", "--context", "24", "--no-stats");
        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Contains("context of 24 tokens is full", run.Stderr);
        Assert.Contains("[conversation reset]", run.Stderr);
        Assert.DoesNotContain("error", run.Stderr);
    }
}

/// <summary><c>gemmagen tokenize</c> against the tokenizer goldens.</summary>
public sealed class TokenizeCommandTests : IDisposable
{
    private readonly ScratchDirectory _temp = new();

    public void Dispose() => _temp.Dispose();

    [Fact]
    public void JsonlOnTheDemoTokenizerGivesTheGoldenPromptIds()
    {
        var cases = DemoModel.Cases;
        string input = string.Concat(cases.Select(c => JsonSerializer.Serialize(c.Prompt) + "\n"));

        var plain = CliProcess.Piped(input, "tokenize", "--jsonl");
        var withBos = CliProcess.Piped(input, "tokenize", "--jsonl", "--bos", "--model", DemoModel.Directory);

        Assert.True(plain.ExitCode == 0, plain.ToString());
        Assert.Equal(string.Concat(cases.Select(c => string.Join(",", c.PromptIds[1..]) + "\n")), plain.Stdout);
        Assert.True(withBos.ExitCode == 0, withBos.ToString());
        Assert.Equal(string.Concat(cases.Select(c => string.Join(",", c.PromptIds) + "\n")), withBos.Stdout);
    }

    [Fact]
    public void JsonlOnTheGemmaTokenizerGivesTheGoldenIds()
    {
        string directory = _temp.CopyOf("gemma2-tokenizer", "tokenizer-only", "tokenizer.model");
        using var golden = JsonDocument.Parse(File.ReadAllText(CliFixtures.Path("gemma2-tokenizer", "golden.json")));
        var all = golden.RootElement.GetProperty("cases").EnumerateArray().ToArray();
        var picked = new[] { 1, 9, 58, 200, 201, 202, 203, 204, 205, 206 }.Select(i => all[i]).ToArray();
        string input = string.Concat(picked.Select(c => JsonSerializer.Serialize(c.GetProperty("text").GetString()) + "\n"));
        string expected = string.Concat(picked.Select(c => string.Join(",", c.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32())) + "\n"));

        var run = CliProcess.Piped(input, "tokenize", "--model", directory, "--jsonl");

        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Equal(expected, run.Stdout);
        Assert.Equal("", run.Stderr);
    }

    [Fact]
    public void JsonlGivesOneLinePerInputLineEmptyLinesIncluded()
    {
        var cases = DemoModel.Cases;
        string input = $"{JsonSerializer.Serialize(cases[0].Prompt)}\n\n\n{JsonSerializer.Serialize(cases[1].Prompt)}\n\n";
        string Ids(DemoCase c) => string.Join(",", c.PromptIds[1..]);

        var plain = CliProcess.Piped(input, "tokenize", "--jsonl");
        var withBos = CliProcess.Piped(input, "tokenize", "--jsonl", "--bos");

        Assert.True(plain.ExitCode == 0, plain.ToString());
        Assert.Equal($"{Ids(cases[0])}\n\n\n{Ids(cases[1])}\n\n", plain.Stdout);
        Assert.True(withBos.ExitCode == 0, withBos.ToString());
        Assert.Equal($"2,{Ids(cases[0])}\n2\n2\n2,{Ids(cases[1])}\n2\n", withBos.Stdout);
    }

    [Fact]
    public void PlainTextOnStdin()
    {
        var golden = DemoModel.Cases[1];
        var run = CliProcess.Piped(golden.Prompt, "tokenize", "--bos");
        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Equal(string.Join(",", golden.PromptIds) + "\n", run.Stdout);
    }
}

/// <summary><c>gemmagen info</c>.</summary>
public sealed class InfoCommandTests
{
    [Fact]
    public void TheDemoRunsOnItsCompiledSpec()
    {
        var run = CliProcess.Run("info");
        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Contains("compiled Gemma2_Demo", run.Stdout);
        Assert.Contains("vocabulary 4096", run.Stdout);
        Assert.Contains("tokenizer.model", run.Stdout);
        Assert.Equal("", run.Stderr);
    }

    [Fact]
    public void AShapeWithoutACompiledSpecSaysReferenceAndHowToCompileOne()
    {
        // TinyGqa is compiled into the test assembly, not into the CLI: the CLI process runs it on the reference path.
        string directory = CliFixtures.Path("tiny-gqa");
        var run = CliProcess.Run("info", "--model", directory, "--tensors");
        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Contains("reference", run.Stdout);
        Assert.Matches(@"runs on +reference", run.Stdout);
        Assert.DoesNotMatch(@"runs on +compiled", run.Stdout);
        Assert.Contains($"<GemmaSpec Include=\"{Path.Combine(Path.GetFullPath(directory), "config.json")}\"", run.Stdout);
        Assert.Contains("model.layers.3.mlp.down_proj.weight", run.Stdout);
        Assert.Contains("none (text input and output need tokenizer.model)", run.Stdout);
        Assert.Matches(@"with --quant: f32 [\d.]+ [KM]iB, bf16 [\d.]+ [KM]iB, q8_0 [\d.]+ [KM]iB, q4_0 [\d.]+ [KM]iB \(weights \+ KV cache \+ buffers\)", run.Stdout);
    }
}
