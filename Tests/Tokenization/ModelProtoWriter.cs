using System.Text;

namespace GemmaGen.Tests.Tokenization;

/// <summary>
/// Writes small SentencePiece <c>ModelProto</c> files (sentencepiece_model.proto) in protobuf wire format, so tests
/// can load models with exactly the pieces, scores and flags a case needs.
/// </summary>
internal static class ModelProtoWriter
{
    /// <summary>
    /// A Gemma-style model (BPE, identity normalizer, no dummy prefix, no whitespace collapsing): <c>&lt;pad&gt;</c>,
    /// <c>&lt;eos&gt;</c>, <c>&lt;bos&gt;</c>, <c>&lt;unk&gt;</c> (ids 0 to 3), then <paramref name="pieces"/> from id 4.
    /// </summary>
    public static byte[] GemmaStyle(bool byteFallback, params (string Piece, float Score, PieceType Type)[] pieces) => Concat(
        [
            Piece("<pad>", 0, PieceType.Control),
            Piece("<eos>", 0, PieceType.Control),
            Piece("<bos>", 0, PieceType.Control),
            Piece("<unk>", 0, PieceType.Unknown),
            .. pieces.Select(p => Piece(p.Piece, p.Score, p.Type)),
            Field(2, Concat(Varint(3, 2), Varint(35, byteFallback ? 1UL : 0), Varint(40, 3), Varint(41, 2), Varint(42, 1), Varint(43, 0))),
            Field(3, Concat(Field(1, "identity"u8), Varint(3, 0), Varint(4, 0))),
        ]);

    /// <summary>A <c>ModelProto.pieces</c> entry (field 1): the piece, its score and its type.</summary>
    public static byte[] Piece(string piece, float score, PieceType type) =>
        Field(1, Concat(Field(1, Encoding.UTF8.GetBytes(piece)), Float(2, score), Varint(3, (ulong)type)));

    /// <summary>A length-delimited field.</summary>
    public static byte[] Field(int field, ReadOnlySpan<byte> value) => [.. Tag(field, 2), .. VarintBytes((ulong)value.Length), .. value];

    /// <summary>A varint field.</summary>
    public static byte[] Varint(int field, ulong value) => [.. Tag(field, 0), .. VarintBytes(value)];

    /// <summary>A 32-bit float field (wire type 5, little-endian).</summary>
    public static byte[] Float(int field, float value) => [.. Tag(field, 5), .. BitConverter.GetBytes(value)];

    /// <summary>The parts, one after another.</summary>
    public static byte[] Concat(params byte[][] parts) => [.. parts.SelectMany(p => p)];

    /// <summary>Writes <paramref name="contents"/> to a new temporary file, loads it as a tokenizer and deletes it.</summary>
    public static GemmaTokenizer Load(byte[] contents)
    {
        string path = TempPath();
        File.WriteAllBytes(path, contents);
        try
        {
            return GemmaTokenizer.Load(path);
        }
        finally
        {
            File.Delete(path);
        }
    }

    /// <summary>A path for a temporary model file that does not exist yet.</summary>
    public static string TempPath() => Path.Combine(Path.GetTempPath(), $"gemmagen-tokenizer-{Guid.NewGuid():N}.model");

    private static byte[] Tag(int field, int wireType) => VarintBytes((ulong)(field << 3 | wireType));

    private static byte[] VarintBytes(ulong value)
    {
        var bytes = new List<byte>();
        for (; value >= 0x80; value >>= 7) bytes.Add((byte)(value | 0x80));
        bytes.Add((byte)value);
        return [.. bytes];
    }
}
