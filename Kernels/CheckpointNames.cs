using System.Globalization;

namespace GemmaGen.Kernels;

/// <summary>
/// The Hugging Face names of a Gemma 2 checkpoint's tensors, spelled here once for the loader, synthetic weights
/// and the load checks.
/// </summary>
public static class CheckpointNames
{
    /// <summary>The embedding [V, D] (also the output matrix unless the checkpoint has <see cref="LmHead"/>).</summary>
    public const string Embed = "model.embed_tokens.weight";

    /// <summary>A separate output matrix [V, D], present in some checkpoints.</summary>
    public const string LmHead = "lm_head.weight";

    /// <summary>The final norm [D].</summary>
    public const string FinalNorm = "model.norm.weight";

    /// <summary>What every tensor of a layer starts with, followed by the layer's index and a dot.</summary>
    public const string LayerPrefix = "model.layers.";

    /// <summary>The tensor names of layer <paramref name="layer"/>.</summary>
    public static LayerNames Layer(int layer) => new(layer);

    /// <summary>The layer a tensor named <paramref name="name"/> belongs to, when it is a layer's.</summary>
    public static bool TryParseLayer(string name, out int layer)
    {
        layer = -1;
        if (!name.StartsWith(LayerPrefix, StringComparison.Ordinal)) return false;
        int end = name.IndexOf('.', LayerPrefix.Length);
        return end >= 0 && int.TryParse(name.AsSpan(LayerPrefix.Length, end - LayerPrefix.Length), NumberStyles.None, CultureInfo.InvariantCulture, out layer);
    }
}

/// <summary>The tensor names of one layer, e.g. <c>model.layers.3.self_attn.q_proj.weight</c>.</summary>
public sealed class LayerNames
{
    internal LayerNames(int layer)
    {
        string p = CheckpointNames.LayerPrefix + layer.ToString(CultureInfo.InvariantCulture) + ".";
        InputNorm = p + "input_layernorm.weight";
        QProj = p + "self_attn.q_proj.weight";
        KProj = p + "self_attn.k_proj.weight";
        VProj = p + "self_attn.v_proj.weight";
        OProj = p + "self_attn.o_proj.weight";
        PostAttentionNorm = p + "post_attention_layernorm.weight";
        PreFeedforwardNorm = p + "pre_feedforward_layernorm.weight";
        GateProj = p + "mlp.gate_proj.weight";
        UpProj = p + "mlp.up_proj.weight";
        DownProj = p + "mlp.down_proj.weight";
        PostFeedforwardNorm = p + "post_feedforward_layernorm.weight";
    }

    /// <summary>input_layernorm [D].</summary>
    public string InputNorm { get; }

    /// <summary>q_proj [H·d, D].</summary>
    public string QProj { get; }

    /// <summary>k_proj [K·d, D].</summary>
    public string KProj { get; }

    /// <summary>v_proj [K·d, D].</summary>
    public string VProj { get; }

    /// <summary>o_proj [D, H·d].</summary>
    public string OProj { get; }

    /// <summary>post_attention_layernorm [D].</summary>
    public string PostAttentionNorm { get; }

    /// <summary>pre_feedforward_layernorm [D].</summary>
    public string PreFeedforwardNorm { get; }

    /// <summary>gate_proj [I, D].</summary>
    public string GateProj { get; }

    /// <summary>up_proj [I, D].</summary>
    public string UpProj { get; }

    /// <summary>down_proj [D, I].</summary>
    public string DownProj { get; }

    /// <summary>post_feedforward_layernorm [D].</summary>
    public string PostFeedforwardNorm { get; }

    /// <summary>The four norms, in checkpoint order.</summary>
    public IReadOnlyList<string> Norms => [InputNorm, PostAttentionNorm, PreFeedforwardNorm, PostFeedforwardNorm];
}
