using System.Numerics.Tensors;
using GemmaGen.Specs;

namespace GemmaGen.Kernels;

/// <summary>
/// The runtime-shape Gemma 2 forward pass, written plainly over <see cref="TensorPrimitives"/>, one row at a time:
/// the oracle in tests, the fallback for checkpoints no compiled spec matches, and the baseline of every benchmark.
/// </summary>
public sealed unsafe class ReferenceForward : Gemma2Forward
{
    private readonly MatVecJob _matVec = new();
    private readonly float* _x, _u, _qkv, _attention, _branch, _gateUp, _mlp, _kvRow;

    /// <summary>A model over <paramref name="weights"/> with its own buffers, RoPE tables for <paramref name="maxContext"/>
    /// positions at first, run by <paramref name="pool"/>.</summary>
    public ReferenceForward(ModelWeights weights, int maxContext, WorkerPool pool)
        : base(weights, maxContext, pool, SpecParser.MaxBatchRows)
    {
        var c = Config;
        _x = Allocate(c.HiddenSize);
        _u = Allocate(c.HiddenSize);
        _qkv = Allocate((c.NumAttentionHeads + 2 * c.NumKeyValueHeads) * c.HeadDim);
        _attention = Allocate(c.NumAttentionHeads * c.HeadDim);
        _branch = Allocate(c.HiddenSize);
        _gateUp = Allocate(2 * c.IntermediateSize);
        _mlp = Allocate(c.IntermediateSize);
        _kvRow = Allocate(c.HeadDim);
    }

    /// <summary><c>reference</c>.</summary>
    public override string ExecutionPath => "reference";

    /// <inheritdoc/>
    protected override void ForwardCore(ForwardBatch batch, float* logits)
    {
        int v = Config.VocabSize;
        for (int t = 0; t < batch.Count; t++)
        {
            bool wanted = batch.WantsLogits(t);
            Row(batch, t, wanted ? logits : null);
            if (wanted) logits += v;
        }
    }

    /// <summary>One row through every layer; <paramref name="logits"/> is null when not wanted.</summary>
    private void Row(ForwardBatch batch, int row, float* logits)
    {
        int token = batch.Token(row), position = batch.Position(row);
        var sequence = batch.Sequence(row);
        var c = Config;
        int dModel = c.HiddenSize, heads = c.NumAttentionHeads, kvHeads = c.NumKeyValueHeads, d = c.HeadDim;
        int inter = c.IntermediateSize;
        float eps = (float)c.RmsNormEps;
        var x = new Span<float>(_x, dModel);
        var u = new Span<float>(_u, dModel);
        var branch = new Span<float>(_branch, dModel);
        var qkv = new Span<float>(_qkv, (heads + 2 * kvHeads) * d);

        Weights.Embed.ReadRow(token, x);
        TensorPrimitives.Multiply(x, (float)Math.Sqrt(dModel), x);
        ObserveEmbed(batch, row, _x);

        for (int l = 0; l < Weights.Layers.Length; l++)
        {
            var w = Weights.Layers[l];
            Activations.RmsNorm(x, w.InputNorm, eps, u);
            MatVec(w.Qkv, _u, _qkv);
            for (int h = 0; h < heads; h++) Rope.Apply(qkv.Slice(h * d, d), position);
            for (int h = 0; h < kvHeads; h++) Rope.Apply(qkv.Slice((heads + h) * d, d), position);
            Attend(sequence, l, position);
            MatVec(w.O, _attention, _branch);
            Activations.RmsNorm(branch, w.PostAttentionNorm, eps, branch);
            TensorPrimitives.Add(x, branch, x);

            Activations.RmsNorm(x, w.PreFeedforwardNorm, eps, u);
            MatVec(w.GateUp, _u, _gateUp);
            Activations.GeluTanhGated(_gateUp, _mlp, inter);
            MatVec(w.Down, _mlp, _branch);
            Activations.RmsNorm(branch, w.PostFeedforwardNorm, eps, branch);
            TensorPrimitives.Add(x, branch, x);
            ObserveLayer(l, batch, row, _x);
        }

        Activations.RmsNorm(x, Weights.FinalNorm, eps, u);
        ObserveFinalNorm(batch, row, _u);
        if (logits == null) return;
        MatVec(Weights.Output, _u, logits);
        Activations.SoftCap(new Span<float>(logits, c.VocabSize), (float)(c.FinalLogitSoftcapping ?? 0));
    }

    /// <summary>Stores this position's k and v in <paramref name="sequence"/>'s cache, then attends every query head over
    /// the visible keys.</summary>
    private void Attend(Sequence sequence, int layer, int position)
    {
        var cache = sequence.Cache;
        var c = Config;
        int heads = c.NumAttentionHeads, kvHeads = c.NumKeyValueHeads, d = c.HeadDim;
        int slots = cache.Slots[layer], slot = cache.Slot(layer, position);
        float* scoreRows = ScoreScratch(sequence.MaxContext);
        for (int h = 0; h < kvHeads; h++)
        {
            cache.Store(layer, key: true, ((long)h * slots + slot) * d, new ReadOnlySpan<float>(_qkv + (heads + h) * d, d));
            cache.Store(layer, key: false, ((long)h * slots + slot) * d, new ReadOnlySpan<float>(_qkv + (heads + kvHeads + h) * d, d));
        }
        var row = new Span<float>(_kvRow, d);

        // A query at p sees keys p-W+1 .. p on local layers, 0 .. p on global ones.
        int first = LayerSchedule.IsLocal(layer) ? Math.Max(0, position - c.SlidingWindow + 1) : 0;
        int count = position - first + 1;
        float scale = (float)(1.0 / Math.Sqrt(c.QueryPreAttnScalar));
        float cap = (float)(c.AttnLogitSoftcapping ?? 0);
        int group = heads / kvHeads;
        for (int h = 0; h < heads; h++)
        {
            int kv = h / group;
            var q = new ReadOnlySpan<float>(_qkv + h * d, d);
            var scores = new Span<float>(scoreRows, count);
            for (int j = 0; j < count; j++)
            {
                int s = (first + j) % slots;
                cache.Load(layer, key: true, ((long)kv * slots + s) * d, row);
                scores[j] = TensorPrimitives.Dot(q, row);
            }
            Activations.SoftCap(scores, cap, scale);
            Activations.Softmax(scores);
            var output = new Span<float>(_attention + h * d, d);
            output.Clear();
            for (int j = 0; j < count; j++)
            {
                int s = (first + j) % slots;
                cache.Load(layer, key: false, ((long)kv * slots + s) * d, row);
                TensorPrimitives.MultiplyAdd(row, scores[j], output, output);
            }
        }
    }

    private void MatVec(WeightMatrix matrix, float* x, float* y)
    {
        _matVec.Matrix = matrix;
        _matVec.X = x;
        _matVec.Y = y;
        Pool.Run(_matVec, matrix.Rows, grain: 16);
    }

    /// <summary>y[r] = W[r]·x: each row widened to float32, then <see cref="TensorPrimitives.Dot(ReadOnlySpan{float}, ReadOnlySpan{float})"/>.</summary>
    private sealed class MatVecJob : IRowJob
    {
        [ThreadStatic]
        private static float[]? t_row;

        public WeightMatrix Matrix = null!;
        public float* X;
        public float* Y;

        public void Execute(int start, int end)
        {
            int cols = Matrix.Cols;
            var x = new ReadOnlySpan<float>(X, cols);
            var row = t_row is { } existing && existing.Length >= cols ? existing : t_row = new float[cols];
            for (int r = start; r < end; r++)
            {
                Matrix.ReadRow(r, row);
                Y[r] = TensorPrimitives.Dot(row.AsSpan(0, cols), x);
            }
        }
    }
}
