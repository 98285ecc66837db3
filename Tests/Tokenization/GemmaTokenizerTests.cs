using Xunit;

namespace GemmaGen.Tests.Tokenization;

/// <summary>The Gemma 2 tokenizer's special tokens, user-defined pieces, BOS handling and decoding rules.</summary>
public sealed class GemmaTokenizerTests
{
    private static GemmaTokenizer Tokenizer => TokenizerFixtures.Gemma;

    [Fact]
    public void Has_the_gemma_vocabulary_and_special_ids()
    {
        Assert.Equal(256000, Tokenizer.VocabSize);
        Assert.Equal(0, Tokenizer.PadId);
        Assert.Equal(1, Tokenizer.EosId);
        Assert.Equal(2, Tokenizer.BosId);
        Assert.Equal(106, Tokenizer.StartOfTurnId);
        Assert.Equal(107, Tokenizer.EndOfTurnId);
    }

    [Fact]
    public void Maps_pieces_and_ids_both_ways()
    {
        Assert.Equal("<bos>", Tokenizer.PieceOf(2));
        Assert.Equal("<start_of_turn>", Tokenizer.PieceOf(106));
        Assert.Equal("<0x00>", Tokenizer.PieceOf(217));
        Assert.Equal(107, Tokenizer.IdOf("<end_of_turn>"));
        Assert.Equal(108, Tokenizer.IdOf("\n"));
        Assert.Equal(Tokenizer.Encode(" the").Single(), Tokenizer.IdOf("\u2581the"));
        Assert.Null(Tokenizer.IdOf("no such piece"));
        Assert.Equal(-1, Assert.Throws<ArgumentOutOfRangeException>(() => Tokenizer.PieceOf(-1)).ActualValue);
        Assert.Equal(256000, Assert.Throws<ArgumentOutOfRangeException>(() => Tokenizer.PieceOf(256000)).ActualValue);
    }

    [Fact]
    public void Adds_bos_only_when_asked()
    {
        Assert.Equal(new[] { 4521, 235269, 2134, 235341 }, Tokenizer.Encode("Hello, world!"));
        Assert.Equal(new[] { 2, 4521, 235269, 2134, 235341 }, Tokenizer.Encode("Hello, world!", addBos: true));
        Assert.Empty(Tokenizer.Encode(""));
        Assert.Equal(new[] { 2 }, Tokenizer.Encode("", addBos: true));
    }

    [Fact]
    public void Adds_no_dummy_prefix()
    {
        Assert.Equal("Hello", Tokenizer.PieceOf(Tokenizer.Encode("Hello").Single()));
        Assert.Equal("\u2581Hello", Tokenizer.PieceOf(Tokenizer.Encode(" Hello").Single()));
    }

    [Theory]
    [InlineData("<bos>")]
    [InlineData("<eos>")]
    [InlineData("<pad>")]
    [InlineData("<unk>")]
    [InlineData("<bos>literal special<eos> <unused5> <mask>")]
    public void Never_produces_control_or_unknown_pieces_from_text(string text)
    {
        var ids = Tokenizer.Encode(text);
        Assert.DoesNotContain(ids, id => id is 0 or 1 or 2 or 3);
        Assert.Equal(text, Tokenizer.Decode(ids));
    }

    [Fact]
    public void Matches_user_defined_pieces_whole()
    {
        Assert.Equal(new[] { 106, 1645, 108 }, Tokenizer.Encode("<start_of_turn>user\n"));
        Assert.Equal(new[] { 107, 108, 106, 2516, 108 }, Tokenizer.Encode("<end_of_turn>\n<start_of_turn>model\n"));
        Assert.Equal(new[] { 106, 106 }, Tokenizer.Encode("<start_of_turn><start_of_turn>"));
        Assert.Equal(new[] { 12 }, Tokenizer.Encode("<unused5>"));
        Assert.Equal(new[] { 4 }, Tokenizer.Encode("<mask>"));
    }

    [Fact]
    public void Matches_the_longest_user_defined_piece()
    {
        Assert.Equal(new[] { 110 }, Tokenizer.Encode("\n\n\n"));
        Assert.Equal(new[] { 140 }, Tokenizer.Encode("   "));
        Assert.Equal(Tokenizer.IdOf("\t\t\t"), Tokenizer.Encode("\t\t\t").Single());
        // 40 newlines: the longest newline piece (31) first, then 9.
        Assert.Equal(new[] { 138, 116 }, Tokenizer.Encode(new string('\n', 40)));
        // A space run takes the space before the next word, which then starts without one.
        Assert.Equal(new[] { "a", "\u2581\u2581", "b" }, Tokenizer.Encode("a  b").Select(Tokenizer.PieceOf));
    }

    [Fact]
    public void Decodes_whitespace_and_newline_pieces()
    {
        Assert.Equal("   ", Tokenizer.Decode([140]));
        Assert.Equal("\n\n", Tokenizer.Decode([109]));
        Assert.Equal("trailing spaces   ", Tokenizer.Decode([100504, 14130, 140]));
        Assert.Equal(" hello", Tokenizer.Decode(Tokenizer.Encode("\u2581hello")));
    }

    [Fact]
    public void Decodes_control_pieces_to_nothing()
    {
        Assert.Equal("Hello, world!", Tokenizer.Decode([2, 4521, 235269, 0, 2134, 235341, 1]));
        Assert.Equal("<start_of_turn>user\n", Tokenizer.Decode([2, 106, 1645, 108]));
    }

    [Fact]
    public void Decodes_the_unknown_piece_as_sentencepiece_does()
    {
        Assert.Equal("a \u2047 b", Tokenizer.Decode([Tokenizer.IdOf("a")!.Value, 3, Tokenizer.IdOf("b")!.Value]));
    }

    [Fact]
    public void Decodes_bytes_that_form_no_character_to_one_replacement_character_each()
    {
        int e4 = Tokenizer.IdOf("<0xE4>")!.Value, b8 = Tokenizer.IdOf("<0xB8>")!.Value, x80 = Tokenizer.IdOf("<0x80>")!.Value;
        int a = Tokenizer.IdOf("a")!.Value;
        Assert.Equal("\u4E00", Tokenizer.Decode([e4, b8, x80]));
        Assert.Equal("\uFFFD\uFFFD", Tokenizer.Decode([e4, b8]));
        Assert.Equal("\uFFFD\uFFFDa", Tokenizer.Decode([e4, b8, a]));
        Assert.Equal("\uFFFD", Tokenizer.Decode([x80]));
        // Any other piece, even a control one, ends a run of bytes.
        Assert.Equal("\uFFFD\uFFFD\uFFFD", Tokenizer.Decode([e4, 2, b8, x80]));
    }

    [Fact]
    public void Encodes_characters_without_a_piece_as_utf8_bytes()
    {
        var ids = Tokenizer.Encode("\U00012000");
        Assert.Equal(new[] { "<0xF0>", "<0x92>", "<0x80>", "<0x80>" }, ids.Select(Tokenizer.PieceOf));
        Assert.Equal("\U00012000", Tokenizer.Decode(ids));
    }

    [Fact]
    public void Rejects_ids_outside_the_vocabulary()
    {
        var tooLarge = Assert.Throws<ArgumentOutOfRangeException>(() => Tokenizer.Decode([4521, 256000]));
        Assert.Equal(256000, tooLarge.ActualValue);
        Assert.Contains("256000", tooLarge.Message);
        Assert.Equal(-5, Assert.Throws<ArgumentOutOfRangeException>(() => Tokenizer.Decode([-5])).ActualValue);
    }
}
