using System.Text;
using Xunit;

namespace GemmaGen.Tests.Tokenization;

/// <summary>
/// Token-by-token decoding: characters that have no piece of their own (rare CJK, cuneiform, hieroglyphs) are
/// encoded as 3 or 4 byte tokens, and the streaming decoder must return each such character whole, once its last
/// byte arrives, while the concatenated output equals <see cref="GemmaTokenizer.Decode"/>.
/// </summary>
public sealed class StreamingDecoderTests
{
    private static GemmaTokenizer Tokenizer => TokenizerFixtures.Gemma;

    [Theory]
    [InlineData("\U00012000\U00012001 ancient \U00013000 hieroglyph")]
    [InlineData("\u9F98\u9F49 \U0002000B \u4E02 mixed with common \u4E2D\u6587")]
    [InlineData("Emoji \U0001F642\U0001F44D\U0001F3FD\U0001F680 and \U0001FAE8\U0001FAE9 new ones")]
    [InlineData("\u0000 null \u0007 bell \u001b esc")]
    public void Never_splits_a_character_and_equals_decode(string text)
    {
        var ids = Tokenizer.Encode(text);
        Assert.Contains(ids, id => IsBytePiece(Tokenizer.PieceOf(id)));

        var decoder = Tokenizer.CreateStreamingDecoder();
        var pieces = ids.Select(decoder.Push).Append(decoder.Flush()).ToList();
        foreach (string piece in pieces)
        {
            Assert.True(IsWellFormed(piece), $"split character in {string.Join(" ", piece.Select(c => $"U+{(int)c:X4}"))}");
            Assert.DoesNotContain('\uFFFD', piece);
        }
        Assert.Equal(Tokenizer.Decode(ids), string.Concat(pieces));
        Assert.Equal(text, string.Concat(pieces));
    }

    [Fact]
    public void Returns_a_byte_fallback_character_with_its_last_byte()
    {
        var ids = Tokenizer.Encode("a\U00012000b");
        Assert.Equal(6, ids.Length);
        var decoder = Tokenizer.CreateStreamingDecoder();
        Assert.Equal(new[] { "a", "", "", "", "\U00012000", "b" }, ids.Select(decoder.Push));
        Assert.Equal("", decoder.Flush());
    }

    [Fact]
    public void Returns_nothing_for_control_tokens()
    {
        var decoder = Tokenizer.CreateStreamingDecoder();
        Assert.Equal("", decoder.Push(Tokenizer.BosId));
        Assert.Equal("Hello", decoder.Push(Tokenizer.Encode("Hello").Single()));
        Assert.Equal("", decoder.Push(Tokenizer.EosId));
        Assert.Equal("", decoder.Flush());
    }

    [Fact]
    public void Flush_replaces_each_byte_of_an_unfinished_character()
    {
        int e4 = Tokenizer.IdOf("<0xE4>")!.Value, b8 = Tokenizer.IdOf("<0xB8>")!.Value;
        var decoder = Tokenizer.CreateStreamingDecoder();
        Assert.Equal("", decoder.Push(e4));
        Assert.Equal("", decoder.Push(b8));
        Assert.Equal("\uFFFD\uFFFD", decoder.Flush());
        Assert.Equal("\uFFFD\uFFFD", Tokenizer.Decode([e4, b8]));

        // The decoder starts a new sequence after a flush.
        Assert.Equal("Hello", decoder.Push(Tokenizer.Encode("Hello").Single()));
    }

    [Fact]
    public void A_non_byte_token_ends_a_byte_run_as_in_decode()
    {
        int e4 = Tokenizer.IdOf("<0xE4>")!.Value, b8 = Tokenizer.IdOf("<0xB8>")!.Value, x80 = Tokenizer.IdOf("<0x80>")!.Value;
        int[] ids = [e4, b8, Tokenizer.EosId, x80, Tokenizer.Encode("Hello").Single()];
        var decoder = Tokenizer.CreateStreamingDecoder();
        string streamed = string.Concat(ids.Select(decoder.Push)) + decoder.Flush();
        Assert.Equal("\uFFFD\uFFFD\uFFFDHello", streamed);
        Assert.Equal(Tokenizer.Decode(ids), streamed);
    }

    [Fact]
    public void Rejects_ids_outside_the_vocabulary()
    {
        var decoder = Tokenizer.CreateStreamingDecoder();
        Assert.Equal(256000, Assert.Throws<ArgumentOutOfRangeException>(() => decoder.Push(256000)).ActualValue);
        Assert.Equal(-1, Assert.Throws<ArgumentOutOfRangeException>(() => decoder.Push(-1)).ActualValue);
    }

    private static bool IsBytePiece(string piece) => piece.Length == 6 && piece.StartsWith("<0x", StringComparison.Ordinal);

    private static bool IsWellFormed(string text)
    {
        int i = 0;
        while (i < text.Length)
        {
            if (!Rune.TryGetRuneAt(text, i, out var rune)) return false;
            i += rune.Utf16SequenceLength;
        }
        return true;
    }
}
