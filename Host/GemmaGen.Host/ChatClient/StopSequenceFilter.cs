using System.Text;

namespace GemmaGen;

/// <summary>
/// The text of a reply as it streams, cut before the first stop sequence. Text that may be the start of a stop
/// sequence is held back until the next pieces show that it is not, so a caller never sees any part of one.
/// </summary>
internal sealed class StopSequenceFilter
{
    private readonly string[] _stops;
    private readonly int _longest;
    private readonly StringBuilder _text = new();
    private int _released;

    /// <param name="stops">The stop sequences; empty ones are ignored.</param>
    public StopSequenceFilter(IEnumerable<string>? stops)
    {
        _stops = stops?.Where(s => s.Length > 0).Distinct().ToArray() ?? [];
        _longest = _stops.Length == 0 ? 0 : _stops.Max(s => s.Length);
    }

    /// <summary>Whether a stop sequence has appeared; later pieces are ignored.</summary>
    public bool Stopped { get; private set; }

    /// <summary>The reply so far, without the stop sequence and anything after it.</summary>
    public string Text => _text.ToString();

    /// <summary>Adds the next piece of text and returns what may be passed on now (possibly empty).</summary>
    public string Push(string piece)
    {
        if (Stopped || piece.Length == 0) return "";
        // A new stop sequence ends in the new piece and starts there or in the text held back (the released text
        // ends with no start of one).
        int tailStart = _released;
        _text.Append(piece);
        string tail = _text.ToString(tailStart, _text.Length - tailStart);

        int cut = -1;
        foreach (string stop in _stops)
        {
            int at = tail.IndexOf(stop, StringComparison.Ordinal);
            if (at >= 0 && (cut < 0 || at < cut)) cut = at;
        }
        if (cut >= 0)
        {
            Stopped = true;
            _text.Length = tailStart + cut;
            return Release(_text.Length);
        }
        return Release(_text.Length - HeldBack(tail));
    }

    /// <summary>The text still held back, once the reply has ended without a stop sequence.</summary>
    public string Flush() => Release(_text.Length);

    /// <summary>The length of the longest end of <paramref name="tail"/> that a stop sequence starts with.</summary>
    private int HeldBack(string tail)
    {
        for (int length = Math.Min(_longest - 1, tail.Length); length > 0; length--)
        {
            foreach (string stop in _stops)
            {
                if (stop.Length > length && string.CompareOrdinal(tail, tail.Length - length, stop, 0, length) == 0) return length;
            }
        }
        return 0;
    }

    private string Release(int end)
    {
        string released = _text.ToString(_released, end - _released);
        _released = end;
        return released;
    }
}
