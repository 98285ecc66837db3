using System.Globalization;

namespace GemmaGen.Tests.Package;

/// <summary>A Gemma 2 shape no spec of the repository has, and a checkpoint of it with random F32 weights.</summary>
internal static class RandomCheckpoint
{
    public const int Vocab = 300, Hidden = 72, Intermediate = 100, Layers = 3, Heads = 6, KvHeads = 2, HeadDim = 24, Window = 5;

    /// <summary>The shape's config.json: hidden 72, 6 query heads / 2 kv heads of 24, window 5 (fewer keys than a
    /// prompt of the tests has), intermediate 100 (not a multiple of any vector width), 3 layers, vocabulary 300.</summary>
    public static string ConfigJson { get; } = string.Create(CultureInfo.InvariantCulture, $$"""
        {
          "architectures": ["Gemma2ForCausalLM"],
          "model_type": "gemma2",
          "vocab_size": {{Vocab}},
          "hidden_size": {{Hidden}},
          "intermediate_size": {{Intermediate}},
          "num_hidden_layers": {{Layers}},
          "num_attention_heads": {{Heads}},
          "num_key_value_heads": {{KvHeads}},
          "head_dim": {{HeadDim}},
          "query_pre_attn_scalar": {{HeadDim}},
          "sliding_window": {{Window}},
          "attn_logit_softcapping": 50.0,
          "final_logit_softcapping": 30.0,
          "hidden_activation": "gelu_pytorch_tanh",
          "rms_norm_eps": 1e-06,
          "rope_theta": 10000.0,
          "max_position_embeddings": 64,
          "bos_token_id": 2,
          "eos_token_id": 1,
          "pad_token_id": 0,
          "torch_dtype": "float32"
        }

        """);

    /// <summary>Writes config.json and model.safetensors (every tensor Gemma 2 has, F32, uniform in ±0.1 from a
    /// fixed seed; the norm weights small, as trained ones are around 0 with the (1 + w) scaling).</summary>
    public static void Write(string directory)
    {
        Directory.CreateDirectory(directory);
        File.WriteAllText(Path.Combine(directory, "config.json"), ConfigJson);
        var random = new Random(5);
        var writer = new SafetensorsWriter();
        void Add(string name, params int[] shape)
        {
            var values = new float[shape.Aggregate(1, (a, b) => a * b)];
            for (int i = 0; i < values.Length; i++) values[i] = (float)(random.NextDouble() * 0.2 - 0.1);
            writer.AddF32(name, values, shape.Select(d => (long)d).ToArray());
        }

        Add("model.embed_tokens.weight", Vocab, Hidden);
        for (int l = 0; l < Layers; l++)
        {
            string p = $"model.layers.{l}.";
            Add(p + "input_layernorm.weight", Hidden);
            Add(p + "self_attn.q_proj.weight", Heads * HeadDim, Hidden);
            Add(p + "self_attn.k_proj.weight", KvHeads * HeadDim, Hidden);
            Add(p + "self_attn.v_proj.weight", KvHeads * HeadDim, Hidden);
            Add(p + "self_attn.o_proj.weight", Hidden, Heads * HeadDim);
            Add(p + "post_attention_layernorm.weight", Hidden);
            Add(p + "pre_feedforward_layernorm.weight", Hidden);
            Add(p + "mlp.gate_proj.weight", Intermediate, Hidden);
            Add(p + "mlp.up_proj.weight", Intermediate, Hidden);
            Add(p + "mlp.down_proj.weight", Hidden, Intermediate);
            Add(p + "post_feedforward_layernorm.weight", Hidden);
        }
        Add("model.norm.weight", Hidden);
        writer.Save(Path.Combine(directory, "model.safetensors"));
    }
}
