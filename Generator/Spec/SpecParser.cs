using System;
using System.Collections.Generic;
using System.Collections.Immutable;
using System.Globalization;
using System.Linq;
using System.Text;

namespace GemmaGen.Specs
{
    /// <summary>
    /// Reads a Gemma 2 <c>config.json</c> (a compile-time spec or a checkpoint's config) into a
    /// <see cref="Gemma2Config"/>. It accepts every form the published configs take (classic keys, a
    /// <c>rope_parameters</c> object, <c>eos_token_id</c> as a number or a list, the legacy
    /// <c>sliding_window_size</c>, unknown keys) and reports every problem it finds, not just the first, each
    /// with a stable id and the position of the offending token. It never throws.
    /// </summary>
#if GEMMAGEN_RUNTIME
    public
#else
    internal
#endif
    static class SpecParser
    {
        /// <summary>The only <c>model_type</c> GemmaGen compiles.</summary>
        public const string SupportedModelType = "gemma2";

        /// <summary>The only activation GemmaGen compiles (the tanh approximation of GELU).</summary>
        public const string SupportedActivation = "gelu_pytorch_tanh";

        /// <summary>Rows a forward pass takes at most (prompt tokens of one sequence, or tokens of several sequences); a
        /// compiled class's buffers hold this many rows, and a sequence's local-layer ring W + MaxBatchRows − 1 slots.</summary>
        public const int MaxBatchRows = 64;

        /// <summary>Parses <paramref name="json"/>; the result holds the config, or the errors (sorted by position)
        /// when there is any.</summary>
        public static SpecParseResult Parse(string json)
        {
            JsonReader.Result read = JsonReader.Read(json);
            if (read.Root is not { } root)
            {
                // Read sets Error whenever it returns no Root.
                JsonReader.Error syntax = read.Error!;
                return new SpecParseResult(null, EquatableArray<SpecError>.Create(
                    new SpecError(SpecDiagnosticIds.MalformedJson, syntax.Message, syntax.Line, syntax.Column)));
            }
            return new ConfigReader(root).Read();
        }

        /// <summary>Reads the fields of the top-level object, collecting an error for each bad one. A field that
        /// has an error reads as 0; the config is built only when there are no errors, so those zeros never
        /// escape, and the cross-field checks skip values that are not positive.</summary>
        private sealed class ConfigReader
        {
            private const string PositiveInteger = "a positive integer";
            private const string PositiveNumber = "a positive number";
            private const string TokenId = "a token id (a non-negative integer)";

            private readonly JsonReader.Value _root;
            private readonly List<SpecError> _errors = new List<SpecError>();

            public ConfigReader(JsonReader.Value root) => _root = root;

            public SpecParseResult Read()
            {
                CheckDuplicateKeys(_root);
                ReadModelType();
                int vocabSize = RequiredCount("vocab_size");
                int hiddenSize = RequiredCount("hidden_size");
                int intermediateSize = RequiredCount("intermediate_size");
                int numHiddenLayers = RequiredCount("num_hidden_layers");
                int numAttentionHeads = RequiredCount("num_attention_heads");
                int numKeyValueHeads = RequiredCount("num_key_value_heads");
                int headDim = RequiredCount("head_dim");
                double queryPreAttnScalar = OptionalPositiveNumber("query_pre_attn_scalar", 256);
                int slidingWindow = ReadSlidingWindow();
                double? attnLogitSoftcapping = OptionalSoftcap("attn_logit_softcapping", 50.0);
                double? finalLogitSoftcapping = OptionalSoftcap("final_logit_softcapping", 30.0);
                double rmsNormEps = OptionalPositiveNumber("rms_norm_eps", 1e-6);
                double ropeTheta = ReadRopeTheta();
                int maxPositionEmbeddings = OptionalCount("max_position_embeddings", 8192);
                ReadActivation();
                int bosTokenId = OptionalTokenId("bos_token_id", 2);
                EquatableArray<int> eosTokenIds = ReadEosTokenIds();
                int padTokenId = OptionalTokenId("pad_token_id", 0);

                if (numAttentionHeads > 0 && numKeyValueHeads > 0 && numAttentionHeads % numKeyValueHeads != 0)
                {
                    Add(SpecDiagnosticIds.HeadsNotDivisible,
                        $"num_attention_heads ({numAttentionHeads}) is not a multiple of num_key_value_heads ({numKeyValueHeads}): " +
                        $"each key/value head must serve the same number of query heads, so set num_key_value_heads to a divisor of {numAttentionHeads}.",
                        _root.Get("num_key_value_heads")!);
                }
                if (headDim > 0 && headDim % 2 != 0)
                {
                    Add(SpecDiagnosticIds.OddHeadDim,
                        $"Field 'head_dim' must be an even integer, but it is {headDim} (rotary embeddings rotate the two halves of each head).",
                        _root.Get("head_dim")!);
                }
                if (vocabSize > 0 && hiddenSize > 0 && intermediateSize > 0 && numAttentionHeads > 0 && numKeyValueHeads > 0 && headDim > 0)
                {
                    CheckSizes(vocabSize, hiddenSize, intermediateSize, numAttentionHeads, numKeyValueHeads, headDim);
                }
                if (vocabSize > 0)
                {
                    foreach (string name in new[] { "bos_token_id", "eos_token_id", "pad_token_id" }) CheckTokenIds(name, vocabSize);
                }

                if (_errors.Count > 0)
                {
                    // Stable sort: errors at the same position (missing fields, all at the opening brace) keep field order.
                    var sorted = _errors.OrderBy(e => e.Line).ThenBy(e => e.Column).ToImmutableArray();
                    return new SpecParseResult(null, new EquatableArray<SpecError>(sorted));
                }
                var config = new Gemma2Config(
                    SupportedModelType, vocabSize, hiddenSize, intermediateSize, numHiddenLayers, numAttentionHeads,
                    numKeyValueHeads, headDim, queryPreAttnScalar, slidingWindow, attnLogitSoftcapping,
                    finalLogitSoftcapping, rmsNormEps, ropeTheta, maxPositionEmbeddings, SupportedActivation,
                    bosTokenId, eosTokenIds, padTokenId);
                return new SpecParseResult(config, default);
            }

            /// <summary>A key repeated in one object (anywhere in the file) is an error: Python's json keeps the last value,
            /// other readers the first, so the file means different models to different tools.</summary>
            private void CheckDuplicateKeys(JsonReader.Value value)
            {
                var first = new Dictionary<string, JsonReader.Property>();
                foreach (JsonReader.Property property in value.Properties)
                {
                    if (first.TryGetValue(property.Name, out JsonReader.Property? earlier))
                    {
                        _errors.Add(new SpecError(SpecDiagnosticIds.DuplicateKey,
                            $"Key '{Shorten(property.Name)}' appears twice in the same object, at line {earlier.Line}, column {earlier.Column} and here: " +
                            "remove one (JSON readers disagree on which one counts).",
                            property.Line, property.Column));
                    }
                    else
                    {
                        first.Add(property.Name, property);
                    }
                    CheckDuplicateKeys(property.Value);
                }
                foreach (JsonReader.Value item in value.Items) CheckDuplicateKeys(item);
            }

            /// <summary>Every size the loader and the decoders form from the config (row counts, matrix element counts,
            /// prefill buffers) must fit an int; the first that does not is reported at the field that grows it.</summary>
            private void CheckSizes(int vocab, int hidden, int intermediate, int heads, int kvHeads, int headDim)
            {
                // decimal holds every product exactly (at most about 3·2^93).
                decimal qkvRows = ((decimal)heads + 2m * kvHeads) * headDim, gateUpRows = 2m * intermediate;
                var products = new (string Formula, decimal Value, string Field)[]
                {
                    ("num_attention_heads × head_dim (the attention width)", (decimal)heads * headDim, "head_dim"),
                    ("(num_attention_heads + 2 × num_key_value_heads) × head_dim (the rows of q, k and v)", qkvRows, "head_dim"),
                    ("vocab_size × hidden_size (the embedding's elements)", (decimal)vocab * hidden, "vocab_size"),
                    ("(num_attention_heads + 2 × num_key_value_heads) × head_dim × hidden_size (the elements of q, k and v)", qkvRows * hidden, "hidden_size"),
                    ("2 × intermediate_size × hidden_size (the elements of gate and up)", gateUpRows * hidden, "intermediate_size"),
                    ($"{MaxBatchRows} × (num_attention_heads + 2 × num_key_value_heads) × head_dim (a batch of q, k and v)", MaxBatchRows * qkvRows, "head_dim"),
                    ($"{MaxBatchRows} × 2 × intermediate_size (a batch of gate and up)", MaxBatchRows * gateUpRows, "intermediate_size"),
                };
                foreach (var (formula, value, field) in products)
                {
                    if (value <= int.MaxValue) continue;
                    Add(SpecDiagnosticIds.OutOfRange,
                        $"Field '{field}' is too large: {formula} is {value.ToString(CultureInfo.InvariantCulture)}, more than {int.MaxValue}, the largest size GemmaGen's kernels index.",
                        _root.Get(field)!);
                    return;
                }
            }

            /// <summary>The token ids the config names must be in the vocabulary. Only values that parsed as ids are
            /// checked; the others already have an error.</summary>
            private void CheckTokenIds(string name, int vocabSize)
            {
                JsonReader.Value? value = _root.Get(name);
                if (value == null) return;
                bool list = value.Kind == JsonReader.Kind.Array;
                IReadOnlyList<JsonReader.Value> ids = list ? value.Items : new[] { value };
                for (int i = 0; i < ids.Count; i++)
                {
                    JsonReader.Value id = ids[i];
                    if (id.Kind == JsonReader.Kind.Number && id.Number >= vocabSize && id.Number <= int.MaxValue && Math.Floor(id.Number) == id.Number)
                    {
                        Add(SpecDiagnosticIds.OutOfRange,
                            $"Field '{(list ? $"{name}[{i}]" : name)}' must be a token id below vocab_size ({vocabSize}), but it is {id.Text}.", id);
                    }
                }
            }

            private void ReadModelType()
            {
                const string expected = "the string \"" + SupportedModelType + "\"";
                JsonReader.Value? value = _root.Get("model_type");
                if (value == null)
                {
                    Missing("model_type", expected);
                }
                else if (value.Kind != JsonReader.Kind.String)
                {
                    WrongType("model_type", expected, value);
                }
                else if (value.Text != SupportedModelType)
                {
                    Add(SpecDiagnosticIds.UnsupportedModelType,
                        $"Unsupported model_type \"{Shorten(value.Text)}\": GemmaGen compiles only Gemma 2 configs, whose model_type is \"{SupportedModelType}\".",
                        value);
                }
            }

            /// <summary><c>hidden_activation</c>, or the older <c>hidden_act</c> when it is absent; null counts as
            /// absent, as in Hugging Face's Gemma configs, and absent means the default.</summary>
            private void ReadActivation()
            {
                string field = "hidden_activation";
                JsonReader.Value? value = _root.Get(field);
                if (value == null || value.Kind == JsonReader.Kind.Null)
                {
                    field = "hidden_act";
                    value = _root.Get(field);
                }
                if (value == null || value.Kind == JsonReader.Kind.Null) return;
                if (value.Kind != JsonReader.Kind.String)
                {
                    WrongType(field, "the string \"" + SupportedActivation + "\"", value);
                }
                else if (value.Text != SupportedActivation)
                {
                    Add(SpecDiagnosticIds.UnsupportedActivation,
                        $"Unsupported {field} \"{Shorten(value.Text)}\": the only supported activation is \"{SupportedActivation}\".",
                        value);
                }
            }

            /// <summary><c>sliding_window</c>, or the legacy <c>sliding_window_size</c> some uploads carry.</summary>
            private int ReadSlidingWindow()
            {
                if (_root.Get("sliding_window") is { } value) return Integer("sliding_window", value, 1, PositiveInteger);
                if (_root.Get("sliding_window_size") is { } legacy) return Integer("sliding_window_size", legacy, 1, PositiveInteger);
                return 4096;
            }

            /// <summary><c>rope_theta</c> at the top level (transformers 4), else inside <c>rope_parameters</c>
            /// (transformers 5).</summary>
            private double ReadRopeTheta()
            {
                const double fallback = 10000;
                if (_root.Get("rope_theta") is { } value) return Number("rope_theta", value);
                if (!(_root.Get("rope_parameters") is { } parameters)) return fallback;
                if (parameters.Kind != JsonReader.Kind.Object)
                {
                    WrongType("rope_parameters", "an object", parameters);
                    return 0;
                }
                return parameters.Get("rope_theta") is { } nested ? Number("rope_parameters.rope_theta", nested) : fallback;
            }

            /// <summary>A soft-cap: a positive number, or null to disable it.</summary>
            private double? OptionalSoftcap(string name, double fallback)
            {
                JsonReader.Value? value = _root.Get(name);
                if (value == null) return fallback;
                if (value.Kind == JsonReader.Kind.Null) return null;
                if (value.Kind != JsonReader.Kind.Number)
                {
                    WrongType(name, "a positive number or null", value);
                    return 0;
                }
                return Number(name, value);
            }

            private EquatableArray<int> ReadEosTokenIds()
            {
                const string name = "eos_token_id";
                const string expected = "a token id or a non-empty list of token ids";
                JsonReader.Value? value = _root.Get(name);
                if (value == null) return EquatableArray<int>.Create(1);
                if (value.Kind == JsonReader.Kind.Number) return EquatableArray<int>.Create(Integer(name, value, 0, TokenId));
                if (value.Kind != JsonReader.Kind.Array)
                {
                    WrongType(name, expected, value);
                    return default;
                }
                if (value.Items.Count == 0)
                {
                    OutOfRange(name, expected, value);
                    return default;
                }
                var ids = ImmutableArray.CreateBuilder<int>(value.Items.Count);
                for (int i = 0; i < value.Items.Count; i++)
                {
                    ids.Add(Integer($"{name}[{i}]", value.Items[i], 0, TokenId));
                }
                return new EquatableArray<int>(ids.MoveToImmutable());
            }

            private int RequiredCount(string name)
            {
                if (_root.Get(name) is { } value) return Integer(name, value, 1, PositiveInteger);
                Missing(name, PositiveInteger);
                return 0;
            }

            private int OptionalCount(string name, int fallback) =>
                _root.Get(name) is { } value ? Integer(name, value, 1, PositiveInteger) : fallback;

            private int OptionalTokenId(string name, int fallback) =>
                _root.Get(name) is { } value ? Integer(name, value, 0, TokenId) : fallback;

            private double OptionalPositiveNumber(string name, double fallback) =>
                _root.Get(name) is { } value ? Number(name, value) : fallback;

            /// <summary>An integer in [<paramref name="min"/>, int.MaxValue]. A number with a zero fractional part
            /// (<c>2304.0</c>, <c>2.304e3</c>) is an integer, as it is to Python.</summary>
            private int Integer(string name, JsonReader.Value value, int min, string expected)
            {
                if (value.Kind != JsonReader.Kind.Number || Math.Floor(value.Number) != value.Number)
                {
                    WrongType(name, expected, value);
                    return 0;
                }
                if (value.Number < min)
                {
                    OutOfRange(name, expected, value);
                    return 0;
                }
                if (value.Number > int.MaxValue)
                {
                    OutOfRange(name, $"{expected} no larger than {int.MaxValue}", value);
                    return 0;
                }
                return (int)value.Number;
            }

            /// <summary>A positive, finite number.</summary>
            private double Number(string name, JsonReader.Value value)
            {
                if (value.Kind != JsonReader.Kind.Number)
                {
                    WrongType(name, PositiveNumber, value);
                    return 0;
                }
                if (double.IsInfinity(value.Number))
                {
                    OutOfRange(name, PositiveNumber + " within the range of a double", value);
                    return 0;
                }
                if (!(value.Number > 0))
                {
                    OutOfRange(name, PositiveNumber, value);
                    return 0;
                }
                return value.Number;
            }

            private void Missing(string name, string expected) =>
                _errors.Add(new SpecError(SpecDiagnosticIds.MissingField,
                    $"Required field '{name}' is missing: add \"{name}\" ({expected}) to the config object.",
                    _root.Line, _root.Column));

            private void WrongType(string name, string expected, JsonReader.Value value) =>
                Add(SpecDiagnosticIds.WrongType, $"Field '{name}' must be {expected}, but it is {Describe(value)}.", value);

            private void OutOfRange(string name, string expected, JsonReader.Value value) =>
                Add(SpecDiagnosticIds.OutOfRange, $"Field '{name}' must be {expected}, but it is {Describe(value)}.", value);

            private void Add(string id, string message, JsonReader.Value at) =>
                _errors.Add(new SpecError(id, message, at.Line, at.Column));

            /// <summary>How a value reads in a message: <c>0</c>, <c>the string "2304"</c>, <c>an array</c>.</summary>
            private static string Describe(JsonReader.Value value)
            {
                switch (value.Kind)
                {
                    case JsonReader.Kind.Object: return "an object";
                    case JsonReader.Kind.Array: return value.Items.Count == 0 ? "an empty array" : "an array";
                    case JsonReader.Kind.String: return $"the string \"{Shorten(value.Text)}\"";
                    default: return value.Text;
                }
            }

            /// <summary>A string fit for a one-line message: at most 40 characters, control characters escaped.</summary>
            private static string Shorten(string text)
            {
                var sb = new StringBuilder();
                foreach (char c in text.Length > 40 ? text.Substring(0, 40) : text)
                {
                    if (c < ' ') sb.Append("\\u").Append(((int)c).ToString("X4", CultureInfo.InvariantCulture));
                    else sb.Append(c);
                }
                return text.Length > 40 ? sb.Append("...").ToString() : sb.ToString();
            }
        }
    }

    /// <summary>A parsed config, or the errors that prevented it.</summary>
    /// <param name="Config">The config; null when there is any error.</param>
    /// <param name="Errors">Every problem found, sorted by position; empty when <paramref name="Config"/> is set.</param>
#if GEMMAGEN_RUNTIME
    public
#else
    internal
#endif
    sealed record SpecParseResult(Gemma2Config? Config, EquatableArray<SpecError> Errors);

    /// <summary>One problem in a spec: a stable id (<see cref="SpecDiagnosticIds"/>), a message saying what to fix,
    /// and the 1-based line and column of the offending JSON token.</summary>
#if GEMMAGEN_RUNTIME
    public
#else
    internal
#endif
    sealed record SpecError(string Id, string Message, int Line, int Column);
}
