using System.Text;

namespace GemmaGen;

/// <summary>
/// The Gemma tokenizer: a SentencePiece BPE model (<c>tokenizer.model</c>) with byte fallback, no dummy prefix and
/// no whitespace collapsing, producing the same ids as the <c>sentencepiece</c> library.
/// </summary>
/// <remarks>
/// <para>Encoding escapes spaces as <c>▁</c>, then matches the model's user-defined pieces (<c>&lt;start_of_turn&gt;</c>,
/// <c>&lt;end_of_turn&gt;</c>, runs of newlines, spaces and tabs, HTML tags, ...) whole, longest first, and runs
/// BPE (<see cref="BpeEncoder"/>: the highest-scoring merge first, the leftmost of equal scores) on the text between
/// them; SentencePiece itself never merges a user-defined piece with its neighbours. Control pieces (<c>&lt;bos&gt;</c>,
/// <c>&lt;eos&gt;</c>, <c>&lt;pad&gt;</c>) are never produced from text: a literal <c>"&lt;bos&gt;"</c> is encoded
/// as ordinary characters. BOS is added only on request.</para>
/// <para>Decoding is done here over the piece strings (see <see cref="Decode"/>). Microsoft.ML.Tokenizers 2.0.1 gets
/// Gemma wrong: it splits user-defined pieces (and, given them as special tokens, mis-encodes runs of whitespace),
/// merges equal scores rightmost first, and its decoder drops whitespace-only pieces and newlines.</para>
/// </remarks>
public sealed partial class GemmaTokenizer
{
    private readonly SentencePieceModel _model;
    private readonly Dictionary<string, int> _idsByPiece;
    private readonly UserDefinedPieceMatcher _userDefined;
    private readonly BpeEncoder _bpe;

    private GemmaTokenizer(SentencePieceModel model)
    {
        _model = model;
        _bpe = new BpeEncoder(model);
        _userDefined = new UserDefinedPieceMatcher(model);
        _idsByPiece = new Dictionary<string, int>(model.Count, StringComparer.Ordinal);
        for (int id = 0; id < model.Count; id++) _idsByPiece.TryAdd(model.Pieces[id], id);
        StartOfTurnId = IdOf("<start_of_turn>");
        EndOfTurnId = IdOf("<end_of_turn>");
    }

    /// <summary>The file the tokenizer was loaded from, for messages.</summary>
    internal string? SourcePath { get; private init; }

    /// <summary>The number of pieces (token ids are 0 to VocabSize - 1).</summary>
    public int VocabSize => _model.Count;

    /// <summary>The id of <c>&lt;bos&gt;</c>, the beginning-of-sequence token (2 for Gemma).</summary>
    public int BosId => _model.BosId;

    /// <summary>The id of <c>&lt;eos&gt;</c>, the end-of-sequence token (1 for Gemma).</summary>
    public int EosId => _model.EosId;

    /// <summary>The id of <c>&lt;pad&gt;</c>, the padding token (0 for Gemma).</summary>
    public int PadId => _model.PadId;

    /// <summary>The id of the piece <c>&lt;start_of_turn&gt;</c> (106 for Gemma), or null if the model has none.</summary>
    public int? StartOfTurnId { get; }

    /// <summary>The id of the piece <c>&lt;end_of_turn&gt;</c> (107 for Gemma), or null if the model has none.</summary>
    public int? EndOfTurnId { get; }

    /// <summary>Loads a SentencePiece model file (<c>tokenizer.model</c>).</summary>
    /// <param name="path">The model file.</param>
    /// <exception cref="TokenizerException">The file is missing or unreadable, is not a SentencePiece model, or is
    /// not a Gemma-style one (BPE, identity normalizer, no dummy prefix, no whitespace collapsing); the message names
    /// the file.</exception>
    public static GemmaTokenizer Load(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (!File.Exists(path)) throw new TokenizerException($"{path}: tokenizer model does not exist");
        CheckpointFiles.RequireRegularFile(path, message => new TokenizerException(message));
        byte[] data;
        try
        {
            data = File.ReadAllBytes(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new TokenizerException($"{path}: cannot read the tokenizer model: {e.Message}", e);
        }

        SentencePieceModel model;
        try
        {
            model = SentencePieceModel.Parse(data);
        }
        catch (InvalidDataException e)
        {
            throw new TokenizerException($"{path}: not a valid SentencePiece model: {e.Message}", e);
        }
        if (model.NotGemmaStyleReason() is { } reason)
            throw new TokenizerException($"{path}: not a Gemma-style SentencePiece model: {reason}");
        return new GemmaTokenizer(model) { SourcePath = path };
    }

    /// <summary>Encodes text to token ids, as <c>sentencepiece</c> does.</summary>
    /// <param name="text">The text: any string, control characters included; an unpaired surrogate is encoded as
    /// U+FFFD.</param>
    /// <param name="addBos">Whether to start the ids with <see cref="BosId"/>. A model input starts with exactly one
    /// BOS: add it here, or build the sequence from ids, but not both.</param>
    /// <returns>The ids; no EOS is appended.</returns>
    public int[] Encode(string text, bool addBos = false)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ids = new List<int>(text.Length / 3 + 2);
        if (addBos) ids.Add(BosId);
        text = ReplaceUnpairedSurrogates(text);
        ReadOnlySpan<char> rest = _model.EscapeWhitespaces ? text.Replace(' ', PieceTextBuilder.SpaceSymbol) : text;
        while (true)
        {
            int start = _userDefined.FindFirst(rest, out int id, out int length);
            if (start < 0) break;
            _bpe.Encode(rest[..start], ids);
            ids.Add(id);
            rest = rest[(start + length)..];
        }
        _bpe.Encode(rest, ids);
        return [.. ids];
    }

    /// <summary>
    /// Decodes token ids to text, as <c>sentencepiece</c> does: <c>▁</c> becomes a space; runs of byte pieces
    /// (<c>&lt;0x..&gt;</c>) are joined into UTF-8, each byte that is not part of a valid character becoming
    /// U+FFFD; control pieces (<c>&lt;bos&gt;</c>, <c>&lt;eos&gt;</c>, <c>&lt;pad&gt;</c>) produce nothing, the
    /// unknown piece <c>" ⁇ "</c>, and every other piece (user-defined ones included) its own text. No space is
    /// removed from the start.
    /// </summary>
    /// <param name="ids">Token ids.</param>
    /// <returns>The text.</returns>
    /// <exception cref="ArgumentOutOfRangeException">An id is not in the vocabulary.</exception>
    public string Decode(ReadOnlySpan<int> ids)
    {
        var builder = new PieceTextBuilder(_model);
        foreach (int id in ids)
        {
            if ((uint)id >= (uint)VocabSize)
                throw new ArgumentOutOfRangeException(nameof(ids), id, $"token id {id} is outside the vocabulary (0 to {VocabSize - 1})");
            builder.Append(id);
        }
        builder.Finish();
        return builder.Take();
    }

    /// <summary>Creates a decoder that turns generated tokens into text one token at a time.</summary>
    /// <returns>A new decoder, with nothing held.</returns>
    public StreamingDecoder CreateStreamingDecoder() => new(_model);

    /// <summary>The piece string of a token id, as stored in the model (<c>"▁the"</c>, <c>"&lt;0x0A&gt;"</c>,
    /// <c>"&lt;bos&gt;"</c>).</summary>
    /// <param name="id">A token id.</param>
    /// <returns>The piece.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="id"/> is not in the vocabulary.</exception>
    public string PieceOf(int id)
    {
        if ((uint)id >= (uint)VocabSize)
            throw new ArgumentOutOfRangeException(nameof(id), id, $"token id {id} is outside the vocabulary (0 to {VocabSize - 1})");
        return _model.Pieces[id];
    }

    /// <summary>The id of a piece string, as stored in the model (with <c>▁</c> for spaces).</summary>
    /// <param name="piece">The piece, e.g. <c>"&lt;end_of_turn&gt;"</c> or <c>"▁the"</c>.</param>
    /// <returns>The id, or null if the model has no such piece.</returns>
    public int? IdOf(string piece)
    {
        ArgumentNullException.ThrowIfNull(piece);
        return _idsByPiece.TryGetValue(piece, out int id) ? id : null;
    }

    private static string ReplaceUnpairedSurrogates(string text)
    {
        if (!text.AsSpan().ContainsAnyInRange('\uD800', '\uDFFF')) return text;
        var builder = new StringBuilder(text.Length);
        Span<char> utf16 = stackalloc char[2];
        // The enumerator yields U+FFFD for each unpaired surrogate.
        foreach (var rune in text.EnumerateRunes()) builder.Append(utf16[..rune.EncodeToUtf16(utf16)]);
        return builder.ToString();
    }
}
