using Xunit;

using static GemmaGen.Tests.Tokenization.ModelProtoWriter;

namespace GemmaGen.Tests.Tokenization;

/// <summary>Loading errors: each is a <see cref="TokenizerException"/> that names the file and the problem.</summary>
public sealed class TokenizerLoadTests
{
    [Fact]
    public void Missing_file()
    {
        string path = TempPath();
        var error = Assert.Throws<TokenizerException>(() => GemmaTokenizer.Load(path));
        Assert.Equal($"{path}: tokenizer model does not exist", error.Message);
    }

    [Fact]
    public void Random_bytes()
    {
        var bytes = new byte[4096];
        new Random(1234).NextBytes(bytes);
        AssertRejected(bytes, "not a valid SentencePiece model");
    }

    [Fact]
    public void Text_file()
    {
        AssertRejected("This is not a tokenizer model.\n"u8.ToArray(), "not a valid SentencePiece model");
    }

    [Fact]
    public void Empty_file()
    {
        AssertRejected([], "not a valid SentencePiece model: the model has no pieces");
    }

    [Fact]
    public void Truncated_model()
    {
        var bytes = File.ReadAllBytes(TokenizerFixtures.GemmaModelPath);
        AssertRejected(bytes[..(bytes.Length / 2)], "past the end");
    }

    [Fact]
    public void Model_that_adds_a_dummy_prefix()
    {
        // A BPE model whose normalizer spec leaves add_dummy_prefix at its default, true.
        var model = Concat(
            Field(1, Concat(Field(1, "<pad>"u8), Varint(3, 3))),
            Field(1, Concat(Field(1, "<eos>"u8), Varint(3, 3))),
            Field(1, Concat(Field(1, "<bos>"u8), Varint(3, 3))),
            Field(1, Concat(Field(1, "<unk>"u8), Varint(3, 2))),
            Field(1, Field(1, "a"u8)),
            Field(2, Concat(Varint(3, 2), Varint(40, 3), Varint(41, 2), Varint(42, 1), Varint(43, 0))),
            Field(3, Concat(Field(1, "identity"u8), Varint(4, 0))));
        AssertRejected(model, "not a Gemma-style SentencePiece model: normalizer_spec.add_dummy_prefix is set");
    }

    private static void AssertRejected(byte[] contents, string expected)
    {
        string path = TempPath();
        File.WriteAllBytes(path, contents);
        try
        {
            var error = Assert.Throws<TokenizerException>(() => GemmaTokenizer.Load(path));
            Assert.StartsWith($"{path}: ", error.Message);
            Assert.Contains(expected, error.Message);
        }
        finally
        {
            File.Delete(path);
        }
    }
}
