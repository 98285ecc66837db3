using Microsoft.Extensions.AI;

namespace GemmaGen;

/// <summary>
/// Renders a conversation in the Gemma chat format as token ids, turn by turn as <see cref="ChatSession"/> builds
/// them: <c>&lt;bos&gt;&lt;start_of_turn&gt;user\n{text}&lt;end_of_turn&gt;\n&lt;start_of_turn&gt;model\n{reply}&lt;end_of_turn&gt;\n</c>
/// ... and the header of the model's next turn. Gemma has no system role: the system messages (and the request's
/// instructions) are folded into the first user turn. Only the text of a message is rendered.
/// </summary>
internal sealed class GemmaChatFormat
{
    private readonly GemmaTokenizer _tokenizer;
    private readonly int _startOfTurn;
    private readonly int _endOfTurn;
    private readonly int[] _newline;
    private readonly int[] _modelHeader;

    public GemmaChatFormat(GemmaTokenizer tokenizer)
    {
        _tokenizer = tokenizer;
        _startOfTurn = tokenizer.StartOfTurnId ?? throw new InvalidOperationException("the tokenizer has no <start_of_turn> piece: chat needs a Gemma chat vocabulary");
        _endOfTurn = tokenizer.EndOfTurnId ?? throw new InvalidOperationException("the tokenizer has no <end_of_turn> piece: chat needs a Gemma chat vocabulary");
        _newline = tokenizer.Encode("\n");
        _modelHeader = [_startOfTurn, .. tokenizer.Encode("model\n")];
    }

    /// <summary>The <c>&lt;end_of_turn&gt;</c> id, which closes every turn.</summary>
    public int EndOfTurn => _endOfTurn;

    /// <summary>The tokens of <paramref name="messages"/> followed by the header of the model's reply.</summary>
    /// <param name="messages">System, user and assistant messages.</param>
    /// <param name="instructions">Extra system instructions (<c>ChatOptions.Instructions</c>), or null.</param>
    /// <param name="knownReplies">Token ids of replies this model generated, by their text: an assistant message
    /// with such a text is rendered as those ids, exactly as they sit in the KV cache.</param>
    /// <param name="usedReplies">Receives the texts of the known replies the rendering used.</param>
    /// <exception cref="ArgumentException">There is no message to render.</exception>
    /// <exception cref="NotSupportedException">A message has a role other than system, user and assistant.</exception>
    public int[] Render(IEnumerable<ChatMessage> messages, string? instructions,
        IReadOnlyDictionary<string, int[]> knownReplies, ICollection<string> usedReplies)
    {
        var turns = new List<ChatMessage>();
        var system = new List<string>();
        if (!string.IsNullOrWhiteSpace(instructions)) system.Add(instructions.Trim());
        foreach (ChatMessage message in messages)
        {
            if (message.Role == ChatRole.System)
            {
                if (!string.IsNullOrWhiteSpace(message.Text)) system.Add(message.Text.Trim());
            }
            else if (message.Role == ChatRole.User || message.Role == ChatRole.Assistant)
            {
                turns.Add(message);
            }
            else
            {
                throw new NotSupportedException($"a message has the role '{message.Role}': Gemma chat has system, user and assistant messages only");
            }
        }
        string? systemText = system.Count > 0 ? string.Join("\n\n", system) : null;
        if (turns.Count == 0 && systemText == null) throw new ArgumentException("there is no message to answer", nameof(messages));

        var ids = new List<int> { _tokenizer.BosId };
        if (systemText != null && !turns.Any(t => t.Role == ChatRole.User)) AddUserTurn(ids, systemText);
        foreach (ChatMessage turn in turns)
        {
            if (turn.Role == ChatRole.User)
            {
                string text = turn.Text.Trim();
                if (systemText != null)
                {
                    text = systemText + "\n\n" + text;
                    systemText = null;
                }
                AddUserTurn(ids, text);
            }
            else
            {
                ids.AddRange(_modelHeader);
                if (knownReplies.TryGetValue(turn.Text, out int[]? reply))
                {
                    ids.AddRange(reply);
                    usedReplies.Add(turn.Text);
                }
                else
                {
                    ids.AddRange(_tokenizer.Encode(turn.Text.Trim()));
                }
                ids.Add(_endOfTurn);
                ids.AddRange(_newline);
            }
        }
        ids.AddRange(_modelHeader);
        return ids.ToArray();
    }

    private void AddUserTurn(List<int> ids, string text)
    {
        ids.Add(_startOfTurn);
        ids.AddRange(_tokenizer.Encode("user\n" + text));
        ids.Add(_endOfTurn);
        ids.AddRange(_newline);
    }
}
