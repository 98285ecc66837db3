using System.Globalization;
using System.Text.Json.Nodes;
using GemmaGen.Specs;

namespace GemmaGen;

/// <summary>
/// The <see cref="Gemma2Config"/> of a GGUF file, from its <c>gemma2.*</c> and <c>tokenizer.ggml.*</c> keys, following
/// llama.cpp's conventions: a key llama.cpp reads as optional gets llama.cpp's default when absent (head_count_kv:
/// head_count; key_length and value_length: embedding_length / head_count; sliding_window 4096; soft-caps 50 and 30;
/// rope.freq_base 10000; rope.dimension_count: key_length), and <c>query_pre_attn_scalar</c>, for which GGUF has no
/// key, is <c>embedding_length / head_count</c> when block_count is 46 (llama.cpp's 27B) and key_length otherwise.
/// Float keys stored as float32 are taken as the shortest decimal that reads back as that float32 (so 1e-6f is
/// 1e-06, as in config.json): the engine computes in float32, where the value is then exactly the stored one. The
/// derived values are checked by the same rules as a config.json (<see cref="SpecParser"/>).
/// </summary>
public static class GgufConfig
{
    /// <summary>The <c>general.architecture</c> of a Gemma 2 file.</summary>
    public const string Architecture = "gemma2";

    /// <summary>llama.cpp's layer count of Gemma 2 27B, the one model whose attention scale is not 1/sqrt(head_dim).</summary>
    public const int Gemma27BBlockCount = 46;

    private const string P = Architecture + ".";

    /// <summary>Which GGUF key each config.json field comes from, for messages.</summary>
    private static readonly (string Field, string Key)[] Sources =
    [
        ("vocab_size", "tokenizer.ggml.tokens"),
        ("hidden_size", P + "embedding_length"),
        ("intermediate_size", P + "feed_forward_length"),
        ("num_hidden_layers", P + "block_count"),
        ("num_attention_heads", P + "attention.head_count"),
        ("num_key_value_heads", P + "attention.head_count_kv"),
        ("head_dim", P + "attention.key_length"),
        ("query_pre_attn_scalar", P + "block_count / attention.key_length"),
        ("sliding_window", P + "attention.sliding_window"),
        ("attn_logit_softcapping", P + "attn_logit_softcapping"),
        ("final_logit_softcapping", P + "final_logit_softcapping"),
        ("rms_norm_eps", P + "attention.layer_norm_rms_epsilon"),
        ("rope_theta", P + "rope.freq_base"),
        ("max_position_embeddings", P + "context_length"),
        ("bos_token_id", "tokenizer.ggml.bos_token_id"),
        ("eos_token_id", "tokenizer.ggml.eos_token_id"),
        ("pad_token_id", "tokenizer.ggml.padding_token_id"),
    ];

    /// <summary>Derives the config of <paramref name="file"/>.</summary>
    /// <exception cref="CheckpointException">The architecture is not <c>gemma2</c>, a required key is missing, a key
    /// has the wrong type or an invalid value; the message names the file and the key.</exception>
    public static Gemma2Config Read(GgufFile file)
    {
        var m = file.Metadata;
        string path = file.Path;
        string architecture = m.GetString("general.architecture");
        if (architecture != Architecture)
            throw new CheckpointException(
                $"{path}: general.architecture is '{architecture}'; GemmaGen runs Gemma 2 models, whose GGUF files say '{Architecture}'");

        int layers = Count(file, P + "block_count");
        int hidden = Count(file, P + "embedding_length");
        int heads = Count(file, P + "attention.head_count");
        int kvHeads = OptionalCount(file, P + "attention.head_count_kv") ?? heads;
        int headDim = OptionalCount(file, P + "attention.key_length") ?? hidden / heads;
        int valueDim = OptionalCount(file, P + "attention.value_length") ?? hidden / heads;
        if (valueDim != headDim)
            throw new CheckpointException(
                $"{path}: {P}attention.value_length is {valueDim} but {P}attention.key_length is {headDim}; Gemma 2 heads have one width for keys and values");
        int rotary = OptionalCount(file, P + "rope.dimension_count") ?? headDim;
        if (rotary != headDim)
            throw new CheckpointException(
                $"{path}: {P}rope.dimension_count is {rotary}, expected the head width {headDim} ({P}attention.key_length): Gemma 2 rotates the whole head");
        double queryPreAttnScalar = layers == Gemma27BBlockCount ? (double)hidden / heads : headDim;

        var json = new JsonObject
        {
            ["model_type"] = Architecture,
            ["vocab_size"] = VocabSize(file),
            ["hidden_size"] = hidden,
            ["intermediate_size"] = Count(file, P + "feed_forward_length"),
            ["num_hidden_layers"] = layers,
            ["num_attention_heads"] = heads,
            ["num_key_value_heads"] = kvHeads,
            ["head_dim"] = headDim,
            ["query_pre_attn_scalar"] = queryPreAttnScalar,
            ["sliding_window"] = OptionalCount(file, P + "attention.sliding_window") ?? 4096,
            ["attn_logit_softcapping"] = OptionalFloat(file, P + "attn_logit_softcapping") ?? 50.0,
            ["final_logit_softcapping"] = OptionalFloat(file, P + "final_logit_softcapping") ?? 30.0,
            ["rms_norm_eps"] = OptionalFloat(file, P + "attention.layer_norm_rms_epsilon")
                ?? throw new CheckpointException($"{path}: no metadata key '{P}attention.layer_norm_rms_epsilon' (the RMSNorm epsilon, which llama.cpp requires)"),
            ["rope_theta"] = OptionalFloat(file, P + "rope.freq_base") ?? 10000.0,
            ["max_position_embeddings"] = Count(file, P + "context_length"),
            ["hidden_activation"] = "gelu_pytorch_tanh",
            ["bos_token_id"] = TokenId(file, "tokenizer.ggml.bos_token_id"),
            ["eos_token_id"] = EndTokens(file),
            ["pad_token_id"] = TokenId(file, "tokenizer.ggml.padding_token_id"),
        };
        var result = SpecParser.Parse(json.ToJsonString());
        if (result.Errors.Count > 0)
            throw new CheckpointException(string.Join(Environment.NewLine, result.Errors.Select(e => $"{path}: {e.Message}{KeyNote(e.Message)}")));
        return result.Config ?? throw new CheckpointException($"{path}: the config could not be derived from the {P}* keys");
    }

    /// <summary>The vocabulary: the length of <c>tokenizer.ggml.tokens</c>, else the rows of <c>token_embd.weight</c>.</summary>
    private static int VocabSize(GgufFile file)
    {
        if (file.Metadata.Contains("tokenizer.ggml.tokens")) return file.Metadata.GetStringArray("tokenizer.ggml.tokens").Length;
        if (file.TryGetTensor("token_embd.weight", out var embed) && embed.Shape.Count == 2 && embed.Shape[1] <= int.MaxValue)
            return (int)embed.Shape[1];
        throw new CheckpointException($"{file.Path}: no metadata key 'tokenizer.ggml.tokens' and no 2-D tensor 'token_embd.weight': the vocabulary size is unknown");
    }

    /// <summary>EOS, and the end-of-turn token when the file names one (<c>tokenizer.ggml.eot_token_id</c>).</summary>
    private static JsonNode EndTokens(GgufFile file)
    {
        int eos = TokenId(file, "tokenizer.ggml.eos_token_id");
        int? eot = file.Metadata.Contains("tokenizer.ggml.eot_token_id") ? TokenId(file, "tokenizer.ggml.eot_token_id") : null;
        return eot is int end && end != eos ? new JsonArray(eos, end) : eos;
    }

    private static string KeyNote(string message)
    {
        var keys = Sources.Where(s => message.Contains($"'{s.Field}'", StringComparison.Ordinal) || message.Contains(s.Field + " (", StringComparison.Ordinal))
            .Select(s => $"{s.Field} comes from {s.Key}").ToArray();
        return keys.Length == 0 ? " (in the config derived from the GGUF metadata)" : $" (in the config derived from the GGUF metadata: {string.Join("; ", keys)})";
    }

    private static int Count(GgufFile file, string key) =>
        OptionalCount(file, key) ?? throw new CheckpointException($"{file.Path}: no metadata key '{key}'; a {Architecture} file must have it");

    private static int? OptionalCount(GgufFile file, string key)
    {
        if (!file.Metadata.TryGetInteger(key, out long value)) return null;
        if (value is < 1 or > int.MaxValue)
            throw new CheckpointException($"{file.Path}: metadata key '{key}' is {value}, expected a positive integer of at most {int.MaxValue}");
        return (int)value;
    }

    private static int TokenId(GgufFile file, string key)
    {
        long value = file.Metadata.GetInteger(key);
        if (value is < 0 or > int.MaxValue)
            throw new CheckpointException($"{file.Path}: metadata key '{key}' is {value}, expected a token id (a non-negative integer)");
        return (int)value;
    }

    /// <summary>A float key as a double; a float32 becomes the shortest decimal that reads back as it.</summary>
    private static double? OptionalFloat(GgufFile file, string key)
    {
        if (!file.Metadata.TryGetFloat(key, out double value)) return null;
        if (!double.IsFinite(value) || value <= 0)
            throw new CheckpointException($"{file.Path}: metadata key '{key}' is {value.ToString(CultureInfo.InvariantCulture)}, expected a positive number");
        if (file.Metadata.GetValue(key).Type == GgufValueType.Float32)
            value = double.Parse(((float)value).ToString("R", CultureInfo.InvariantCulture), CultureInfo.InvariantCulture);
        return value;
    }
}
