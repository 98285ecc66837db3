using GemmaGen.Kernels;
using GemmaGen.Specs;

namespace GemmaGen;

/// <summary>How <see cref="GemmaEngine"/> opens a model.</summary>
public sealed record GemmaEngineOptions
{
    /// <summary>Run the runtime-shape reference decoder even when a compiled spec matches the config.</summary>
    public bool ForceReference { get; init; }

    /// <summary>Positions the KV cache holds; null means min(max_position_embeddings, <see cref="GemmaEngine.DefaultMaxContext"/>).</summary>
    public int? MaxContext { get; init; }

    /// <summary>Worker threads, the caller's included; null means <see cref="Environment.ProcessorCount"/>.</summary>
    public int? Threads { get; init; }
}

/// <summary>
/// A loaded model ready to run: its weights, a worker pool and one decoder — the compiled specialization whose
/// layer shape matches the config when one is registered, the reference decoder otherwise.
/// </summary>
public sealed class GemmaEngine : IDisposable
{
    /// <summary>The KV cache length used when neither the options nor the config ask for less.</summary>
    public const int DefaultMaxContext = 8192;

    private readonly WorkerPool _pool;

    private GemmaEngine(ModelWeights weights, WorkerPool pool, Gemma2Decoder decoder)
    {
        Weights = weights;
        _pool = pool;
        Decoder = decoder;
    }

    /// <summary>The model's config.</summary>
    public Gemma2Config Config => Weights.Config;

    /// <summary>The packed weights.</summary>
    public ModelWeights Weights { get; }

    /// <summary>The decoder every call runs on.</summary>
    public Gemma2Decoder Decoder { get; }

    /// <summary><c>compiled &lt;ClassName&gt;</c> or <c>reference</c>.</summary>
    public string ExecutionPath => Decoder.ExecutionPath;

    /// <summary>Loads a Hugging Face checkpoint directory (see <see cref="Checkpoint"/>).</summary>
    /// <exception cref="CheckpointException">The checkpoint is missing or malformed.</exception>
    /// <exception cref="WeightLoadException">A tensor the config calls for is missing or misshapen.</exception>
    public static GemmaEngine OpenCheckpoint(string directory, GemmaEngineOptions? options = null)
    {
        using var checkpoint = Checkpoint.Open(directory);
        return Open(checkpoint.Config, checkpoint, options);
    }

    /// <summary>Loads the model a config file describes, with synthetic weights (see <see cref="SyntheticWeights"/>).</summary>
    /// <exception cref="CheckpointException">The config file is missing or invalid.</exception>
    public static GemmaEngine OpenSynthetic(string configPath, GemmaEngineOptions? options = null)
    {
        var config = Checkpoint.LoadConfig(configPath);
        using var synthetic = new SyntheticWeights(config);
        return Open(config, synthetic, options);
    }

    /// <summary>Loads <paramref name="config"/>'s weights from <paramref name="source"/> (which may be disposed
    /// afterwards: the weights are copied) and creates the decoder.</summary>
    /// <exception cref="WeightLoadException">A tensor the config calls for is missing or misshapen.</exception>
    public static GemmaEngine Open(Gemma2Config config, ITensorSource source, GemmaEngineOptions? options = null)
    {
        options ??= new GemmaEngineOptions();
        int maxContext = options.MaxContext ?? Math.Min(config.MaxPositionEmbeddings, DefaultMaxContext);
        if (maxContext < 1)
            throw new ArgumentOutOfRangeException(nameof(options), maxContext, "the context must hold at least one token");
        var weights = ModelWeights.Load(config, source);
        WorkerPool? pool = null;
        try
        {
            pool = new WorkerPool(options.Threads ?? Environment.ProcessorCount);
            var compiled = options.ForceReference ? null : CompiledModelRegistry.Find(config.Shape);
            var decoder = compiled?.Create(weights, maxContext, pool) ?? new ReferenceDecoder(weights, maxContext, pool);
            return new GemmaEngine(weights, pool, decoder);
        }
        catch
        {
            pool?.Dispose();
            weights.Dispose();
            throw;
        }
    }

    /// <summary>One forward pass over <paramref name="tokens"/> from position 0 (the cache is reset first).</summary>
    /// <returns>The logits of every position, [tokens.Length, V] row-major.</returns>
    public float[] Logits(ReadOnlySpan<int> tokens)
    {
        if (tokens.IsEmpty) throw new ArgumentException("at least one token is needed", nameof(tokens));
        var logits = new float[tokens.Length * Config.VocabSize];
        Decoder.Reset();
        Decoder.Forward(tokens, 0, logits);
        return logits;
    }

    /// <summary>
    /// Greedy decoding: the prompt in one forward pass from position 0 (the cache is reset first), then the argmax
    /// token, fed back one step at a time through the KV cache. Needs a context of prompt + maxNewTokens − 1.
    /// </summary>
    /// <param name="prompt">Token ids, BOS included; at least one.</param>
    /// <param name="maxNewTokens">Tokens to generate.</param>
    /// <param name="stopAtEos">Stop after a token of the config's <c>eos_token_id</c> list (it is included).</param>
    /// <returns>The generated ids, not the prompt.</returns>
    public int[] GenerateGreedy(ReadOnlySpan<int> prompt, int maxNewTokens, bool stopAtEos = false)
    {
        if (prompt.IsEmpty) throw new ArgumentException("at least one prompt token is needed", nameof(prompt));
        ArgumentOutOfRangeException.ThrowIfNegative(maxNewTokens);
        if (maxNewTokens == 0) return [];
        var generated = new List<int>();
        var logits = new float[Config.VocabSize];
        Decoder.Reset();
        Decoder.Forward(prompt, 0, logits);
        while (true)
        {
            int next = ArgMax(logits);
            generated.Add(next);
            if (generated.Count == maxNewTokens || (stopAtEos && Config.EosTokenIds.Contains(next))) break;
            Decoder.Step(next, prompt.Length + generated.Count - 1, logits);
        }
        return generated.ToArray();
    }

    /// <summary>The index of the largest value; ties go to the lowest index, NaNs are never chosen over a number.</summary>
    public static int ArgMax(ReadOnlySpan<float> values)
    {
        if (values.IsEmpty) throw new ArgumentException("no values", nameof(values));
        int best = 0;
        for (int i = 1; i < values.Length; i++)
        {
            if (values[i] > values[best] || float.IsNaN(values[best])) best = i;
        }
        return best;
    }

    /// <summary>Stops the worker threads and frees the weights.</summary>
    public void Dispose()
    {
        _pool.Dispose();
        Weights.Dispose();
    }
}
