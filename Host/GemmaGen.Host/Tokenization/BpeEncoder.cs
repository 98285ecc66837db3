using System.Text;

namespace GemmaGen;

/// <summary>
/// SentencePiece's BPE encoding (<c>bpe_model.cc</c>, then the unknown-piece handling of
/// <c>sentencepiece_processor.cc</c>) of text that contains no user-defined piece. The text starts as one symbol
/// per character; while some adjacent pair concatenates to a normal, user-defined or unused piece, the pair whose
/// piece has the highest score is merged, the leftmost one among equal scores. Then an unused piece is split back
/// into the two symbols that formed it, and a symbol without a piece becomes its UTF-8 byte pieces (byte fallback)
/// or, without byte fallback, joins a run of unknown characters that is one unknown piece.
/// </summary>
/// <remarks>Microsoft.ML.Tokenizers 2.0.1 merges equal scores rightmost first, so it encodes "aaaaaaa" as "aaa"
/// "aaaa" where SentencePiece gives "aaaa" "aaa"; hence this encoder.</remarks>
internal sealed class BpeEncoder
{
    private readonly SentencePieceModel _model;

    // SentencePiece's two maps: the pieces merges may produce, and the others (control, unknown, byte pieces), which
    // take precedence when a symbol's id is looked up. The first id of a duplicated piece wins.
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _mergeable;
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _reserved;

    // The id of each byte's piece <0xNN>, or the unknown id where the model has none (SentencePiece's PieceToId).
    private readonly int[] _byteIds = new int[256];

    /// <summary>Builds the piece maps of a model.</summary>
    public BpeEncoder(SentencePieceModel model)
    {
        _model = model;
        var mergeable = new Dictionary<string, int>(StringComparer.Ordinal);
        var reserved = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int id = 0; id < model.Count; id++)
        {
            bool canMerge = model.Types[id] is PieceType.Normal or PieceType.UserDefined or PieceType.Unused;
            (canMerge ? mergeable : reserved).TryAdd(model.Pieces[id], id);
        }
        _mergeable = mergeable.GetAlternateLookup<ReadOnlySpan<char>>();
        _reserved = reserved.GetAlternateLookup<ReadOnlySpan<char>>();
        for (int b = 0; b < 256; b++) _byteIds[b] = IdOf($"<0x{b:X2}>");
    }

    /// <summary>Appends the ids of <paramref name="text"/> (whitespace already escaped, no unpaired surrogates).</summary>
    public void Encode(ReadOnlySpan<char> text, List<int> ids)
    {
        if (text.IsEmpty) return;
        var run = new Run(this, text, ids);
        run.Merge();
        run.Emit();
    }

    private int IdOf(ReadOnlySpan<char> piece) =>
        _reserved.TryGetValue(piece, out int id) || _mergeable.TryGetValue(piece, out id) ? id : _model.UnknownId;

    /// <summary>The encoding of one text: its symbols, the agenda of mergeable pairs, and the ids written.</summary>
    private ref struct Run
    {
        private readonly BpeEncoder _encoder;
        private readonly ReadOnlySpan<char> _text;
        private readonly List<int> _ids;
        private readonly Symbol[] _symbols;
        private readonly PriorityQueue<Pair, Pair> _agenda;

        // How each unused piece was formed (the last pair queued for it, as SentencePiece records it), to split it.
        private Dictionary<string, (Range Left, Range Right)>? _unusedSplits;
        private bool _previousUnknown;

        public Run(BpeEncoder encoder, ReadOnlySpan<char> text, List<int> ids)
        {
            _encoder = encoder;
            _text = text;
            _ids = ids;
            _symbols = new Symbol[text.Length];
            int count = 0;
            for (int start = 0; start < text.Length; count++)
            {
                int length = char.IsHighSurrogate(text[start]) && start + 1 < text.Length && char.IsLowSurrogate(text[start + 1]) ? 2 : 1;
                _symbols[count] = new Symbol(start, length, count - 1, start + length < text.Length ? count + 1 : -1);
                start += length;
            }
            _agenda = new PriorityQueue<Pair, Pair>(count, PairOrder.Instance);
            for (int i = 1; i < count; i++) AddPair(i - 1, i);
        }

        public void Merge()
        {
            while (_agenda.TryDequeue(out var top, out _))
            {
                ref var left = ref _symbols[top.Left];
                ref var right = ref _symbols[top.Right];
                // A pair whose symbols changed since it was queued is stale.
                if (left.Length == 0 || right.Length == 0 || left.Length + right.Length != top.Length) continue;
                left.Length += right.Length;
                left.Next = right.Next;
                if (right.Next >= 0) _symbols[right.Next].Prev = top.Left;
                right.Length = 0;
                AddPair(left.Prev, top.Left);
                AddPair(top.Left, left.Next);
            }
        }

        /// <summary>Writes the ids of the symbols left after merging; the first symbol is never merged away.</summary>
        public void Emit()
        {
            for (int i = 0; i >= 0; i = _symbols[i].Next)
                Emit(new Range(_symbols[i].Start, _symbols[i].Start + _symbols[i].Length));
        }

        private void AddPair(int left, int right)
        {
            if (left < 0 || right < 0) return;
            int start = _symbols[left].Start, leftLength = _symbols[left].Length, length = leftLength + _symbols[right].Length;
            var piece = _text.Slice(start, length);
            if (!_encoder._mergeable.TryGetValue(piece, out int id)) return;
            var pair = new Pair(left, right, length, _encoder._model.Scores[id]);
            _agenda.Enqueue(pair, pair);
            if (_encoder._model.Types[id] == PieceType.Unused)
            {
                _unusedSplits ??= new Dictionary<string, (Range, Range)>(StringComparer.Ordinal);
                _unusedSplits[piece.ToString()] = (new Range(start, start + leftLength), new Range(start + leftLength, start + length));
            }
        }

        private void Emit(Range range)
        {
            var piece = _text[range];
            var model = _encoder._model;
            int id = _encoder.IdOf(piece);
            if (model.Types[id] == PieceType.Unused && _unusedSplits is not null && _unusedSplits.TryGetValue(piece.ToString(), out var split))
            {
                Emit(split.Left);
                Emit(split.Right);
                return;
            }
            bool unknown = model.Types[id] == PieceType.Unknown;
            if (unknown && model.ByteFallback)
            {
                // An unknown symbol is one character (merges only produce pieces): at most 4 UTF-8 bytes.
                Span<byte> bytes = stackalloc byte[4];
                foreach (byte b in bytes[..Encoding.UTF8.GetBytes(piece, bytes)]) _ids.Add(_encoder._byteIds[b]);
            }
            else if (!(unknown && _previousUnknown))
            {
                _ids.Add(id);
            }
            _previousUnknown = unknown;
        }
    }

    /// <summary>A symbol: its span of the text (empty once merged into its left neighbour) and its neighbours.</summary>
    private record struct Symbol(int Start, int Length, int Prev, int Next);

    /// <summary>A mergeable pair of adjacent symbols, with the length and score of the piece they form.</summary>
    private readonly record struct Pair(int Left, int Right, int Length, float Score);

    /// <summary>SentencePiece's agenda order: the higher score first, then the leftmost pair.</summary>
    private sealed class PairOrder : IComparer<Pair>
    {
        public static readonly PairOrder Instance = new();

        public int Compare(Pair x, Pair y) => x.Score != y.Score ? y.Score.CompareTo(x.Score) : x.Left.CompareTo(y.Left);
    }
}
