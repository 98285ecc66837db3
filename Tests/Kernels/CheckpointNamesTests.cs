using GemmaGen.Kernels;
using Xunit;

namespace GemmaGen.Tests.Kernels;

/// <summary><see cref="CheckpointNames"/> spells the tensor names of Hugging Face's Gemma 2 checkpoints.</summary>
public sealed class CheckpointNamesTests
{
    [Fact]
    public void ModelTensorsHaveTheHuggingFaceNames()
    {
        Assert.Equal("model.embed_tokens.weight", CheckpointNames.Embed);
        Assert.Equal("lm_head.weight", CheckpointNames.LmHead);
        Assert.Equal("model.norm.weight", CheckpointNames.FinalNorm);
    }

    [Fact]
    public void LayerTensorsHaveTheHuggingFaceNames()
    {
        var names = CheckpointNames.Layer(12);

        Assert.Equal("model.layers.12.input_layernorm.weight", names.InputNorm);
        Assert.Equal("model.layers.12.self_attn.q_proj.weight", names.QProj);
        Assert.Equal("model.layers.12.self_attn.k_proj.weight", names.KProj);
        Assert.Equal("model.layers.12.self_attn.v_proj.weight", names.VProj);
        Assert.Equal("model.layers.12.self_attn.o_proj.weight", names.OProj);
        Assert.Equal("model.layers.12.post_attention_layernorm.weight", names.PostAttentionNorm);
        Assert.Equal("model.layers.12.pre_feedforward_layernorm.weight", names.PreFeedforwardNorm);
        Assert.Equal("model.layers.12.mlp.gate_proj.weight", names.GateProj);
        Assert.Equal("model.layers.12.mlp.up_proj.weight", names.UpProj);
        Assert.Equal("model.layers.12.mlp.down_proj.weight", names.DownProj);
        Assert.Equal("model.layers.12.post_feedforward_layernorm.weight", names.PostFeedforwardNorm);
        Assert.Equal(
            ["model.layers.12.input_layernorm.weight", "model.layers.12.post_attention_layernorm.weight",
             "model.layers.12.pre_feedforward_layernorm.weight", "model.layers.12.post_feedforward_layernorm.weight"],
            names.Norms);
    }

    [Theory]
    [InlineData("model.layers.0.input_layernorm.weight", 0)]
    [InlineData("model.layers.41.mlp.down_proj.weight", 41)]
    [InlineData("model.layers.7.", 7)]
    public void LayerTensorNamesGiveTheirLayer(string name, int layer)
    {
        Assert.True(CheckpointNames.TryParseLayer(name, out int parsed));
        Assert.Equal(layer, parsed);
    }

    [Theory]
    [InlineData("model.embed_tokens.weight")]
    [InlineData("model.layers.x.mlp.up_proj.weight")]
    [InlineData("model.layers.-1.mlp.up_proj.weight")]
    [InlineData("model.layers.3")]
    [InlineData("lm_head.weight")]
    public void OtherNamesHaveNoLayer(string name)
    {
        Assert.False(CheckpointNames.TryParseLayer(name, out _));
    }
}
