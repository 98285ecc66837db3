using System.Text.Json;
using Xunit;

namespace GemmaGen.Tests.Tokenization;

/// <summary>
/// The demo model's own 4096-piece tokenizer (built like Gemma's) against the demo golden: each prompt encodes,
/// with BOS, to the reference prompt ids, and each greedy continuation decodes to the reference text. Two of the
/// continuations run through <c>&lt;eos&gt;</c> (1) and <c>&lt;bos&gt;</c> (2), which the reference decodes to
/// nothing (<c>"court.Then"</c>).
/// </summary>
public sealed class DemoTokenizerTests
{
    private static GemmaTokenizer Tokenizer => TokenizerFixtures.Demo;

    public static TheoryData<int> Cases() => new(0, 1, 2);

    [Fact]
    public void Finds_the_special_pieces_by_name()
    {
        Assert.Equal(4096, Tokenizer.VocabSize);
        Assert.Equal(0, Tokenizer.PadId);
        Assert.Equal(1, Tokenizer.EosId);
        Assert.Equal(2, Tokenizer.BosId);
        Assert.Equal(4, Tokenizer.StartOfTurnId);
        Assert.Equal(5, Tokenizer.EndOfTurnId);
        Assert.Equal(new[] { 2, 4 }.Concat(Tokenizer.Encode("user")), Tokenizer.Encode("<start_of_turn>user", addBos: true));
        Assert.Equal(new[] { 5 }, Tokenizer.Encode("<end_of_turn>"));
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Encodes_the_prompt_with_bos_to_the_reference_ids(int index)
    {
        var (prompt, promptIds, _, _) = LoadCase(index);
        Assert.Equal(promptIds, Tokenizer.Encode(prompt, addBos: true));
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Decodes_the_continuation_to_the_reference_text(int index)
    {
        var (_, _, greedyIds, greedyText) = LoadCase(index);
        Assert.Equal(greedyText, Tokenizer.Decode(greedyIds));
        var decoder = Tokenizer.CreateStreamingDecoder();
        Assert.Equal(greedyText, string.Concat(greedyIds.Select(decoder.Push)) + decoder.Flush());
    }

    [Fact]
    public void Eos_and_bos_in_a_continuation_produce_no_text()
    {
        var (_, _, greedyIds, greedyText) = LoadCase(0);
        Assert.Contains(Tokenizer.EosId, greedyIds);
        Assert.Contains(Tokenizer.BosId, greedyIds);
        Assert.Contains("court.Then", greedyText);
        Assert.Equal(greedyText, Tokenizer.Decode(greedyIds.Where(id => id != Tokenizer.EosId && id != Tokenizer.BosId).ToArray()));
    }

    private static (string Prompt, int[] PromptIds, int[] GreedyIds, string GreedyText) LoadCase(int index)
    {
        using var golden = JsonDocument.Parse(File.ReadAllText(TokenizerFixtures.DemoPath("golden.json")));
        var testCase = golden.RootElement.GetProperty("cases")[index];
        return (
            testCase.GetProperty("prompt").GetString()!,
            Ids(testCase.GetProperty("prompt_ids")),
            Ids(testCase.GetProperty("greedy_ids")),
            testCase.GetProperty("greedy_text").GetString()!);
    }

    private static int[] Ids(JsonElement array) => array.EnumerateArray().Select(e => e.GetInt32()).ToArray();
}
