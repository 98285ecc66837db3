namespace GemmaGen.Specs
{
    /// <summary>The stable ids of the problems a spec can have. They never change meaning: build logs, docs and
    /// <c>NoWarn</c>-style settings refer to them.</summary>
#if GEMMAGEN_RUNTIME
    public
#else
    internal
#endif
    static class SpecDiagnosticIds
    {
        /// <summary>The file is not well-formed JSON, or its top level is not an object.</summary>
        public const string MalformedJson = "GEMMAGEN001";

        /// <summary>A required field is absent.</summary>
        public const string MissingField = "GEMMAGEN002";

        /// <summary>A field has the wrong JSON type (a string where a number belongs, a fraction for a count, ...).</summary>
        public const string WrongType = "GEMMAGEN003";

        /// <summary>A number is zero, negative or too large for its field.</summary>
        public const string OutOfRange = "GEMMAGEN004";

        /// <summary><c>num_attention_heads</c> is not a multiple of <c>num_key_value_heads</c>.</summary>
        public const string HeadsNotDivisible = "GEMMAGEN005";

        /// <summary><c>model_type</c> is not <c>gemma2</c>.</summary>
        public const string UnsupportedModelType = "GEMMAGEN006";

        /// <summary><c>hidden_activation</c> is not <c>gelu_pytorch_tanh</c>.</summary>
        public const string UnsupportedActivation = "GEMMAGEN007";

        /// <summary>Two specs would generate the same class (same namespace and class name).</summary>
        public const string DuplicateClassName = "GEMMAGEN008";

        /// <summary>The ClassName or Namespace of a spec is not a valid C# identifier or dotted name.</summary>
        public const string InvalidName = "GEMMAGEN009";

        /// <summary><c>head_dim</c> is odd (rotary embeddings rotate the two halves of a head).</summary>
        public const string OddHeadDim = "GEMMAGEN010";

        /// <summary>A key appears twice in one JSON object.</summary>
        public const string DuplicateKey = "GEMMAGEN011";
    }
}
