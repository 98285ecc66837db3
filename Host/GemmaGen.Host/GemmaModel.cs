using GemmaGen.Kernels;
using GemmaGen.Specs;

namespace GemmaGen;

/// <summary>How <see cref="GemmaModel"/> loads and runs a model.</summary>
public sealed record GemmaModelOptions
{
    /// <summary>Run the runtime-shape reference decoder even when a compiled spec matches the config.</summary>
    public bool ForceReference { get; init; }

    /// <summary>Positions a session holds by default; null means min(max_position_embeddings, <see cref="GemmaModel.DefaultMaxContext"/>).</summary>
    public int? MaxContext { get; init; }

    /// <summary>Worker threads, the caller's included; null means <see cref="Environment.ProcessorCount"/>.</summary>
    public int? Threads { get; init; }

    /// <summary>Storage format of the weight matrices: null keeps the checkpoint's (F16 becomes F32); Q8_0 or Q4_0
    /// quantize at load.</summary>
    public WeightFormat? Format { get; init; }

    /// <summary>How KV caches store keys and values: <see cref="KvPrecision.F32"/> (default, exact),
    /// <see cref="KvPrecision.BF16"/> (half the memory and half the bytes attention reads) or <see cref="KvPrecision.Q8_0"/>
    /// (int8 blocks of 32 with a bf16 scale, 17/64 of the memory; refused at load where head_dim is not a multiple of 32).</summary>
    public KvPrecision KvCache { get; init; } = KvPrecision.F32;

    /// <summary>How the Q4_0 blocks' products round activations in decoding and short batches:
    /// <see cref="DecodeActivations.Int16"/> (default; decode within about 1e-3 of the exact logits) or
    /// <see cref="DecodeActivations.Int8"/> (per 16, as llama.cpp rounds its quantized products: faster decoding where the
    /// CPU bounds it, logits about as far from the exact ones as llama.cpp's). The other formats ignore it.</summary>
    public DecodeActivations Activations { get; init; } = DecodeActivations.Int16;

    /// <summary>Called while the weights load with the fraction done (0 to 1), for a progress bar.</summary>
    public Action<double>? LoadProgress { get; init; }

    /// <summary>Load even when the model needs more memory than is available (see <see cref="LoadPlan"/>): for
    /// machines whose swap or overcommit the check does not know about.</summary>
    public bool SkipMemoryCheck { get; init; }

    /// <summary>Scan the weights for NaN and infinite values at load (default true); a tensor that has one is refused
    /// with a <see cref="WeightLoadException"/> naming it. False skips the scan.</summary>
    public bool CheckWeights { get; init; } = true;
}

/// <summary>
/// A loaded Gemma 2 model: its weights, its tokenizer (when the checkpoint has one) and a worker pool. Runs on the
/// compiled specialization whose layer shape matches the config when one is registered (any assembly that
/// compiles a <c>GemmaSpec</c> registers its classes), on the runtime-shape reference decoder otherwise.
/// The model is shared and immutable; sessions hold the per-sequence state.
/// </summary>
public sealed class GemmaModel : IDisposable
{
    /// <summary>The KV cache length used when neither the options nor the config ask for less.</summary>
    public const int DefaultMaxContext = 8192;

    /// <summary>The tokenizer file of a checkpoint directory.</summary>
    public const string TokenizerFileName = "tokenizer.model";

    private readonly WorkerPool _pool;
    private readonly CompiledModel? _compiled;

    private GemmaModel(ModelWeights weights, WorkerPool pool, CompiledModel? compiled, GemmaTokenizer? tokenizer, int maxContext, IReadOnlyList<string> warnings)
    {
        Weights = weights;
        _pool = pool;
        _compiled = compiled;
        Tokenizer = tokenizer;
        MaxContext = maxContext;
        Warnings = warnings;
        Forward = compiled?.Create(weights, maxContext, pool) ?? new ReferenceForward(weights, maxContext, pool);
    }

    /// <summary>The forward pass every session and batch of this model runs on (compiled or reference): it holds the
    /// kernels and buffers for one batch of rows; each sequence holds its own KV cache.</summary>
    public Gemma2Forward Forward { get; }

    /// <summary>Problems found at load that did not stop it (checkpoint layers the config does not use), one line each.</summary>
    public IReadOnlyList<string> Warnings { get; }

    /// <summary>The model's config.</summary>
    public Gemma2Config Config => Weights.Config;

    /// <summary>The packed weights.</summary>
    public ModelWeights Weights { get; }

    /// <summary>The checkpoint's tokenizer, or null when it was loaded without one.</summary>
    public GemmaTokenizer? Tokenizer { get; }

    /// <summary>Positions a session holds unless it asks for another size.</summary>
    public int MaxContext { get; }

    /// <summary><c>compiled &lt;ClassName&gt;</c> when a compiled spec runs the model, <c>reference</c> otherwise.</summary>
    public string ExecutionPath => _compiled is { } c ? "compiled " + c.ClassName : "reference";

    /// <summary>The compiled spec that runs the model, or null on the reference path.</summary>
    public CompiledModel? CompiledSpec => _compiled;

    /// <summary>Worker threads, the caller's included.</summary>
    public int Threads => _pool.Threads;

    /// <summary>Loads a Hugging Face checkpoint directory: config.json, the safetensors file(s) and, when present,
    /// tokenizer.model (text in and out needs it: see <see cref="RequireTokenizer"/>); or a GGUF file (or a directory
    /// holding exactly one and no config.json), with its config and tokenizer from its metadata (see
    /// <see cref="GgufCheckpoint"/>).</summary>
    /// <exception cref="CheckpointException">The checkpoint is missing or malformed, or needs more memory than is available.</exception>
    /// <exception cref="WeightLoadException">A tensor the config calls for is missing or misshapen, or of a type that cannot be loaded.</exception>
    /// <exception cref="TokenizerException">tokenizer.model (or the GGUF tokenizer metadata) is malformed, or its vocabulary is not the config's vocab_size.</exception>
    public static GemmaModel Load(string directory, GemmaModelOptions? options = null)
    {
        if (GgufCheckpoint.FindModelFile(directory) is { } ggufPath)
        {
            using var gguf = GgufCheckpoint.Open(ggufPath);
            return Load(gguf.Config, gguf, options, gguf.LoadTokenizer());
        }
        using var checkpoint = Checkpoint.Open(directory);
        string tokenizerPath = Path.Combine(directory, TokenizerFileName);
        var tokenizer = File.Exists(tokenizerPath) ? GemmaTokenizer.Load(tokenizerPath) : null;
        var model = Load(checkpoint.Config, checkpoint, options, tokenizer);
        model.Directory = directory;
        return model;
    }

    /// <summary>The name clients see for the model when none is given: the checkpoint folder's (or file's) name, else
    /// <c>gemma2</c>.</summary>
    internal string DefaultModelId =>
        (Directory is { } directory ? Path.GetFileNameWithoutExtension(Path.TrimEndingDirectorySeparator(Path.GetFullPath(directory))) : null) ?? "gemma2";

    /// <summary>The checkpoint directory the model was loaded from, or null.</summary>
    public string? Directory { get; private set; }

    /// <summary>The tokenizer, or a <see cref="TokenizerException"/> naming the missing tokenizer.model.</summary>
    public GemmaTokenizer RequireTokenizer() => Tokenizer ?? throw new TokenizerException(
        Directory != null
            ? $"{Path.Combine(Directory, TokenizerFileName)}: file not found; text input and output need the checkpoint's tokenizer.model"
            : "this model was loaded without a tokenizer; text input and output need a checkpoint's tokenizer.model");

    /// <summary>Loads the model a config file describes, with synthetic weights (see <see cref="SyntheticWeights"/>) and no tokenizer.</summary>
    /// <exception cref="CheckpointException">The config file is missing or invalid, or the model needs more memory than is available.</exception>
    public static GemmaModel LoadSynthetic(string configPath, GemmaModelOptions? options = null)
    {
        var config = Checkpoint.LoadConfig(configPath);
        using var synthetic = new SyntheticWeights(config);
        return Load(config, synthetic, options);
    }

    /// <summary>Loads <paramref name="config"/>'s weights from <paramref name="source"/> (which may be disposed
    /// afterwards: the weights are copied), after the checks of <see cref="LoadPlan"/>.</summary>
    /// <exception cref="WeightLoadException">A tensor the config calls for is missing or misshapen, or holds a NaN or
    /// infinite value (unless <see cref="GemmaModelOptions.CheckWeights"/> is false).</exception>
    /// <exception cref="TokenizerException">The tokenizer's vocabulary is not the config's <c>vocab_size</c>.</exception>
    /// <exception cref="CheckpointException">The model needs more memory than is available (unless
    /// <see cref="GemmaModelOptions.SkipMemoryCheck"/>).</exception>
    public static GemmaModel Load(Gemma2Config config, ITensorSource source, GemmaModelOptions? options = null, GemmaTokenizer? tokenizer = null)
    {
        options ??= new GemmaModelOptions();
        var plan = LoadPlan.Create(config, source, options, tokenizer);
        if (!options.SkipMemoryCheck) plan.RequireMemory();
        var weights = ModelWeights.Load(config, source, options.Format, options.LoadProgress, options.CheckWeights);
        var compiled = options.ForceReference ? null : CompiledModelRegistry.Find(config.Shape);
        var model = new GemmaModel(weights, new WorkerPool(options.Threads ?? Environment.ProcessorCount), compiled, tokenizer, plan.MaxContext, plan.Warnings);
        model.Forward.KvPrecision = options.KvCache;
        weights.DecodeActivations = options.Activations;
        return model;
    }

    /// <summary>A decoder of one new sequence (its own KV cache of <paramref name="maxContext"/> positions) on this model's
    /// <see cref="Forward"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="maxContext"/> is not positive, or its buffers could
    /// not be allocated (see <see cref="Sequence.CheckContext"/>).</exception>
    public Gemma2Decoder CreateDecoder(int? maxContext = null) => new(Forward, maxContext ?? MaxContext);

    /// <summary>A generation session with its own KV cache.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="maxContext"/> is not positive, or its buffers could
    /// not be allocated (see <see cref="Sequence.CheckContext"/>).</exception>
    public GenerationSession CreateSession(int? maxContext = null) => new(this, CreateDecoder(maxContext));

    /// <summary>A chat session in the Gemma chat format (needs the tokenizer).</summary>
    /// <param name="systemPrompt">Folded into the first user turn; Gemma has no system role.</param>
    /// <param name="maxContext">Positions the conversation may use; null: <see cref="MaxContext"/>.</param>
    public ChatSession CreateChat(string? systemPrompt = null, int? maxContext = null) => new(this, CreateSession(maxContext), systemPrompt);

    /// <summary>A scheduler that runs many generations on this model at once, in shared forward passes (continuous
    /// batching; see <see cref="GenerationScheduler"/>). Dispose it to stop its thread.</summary>
    /// <exception cref="ArgumentOutOfRangeException">An option is out of range.</exception>
    public GenerationScheduler CreateScheduler(GenerationSchedulerOptions? options = null) => new(this, options);

    /// <summary>
    /// Generates from every prompt together: each step is one forward pass with a row per sequence, so the weights
    /// are read once per step for all of them. Each prompt is a whole sequence from position 0 (BOS included); each
    /// result is what generating from that prompt alone gives, in prompt order. Sequences that need more than
    /// <see cref="MaxContext"/> positions stop there (<see cref="StopReason.ContextFull"/>).
    /// </summary>
    /// <exception cref="ArgumentException">No prompts, or an empty one.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A prompt is longer than <see cref="MaxContext"/>.</exception>
    public GenerationResult[] GenerateBatch(IReadOnlyList<int[]> prompts, GenerationOptions options)
    {
        ArgumentNullException.ThrowIfNull(prompts);
        ArgumentNullException.ThrowIfNull(options);
        if (prompts.Count == 0) throw new ArgumentException("at least one prompt is needed", nameof(prompts));
        long needed = prompts.Max(p => (long)p.Length + Math.Max(0, options.MaxTokens - 1));
        using var scheduler = CreateScheduler(new GenerationSchedulerOptions
        {
            MaxSequences = Math.Min(prompts.Count, Specs.SpecParser.MaxBatchRows),
            MaxContext = (int)Math.Min(MaxContext, needed),
        });
        var tasks = prompts.Select(p => scheduler.GenerateAsync(p, options)).ToArray();
        return Task.WhenAll(tasks).GetAwaiter().GetResult();
    }

    /// <summary>One forward pass over <paramref name="tokens"/> from position 0.</summary>
    /// <returns>The logits of every position, [tokens.Length × V] row-major.</returns>
    /// <exception cref="ArgumentOutOfRangeException">More tokens than <see cref="MaxContext"/>.</exception>
    public float[] ComputeLogits(ReadOnlySpan<int> tokens)
    {
        if (tokens.IsEmpty) throw new ArgumentException("at least one token is needed", nameof(tokens));
        CheckFits(tokens.Length, nameof(tokens));
        var logits = new float[tokens.Length * Config.VocabSize];
        CreateDecoder(tokens.Length).Forward(tokens, 0, logits);
        return logits;
    }

    /// <summary>
    /// Greedy decoding: the prompt in one forward pass from position 0, then the argmax token, fed back one step at a
    /// time through the KV cache. Needs a context of prompt + maxNewTokens − 1.
    /// </summary>
    /// <param name="prompt">Token ids, BOS included; at least one.</param>
    /// <param name="maxNewTokens">Tokens to generate.</param>
    /// <param name="stopAtEos">Stop after an end token (see <see cref="GenerationSession.EndTokens"/>; it is included).</param>
    /// <returns>The generated ids, not the prompt.</returns>
    /// <exception cref="ArgumentOutOfRangeException">The prompt and the new tokens need more than <see cref="MaxContext"/> positions.</exception>
    public int[] GenerateGreedy(ReadOnlySpan<int> prompt, int maxNewTokens, bool stopAtEos = false)
    {
        if (prompt.IsEmpty) throw new ArgumentException("at least one prompt token is needed", nameof(prompt));
        ArgumentOutOfRangeException.ThrowIfNegative(maxNewTokens);
        long positions = Math.Max(prompt.Length, (long)prompt.Length + maxNewTokens - 1);
        CheckFits(positions, nameof(maxNewTokens));
        var session = CreateSession((int)positions);
        var options = new GenerationOptions { MaxTokens = maxNewTokens, Sampling = SamplingOptions.GreedyDecoding, IgnoreEndTokens = !stopAtEos };
        return session.Generate(prompt, options).Tokens;
    }

    /// <summary>Refuses a run of more positions than the model's context.</summary>
    private void CheckFits(long positions, string paramName)
    {
        if (positions > MaxContext)
            throw new ArgumentOutOfRangeException(paramName, positions,
                $"{positions} positions are needed, more than the model's context of {MaxContext} (GemmaModelOptions.MaxContext)");
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
