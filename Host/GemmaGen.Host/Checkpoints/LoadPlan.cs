using System.Globalization;
using GemmaGen.Kernels;
using GemmaGen.Specs;

namespace GemmaGen;

/// <summary>
/// What loading a model will take, worked out from its config and tensor headers before anything is allocated, and
/// the checks that come with it: the tokenizer against <c>vocab_size</c>, the memory needed against the memory
/// available, tensors the config leaves unused. <see cref="GemmaModel.Load(Gemma2Config, ITensorSource, GemmaModelOptions?, GemmaTokenizer?)"/>
/// and <c>gemmagen info</c> both run it.
/// </summary>
public sealed class LoadPlan
{
    /// <summary>The registered formats that would hold the weights in fewer bytes than <see cref="Format"/>.</summary>
    private readonly IReadOnlyList<WeightFormat> _smallerFormats;

    private LoadPlan(string source, WeightFormat format, IReadOnlyList<WeightFormat> formats, IReadOnlyList<WeightFormat> smaller, int maxContext, long weights, long kvCache, long buffers, long? available, IReadOnlyList<string> warnings)
    {
        Source = source;
        Format = format;
        Formats = formats.Count > 0 ? formats : [format];
        _smallerFormats = smaller;
        MaxContext = maxContext;
        WeightBytes = weights;
        KvCacheBytes = kvCache;
        BufferBytes = buffers;
        AvailableBytes = available;
        Warnings = warnings;
        try
        {
            RequiredBytes = checked(weights + kvCache + buffers);
        }
        catch (OverflowException)
        {
            RequiredBytes = long.MaxValue;
        }
    }

    /// <summary>Where the weights come from, for messages.</summary>
    public string Source { get; }

    /// <summary>The format the weight matrices will be held in (the embedding's, when they differ: see
    /// <see cref="Formats"/>).</summary>
    public WeightFormat Format { get; }

    /// <summary>Every format the weight matrices will be held in, most bytes first (several when a checkpoint's tensors
    /// differ in type and are kept as stored, as a GGUF file's Q8_0 and Q4_0 blocks are).</summary>
    public IReadOnlyList<WeightFormat> Formats { get; }

    /// <summary><see cref="Formats"/> for messages: <c>Q4_0-F16 and F32</c>.</summary>
    public string FormatNames => WeightFormat.Describe(Formats);

    /// <summary>Positions a session holds by default.</summary>
    public int MaxContext { get; }

    /// <summary>Bytes of the weight matrices in <see cref="Format"/> (<see cref="long.MaxValue"/> when beyond counting).</summary>
    public long WeightBytes { get; }

    /// <summary>Bytes of one session's KV cache at <see cref="MaxContext"/> positions.</summary>
    public long KvCacheBytes { get; }

    /// <summary>Bytes of the norm weights and a decoder's buffers (activations of a prefill batch, attention scores,
    /// RoPE tables, logits).</summary>
    public long BufferBytes { get; }

    /// <summary>The sum: what loading the model and opening one session takes.</summary>
    public long RequiredBytes { get; }

    /// <summary>The memory available to the process (see <see cref="AvailableMemory"/>), or null when unknown.</summary>
    public long? AvailableBytes { get; }

    /// <summary>Problems that do not stop loading, such as checkpoint layers the config does not use.</summary>
    public IReadOnlyList<string> Warnings { get; }

    /// <summary>Why the model does not fit in <see cref="AvailableBytes"/>, with both figures and what to change;
    /// null when it fits or the memory available is unknown.</summary>
    public string? MemoryShortfall => AvailableBytes is { } available && RequiredBytes > available
        ? $"{Source}: the model needs {Gb(RequiredBytes)} of memory (weights {Gb(WeightBytes)} as {FormatNames}, KV cache {Gb(KvCacheBytes)} " +
          $"for {MaxContext} positions, buffers {Gb(BufferBytes)}), but {Gb(available)} is available; " +
          (_smallerFormats.Count > 0 ? $"quantize the weights (--quant {WeightFormat.ListNames(_smallerFormats)}; GemmaModelOptions.Format) or " : "") +
          "shorten the context (--context N; GemmaModelOptions.MaxContext)"
        : null;

    /// <summary>Works out the plan and runs the checks that refuse a model outright; the memory check is
    /// <see cref="RequireMemory"/>.</summary>
    /// <param name="config">The model's config.</param>
    /// <param name="source">The tensors: only headers are read (synthetic weights are not generated).</param>
    /// <param name="options">Format, context and threads, as for loading.</param>
    /// <param name="tokenizer">The model's tokenizer, when it has one.</param>
    /// <param name="available">The memory available; null reads it (<see cref="AvailableMemory.Read"/>).</param>
    /// <exception cref="TokenizerException">The tokenizer's vocabulary is not the config's.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The options ask for no context or no threads.</exception>
    /// <exception cref="CheckpointException">The KV cache precision cannot store this model's heads (see <see cref="KvCache.Refusal"/>).</exception>
    public static LoadPlan Create(Gemma2Config config, ITensorSource source, GemmaModelOptions? options = null, GemmaTokenizer? tokenizer = null, long? available = null)
    {
        options ??= new GemmaModelOptions();
        int maxContext = options.MaxContext ?? Math.Min(config.MaxPositionEmbeddings, GemmaModel.DefaultMaxContext);
        if (maxContext < 1)
            throw new ArgumentOutOfRangeException(nameof(options), maxContext, "the context must hold at least one token");
        if (options.Threads is < 1)
            throw new ArgumentOutOfRangeException(nameof(options), options.Threads, "threads must be at least 1");
        if (tokenizer != null) RequireMatchingVocabulary(config, tokenizer);
        if (KvCache.Refusal(config, options.KvCache) is { } refusal) throw new CheckpointException($"{source.Description}: {refusal}");

        // Synthetic weights are F32, untied, and exactly what the config asks for; asking for one would generate it.
        bool synthetic = source is SyntheticWeights;
        var format = options.Format ?? (synthetic ? WeightFormat.F32
            : ModelWeights.FormatFor(null, source.DTypeOf(CheckpointNames.Embed) ?? TensorDType.F32, config.HiddenSize));
        bool lmHead = !synthetic && source.DTypeOf(CheckpointNames.LmHead) != null;
        // A checkpoint's tensors may differ in type (a GGUF file's blocks are kept as stored): each matrix counts in its own.
        IReadOnlyList<WeightFormat> formats = [format];
        long weights = Saturate(() =>
        {
            if (synthetic) return ModelWeights.ByteLengthOf(config, format, lmHead);
            (long bytes, formats) = ModelWeights.WeightsOf(config, source, options.Format);
            return bytes;
        });
        var smaller = WeightFormat.All.Where(f => Saturate(() => ModelWeights.ByteLengthOf(config, f, lmHead)) < weights).ToArray();
        long cache = Saturate(() => KvCache.ByteLengthOf(config, maxContext, SpecParser.MaxBatchRows, options.KvCache));
        long buffers = Saturate(() => BufferBytesOf(config, maxContext));
        var warnings = synthetic ? [] : UnusedLayers(config, source);
        return new LoadPlan(source.Description, format, formats, smaller, maxContext, weights, cache, buffers, available ?? AvailableMemory.Read(), warnings);
    }

    /// <summary>Refuses a tokenizer whose vocabulary differs from the config's <c>vocab_size</c>: with more pieces the
    /// model cannot embed some ids, with fewer it samples ids the tokenizer cannot decode.</summary>
    /// <exception cref="TokenizerException">The sizes differ; the message names tokenizer.model and vocab_size.</exception>
    public static void RequireMatchingVocabulary(Gemma2Config config, GemmaTokenizer tokenizer)
    {
        if (tokenizer.VocabSize == config.VocabSize) return;
        throw new TokenizerException(
            $"{tokenizer.SourcePath ?? GemmaModel.TokenizerFileName}: the tokenizer has {tokenizer.VocabSize} pieces, but the config's vocab_size is " +
            $"{config.VocabSize}; a model runs only with its own tokenizer, whose pieces are its vocabulary");
    }

    /// <summary>Throws when the model does not fit (see <see cref="MemoryShortfall"/>).</summary>
    /// <exception cref="CheckpointException">The model needs more memory than is available.</exception>
    public void RequireMemory()
    {
        if (MemoryShortfall is { } message) throw new CheckpointException(message);
    }

    /// <summary>Bytes as decimal gigabytes, as memory is sold: <c>37.2 GB</c>.</summary>
    public static string Gb(long bytes) => (bytes / 1e9).ToString("#,0.0", CultureInfo.InvariantCulture) + " GB";

    private static long Saturate(Func<long> bytes)
    {
        try
        {
            return bytes();
        }
        catch (OverflowException)
        {
            return long.MaxValue;
        }
    }

    /// <summary>Norm weights and the forward pass's float32 buffers: a batch of rows of activations, attention scores
    /// over the context (at most one row per query head, per thread), RoPE tables, a batch of logits.</summary>
    private static long BufferBytesOf(Gemma2Config c, int maxContext)
    {
        long d = c.HiddenSize, inter = c.IntermediateSize, attention = (long)c.NumAttentionHeads * c.HeadDim;
        long qkv = attention + 2L * c.NumKeyValueHeads * c.HeadDim, batch = SpecParser.MaxBatchRows;
        return checked(sizeof(float) * (
            (4L * c.NumHiddenLayers + 1) * d +
            batch * (3 * d + qkv + attention + 3 * inter) +
            ((long)c.NumAttentionHeads + c.HeadDim) * maxContext +
            batch * c.VocabSize));
    }

    /// <summary>A warning for checkpoint layers at or past num_hidden_layers, which nothing reads.</summary>
    private static IReadOnlyList<string> UnusedLayers(Gemma2Config config, ITensorSource source)
    {
        var unused = new SortedSet<int>();
        int tensors = 0;
        foreach (string name in source.TensorNames)
        {
            if (!CheckpointNames.TryParseLayer(name, out int layer) || layer < config.NumHiddenLayers) continue;
            unused.Add(layer);
            tensors++;
        }
        if (unused.Count == 0) return [];
        string layers = unused.Count == 1 ? $"layer {unused.Min}"
            : unused.Max - unused.Min + 1 == unused.Count ? $"layers {unused.Min}–{unused.Max}"
            : $"{unused.Count} layers from {unused.Min} to {unused.Max}";
        return [$"{source.Description}: {layers} ({tensors} tensors) unused: the config has num_hidden_layers {config.NumHiddenLayers}"];
    }
}
