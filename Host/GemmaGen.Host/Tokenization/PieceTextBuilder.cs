using System.Buffers;
using System.Text;

namespace GemmaGen;

/// <summary>
/// Turns token ids into text the way SentencePiece decodes: <c>▁</c> becomes a space; consecutive byte pieces
/// (<c>&lt;0xNN&gt;</c>) are joined into UTF-8, each byte that is not part of a valid character becoming U+FFFD;
/// control pieces produce nothing, the unknown piece <c> ⁇ </c>, every other piece its own text. Text is emitted as
/// soon as it is complete, so <see cref="GemmaTokenizer.Decode"/> and <see cref="StreamingDecoder"/> share it.
/// </summary>
internal sealed class PieceTextBuilder(SentencePieceModel model)
{
    /// <summary>SentencePiece's whitespace symbol, U+2581.</summary>
    public const char SpaceSymbol = '\u2581';

    /// <summary>SentencePiece's default surface of the unknown piece (<c>TrainerSpec.unk_surface</c>).</summary>
    private const string UnknownSurface = " \u2047 ";

    private readonly StringBuilder _text = new();

    // Bytes of a UTF-8 character whose remaining bytes have not arrived yet: at most 3, and one more being added.
    private readonly byte[] _pending = new byte[4];
    private int _pendingCount;

    /// <summary>Appends one token (an id already checked to be in range).</summary>
    public void Append(int id)
    {
        var type = model.Types[id];
        if (type == PieceType.Byte)
        {
            _pending[_pendingCount++] = model.ByteValue(id);
            DecodePending(final: false);
            return;
        }

        // Any other piece ends a run of byte pieces, as in SentencePiece.
        DecodePending(final: true);
        switch (type)
        {
            case PieceType.Control:
                break;
            case PieceType.Unknown:
                _text.Append(UnknownSurface);
                break;
            default:
                int start = _text.Length;
                _text.Append(model.Pieces[id]);
                _text.Replace(SpaceSymbol, ' ', start, _text.Length - start);
                break;
        }
    }

    /// <summary>Ends the sequence: bytes of an unfinished character become one U+FFFD each.</summary>
    public void Finish() => DecodePending(final: true);

    /// <summary>Returns the text completed since the last call, and forgets it.</summary>
    public string Take()
    {
        string text = _text.ToString();
        _text.Clear();
        return text;
    }

    /// <summary>
    /// Emits the pending bytes that form whole characters, and U+FFFD for each byte that cannot start or continue
    /// one. A valid but unfinished character stays pending, unless <paramref name="final"/>.
    /// </summary>
    private void DecodePending(bool final)
    {
        Span<char> utf16 = stackalloc char[2];
        int start = 0;
        while (start < _pendingCount)
        {
            var status = Rune.DecodeFromUtf8(_pending.AsSpan(start, _pendingCount - start), out var rune, out int consumed);
            if (status == OperationStatus.Done)
            {
                _text.Append(utf16[..rune.EncodeToUtf16(utf16)]);
                start += consumed;
            }
            else if (status == OperationStatus.NeedMoreData && !final)
            {
                break;
            }
            else
            {
                _text.Append((char)Rune.ReplacementChar.Value);
                start++;
            }
        }
        _pending.AsSpan(start, _pendingCount - start).CopyTo(_pending);
        _pendingCount -= start;
    }
}
