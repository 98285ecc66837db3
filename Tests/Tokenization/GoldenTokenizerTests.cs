using System.Text.Json;
using Xunit;

namespace GemmaGen.Tests.Tokenization;

/// <summary>
/// The Gemma 2 tokenizer against the 213 cases that <c>sentencepiece</c> 0.2.2 encoded (prose, code, whitespace
/// runs, digits, CJK, emoji, control characters, chat markup): exact ids, and the text back from decoding.
/// </summary>
public sealed class GoldenTokenizerTests
{
    /// <summary>Every golden case: its index and the start of its text (JSON-escaped, for the test name).</summary>
    public static TheoryData<int, string> Cases()
    {
        var data = new TheoryData<int, string>();
        for (int i = 0; i < TokenizerFixtures.Golden.Count; i++) data.Add(i, Preview(TokenizerFixtures.Golden[i].Text));
        return data;
    }

    [Fact]
    public void The_golden_file_has_every_case()
    {
        Assert.Equal(213, TokenizerFixtures.Golden.Count);
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Encodes_to_the_sentencepiece_ids(int index, string preview)
    {
        var golden = TokenizerFixtures.Golden[index];
        var ids = TokenizerFixtures.Gemma.Encode(golden.Text);
        Assert.True(golden.Ids.SequenceEqual(ids),
            $"case {index} {preview}: text {JsonSerializer.Serialize(golden.Text)}\n"
            + $"expected [{string.Join(", ", golden.Ids)}]\nactual   [{string.Join(", ", ids)}]");
    }

    [SkippableTheory]
    [MemberData(nameof(Cases))]
    public void Decodes_back_to_the_text(int index, string preview)
    {
        var golden = TokenizerFixtures.Golden[index];
        Skip.IfNot(golden.DecodedRoundtrip, $"case {index}: sentencepiece does not decode it back to its text");
        string decoded = TokenizerFixtures.Gemma.Decode(golden.Ids);
        Assert.True(golden.Text == decoded,
            $"case {index} {preview}:\nexpected {JsonSerializer.Serialize(golden.Text)}\nactual   {JsonSerializer.Serialize(decoded)}");
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Streaming_decoding_equals_decoding(int index, string preview)
    {
        var golden = TokenizerFixtures.Golden[index];
        var decoder = TokenizerFixtures.Gemma.CreateStreamingDecoder();
        string streamed = string.Concat(golden.Ids.Select(decoder.Push)) + decoder.Flush();
        Assert.True(TokenizerFixtures.Gemma.Decode(golden.Ids) == streamed, $"case {index} {preview}");
    }

    private static string Preview(string text)
    {
        const int Length = 32;
        if (text.Length <= Length) return JsonSerializer.Serialize(text);
        int cut = char.IsHighSurrogate(text[Length - 1]) ? Length - 1 : Length;
        return JsonSerializer.Serialize(text[..cut] + "...");
    }
}
