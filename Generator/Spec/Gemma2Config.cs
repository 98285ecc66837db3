namespace GemmaGen.Specs
{
    /// <summary>
    /// A Gemma 2 model configuration, as read from a Hugging Face <c>config.json</c> by <see cref="SpecParser"/>.
    /// The same type describes a compile-time spec (in the generator) and a checkpoint's config (at run time).
    /// </summary>
    /// <param name="ModelType">Always <c>gemma2</c>.</param>
    /// <param name="VocabSize">V: rows of the embedding matrix.</param>
    /// <param name="HiddenSize">D: width of the residual stream.</param>
    /// <param name="IntermediateSize">I: width of the MLP's gate and up projections.</param>
    /// <param name="NumHiddenLayers">Decoder layers; even layers use the sliding window, odd ones are global.</param>
    /// <param name="NumAttentionHeads">H: query heads.</param>
    /// <param name="NumKeyValueHeads">K: key/value heads; H is a multiple of K.</param>
    /// <param name="HeadDim">d: width of one head (H·d need not equal D).</param>
    /// <param name="QueryPreAttnScalar">Attention scores are scaled by this value to the power -1/2.</param>
    /// <param name="SlidingWindow">W: keys a query sees on local layers, itself included.</param>
    /// <param name="AttnLogitSoftcapping">Attention soft-cap, or null when the config disables it.</param>
    /// <param name="FinalLogitSoftcapping">Final logit soft-cap, or null when the config disables it.</param>
    /// <param name="RmsNormEps">Epsilon added to the mean square in RMSNorm.</param>
    /// <param name="RopeTheta">Base of the rotary position embedding.</param>
    /// <param name="MaxPositionEmbeddings">Longest context the model was trained for.</param>
    /// <param name="HiddenActivation">Always <c>gelu_pytorch_tanh</c>.</param>
    /// <param name="BosTokenId">Beginning-of-sequence token.</param>
    /// <param name="EosTokenIds">Tokens that end generation (the config's number or list).</param>
    /// <param name="PadTokenId">Padding token.</param>
#if GEMMAGEN_RUNTIME
    public
#else
    internal
#endif
    sealed record Gemma2Config(
        string ModelType,
        int VocabSize,
        int HiddenSize,
        int IntermediateSize,
        int NumHiddenLayers,
        int NumAttentionHeads,
        int NumKeyValueHeads,
        int HeadDim,
        double QueryPreAttnScalar,
        int SlidingWindow,
        double? AttnLogitSoftcapping,
        double? FinalLogitSoftcapping,
        double RmsNormEps,
        double RopeTheta,
        int MaxPositionEmbeddings,
        string HiddenActivation,
        int BosTokenId,
        EquatableArray<int> EosTokenIds,
        int PadTokenId)
    {
        /// <summary>The shape every layer shares: what a compiled spec is specialized for. The layer count and
        /// the vocabulary size are not part of it, so one compiled spec serves checkpoints that differ in those.</summary>
        public LayerShape Shape => new LayerShape(
            HiddenSize, NumAttentionHeads, NumKeyValueHeads, HeadDim, IntermediateSize, SlidingWindow,
            AttnLogitSoftcapping, FinalLogitSoftcapping, QueryPreAttnScalar, RmsNormEps, RopeTheta);
    }

    /// <summary>The per-layer shape of a Gemma 2 model; two configs with equal shapes run on the same kernels.</summary>
#if GEMMAGEN_RUNTIME
    public
#else
    internal
#endif
    sealed record LayerShape(
        int HiddenSize,
        int NumAttentionHeads,
        int NumKeyValueHeads,
        int HeadDim,
        int IntermediateSize,
        int SlidingWindow,
        double? AttnLogitSoftcapping,
        double? FinalLogitSoftcapping,
        double QueryPreAttnScalar,
        double RmsNormEps,
        double RopeTheta);
}
