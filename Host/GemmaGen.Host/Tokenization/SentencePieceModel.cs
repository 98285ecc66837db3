using System.Buffers.Binary;
using System.Globalization;
using System.Text;

namespace GemmaGen;

/// <summary>The kind of a SentencePiece vocabulary entry (<c>ModelProto.SentencePiece.Type</c>).</summary>
internal enum PieceType
{
    /// <summary>An ordinary piece that BPE merges produce.</summary>
    Normal = 1,

    /// <summary>The unknown-character piece.</summary>
    Unknown = 2,

    /// <summary>A marker such as <c>&lt;bos&gt;</c>: never produced from text, decodes to nothing.</summary>
    Control = 3,

    /// <summary>A piece matched whole in the text before BPE runs (<c>&lt;start_of_turn&gt;</c>, newline runs).</summary>
    UserDefined = 4,

    /// <summary>A piece that encoding never produces.</summary>
    Unused = 5,

    /// <summary>A byte-fallback piece <c>&lt;0xNN&gt;</c>: one UTF-8 byte of a character that has no piece.</summary>
    Byte = 6,
}

/// <summary>
/// The parts of a SentencePiece <c>ModelProto</c> (sentencepiece_model.proto) that the Gemma tokenizer needs: the
/// pieces with their types, the special ids of the <c>TrainerSpec</c> and the <c>NormalizerSpec</c> flags. Read
/// with a minimal protobuf reader; every other field is skipped.
/// </summary>
internal sealed class SentencePieceModel
{
    /// <summary><c>TrainerSpec.ModelType.BPE</c>.</summary>
    private const int BpeModelType = 2;

    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    private SentencePieceModel(string[] pieces, float[] scores, PieceType[] types)
    {
        Pieces = pieces;
        Scores = scores;
        Types = types;
    }

    /// <summary>The piece strings, indexed by id.</summary>
    public string[] Pieces { get; }

    /// <summary>The piece scores, indexed by id: BPE merges the pair whose piece scores highest first.</summary>
    public float[] Scores { get; }

    /// <summary>The piece types, indexed by id.</summary>
    public PieceType[] Types { get; }

    /// <summary><c>TrainerSpec.model_type</c> (1 unigram, 2 BPE, 3 word, 4 char); unigram when absent.</summary>
    public int ModelType { get; private set; } = 1;

    /// <summary><c>TrainerSpec.byte_fallback</c>: whether a character without a piece is encoded as its UTF-8 bytes.</summary>
    public bool ByteFallback { get; private set; }

    /// <summary><c>TrainerSpec.unk_id</c>.</summary>
    public int UnknownId { get; private set; }

    /// <summary><c>TrainerSpec.bos_id</c>.</summary>
    public int BosId { get; private set; } = 1;

    /// <summary><c>TrainerSpec.eos_id</c>.</summary>
    public int EosId { get; private set; } = 2;

    /// <summary><c>TrainerSpec.pad_id</c>; -1 when the model has no padding piece.</summary>
    public int PadId { get; private set; } = -1;

    /// <summary><c>NormalizerSpec.name</c>: the normalization rule, <c>identity</c> for Gemma.</summary>
    public string NormalizerName { get; private set; } = "";

    /// <summary><c>NormalizerSpec.add_dummy_prefix</c>: whether a space is prepended to the text.</summary>
    public bool AddDummyPrefix { get; private set; } = true;

    /// <summary><c>NormalizerSpec.remove_extra_whitespaces</c>: whether whitespace runs are collapsed.</summary>
    public bool RemoveExtraWhitespaces { get; private set; } = true;

    /// <summary><c>NormalizerSpec.escape_whitespaces</c>: whether spaces are written as <c>▁</c> (U+2581).</summary>
    public bool EscapeWhitespaces { get; private set; } = true;

    /// <summary>The number of pieces.</summary>
    public int Count => Pieces.Length;

    /// <summary>
    /// Why the model is not Gemma-style (BPE, the <c>identity</c> normalizer, no dummy prefix, no whitespace
    /// collapsing), or null if it is.
    /// </summary>
    public string? NotGemmaStyleReason() =>
        ModelType != BpeModelType ? $"trainer_spec.model_type is {ModelType}, not BPE ({BpeModelType})"
        : NormalizerName != "identity" ? $"normalizer_spec.name is \"{NormalizerName}\", not \"identity\""
        : AddDummyPrefix ? "normalizer_spec.add_dummy_prefix is set"
        : RemoveExtraWhitespaces ? "normalizer_spec.remove_extra_whitespaces is set"
        : null;

    /// <summary>The byte that a <see cref="PieceType.Byte"/> piece (<c>&lt;0xNN&gt;</c>, checked when parsed) stands for.</summary>
    public byte ByteValue(int id) => byte.Parse(Pieces[id].AsSpan(3, 2), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture);

    /// <summary>Parses a serialized <c>ModelProto</c>.</summary>
    /// <exception cref="InvalidDataException">The bytes are not a well-formed model: the message says what is wrong.</exception>
    public static SentencePieceModel Parse(ReadOnlySpan<byte> data)
    {
        var pieces = new List<string>();
        var scores = new List<float>();
        var types = new List<PieceType>();
        ReadOnlySpan<byte> trainerSpec = default, normalizerSpec = default;
        var reader = new ProtoReader(data);
        while (!reader.End)
        {
            var (field, wireType) = reader.ReadTag();
            switch (field)
            {
                case 1 when wireType == WireType.Len:
                    var (piece, score, type) = ParsePiece(reader.ReadBytes(), pieces.Count);
                    pieces.Add(piece);
                    scores.Add(score);
                    types.Add(type);
                    break;
                case 2 when wireType == WireType.Len:
                    trainerSpec = reader.ReadBytes();
                    break;
                case 3 when wireType == WireType.Len:
                    normalizerSpec = reader.ReadBytes();
                    break;
                default:
                    reader.Skip(wireType);
                    break;
            }
        }
        if (pieces.Count == 0) throw new InvalidDataException("the model has no pieces");

        var model = new SentencePieceModel([.. pieces], [.. scores], [.. types]);
        model.ReadTrainerSpec(trainerSpec);
        model.ReadNormalizerSpec(normalizerSpec);
        model.CheckSpecialId("unk_id", model.UnknownId, PieceType.Unknown);
        model.CheckSpecialId("bos_id", model.BosId, PieceType.Control);
        model.CheckSpecialId("eos_id", model.EosId, PieceType.Control);
        model.CheckSpecialId("pad_id", model.PadId, PieceType.Control);
        return model;
    }

    /// <summary>
    /// A Gemma-style model (BPE, identity normalizer, no whitespace collapsing, spaces escaped as <c>▁</c>) from a
    /// vocabulary held elsewhere (a GGUF file's <c>tokenizer.ggml.*</c> arrays); byte fallback when it has byte pieces.
    /// </summary>
    /// <exception cref="InvalidDataException">A piece is empty or a byte piece is not <c>&lt;0xNN&gt;</c>, or a special
    /// id is outside the pieces or names a piece of the wrong type.</exception>
    public static SentencePieceModel FromVocabulary(string[] pieces, float[] scores, PieceType[] types,
        int unknownId, int bosId, int eosId, int padId, bool addDummyPrefix)
    {
        if (pieces.Length == 0) throw new InvalidDataException("the model has no pieces");
        for (int id = 0; id < pieces.Length; id++)
        {
            if (string.IsNullOrEmpty(pieces[id])) throw new InvalidDataException($"piece {id} is empty");
            if (types[id] == PieceType.Byte && !IsBytePiece(pieces[id]))
                throw new InvalidDataException($"byte piece {id} is \"{pieces[id]}\", not <0xNN>");
        }
        var model = new SentencePieceModel(pieces, scores, types)
        {
            ModelType = BpeModelType,
            ByteFallback = types.Contains(PieceType.Byte),
            UnknownId = unknownId,
            BosId = bosId,
            EosId = eosId,
            PadId = padId,
            NormalizerName = "identity",
            AddDummyPrefix = addDummyPrefix,
            RemoveExtraWhitespaces = false,
            EscapeWhitespaces = true,
        };
        model.CheckSpecialId("unk_id", unknownId, PieceType.Unknown);
        model.CheckSpecialId("bos_id", bosId, PieceType.Control);
        model.CheckSpecialId("eos_id", eosId, PieceType.Control);
        model.CheckSpecialId("pad_id", padId, PieceType.Control);
        return model;
    }

    private static (string Piece, float Score, PieceType Type) ParsePiece(ReadOnlySpan<byte> data, int id)
    {
        string? piece = null;
        float score = 0;
        var type = PieceType.Normal;
        var reader = new ProtoReader(data);
        while (!reader.End)
        {
            var (field, wireType) = reader.ReadTag();
            if (field == 1 && wireType == WireType.Len)
            {
                try
                {
                    piece = StrictUtf8.GetString(reader.ReadBytes());
                }
                catch (DecoderFallbackException)
                {
                    throw new InvalidDataException($"piece {id} is not valid UTF-8");
                }
            }
            else if (field == 2 && wireType == WireType.I32)
            {
                score = reader.ReadFloat();
            }
            else if (field == 3 && wireType == WireType.Varint)
            {
                ulong value = reader.ReadVarint();
                if (value is < (ulong)PieceType.Normal or > (ulong)PieceType.Byte)
                    throw new InvalidDataException($"piece {id} has unknown type {value}");
                type = (PieceType)value;
            }
            else
            {
                reader.Skip(wireType);
            }
        }
        if (string.IsNullOrEmpty(piece)) throw new InvalidDataException($"piece {id} is empty");
        if (type == PieceType.Byte && !IsBytePiece(piece))
            throw new InvalidDataException($"byte piece {id} is \"{piece}\", not <0xNN>");
        return (piece, score, type);
    }

    private static bool IsBytePiece(string piece) =>
        piece.Length == 6 && piece.StartsWith("<0x", StringComparison.Ordinal) && piece[5] == '>'
        && char.IsAsciiHexDigit(piece[3]) && char.IsAsciiHexDigit(piece[4]);

    private void ReadTrainerSpec(ReadOnlySpan<byte> data)
    {
        var reader = new ProtoReader(data);
        while (!reader.End)
        {
            var (field, wireType) = reader.ReadTag();
            if (wireType != WireType.Varint)
            {
                reader.Skip(wireType);
                continue;
            }
            // int32 fields: a negative value is sign-extended to 64 bits on the wire.
            int value = (int)(long)reader.ReadVarint();
            switch (field)
            {
                case 3: ModelType = value; break;
                case 35: ByteFallback = value != 0; break;
                case 40: UnknownId = value; break;
                case 41: BosId = value; break;
                case 42: EosId = value; break;
                case 43: PadId = value; break;
            }
        }
    }

    private void ReadNormalizerSpec(ReadOnlySpan<byte> data)
    {
        var reader = new ProtoReader(data);
        while (!reader.End)
        {
            var (field, wireType) = reader.ReadTag();
            if (field == 1 && wireType == WireType.Len)
            {
                NormalizerName = Encoding.UTF8.GetString(reader.ReadBytes());
            }
            else if (field is 3 or 4 or 5 && wireType == WireType.Varint)
            {
                bool value = reader.ReadVarint() != 0;
                switch (field)
                {
                    case 3: AddDummyPrefix = value; break;
                    case 4: RemoveExtraWhitespaces = value; break;
                    case 5: EscapeWhitespaces = value; break;
                }
            }
            else
            {
                reader.Skip(wireType);
            }
        }
    }

    private void CheckSpecialId(string name, int id, PieceType expected)
    {
        if (id < 0 || id >= Count)
            throw new InvalidDataException($"trainer_spec.{name} is {id}, outside the {Count} pieces");
        if (Types[id] != expected)
            throw new InvalidDataException($"trainer_spec.{name} is {id}, piece \"{Pieces[id]}\" of type {Types[id]}, not {expected}");
    }

    /// <summary>Protobuf wire types; the group types (3, 4) are long deprecated and rejected.</summary>
    private enum WireType
    {
        Varint = 0,
        I64 = 1,
        Len = 2,
        I32 = 5,
    }

    /// <summary>Reads protobuf wire format from a span; every overrun is an <see cref="InvalidDataException"/>.</summary>
    private ref struct ProtoReader(ReadOnlySpan<byte> data)
    {
        private readonly ReadOnlySpan<byte> _data = data;
        private int _position;

        public readonly bool End => _position >= _data.Length;

        public (int Field, WireType WireType) ReadTag()
        {
            int start = _position;
            ulong tag = ReadVarint();
            ulong field = tag >> 3;
            var wireType = (WireType)(tag & 7);
            if (field is 0 or > int.MaxValue || wireType is not (WireType.Varint or WireType.I64 or WireType.Len or WireType.I32))
                throw new InvalidDataException($"invalid protobuf field tag 0x{tag:x} at byte {start}");
            return ((int)field, wireType);
        }

        public ulong ReadVarint()
        {
            int start = _position;
            ulong value = 0;
            for (int shift = 0; shift < 64; shift += 7)
            {
                if (End) throw new InvalidDataException($"truncated varint at byte {start}");
                byte b = _data[_position++];
                value |= (ulong)(b & 0x7f) << shift;
                if (b < 0x80) return value;
            }
            throw new InvalidDataException($"varint longer than 10 bytes at byte {start}");
        }

        public ReadOnlySpan<byte> ReadBytes()
        {
            int start = _position;
            ulong length = ReadVarint();
            if (length > (ulong)(_data.Length - _position))
                throw new InvalidDataException($"field of {length} bytes at byte {start} runs past the end of its message ({_data.Length - _position} bytes left)");
            var bytes = _data.Slice(_position, (int)length);
            _position += (int)length;
            return bytes;
        }

        public float ReadFloat()
        {
            var bytes = Advance(4);
            return BinaryPrimitives.ReadSingleLittleEndian(bytes);
        }

        public void Skip(WireType wireType)
        {
            switch (wireType)
            {
                case WireType.Varint: ReadVarint(); break;
                case WireType.Len: ReadBytes(); break;
                case WireType.I64: Advance(8); break;
                case WireType.I32: Advance(4); break;
            }
        }

        private ReadOnlySpan<byte> Advance(int count)
        {
            if (count > _data.Length - _position)
                throw new InvalidDataException($"truncated fixed-width field at byte {_position}");
            var bytes = _data.Slice(_position, count);
            _position += count;
            return bytes;
        }
    }
}
