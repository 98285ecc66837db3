using System.Buffers;

namespace GemmaGen;

/// <summary>
/// Finds the user-defined pieces of a model in (whitespace-escaped) text, the way SentencePiece's prefix matcher
/// does: scanning left to right, at each position the longest piece that starts there wins. SentencePiece freezes
/// such a match as one symbol that BPE never merges with its neighbours, so the text between two matches is
/// encoded on its own.
/// </summary>
internal sealed class UserDefinedPieceMatcher
{
    private readonly Node _root = new();
    private readonly SearchValues<char> _firstChars;

    /// <summary>Builds the matcher for every <see cref="PieceType.UserDefined"/> piece of a model.</summary>
    public UserDefinedPieceMatcher(SentencePieceModel model)
    {
        for (int id = 0; id < model.Count; id++)
        {
            if (model.Types[id] != PieceType.UserDefined) continue;
            var node = _root;
            foreach (char c in model.Pieces[id])
            {
                node.Children ??= [];
                if (!node.Children.TryGetValue(c, out var child)) node.Children[c] = child = new Node();
                node = child;
            }
            node.Id = id;
        }
        _firstChars = SearchValues.Create(_root.Children is null ? [] : _root.Children.Keys.ToArray());
    }

    /// <summary>
    /// Finds the first position in <paramref name="text"/> where a user-defined piece starts, and the longest
    /// piece there.
    /// </summary>
    /// <returns>The index of the match, or -1 when the text contains no user-defined piece.</returns>
    public int FindFirst(ReadOnlySpan<char> text, out int id, out int length)
    {
        int offset = 0;
        while (true)
        {
            int candidate = text[offset..].IndexOfAny(_firstChars);
            if (candidate < 0) break;
            int start = offset + candidate;
            if (LongestMatchAt(text[start..], out id, out length)) return start;
            offset = start + 1;
        }
        id = -1;
        length = 0;
        return -1;
    }

    private bool LongestMatchAt(ReadOnlySpan<char> text, out int id, out int length)
    {
        id = -1;
        length = 0;
        var node = _root;
        for (int i = 0; i < text.Length; i++)
        {
            if (node.Children is null || !node.Children.TryGetValue(text[i], out node)) break;
            if (node.Id >= 0)
            {
                id = node.Id;
                length = i + 1;
            }
        }
        return id >= 0;
    }

    /// <summary>A trie node: the pieces that continue with each next character, and the piece that ends here.</summary>
    private sealed class Node
    {
        public Dictionary<char, Node>? Children;
        public int Id = -1;
    }
}
