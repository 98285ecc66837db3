namespace GemmaGen;

/// <summary>One reply of a chat turn.</summary>
/// <param name="Text">The reply, without the end-of-turn marker.</param>
/// <param name="Result">The tokens, why generation stopped, and timings.</param>
public sealed record ChatReply(string Text, GenerationResult Result);

/// <summary>
/// A multi-turn conversation in the Gemma chat format, built from token ids:
/// <c>&lt;bos&gt;&lt;start_of_turn&gt;user\n{text}&lt;end_of_turn&gt;\n&lt;start_of_turn&gt;model\n{reply}&lt;end_of_turn&gt;\n...</c>.
/// The KV cache is kept between turns, so a new turn processes only its own tokens. Gemma has no system role: a
/// system prompt is folded into the first user turn. Not thread-safe: one turn at a time.
/// </summary>
public sealed class ChatSession
{
    private readonly GemmaModel _model;
    private readonly GemmaTokenizer _tokenizer;
    private readonly GenerationSession _session;
    private readonly int _startOfTurn;
    private readonly int _endOfTurn;
    private readonly int[] _newline;
    private bool _replyOpen;

    internal ChatSession(GemmaModel model, GenerationSession session, string? systemPrompt)
    {
        _model = model;
        _tokenizer = model.RequireTokenizer();
        _startOfTurn = _tokenizer.StartOfTurnId ?? throw new InvalidOperationException("the tokenizer has no <start_of_turn> piece: chat needs a Gemma chat vocabulary");
        _endOfTurn = _tokenizer.EndOfTurnId ?? throw new InvalidOperationException("the tokenizer has no <end_of_turn> piece: chat needs a Gemma chat vocabulary");
        _session = session;
        _newline = _tokenizer.Encode("\n");
        SystemPrompt = string.IsNullOrWhiteSpace(systemPrompt) ? null : systemPrompt.Trim();
    }

    /// <summary>Folded into the first user turn (Gemma has no system role).</summary>
    public string? SystemPrompt { get; }

    /// <summary>Turns completed since the start or the last <see cref="Reset"/>.</summary>
    public int Turns { get; private set; }

    /// <summary>The underlying sequence (its token count, its execution path).</summary>
    public GenerationSession Session => _session;

    /// <summary>Starts the conversation over.</summary>
    public void Reset()
    {
        _session.Reset();
        Turns = 0;
        _replyOpen = false;
    }

    /// <summary>The tokens a user turn adds: the previous reply's closing markers, the turn, and the model's header.</summary>
    public int[] TurnTokens(string userText)
    {
        var ids = new List<int>();
        if (Turns == 0)
        {
            ids.Add(_tokenizer.BosId);
        }
        else
        {
            // Close the previous reply: its end-of-turn marker is already in the sequence when the model produced it.
            if (_replyOpen) ids.Add(_endOfTurn);
            ids.AddRange(_newline);
        }
        string text = userText.Trim();
        if (Turns == 0 && SystemPrompt != null) text = SystemPrompt + "\n\n" + text;
        ids.Add(_startOfTurn);
        ids.AddRange(_tokenizer.Encode("user\n" + text));
        ids.Add(_endOfTurn);
        ids.AddRange(_newline);
        ids.Add(_startOfTurn);
        ids.AddRange(_tokenizer.Encode("model\n"));
        return ids.ToArray();
    }

    /// <summary>
    /// Sends one user message and generates the reply, streaming its text through <paramref name="onText"/>. When the
    /// turn does not fit in the context, nothing runs and the reply says so (<see cref="StopReason.ContextFull"/>).
    /// </summary>
    public ChatReply Send(string userText, GenerationOptions options, Action<string>? onText = null, CancellationToken cancellationToken = default)
    {
        var turn = TurnTokens(userText);
        if (!_session.Fits(turn.Length + 1))
        {
            var stats = new GenerationStats(0, 0, TimeSpan.Zero, 0, 0);
            return new ChatReply("", new GenerationResult([], StopReason.ContextFull, stats));
        }

        var stream = _tokenizer.CreateStreamingDecoder();
        var text = new System.Text.StringBuilder();
        var result = _session.Generate(turn, options, id =>
        {
            if (_session.EndTokens.Contains(id)) return;
            string piece = stream.Push(id);
            text.Append(piece);
            if (piece.Length > 0) onText?.Invoke(piece);
        }, cancellationToken);
        string rest = stream.Flush();
        text.Append(rest);
        if (rest.Length > 0) onText?.Invoke(rest);

        // A reply that ended on <end_of_turn> has its marker pending in the session; any other ending leaves the
        // turn open, and the next turn closes it.
        int last = result.Tokens.Length > 0 ? result.Tokens[^1] : -1;
        _replyOpen = last != _endOfTurn;
        Turns++;
        return new ChatReply(text.ToString(), result);
    }
}
