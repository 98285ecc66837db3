using Xunit;

using static GemmaGen.Tests.Tokenization.ModelProtoWriter;

namespace GemmaGen.Tests.Tokenization;

/// <summary>
/// The order of BPE merges, as SentencePiece's <c>bpe_model.cc</c> applies them: always the adjacent pair whose
/// concatenation is the piece with the highest score, and among equal scores the leftmost pair. Runs of one
/// repeated letter are where the tie rule shows: every "aa" in "aaaaaaa" has the same score.
/// </summary>
public sealed class BpeMergeOrderTests
{
    private static readonly Lazy<Dictionary<string, (int Id, float Score)>> GemmaPieces = new(() => MergeablePieces(TokenizerFixtures.GemmaModelPath));

    /// <summary>Characters whose runs the Gemma vocabulary has many pieces for (up to 8 letters, 16 punctuation marks).</summary>
    public static TheoryData<char> RepeatedCharacters() => new('a', 'e', 'o', 'x', 'm', 'z', '.', '-', '=', '*');

    [Theory]
    [MemberData(nameof(RepeatedCharacters))]
    public void Runs_of_one_character_merge_as_the_reference_merger_does(char c)
    {
        for (int length = 1; length <= 48; length++)
        {
            foreach (string text in new[] { new string(c, length), " " + new string(c, length), "B" + new string(c, length) + "!" })
            {
                int[] expected = ReferenceEncode(GemmaPieces.Value, text.Replace(' ', '\u2581'));
                int[] actual = TokenizerFixtures.Gemma.Encode(text);
                Assert.True(expected.SequenceEqual(actual),
                    $"\"{text}\" ({length} × '{c}'): expected [{string.Join(", ", expected)}], actual [{string.Join(", ", actual)}]");
            }
        }
    }

    // Ids as sentencepiece 0.1.97 encodes these with the Gemma 2 model. By hand: in "aaaaaaa" the three "aa" merges
    // (score -17989) take positions 0-1, 2-3, 4-5 (leftmost first), then "aaaa" (-85344) beats "aaa" (-103943),
    // leaving "aaaa" "aaa"; merging rightmost first would give "aaa" "aaaa".
    [Theory]
    [InlineData("aaaaaaa", new[] { "aaaa", "aaa" })]
    [InlineData("aaaaaaaaa", new[] { "aaaaaaaa", "a" })]
    [InlineData("eeeeeeeeee", new[] { "eeee", "eeeeee" })]
    [InlineData("xxxxxxx", new[] { "xxxx", "xxx" })]
    [InlineData("ooooooooo", new[] { "oooo", "ooooo" })]
    [InlineData(" aaaaaaa", new[] { "\u2581a", "aaaaaa" })]
    [InlineData("Baaaaaaa!", new[] { "B", "aaaa", "aaa", "!" })]
    [InlineData("hmmmmmmmmm", new[] { "hmm", "mmmm", "mmm" })]
    [InlineData("..........................", new[] { "................", ".........." })]
    public void Runs_encode_to_the_sentencepiece_pieces(string text, string[] pieces)
    {
        Assert.Equal(pieces, TokenizerFixtures.Gemma.Encode(text).Select(TokenizerFixtures.Gemma.PieceOf));
    }

    [Fact]
    public void The_scores_that_decide_the_runs_are_read_from_the_model()
    {
        Assert.Equal(-17989f, GemmaPieces.Value["aa"].Score);
        Assert.Equal(-103943f, GemmaPieces.Value["aaa"].Score);
        Assert.Equal(-85344f, GemmaPieces.Value["aaaa"].Score);
    }

    [Fact]
    public void Equal_scores_of_different_pieces_merge_the_leftmost_pair()
    {
        // "ab" and "bc" tie: "abc" is "ab" "c", not "a" "bc".
        var (tokenizer, pieces) = Synthetic(byteFallback: false,
            ("a", 0, PieceType.Normal), ("b", 0, PieceType.Normal), ("c", 0, PieceType.Normal),
            ("ab", -1, PieceType.Normal), ("bc", -1, PieceType.Normal), ("aa", -2, PieceType.Normal));
        Assert.Equal(new[] { "ab", "c" }, Pieces(tokenizer, "abc"));
        Assert.Equal(new[] { "c", "ab", "c" }, Pieces(tokenizer, "cabc"));
        Assert.Equal(new[] { "aa", "aa", "a" }, Pieces(tokenizer, "aaaaa"));
        // A higher score wins wherever it is: "ab" (-1) before "aa" (-2).
        Assert.Equal(new[] { "a", "ab" }, Pieces(tokenizer, "aab"));
        foreach (string text in new[] { "abc", "cabc", "aaaaa", "aab", "abcabcaabbcc", "bcbcab" })
            Assert.Equal(ReferenceEncode(pieces, text), tokenizer.Encode(text));
    }

    [Fact]
    public void A_higher_score_beats_a_leftmost_tie()
    {
        var tokenizer = Load(GemmaStyle(byteFallback: false,
            ("a", 0, PieceType.Normal), ("b", 0, PieceType.Normal), ("c", 0, PieceType.Normal),
            ("ab", -1, PieceType.Normal), ("bc", 0, PieceType.Normal)));
        Assert.Equal(new[] { "a", "bc" }, Pieces(tokenizer, "abc"));
    }

    [Fact]
    public void An_unused_piece_is_split_back_into_the_pieces_it_was_merged_from()
    {
        // SentencePiece merges through an unused piece but never emits one.
        var tokenizer = Load(GemmaStyle(byteFallback: false,
            ("a", 0, PieceType.Normal), ("b", 0, PieceType.Normal), ("c", 0, PieceType.Normal),
            ("ab", -1, PieceType.Unused), ("abc", -2, PieceType.Normal)));
        Assert.Equal(new[] { "a", "b" }, Pieces(tokenizer, "ab"));
        Assert.Equal(new[] { "abc" }, Pieces(tokenizer, "abc"));
        Assert.Equal(new[] { "a", "b", "a", "b" }, Pieces(tokenizer, "abab"));
    }

    [Fact]
    public void Without_byte_fallback_a_run_of_unknown_characters_is_one_unknown_piece()
    {
        var tokenizer = Load(GemmaStyle(byteFallback: false, ("a", 0, PieceType.Normal)));
        Assert.Equal(new[] { 3, 4, 3 }, tokenizer.Encode("xya\u4E00\U00012000"));
    }

    [Fact]
    public void An_unpaired_surrogate_encodes_as_the_replacement_character()
    {
        var gemma = TokenizerFixtures.Gemma;
        // sentencepiece: "a\uFFFDb" is "a" "\uFFFD" "b"; the piece U+FFFD exists.
        Assert.Equal(new[] { 235250, 236193, 235268 }, gemma.Encode("a\uFFFDb"));
        Assert.Equal(new[] { 235250, 236193, 235268 }, gemma.Encode("a\uD800b"));
        Assert.Equal(new[] { 235250, 236193, 235268 }, gemma.Encode("a\uDC00b"));
        Assert.Equal(gemma.Encode("\uFFFD"), gemma.Encode("\uD83D"));
    }

    /// <summary>
    /// The merge rule, applied naively: while some adjacent pair concatenates to a piece, merge the pair whose piece
    /// scores highest, the leftmost of equals. Every character of <paramref name="text"/> must be a piece.
    /// </summary>
    private static int[] ReferenceEncode(IReadOnlyDictionary<string, (int Id, float Score)> pieces, string text)
    {
        var symbols = text.Select(c => c.ToString()).ToList();
        Assert.All(symbols, s => Assert.True(pieces.ContainsKey(s), $"'{s}' is not a piece"));
        while (true)
        {
            int best = -1;
            float bestScore = float.NegativeInfinity;
            for (int i = 0; i + 1 < symbols.Count; i++)
            {
                // Strictly greater: an equal score further right never replaces the leftmost.
                if (pieces.TryGetValue(symbols[i] + symbols[i + 1], out var piece) && piece.Score > bestScore)
                {
                    best = i;
                    bestScore = piece.Score;
                }
            }
            if (best < 0) break;
            symbols[best] += symbols[best + 1];
            symbols.RemoveAt(best + 1);
        }
        return [.. symbols.Select(s => pieces[s].Id)];
    }

    /// <summary>The pieces a merge may produce (normal, user-defined, unused), with their ids and scores.</summary>
    private static Dictionary<string, (int Id, float Score)> MergeablePieces(string modelPath)
    {
        var model = SentencePieceModel.Parse(File.ReadAllBytes(modelPath));
        var pieces = new Dictionary<string, (int, float)>(StringComparer.Ordinal);
        for (int id = 0; id < model.Count; id++)
        {
            if (model.Types[id] is PieceType.Normal or PieceType.UserDefined or PieceType.Unused)
                pieces.TryAdd(model.Pieces[id], (id, model.Scores[id]));
        }
        return pieces;
    }

    /// <summary>A Gemma-style model with these pieces from id 4, and its mergeable pieces as listed.</summary>
    private static (GemmaTokenizer Tokenizer, Dictionary<string, (int Id, float Score)> Pieces) Synthetic(
        bool byteFallback, params (string Piece, float Score, PieceType Type)[] pieces)
    {
        var mergeable = new Dictionary<string, (int, float)>(StringComparer.Ordinal);
        for (int i = 0; i < pieces.Length; i++)
        {
            if (pieces[i].Type is PieceType.Normal or PieceType.UserDefined or PieceType.Unused)
                mergeable.Add(pieces[i].Piece, (4 + i, pieces[i].Score));
        }
        return (Load(GemmaStyle(byteFallback, pieces)), mergeable);
    }

    private static string[] Pieces(GemmaTokenizer tokenizer, string text) => [.. tokenizer.Encode(text).Select(tokenizer.PieceOf)];
}
