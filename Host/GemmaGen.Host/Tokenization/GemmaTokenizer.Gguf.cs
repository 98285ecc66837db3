namespace GemmaGen;

public sealed partial class GemmaTokenizer
{
    /// <summary>The <c>tokenizer.ggml.model</c> of a SentencePiece vocabulary.</summary>
    public const string GgufSentencePieceModel = "llama";

    /// <summary>Whether the vocabulary asks for BOS at the start of a model input (<c>tokenizer.ggml.add_bos_token</c>
    /// of a GGUF file; always true for a <c>tokenizer.model</c>, which has no such flag and which Gemma uses with BOS).</summary>
    public bool AddBosToken { get; private init; } = true;

    /// <summary>Whether the vocabulary asks for EOS at the end of an input (<c>tokenizer.ggml.add_eos_token</c>;
    /// false for Gemma). The engine never appends one.</summary>
    public bool AddEosToken { get; private init; }

    /// <summary>The Jinja chat template the GGUF file carries (<c>tokenizer.chat_template</c>), or null.</summary>
    public string? ChatTemplate { get; private init; }

    /// <summary>Whether <see cref="ChatTemplate"/> is Gemma's turn format (<c>&lt;start_of_turn&gt;</c> role, text,
    /// <c>&lt;end_of_turn&gt;</c>, the model's role named <c>model</c>), which the chat of this engine renders.</summary>
    public bool HasGemmaChatTemplate => ChatTemplate is { } template && IsGemmaChatTemplate(template);

    /// <summary>Whether a Jinja chat template is Gemma's turn format: it writes <c>&lt;start_of_turn&gt;</c> and
    /// <c>&lt;end_of_turn&gt;</c> and names the assistant's role <c>model</c>.</summary>
    public static bool IsGemmaChatTemplate(string template) =>
        template.Contains("<start_of_turn>", StringComparison.Ordinal)
        && template.Contains("<end_of_turn>", StringComparison.Ordinal)
        && template.Contains("model", StringComparison.Ordinal);

    /// <summary>Reads the tokenizer of a GGUF file.</summary>
    /// <exception cref="CheckpointException">The file is missing or malformed.</exception>
    /// <exception cref="TokenizerException">Its <c>tokenizer.ggml.*</c> keys are missing, malformed or not a
    /// Gemma-style SentencePiece vocabulary.</exception>
    public static GemmaTokenizer LoadGguf(string path)
    {
        using var file = GgufFile.Open(path);
        return FromGguf(file);
    }

    /// <summary>
    /// The tokenizer a GGUF file's metadata describes (<c>tokenizer.ggml.model</c> <c>llama</c>: SentencePiece BPE;
    /// <c>tokens</c>, <c>scores</c>, <c>token_type</c>, the bos/eos/unknown/padding ids, <c>add_bos_token</c>,
    /// <c>add_eos_token</c>, <c>add_space_prefix</c>, <c>tokenizer.chat_template</c>), encoding as SentencePiece does
    /// with the <c>tokenizer.model</c> the file was converted from.
    /// </summary>
    /// <remarks>llama.cpp's converter marks the tokens of the checkpoint's <c>added_tokens_decoder</c> flagged special
    /// as control (type 3), among them <c>&lt;start_of_turn&gt;</c> and <c>&lt;end_of_turn&gt;</c>, which
    /// <c>tokenizer.model</c> has as user-defined: SentencePiece matches them in text, llama.cpp only when asked to
    /// parse special tokens. Gemma's SentencePiece models have no control pieces but BOS, EOS and padding, so a
    /// control token other than those is read as user-defined (matched whole in text, as with
    /// <c>tokenizer.model</c>), and the unknown token as the unknown piece.</remarks>
    /// <exception cref="TokenizerException">A key is missing, has the wrong type or an invalid value, or the vocabulary
    /// is not Gemma-style; the message names the file and the key.</exception>
    public static GemmaTokenizer FromGguf(GgufFile file)
    {
        string path = file.Path;
        var m = file.Metadata;
        try
        {
            string kind = m.GetString("tokenizer.ggml.model");
            if (kind != GgufSentencePieceModel)
                throw new TokenizerException($"{path}: tokenizer.ggml.model is '{kind}'; a Gemma vocabulary is a SentencePiece model, '{GgufSentencePieceModel}'");
            string[] pieces = m.GetStringArray("tokenizer.ggml.tokens");
            int count = pieces.Length;
            float[] scores = m.Contains("tokenizer.ggml.scores") ? m.GetArray<float>("tokenizer.ggml.scores", GgufValueType.Float32) : new float[count];
            int[] rawTypes = m.Contains("tokenizer.ggml.token_type") ? m.GetArray<int>("tokenizer.ggml.token_type", GgufValueType.Int32) : Enumerable.Repeat((int)PieceType.Normal, count).ToArray();
            if (scores.Length != count)
                throw new TokenizerException($"{path}: tokenizer.ggml.scores has {scores.Length} entries, but tokenizer.ggml.tokens has {count}");
            if (rawTypes.Length != count)
                throw new TokenizerException($"{path}: tokenizer.ggml.token_type has {rawTypes.Length} entries, but tokenizer.ggml.tokens has {count}");

            int Id(string key)
            {
                long id = m.GetInteger(key);
                if (id < 0 || id >= count)
                    throw new TokenizerException($"{path}: {key} is {id}, outside the {count} tokens of tokenizer.ggml.tokens");
                return (int)id;
            }
            int bos = Id("tokenizer.ggml.bos_token_id"), eos = Id("tokenizer.ggml.eos_token_id");
            int unknown = Id("tokenizer.ggml.unknown_token_id"), pad = Id("tokenizer.ggml.padding_token_id");

            var types = new PieceType[count];
            for (int id = 0; id < count; id++)
            {
                if (rawTypes[id] is < (int)PieceType.Normal or > (int)PieceType.Byte)
                    throw new TokenizerException($"{path}: tokenizer.ggml.token_type[{id}] is {rawTypes[id]}, expected 1 (normal) to 6 (byte)");
                types[id] = (PieceType)rawTypes[id];
                if (id == unknown) types[id] = PieceType.Unknown;
                else if (id == bos || id == eos || id == pad) types[id] = PieceType.Control;
                else if (types[id] == PieceType.Control) types[id] = PieceType.UserDefined;
            }
            foreach (var (key, id) in new[] { ("tokenizer.ggml.bos_token_id", bos), ("tokenizer.ggml.eos_token_id", eos), ("tokenizer.ggml.padding_token_id", pad) })
            {
                if (id == unknown)
                    throw new TokenizerException($"{path}: {key} is {id}, the unknown token (tokenizer.ggml.unknown_token_id)");
                if (rawTypes[id] != (int)PieceType.Control)
                    throw new TokenizerException($"{path}: {key} is {id}, token \"{pieces[id]}\" of type {rawTypes[id]}; expected a control token (type 3)");
            }

            // llama.cpp prepends a space unless the file says not to; Gemma's vocabulary does not.
            bool spacePrefix = !m.TryGetBool("tokenizer.ggml.add_space_prefix", out bool prefix) || prefix;
            if (spacePrefix)
                throw new TokenizerException(
                    $"{path}: tokenizer.ggml.add_space_prefix is {(m.Contains("tokenizer.ggml.add_space_prefix") ? "true" : "absent (llama.cpp then prepends a space)")}; Gemma's tokenizer adds no space prefix");

            SentencePieceModel model;
            try
            {
                model = SentencePieceModel.FromVocabulary(pieces, scores, types, unknown, bos, eos, pad, addDummyPrefix: false);
            }
            catch (InvalidDataException e)
            {
                throw new TokenizerException($"{path}: tokenizer.ggml.tokens: {e.Message}", e);
            }
            if (model.NotGemmaStyleReason() is { } reason)
                throw new TokenizerException($"{path}: not a Gemma-style vocabulary: {reason}");

            return new GemmaTokenizer(model)
            {
                SourcePath = path,
                AddBosToken = !m.TryGetBool("tokenizer.ggml.add_bos_token", out bool addBos) || addBos,
                AddEosToken = m.TryGetBool("tokenizer.ggml.add_eos_token", out bool addEos) && addEos,
                ChatTemplate = m.TryGetString("tokenizer.chat_template", out string template) ? template : null,
            };
        }
        catch (CheckpointException e)
        {
            // A missing or ill-typed key: GgufMetadata's message names the file and the key.
            throw new TokenizerException(e.Message, e);
        }
    }
}
