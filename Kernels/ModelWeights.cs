using GemmaGen.Specs;

namespace GemmaGen.Kernels;

/// <summary>The weights of one decoder layer, in the layout the kernels stream.</summary>
public sealed class LayerWeights : IDisposable
{
    /// <summary>input_layernorm [D] as its multiplier g = float32(1 + w) (see <see cref="ModelWeights.Load"/>); every norm
    /// vector is held this way.</summary>
    public required float[] InputNorm { get; init; }

    /// <summary>q_proj, k_proj and v_proj stacked: [(H + 2K)·d, D]; rows 0..H·d-1 are q, then k, then v.</summary>
    public required WeightMatrix Qkv { get; init; }

    /// <summary>o_proj [D, H·d].</summary>
    public required WeightMatrix O { get; init; }

    /// <summary>post_attention_layernorm [D].</summary>
    public required float[] PostAttentionNorm { get; init; }

    /// <summary>pre_feedforward_layernorm [D].</summary>
    public required float[] PreFeedforwardNorm { get; init; }

    /// <summary>gate_proj and up_proj interleaved by row: [2I, D]; row 2i is gate row i, row 2i+1 is up row i,
    /// so one pass computes gelu(gate)·up for each output.</summary>
    public required WeightMatrix GateUp { get; init; }

    /// <summary>down_proj [D, I].</summary>
    public required WeightMatrix Down { get; init; }

    /// <summary>post_feedforward_layernorm [D].</summary>
    public required float[] PostFeedforwardNorm { get; init; }

    /// <summary>The layer's four matrices: <see cref="Qkv"/>, <see cref="O"/>, <see cref="GateUp"/>, <see cref="Down"/>.</summary>
    public IEnumerable<WeightMatrix> Matrices => [Qkv, O, GateUp, Down];

    /// <summary>Frees the layer's matrices.</summary>
    public void Dispose()
    {
        foreach (var m in Matrices) m.Dispose();
    }
}

/// <summary>All the weights of a Gemma 2 model, checked against its config and packed for the kernels.</summary>
public sealed class ModelWeights : IDisposable
{
    private ModelWeights(Gemma2Config config, WeightMatrix embed, WeightMatrix? lmHead, float[] finalNorm, LayerWeights[] layers)
    {
        Config = config;
        Embed = embed;
        LmHead = lmHead;
        FinalNorm = finalNorm;
        Layers = layers;
    }

    /// <summary>The config the weights were checked against.</summary>
    public Gemma2Config Config { get; }

    /// <summary>embed_tokens [V, D], unscaled (the embedding multiplies by sqrt(D) at run time).</summary>
    public WeightMatrix Embed { get; }

    /// <summary>lm_head [V, D] when the checkpoint has one; otherwise the head is tied to <see cref="Embed"/>.</summary>
    public WeightMatrix? LmHead { get; }

    /// <summary>The matrix the logits are computed with: lm_head if present, else the tied embedding.</summary>
    public WeightMatrix Output => LmHead ?? Embed;

    /// <summary>model.norm [D].</summary>
    public float[] FinalNorm { get; }

    /// <summary>The weights of each layer, in order.</summary>
    public LayerWeights[] Layers { get; }

    /// <summary>How every matrix's products round their activations where its format offers a choice (the Q4_0 blocks):
    /// <see cref="Kernels.DecodeActivations.Int16"/> unless set. Set it before running the model, not during a pass.</summary>
    public DecodeActivations DecodeActivations
    {
        get;
        set
        {
            field = value;
            foreach (var m in Matrices) m.DecodeActivations = value;
        }
    }

    /// <summary>
    /// Bytes of weight data <see cref="Load"/> allocates for <paramref name="config"/> in <paramref name="format"/> (the
    /// matrices; a quantized format keeps a matrix whose width is not a multiple of 32 in BF16), with a separate
    /// lm_head when <paramref name="lmHead"/>: what <see cref="ByteLength"/> will be, known before loading.
    /// </summary>
    /// <exception cref="OverflowException">The total exceeds <see cref="long.MaxValue"/> (an absurd config).</exception>
    public static long ByteLengthOf(Gemma2Config config, WeightFormat format, bool lmHead)
    {
        int d = config.HiddenSize, hd = config.HeadDim, h = config.NumAttentionHeads, k = config.NumKeyValueHeads;
        int inter = config.IntermediateSize, v = config.VocabSize;
        long Bytes(int rows, int cols) =>
            WeightMatrix.ByteLengthOf(WeightMatrix.CanStore(format, cols) ? format : WeightFormat.BF16, rows, cols);
        long layer = Bytes((h + 2 * k) * hd, d) + Bytes(d, h * hd) + Bytes(2 * inter, d) + Bytes(d, inter);
        return checked(Bytes(v, d) * (lmHead ? 2 : 1) + config.NumHiddenLayers * layer);
    }

    /// <summary>
    /// Bytes of weight data <see cref="Load"/> allocates for <paramref name="config"/> from <paramref name="source"/> in
    /// <paramref name="format"/>, null keeping each tensor's own (<see cref="FormatFor"/>), as the source's tensor
    /// types say (<see cref="ITensorSource.DTypeOf"/>; nothing is read or made). A missing tensor counts in the
    /// embedding's type, and every layer after the last the source holds as a layer of missing tensors (so a config of
    /// absurdly many layers is counted, not walked).
    /// </summary>
    /// <exception cref="OverflowException">The total exceeds <see cref="long.MaxValue"/> (an absurd config).</exception>
    public static long ByteLengthOf(Gemma2Config config, ITensorSource source, WeightFormat? format) => WeightsOf(config, source, format).Bytes;

    /// <summary><see cref="ByteLengthOf(Gemma2Config, ITensorSource, WeightFormat?)"/> and the formats the matrices will be
    /// held in (several when the checkpoint's tensors differ in type: a GGUF file's blocks are kept as stored), most
    /// bytes first.</summary>
    /// <exception cref="OverflowException">The total exceeds <see cref="long.MaxValue"/> (an absurd config).</exception>
    public static (long Bytes, IReadOnlyList<WeightFormat> Formats) WeightsOf(Gemma2Config config, ITensorSource source, WeightFormat? format)
    {
        int d = config.HiddenSize, hd = config.HeadDim, h = config.NumAttentionHeads, k = config.NumKeyValueHeads;
        int inter = config.IntermediateSize, v = config.VocabSize;
        var fallback = source.DTypeOf(CheckpointNames.Embed) ?? TensorDType.F32;
        var byFormat = new Dictionary<WeightFormat, long>();
        // As Loader.Stacked holds them (WeightMatrix.Stack); each format's share, which only orders them, by its parts.
        long Bytes(int cols, long count, bool interleave, params (string? Name, int Rows)[] parts)
        {
            var formats = StackFormats(format, parts.Select(p => (p.Name == null ? null : source.DTypeOf(p.Name)) ?? fallback).ToArray(), cols, interleave);
            for (int i = 0; i < parts.Length && count > 0; i++)
                byFormat[formats[i]] = checked(byFormat.GetValueOrDefault(formats[i]) + WeightMatrix.ByteLengthOf(formats[i], parts[i].Rows, cols) * count);
            return checked(WeightMatrix.StackByteLength(cols, parts.Select((p, i) => (p.Name ?? "", p.Rows, formats[i])).ToArray()) * count);
        }
        long Layer(LayerNames? n, long count) => checked(
            Bytes(d, count, false, (n?.QProj, h * hd), (n?.KProj, k * hd), (n?.VProj, k * hd)) + Bytes(h * hd, count, false, (n?.OProj, d)) +
            Bytes(d, count, true, (n?.GateProj, inter), (n?.UpProj, inter)) + Bytes(inter, count, false, (n?.DownProj, d)));
        long total = Bytes(d, 1, false, (CheckpointNames.Embed, v));
        if (source.DTypeOf(CheckpointNames.LmHead) != null) total = checked(total + Bytes(d, 1, false, (CheckpointNames.LmHead, v)));
        int l = 0;
        for (; l < config.NumHiddenLayers; l++)
        {
            var n = CheckpointNames.Layer(l);
            if (new[] { n.QProj, n.KProj, n.VProj, n.OProj, n.GateProj, n.UpProj, n.DownProj }.All(t => source.DTypeOf(t) == null)) break;
            total = checked(total + Layer(n, 1));
        }
        total = checked(total + Layer(null, config.NumHiddenLayers - l));
        return (total, byFormat.OrderByDescending(f => f.Value).Select(f => f.Key).ToArray());
    }

    /// <summary>
    /// The format a matrix of <paramref name="cols"/> columns from a tensor of <paramref name="dtype"/> is held in:
    /// <paramref name="format"/> when given; else the tensor's own encoding: BF16 as BF16, a block encoding in its
    /// <see cref="WeightFormat.AsStored"/> format (GGUF's Q8_0 and Q4_0 blocks as stored), anything else (F32, F16) as
    /// F32. A block format needs a width that is a multiple of 32 (its block size): a matrix of any other width stays
    /// BF16.
    /// </summary>
    public static WeightFormat FormatFor(WeightFormat? format, TensorDType dtype, int cols)
    {
        var chosen = format ?? WeightFormat.ForStored(dtype) ?? (dtype == TensorDType.BF16 ? WeightFormat.BF16 : WeightFormat.F32);
        return WeightMatrix.CanStore(chosen, cols) ? chosen : WeightFormat.BF16;
    }

    /// <summary>The formats the parts of a matrix stacked from tensors of <paramref name="dtypes"/> (q/k/v, gate/up) are
    /// held in: each part's <see cref="FormatFor"/>. When they differ, a stack by rows keeps each part in its own (a
    /// <see cref="WeightMatrix.Stack"/>: a GGUF <c>*_K_M</c> layer's Q6_K attn_v beside Q4_K q and k); an interleaved
    /// stack (<paramref name="interleave"/>, gate/up, whose rows alternate between the parts) holds them all as F32,
    /// each part widened to float32 exactly.</summary>
    private static WeightFormat[] StackFormats(WeightFormat? format, IReadOnlyList<TensorDType> dtypes, int cols, bool interleave)
    {
        var formats = dtypes.Select(t => FormatFor(format, t, cols)).ToArray();
        if (!interleave || formats.Distinct().Count() == 1) return formats;
        return formats.Select(_ => WeightFormat.F32).ToArray();
    }

    /// <summary>Every weight matrix: the embedding, the lm_head when there is one, and each layer's.</summary>
    public IEnumerable<WeightMatrix> Matrices =>
        [Embed, .. LmHead is { } head ? [head] : Array.Empty<WeightMatrix>(), .. Layers.SelectMany(l => l.Matrices)];

    /// <summary>Bytes of weight data held.</summary>
    public long ByteLength => Matrices.Sum(m => m.ByteLength);

    /// <summary>
    /// Reads every tensor the config calls for from <paramref name="source"/>, checks its shape and packs it.
    /// </summary>
    /// <param name="config">The model's config: which tensors to read, and their shapes.</param>
    /// <param name="source">The checkpoint (or synthetic weights) to read them from.</param>
    /// <param name="format">Storage format of the matrices; null keeps the checkpoint's (F16 becomes F32). Q8_0 and Q4_0
    /// quantize every matrix, the embedding (also the tied output matrix) included, except one whose width is not a
    /// multiple of 32, which is stored as BF16. Norm vectors are always float32, held as the multiplier 1 + w
    /// (computed in float32, as Hugging Face does; a source whose <see cref="ITensorSource.NormsIncludeOne"/> is true
    /// stores that multiplier and it is kept as stored).</param>
    /// <param name="progress">Called after each tensor with the fraction of the layers loaded so far (0 to 1).</param>
    /// <param name="checkFinite">Scan every tensor as stored for NaN and infinite values (see <see cref="FiniteCheck"/>);
    /// false skips the scan.</param>
    /// <exception cref="WeightLoadException">A tensor is missing, misshapen, or of another dtype than its siblings, or
    /// (with <paramref name="checkFinite"/>) holds a NaN or infinite value.</exception>
    public static ModelWeights Load(Gemma2Config config, ITensorSource source, WeightFormat? format = null, Action<double>? progress = null,
        bool checkFinite = true)
    {
        int d = config.HiddenSize, hd = config.HeadDim, h = config.NumAttentionHeads, k = config.NumKeyValueHeads;
        int inter = config.IntermediateSize, v = config.VocabSize;
        var loader = new Loader(source, format, checkFinite);
        var layers = new LayerWeights[config.NumHiddenLayers];
        try
        {
            var embed = loader.Matrix(CheckpointNames.Embed, v, d);
            WeightMatrix? lmHead = source.TryGetTensor(CheckpointNames.LmHead, out _) ? loader.Matrix(CheckpointNames.LmHead, v, d) : null;
            var finalNorm = loader.Vector(CheckpointNames.FinalNorm, d);
            for (int l = 0; l < layers.Length; l++)
            {
                progress?.Invoke((double)l / layers.Length);
                var n = CheckpointNames.Layer(l);
                layers[l] = new LayerWeights
                {
                    InputNorm = loader.Vector(n.InputNorm, d),
                    Qkv = loader.Stacked([(n.QProj, h * hd), (n.KProj, k * hd), (n.VProj, k * hd)], d, interleave: false),
                    O = loader.Matrix(n.OProj, d, h * hd),
                    PostAttentionNorm = loader.Vector(n.PostAttentionNorm, d),
                    PreFeedforwardNorm = loader.Vector(n.PreFeedforwardNorm, d),
                    GateUp = loader.Stacked([(n.GateProj, inter), (n.UpProj, inter)], d, interleave: true),
                    Down = loader.Matrix(n.DownProj, d, inter),
                    PostFeedforwardNorm = loader.Vector(n.PostFeedforwardNorm, d),
                };
            }
            progress?.Invoke(1);
            return new ModelWeights(config, embed, lmHead, finalNorm, layers);
        }
        catch
        {
            loader.DisposeAll();
            throw;
        }
    }

    /// <summary>Frees every matrix.</summary>
    public void Dispose()
    {
        Embed.Dispose();
        LmHead?.Dispose();
        foreach (var layer in Layers) layer?.Dispose();
    }

    private sealed unsafe class Loader(ITensorSource source, WeightFormat? format, bool checkFinite)
    {
        private readonly List<WeightMatrix> _made = [];

        public void DisposeAll()
        {
            foreach (var m in _made) m.Dispose();
        }

        private TensorView Get(string name, params long[] shape)
        {
            if (!source.TryGetTensor(name, out var t))
                throw new WeightLoadException($"{source.Description}: tensor '{name}' is missing (expected shape [{string.Join(", ", shape)}])");
            if (!t.Shape.AsSpan().SequenceEqual(shape))
                throw new WeightLoadException($"{t.Origin}: tensor '{name}' has shape [{string.Join(", ", t.Shape)}], expected [{string.Join(", ", shape)}]");
            long count = t.ElementCount;
            if (checkFinite && !FiniteCheck.AllFinite(t.DType, t.Data, count)) throw NotFinite(t, count);
            return t;
        }

        /// <summary>Names the tensor, how many values are not finite, and where the first is.</summary>
        private static WeightLoadException NotFinite(in TensorView t, long count)
        {
            var (found, first) = FiniteCheck.Find(t.DType, t.Data, count);
            string kind = FiniteCheck.Describe(FiniteCheck.ElementAt(t.DType, t.Data, first));
            long cols = t.Shape[^1];
            string where = t.Shape.Length == 1 ? $"index {first}" : $"row {first / cols}, column {first % cols}";
            if (TensorView.IsBlocked(t.DType))
            {
                return new WeightLoadException(
                    $"{t.Origin}: tensor '{t.Name}' has {found} non-finite {t.DType} block scale{(found == 1 ? "" : "s")} (first {kind}, the block at {where})");
            }
            return new WeightLoadException(
                $"{t.Origin}: tensor '{t.Name}' has {found} non-finite value{(found == 1 ? "" : "s")} (first {kind} at {where})");
        }

        public float[] Vector(string name, int length)
        {
            var t = Get(name, length);
            var result = new float[length];
            t.ReadFloats(0, result);
            source.Release(name);
            // Hugging Face applies (1 + w) computed in float32; a source that stores 1 + w (GGUF) is used as stored.
            if (!source.NormsIncludeOne)
            {
                for (int i = 0; i < result.Length; i++) result[i] = 1f + result[i];
            }
            return result;
        }

        private WeightFormat FormatFor(TensorDType dtype, int cols) => ModelWeights.FormatFor(format, dtype, cols);

        public WeightMatrix Matrix(string name, int rows, int cols) => Stacked([(name, rows)], cols, interleave: false);

        /// <summary>Stacks tensors of equal width by rows; with <paramref name="interleave"/> (equal heights), row i of
        /// each part becomes consecutive rows.</summary>
        public WeightMatrix Stacked((string Name, int Rows)[] parts, int cols, bool interleave)
        {
            var views = parts.Select(p => Get(p.Name, p.Rows, cols)).ToArray();
            var formats = StackFormats(format, views.Select(t => t.DType).ToArray(), cols, interleave);
            var m = WeightMatrix.Stack(string.Join(" + ", parts.Select(p => p.Name)), cols, parts.Select((p, i) => (p.Name, p.Rows, formats[i])).ToArray());
            _made.Add(m);
            var row = new float[cols];
            int target = 0;
            if (interleave)
            {
                for (int r = 0; r < parts[0].Rows; r++)
                    foreach (var view in views) Copy(view, r, cols, m, target++, row);
            }
            else
            {
                for (int part = 0; part < views.Length; part++)
                    for (int r = 0; r < parts[part].Rows; r++) Copy(views[part], r, cols, m, target++, row);
            }
            foreach (var part in parts) source.Release(part.Name);
            return m;
        }

        private static unsafe void Copy(in TensorView view, int sourceRow, int cols, WeightMatrix m, int targetRow, float[] scratch)
        {
            int rowBytes = checked((int)TensorView.RowBytes(view.DType, cols));
            if (m.TryCopyRow(targetRow, view.DType, new ReadOnlySpan<byte>(view.Data + (long)sourceRow * rowBytes, rowBytes))) return;
            view.ReadFloats((long)sourceRow * cols, scratch);
            m.WriteRow(targetRow, scratch);
        }
    }
}
