using System.Buffers.Binary;
using System.Text;
using GemmaGen.Tests.Tokenization;
using Xunit;

namespace GemmaGen.Tests.Host;

/// <summary>
/// The tokenizer built from a GGUF file's <c>tokenizer.ggml.*</c> keys. The real Gemma 2 <c>tokenizer.model</c> is
/// converted here to GGUF arrays the way llama.cpp's converter does it, and must encode every case of the
/// sentencepiece goldens to the same ids; the fixture files' own vocabulary must tokenize like the demo's
/// <c>tokenizer.model</c>; the chat template is recognised as Gemma's; malformed tokenizer keys are refused.
/// </summary>
public sealed class GgufTokenizerTests : IDisposable
{
    private readonly TempDirectory _temp = new();

    public void Dispose() => _temp.Dispose();

    /// <summary>Every golden case, with the vocabulary converted with the whitespace runs and HTML tags in
    /// <c>added_tokens_decoder</c> (user-defined in the GGUF) and without (then the converter leaves them normal).</summary>
    public static TheoryData<int, bool> GoldenCases()
    {
        var data = new TheoryData<int, bool>();
        for (int i = 0; i < TokenizerFixtures.Golden.Count; i++)
        {
            data.Add(i, true);
            data.Add(i, false);
        }
        return data;
    }

    private static readonly Lazy<GemmaTokenizer> GemmaFromGguf = new(() => GemmaTokenizer.LoadGguf(ConvertGemmaTokenizer(true)));
    private static readonly Lazy<GemmaTokenizer> GemmaFromGgufNormalRuns = new(() => GemmaTokenizer.LoadGguf(ConvertGemmaTokenizer(false)));

    [Theory]
    [MemberData(nameof(GoldenCases))]
    public void TheConvertedGemmaVocabularyEncodesLikeSentencePiece(int index, bool runsAdded)
    {
        var tokenizer = runsAdded ? GemmaFromGguf.Value : GemmaFromGgufNormalRuns.Value;
        var golden = TokenizerFixtures.Golden[index];
        var ids = tokenizer.Encode(golden.Text);
        Assert.True(golden.Ids.SequenceEqual(ids),
            $"case {index}: expected [{string.Join(", ", golden.Ids)}]\nactual   [{string.Join(", ", ids)}]");
        Assert.Equal(golden.Ids.Prepend(2), tokenizer.Encode(golden.Text, addBos: true));
    }

    [Fact]
    public void TheConvertedGemmaVocabularyHasGemmasSpecialTokens()
    {
        var t = GemmaFromGguf.Value;
        Assert.Equal(256000, t.VocabSize);
        Assert.Equal((2, 1, 0), (t.BosId, t.EosId, t.PadId));
        Assert.Equal(106, t.StartOfTurnId);
        Assert.Equal(107, t.EndOfTurnId);
        // Control in the GGUF, matched in text as SentencePiece matches them (fixtures README item 11).
        Assert.Equal([2, 106, .. t.Encode("user")], t.Encode("<start_of_turn>user", addBos: true));
        // BOS is never made from text.
        Assert.DoesNotContain(2, t.Encode("<bos>"));
        Assert.Equal("Hello world", t.Decode(t.Encode("Hello world", addBos: true)));
    }

    public static TheoryData<string> Files() => new(GgufFixtures.Names);

    [Theory]
    [MemberData(nameof(Files))]
    public void EveryFixtureFilesVocabularyTokenizesLikeTheDemoTokenizerModel(string name)
    {
        var fromGguf = GemmaTokenizer.LoadGguf(GgufFixtures.Path(name));
        var reference = TokenizerFixtures.Demo; // models/gemma2-demo/tokenizer.model, which the files were converted from
        Assert.Equal(reference.VocabSize, fromGguf.VocabSize);
        for (int id = 0; id < reference.VocabSize; id++) Assert.Equal(reference.PieceOf(id), fromGguf.PieceOf(id));
        Assert.Equal((reference.BosId, reference.EosId, reference.PadId), (fromGguf.BosId, fromGguf.EosId, fromGguf.PadId));
        Assert.Equal((4, 5), (fromGguf.StartOfTurnId, fromGguf.EndOfTurnId));
        foreach (var golden in TokenizerFixtures.Golden)
            Assert.Equal(reference.Encode(golden.Text, addBos: true), fromGguf.Encode(golden.Text, addBos: true));
        // The golden prompt of the GGUF goldens.
        using var goldens = SafetensorsFile.Open(GgufFixtures.GoldenPath(name));
        Assert.Equal(goldens.GetI64("prompt_ids").Select(id => (int)id), fromGguf.Encode("The jury said", addBos: true));
        Assert.True(fromGguf.AddBosToken);
        Assert.False(fromGguf.AddEosToken);
    }

    [Fact]
    public void TheFixtureChatTemplateIsRecognisedAsGemmas()
    {
        var tokenizer = GemmaTokenizer.LoadGguf(GgufFixtures.Path("q4_k_m"));
        Assert.NotNull(tokenizer.ChatTemplate);
        Assert.True(tokenizer.HasGemmaChatTemplate);
        Assert.False(GemmaTokenizer.IsGemmaChatTemplate(
            "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}"));
        using var model = GemmaModel.Load(GgufFixtures.Path("q4_k_m"), new GemmaModelOptions { Threads = 1 });
        var chat = model.CreateChat();
        int[] turn = chat.TurnTokens("Hi");
        Assert.Equal([2, 4, .. tokenizer.Encode("user\nHi"), 5, .. tokenizer.Encode("\n"), 4, .. tokenizer.Encode("model\n")], turn);
    }

    [Fact]
    public void AnotherTokenizerModelIsRefusedNamingTheKey()
    {
        var e = Assert.Throws<TokenizerException>(() => LoadEdited("gpt2.gguf",
            kvs => GgufConfigTests.Replace(kvs, "tokenizer.ggml.model", new GgufValue(GgufValueType.String, "gpt2"))));
        Assert.Contains("tokenizer.ggml.model is 'gpt2'", e.Message);
    }

    [Fact]
    public void ASpacePrefixIsRefused()
    {
        var e = Assert.Throws<TokenizerException>(() => LoadEdited("prefix.gguf",
            kvs => GgufConfigTests.Replace(kvs, "tokenizer.ggml.add_space_prefix", new GgufValue(GgufValueType.Bool, true))));
        Assert.Contains("tokenizer.ggml.add_space_prefix", e.Message);
        var absent = Assert.Throws<TokenizerException>(() => LoadEdited("noprefix.gguf", kvs => kvs.RemoveAll(kv => kv.Key == "tokenizer.ggml.add_space_prefix")));
        Assert.Contains("absent", absent.Message);
    }

    [Fact]
    public void MismatchedArraysAndBadIdsAreRefusedNamingTheKey()
    {
        var scores = Assert.Throws<TokenizerException>(() => LoadEdited("scores.gguf",
            kvs => GgufConfigTests.Replace(kvs, "tokenizer.ggml.scores", GgufRewriter.Array(GgufValueType.Float32, new float[10]))));
        Assert.Contains("tokenizer.ggml.scores has 10 entries", scores.Message);
        var bos = Assert.Throws<TokenizerException>(() => LoadEdited("bos.gguf",
            kvs => GgufConfigTests.Replace(kvs, "tokenizer.ggml.bos_token_id", new GgufValue(GgufValueType.UInt32, 5000u))));
        Assert.Contains("tokenizer.ggml.bos_token_id is 5000", bos.Message);
        var normal = Assert.Throws<TokenizerException>(() => LoadEdited("eos.gguf",
            kvs => GgufConfigTests.Replace(kvs, "tokenizer.ggml.eos_token_id", new GgufValue(GgufValueType.UInt32, 300u))));
        Assert.Contains("tokenizer.ggml.eos_token_id is 300", normal.Message);
        var types = Assert.Throws<TokenizerException>(() => LoadEdited("types.gguf",
            kvs => GgufConfigTests.Replace(kvs, "tokenizer.ggml.token_type", GgufRewriter.Array(GgufValueType.Int32, Enumerable.Repeat(9, 4096).ToArray()))));
        Assert.Contains("tokenizer.ggml.token_type[0] is 9", types.Message);
        var missing = Assert.Throws<TokenizerException>(() => LoadEdited("unk.gguf", kvs => kvs.RemoveAll(kv => kv.Key == "tokenizer.ggml.unknown_token_id")));
        Assert.Contains("'tokenizer.ggml.unknown_token_id'", missing.Message);
    }

    private GemmaTokenizer LoadEdited(string name, Action<List<KeyValuePair<string, GgufValue>>> edit)
    {
        string path = GgufRewriter.Rewrite(GgufFixtures.Path("q4_0"), _temp.File(name), edit);
        try
        {
            return GemmaTokenizer.LoadGguf(path);
        }
        catch (TokenizerException e)
        {
            Assert.Contains(path, e.Message);
            throw;
        }
    }

    /// <summary>
    /// Writes the Gemma 2 <c>tokenizer.model</c> as llama.cpp's converter (<c>_set_vocab_sentencepiece</c>) writes a
    /// GGUF vocabulary: pieces, scores and types from the proto (SentencePiece's normal, unknown, control, unused and
    /// byte types; a user-defined piece starts as normal), then the tokens of the checkpoint's
    /// <c>added_tokens_decoder</c> overridden with score -1000: control when flagged special, user-defined otherwise.
    /// Gemma 2's <c>added_tokens_decoder</c> is taken as the four special ids and every user-defined piece, ids 0..107
    /// (<c>&lt;mask&gt;</c>, <c>&lt;unusedN&gt;</c>, <c>&lt;start_of_turn&gt;</c>, ...) flagged special, the
    /// whitespace runs and HTML tags after them not (with <paramref name="runsAdded"/>; without, they are left out of
    /// it and stay normal pieces).
    /// </summary>
    private static string ConvertGemmaTokenizer(bool runsAdded)
    {
        var (pieces, scores, types) = ReadProto(File.ReadAllBytes(TokenizerFixtures.GemmaModelPath));
        int n = pieces.Count;
        var tokenType = new int[n];
        var score = new float[n];
        for (int id = 0; id < n; id++)
        {
            score[id] = scores[id];
            tokenType[id] = types[id] is 2 or 3 or 5 or 6 ? types[id] : 1;
            bool added = id <= 107 || runsAdded && types[id] == 4;
            if (!added) continue;
            // Ids 4..107: <mask>, <2mass>, [@BOS@], <unused0..98>, <start_of_turn>, <end_of_turn>; then whitespace runs and HTML tags.
            bool special = id <= 107;
            tokenType[id] = special ? 3 : 4;
            score[id] = -1000;
        }
        var kvs = new List<KeyValuePair<string, GgufValue>>
        {
            new("general.architecture", new GgufValue(GgufValueType.String, "gemma2")),
            new("tokenizer.ggml.model", new GgufValue(GgufValueType.String, "llama")),
            new("tokenizer.ggml.pre", new GgufValue(GgufValueType.String, "default")),
            new("tokenizer.ggml.tokens", GgufRewriter.Array(GgufValueType.String, pieces.ToArray())),
            new("tokenizer.ggml.scores", GgufRewriter.Array(GgufValueType.Float32, score)),
            new("tokenizer.ggml.token_type", GgufRewriter.Array(GgufValueType.Int32, tokenType)),
            new("tokenizer.ggml.bos_token_id", new GgufValue(GgufValueType.UInt32, 2u)),
            new("tokenizer.ggml.eos_token_id", new GgufValue(GgufValueType.UInt32, 1u)),
            new("tokenizer.ggml.unknown_token_id", new GgufValue(GgufValueType.UInt32, 3u)),
            new("tokenizer.ggml.padding_token_id", new GgufValue(GgufValueType.UInt32, 0u)),
            new("tokenizer.ggml.add_bos_token", new GgufValue(GgufValueType.Bool, true)),
            new("tokenizer.ggml.add_eos_token", new GgufValue(GgufValueType.Bool, false)),
            new("tokenizer.ggml.add_space_prefix", new GgufValue(GgufValueType.Bool, false)),
        };
        string path = Path.Combine(Path.GetTempPath(), $"gemmagen-gemma2-vocab-{Guid.NewGuid():N}.gguf");
        GgufRewriter.Write(path, kvs);
        AppDomain.CurrentDomain.ProcessExit += (_, _) => File.Delete(path);
        return path;
    }

    /// <summary>Reads the pieces of a SentencePiece <c>ModelProto</c> (field 1: piece 1, score 2, type 3) with a
    /// protobuf wire reader of its own.</summary>
    private static (List<string> Pieces, List<float> Scores, List<int> Types) ReadProto(byte[] data)
    {
        var pieces = new List<string>();
        var scores = new List<float>();
        var types = new List<int>();
        foreach (var (field, value) in Fields(data))
        {
            if (field != 1) continue;
            string piece = "";
            float s = 0;
            int type = 1;
            foreach (var (f, v) in Fields(value))
            {
                if (f == 1) piece = Encoding.UTF8.GetString(v);
                else if (f == 2) s = BinaryPrimitives.ReadSingleLittleEndian(v);
                else if (f == 3) type = v[0];
            }
            pieces.Add(piece);
            scores.Add(s);
            types.Add(type);
        }
        return (pieces, scores, types);
    }

    private static IEnumerable<(int Field, byte[] Value)> Fields(byte[] data)
    {
        int at = 0;
        ulong Varint()
        {
            ulong v = 0;
            for (int shift = 0; ; shift += 7)
            {
                byte b = data[at++];
                v |= (ulong)(b & 0x7f) << shift;
                if (b < 0x80) return v;
            }
        }
        while (at < data.Length)
        {
            ulong tag = Varint();
            int field = (int)(tag >> 3);
            switch (tag & 7)
            {
                case 0:
                    ulong v = Varint();
                    yield return (field, [(byte)v]);
                    break;
                case 1:
                    yield return (field, data[at..(at + 8)]);
                    at += 8;
                    break;
                case 2:
                    int length = (int)Varint();
                    yield return (field, data[at..(at + length)]);
                    at += length;
                    break;
                case 5:
                    yield return (field, data[at..(at + 4)]);
                    at += 4;
                    break;
                default:
                    throw new InvalidDataException($"wire type {tag & 7}");
            }
        }
    }
}
