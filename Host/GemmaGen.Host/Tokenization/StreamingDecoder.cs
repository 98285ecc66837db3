namespace GemmaGen;

/// <summary>
/// Decodes tokens one at a time as a model generates them, returning text only once it is complete: the UTF-8
/// bytes of byte-fallback pieces are held until they form whole characters, so a character is never split across
/// two results. The results of <see cref="Push"/> for a sequence, followed by <see cref="Flush"/>, concatenate to
/// exactly <see cref="GemmaTokenizer.Decode"/> of that sequence. Create one with
/// <see cref="GemmaTokenizer.CreateStreamingDecoder"/>; an instance is not thread-safe.
/// </summary>
public sealed class StreamingDecoder
{
    private readonly int _vocabSize;
    private readonly PieceTextBuilder _builder;

    internal StreamingDecoder(SentencePieceModel model)
    {
        _vocabSize = model.Count;
        _builder = new PieceTextBuilder(model);
    }

    /// <summary>Adds the next token of the sequence.</summary>
    /// <param name="id">A token id of the tokenizer's vocabulary.</param>
    /// <returns>The text that this token completed; empty when it completed none (a control token, or a byte of a
    /// character whose other bytes are still to come).</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="id"/> is not in the vocabulary.</exception>
    public string Push(int id)
    {
        if ((uint)id >= (uint)_vocabSize)
            throw new ArgumentOutOfRangeException(nameof(id), id, $"token id {id} is outside the vocabulary (0 to {_vocabSize - 1})");
        _builder.Append(id);
        return _builder.Take();
    }

    /// <summary>
    /// Ends the sequence and returns the text still held: each byte of an unfinished character becomes U+FFFD.
    /// The decoder is then ready for a new sequence.
    /// </summary>
    /// <returns>The remaining text; empty when nothing was held.</returns>
    public string Flush()
    {
        _builder.Finish();
        return _builder.Take();
    }
}
