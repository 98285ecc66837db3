using Microsoft.Extensions.AI;

namespace GemmaGen;

/// <summary>
/// The token ids of recent replies by their text, so a conversation that repeats a reply renders exactly the tokens
/// the model generated (which a KV cache holds) instead of a fresh encoding of the text, which can differ: the
/// scheduler then reuses the cache through the whole reply. At most a fixed number of replies (forgotten all at once
/// when full); thread-safe. Used by <see cref="GemmaChatClient"/> and the server.
/// </summary>
internal sealed class ReplyMemory(int capacity = 256)
{
    private readonly Dictionary<string, int[]> _replies = [];

    /// <summary>Renders <paramref name="messages"/> in the Gemma chat format, assistant turns that repeat a remembered
    /// reply as its tokens.</summary>
    public int[] Render(GemmaChatFormat format, IEnumerable<ChatMessage> messages, string? instructions)
    {
        lock (_replies) return format.Render(messages, instructions, _replies, new HashSet<string>());
    }

    /// <summary>Remembers the reply <paramref name="text"/> as <paramref name="generated"/>, less a final
    /// <c>&lt;end_of_turn&gt;</c>, which the rendering adds to every model turn (a reply that ended at another end token,
    /// <c>&lt;eos&gt;</c>, keeps it, and <c>&lt;end_of_turn&gt;</c> follows, as in <see cref="ChatSession"/>).</summary>
    public void Remember(GemmaChatFormat format, string text, int[] generated)
    {
        int[] tokens = generated.Length > 0 && generated[^1] == format.EndOfTurn ? generated[..^1] : generated;
        lock (_replies)
        {
            if (_replies.Count >= capacity) _replies.Clear();
            _replies[text] = tokens;
        }
    }
}
