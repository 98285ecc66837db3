namespace GemmaGen.Tests.Generation;

/// <summary>Chat sessions on the demo model: the Gemma chat format built from ids, the KV cache kept between turns.</summary>
public sealed class ChatSessionTests(DemoModelFixture fixture) : IClassFixture<DemoModelFixture>
{
    private readonly GemmaModel _model = fixture.Model;

    private GemmaTokenizer Tokenizer => _model.Tokenizer!;

    private static GenerationOptions Greedy(int maxTokens) => new() { MaxTokens = maxTokens, Sampling = SamplingOptions.GreedyDecoding };

    /// <summary>The tokens of a user turn, built here from the format in the Gemma docs.</summary>
    private int[] UserTurn(string text) =>
        [DemoModel.StartOfTurn, .. Tokenizer.Encode("user\n" + text), DemoModel.EndOfTurn, .. Tokenizer.Encode("\n"),
         DemoModel.StartOfTurn, .. Tokenizer.Encode("model\n")];

    /// <summary>What a turn after a reply starts with: the reply's end-of-turn marker unless it produced one, then a newline.</summary>
    private int[] Closing(int[] previousReply) =>
        previousReply.Length > 0 && previousReply[^1] == DemoModel.EndOfTurn
            ? Tokenizer.Encode("\n")
            : [DemoModel.EndOfTurn, .. Tokenizer.Encode("\n")];

    [Fact]
    public void TheDemoTokenizerHasTheChatMarkers()
    {
        Assert.Equal(DemoModel.StartOfTurn, Tokenizer.StartOfTurnId);
        Assert.Equal(DemoModel.EndOfTurn, Tokenizer.EndOfTurnId);
        Assert.Equal(DemoModel.Bos, Tokenizer.BosId);
        Assert.Equal("<start_of_turn>", Tokenizer.PieceOf(DemoModel.StartOfTurn));
        Assert.Equal("<end_of_turn>", Tokenizer.PieceOf(DemoModel.EndOfTurn));
    }

    [Fact]
    public void TheFirstTurnIsBosAndTheUserTurnAndTheModelHeader()
    {
        var chat = _model.CreateChat();
        int[] expected = [DemoModel.Bos, .. UserTurn("The jury said")];

        Assert.Equal(expected, chat.TurnTokens("The jury said"));
        Assert.Equal(expected, chat.TurnTokens("  The jury said \n"));   // trimmed
        Assert.Single(chat.TurnTokens("The jury said"), id => id == DemoModel.Bos);
        Assert.Equal(0, chat.Turns);
    }

    [Fact]
    public void TheSystemPromptIsFoldedIntoTheFirstUserTurnOnly()
    {
        var chat = _model.CreateChat("  Answer briefly. ");
        Assert.Equal("Answer briefly.", chat.SystemPrompt);
        Assert.Equal([DemoModel.Bos, .. UserTurn("Answer briefly.\n\nThe jury said")], chat.TurnTokens("The jury said"));

        var reply = chat.Send("The jury said", Greedy(4));
        Assert.Equal(1, chat.Turns);
        Assert.Equal([.. Closing(reply.Result.Tokens), .. UserTurn("Once upon a time")], chat.TurnTokens("Once upon a time"));
    }

    [Fact]
    public void ABlankSystemPromptIsNone()
    {
        var chat = _model.CreateChat("   ");
        Assert.Null(chat.SystemPrompt);
        Assert.Equal([DemoModel.Bos, .. UserTurn("Hi")], chat.TurnTokens("Hi"));
    }

    [Fact]
    public void ASecondTurnClosesAnOpenReplyWithEndOfTurnThenANewline()
    {
        var chat = _model.CreateChat();
        var reply = chat.Send("The jury said", Greedy(3));
        Assert.Equal(StopReason.MaxTokens, reply.Result.StopReason);
        Assert.NotEqual(DemoModel.EndOfTurn, reply.Result.Tokens[^1]);

        Assert.Equal([DemoModel.EndOfTurn, .. Tokenizer.Encode("\n"), .. UserTurn("More")], chat.TurnTokens("More"));
    }

    [Fact]
    public void TwoTurnsEqualOneFreshSessionOverTheConcatenatedIds()
    {
        var chat = _model.CreateChat();
        var streamed = new List<string>();

        var first = chat.Send("In the morning, the city", Greedy(12), streamed.Add);
        var second = chat.Send("Once upon a time", Greedy(12));

        int[] turn1 = [DemoModel.Bos, .. UserTurn("In the morning, the city")];
        int[] turn2 = [.. Closing(first.Result.Tokens), .. UserTurn("Once upon a time")];
        Assert.Equal(2, chat.Turns);
        Assert.Equal(turn1.Length, first.Result.Stats.PromptTokens);
        // The second turn processes only its own tokens and the pending last token of the first reply.
        Assert.Equal(turn2.Length + 1, second.Result.Stats.PromptTokens);

        // One fresh session over turn 1, reply 1 and turn 2 produces the same second reply.
        var fresh = _model.CreateSession();
        var reference1 = fresh.Generate(turn1, Greedy(12));
        Assert.Equal(reference1.Tokens, first.Result.Tokens);
        var fresh2 = _model.CreateSession();
        var reference2 = fresh2.Generate([.. turn1, .. reference1.Tokens, .. turn2], Greedy(12));
        Assert.Equal(reference2.Tokens, second.Result.Tokens);
        Assert.Equal(fresh2.Tokens, chat.Session.Tokens);

        // The reply text is the decoded tokens (end tokens excluded), and it was streamed.
        var replyIds = first.Result.Tokens.Where(id => id is not (DemoModel.Eos or DemoModel.EndOfTurn)).ToArray();
        Assert.Equal(Tokenizer.Decode(replyIds), first.Text);
        Assert.Equal(first.Text, string.Concat(streamed));
    }

    [Fact]
    public void ResetStartsOver()
    {
        var chat = _model.CreateChat();
        var first = chat.Send("The jury said", Greedy(6));
        chat.Send("Once upon a time", Greedy(6));

        chat.Reset();

        Assert.Equal(0, chat.Turns);
        Assert.Empty(chat.Session.Tokens);
        int[] turn = [DemoModel.Bos, .. UserTurn("The jury said")];
        Assert.Equal(turn, chat.TurnTokens("The jury said"));
        var again = chat.Send("The jury said", Greedy(6));
        Assert.Equal(first.Result.Tokens, again.Result.Tokens);
        Assert.Equal(turn.Length, again.Result.Stats.PromptTokens);
        Assert.Equal([.. turn, .. again.Result.Tokens], chat.Session.Tokens);
    }

    [Fact]
    public void ATurnThatDoesNotFitEndsCleanlyWithNoTokens()
    {
        var chat = _model.CreateChat(maxContext: 24);
        string longText = string.Join(" ", Enumerable.Repeat("the city was the largest city", 10));

        var reply = chat.Send(longText, Greedy(8));

        Assert.Equal(StopReason.ContextFull, reply.Result.StopReason);
        Assert.Empty(reply.Result.Tokens);
        Assert.Equal("", reply.Text);
        Assert.Empty(chat.Session.Tokens);
        Assert.Equal(0, chat.Turns);

        chat.Reset();
        var ok = chat.Send("Hi", Greedy(3));
        Assert.Equal(3, ok.Result.Tokens.Length);
        Assert.Equal([DemoModel.Bos, .. UserTurn("Hi"), .. ok.Result.Tokens], chat.Session.Tokens);
    }

    [Fact]
    public void ASecondTurnThatDoesNotFitLeavesTheConversationAsItWas()
    {
        int[] turn1 = [DemoModel.Bos, .. UserTurn("Hi")];
        var chat = _model.CreateChat(maxContext: turn1.Length + 6);
        var first = chat.Send("Hi", Greedy(3));
        var before = chat.Session.Tokens.ToArray();

        var second = chat.Send("Once upon a time", Greedy(3));

        Assert.Equal(StopReason.ContextFull, second.Result.StopReason);
        Assert.Empty(second.Result.Tokens);
        Assert.Equal(before, chat.Session.Tokens);
        Assert.Equal(1, chat.Turns);
        Assert.Equal([.. turn1, .. first.Result.Tokens], before);

        chat.Reset();
        Assert.Equal(first.Result.Tokens, chat.Send("Hi", Greedy(3)).Result.Tokens);
    }

    [Fact]
    public void AReplyThatFillsTheContextStopsWithContextFull()
    {
        int[] turn1 = [DemoModel.Bos, .. UserTurn("Hi")];
        var chat = _model.CreateChat(maxContext: turn1.Length + 4);

        var reply = chat.Send("Hi", Greedy(50));

        // Positions for the turn and 4 reply tokens; the 5th is chosen but cannot be fed. Unless an end token comes first.
        var reference = _model.CreateSession().Generate(turn1, Greedy(5));
        Assert.Equal(reference.Tokens, reply.Result.Tokens);
        Assert.Equal(reference.StopReason == StopReason.EndToken ? StopReason.EndToken : StopReason.ContextFull, reply.Result.StopReason);
    }

    [Fact]
    public void AReplyThatEndsWithEndOfTurnIsNotClosedAgain()
    {
        // A bigram model: every layer's output projections zeroed, the final norm the identity, so the logits after
        // a token t are E·E[t] / rms(E[t]). With E[<end_of_turn>] a large multiple of E[t] for the last token t of
        // the model header, the reply is <end_of_turn> at once.
        using var model = DemoModel.Load();
        var weights = model.Weights;
        foreach (var layer in weights.Layers)
        {
            ZeroRows(layer.O);
            ZeroRows(layer.Down);
        }
        Array.Fill(weights.FinalNorm, 1f);  // the multiplier 1 + w of w = 0: the final norm only normalizes
        int last = model.Tokenizer!.Encode("model\n")[^1];
        var row = new float[weights.Embed.Cols];
        double largest = 0;
        for (int v = 0; v < weights.Embed.Rows; v++)
        {
            weights.Embed.ReadRow(v, row);
            largest = Math.Max(largest, Math.Sqrt(row.Sum(x => (double)x * x)));
        }
        weights.Embed.ReadRow(last, row);
        double norm = Math.Sqrt(row.Sum(x => (double)x * x));
        float scale = (float)(100 * largest / norm);
        weights.Embed.WriteRow(DemoModel.EndOfTurn, row.Select(x => x * scale).ToArray());

        var chat = model.CreateChat();
        var first = chat.Send("Hi", Greedy(8));
        Assert.Equal([DemoModel.EndOfTurn], first.Result.Tokens);
        Assert.Equal(StopReason.EndToken, first.Result.StopReason);
        Assert.Equal("", first.Text);

        // The marker the model produced is already in the sequence (pending): the next turn starts with the newline.
        int[] turn2 = [.. Tokenizer.Encode("\n"), .. UserTurn("Again")];
        Assert.Equal(turn2, chat.TurnTokens("Again"));
        var second = chat.Send("Again", Greedy(8));
        Assert.Equal([DemoModel.EndOfTurn], second.Result.Tokens);
        Assert.Equal(turn2.Length + 1, second.Result.Stats.PromptTokens);
        Assert.Equal([DemoModel.Bos, .. UserTurn("Hi"), DemoModel.EndOfTurn, .. turn2, DemoModel.EndOfTurn], chat.Session.Tokens);
    }

    private static void ZeroRows(GemmaGen.Kernels.WeightMatrix matrix)
    {
        var zeros = new float[matrix.Cols];
        for (int r = 0; r < matrix.Rows; r++) matrix.WriteRow(r, zeros);
    }
}
