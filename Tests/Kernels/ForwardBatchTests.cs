using GemmaGen.Kernels;
using GemmaGen.Tests.Golden;
using GemmaGen.Tests.Infrastructure;

namespace GemmaGen.Tests.Kernels;

/// <summary>
/// One forward pass over rows of several sequences (the demo model, compiled and reference): a batch that mixes one
/// sequence's prompt with other sequences' decoding steps gives every row the logits it gets when each sequence runs
/// alone, and malformed batches are refused before anything runs.
/// </summary>
[IsaSensitive]
public sealed class ForwardBatchTests : IDisposable
{
    private readonly Checkpoint _checkpoint = Checkpoint.Open(GoldenCheckpoint.FixturePath("gemma2-demo"));
    private readonly ModelWeights _weights;
    private readonly WorkerPool _pool = new(2);

    public ForwardBatchTests() => _weights = ModelWeights.Load(_checkpoint.Config, _checkpoint);

    public void Dispose()
    {
        _pool.Dispose();
        _weights.Dispose();
        _checkpoint.Dispose();
    }

    private int V => _weights.Config.VocabSize;

    private static int[] Tokens(int count, int seed) => Enumerable.Range(0, count).Select(i => 2 + (i * 7919 + seed * 104729) % 4000).ToArray();

    /// <summary>Each sequence alone through a one-sequence decoder: logits of every position.</summary>
    private float[] Alone(Gemma2Forward model, int[] tokens)
    {
        var decoder = new Gemma2Decoder(model, 256);
        var logits = new float[tokens.Length * V];
        for (int i = 0; i < tokens.Length; i++) decoder.Step(tokens[i], i, logits.AsSpan(i * V, V));
        return logits;
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void AMixedBatchGivesEveryRowItsLogitsAlone(bool compiled)
    {
        var model = Decoders.CreateModel(_weights, compiled, _pool, 256);
        // a and b are decoding (they have 150 and 20 positions, more than the window of 128 for a); c starts with a
        // prompt of 30 tokens in the same passes.
        int[] a = Tokens(153, 1), b = Tokens(23, 2), c = Tokens(30, 3);
        float[] aloneA = Alone(model, a), aloneB = Alone(model, b), aloneC = Alone(model, c);
        var sa = model.CreateSequence(256);
        var sb = model.CreateSequence(256);
        var sc = model.CreateSequence(256);
        var batch = new ForwardBatch(model.MaxRows);
        Prefill(model, batch, sa, a[..150]);
        Prefill(model, batch, sb, b[..20]);

        var logits = new float[6 * V];
        for (int step = 0; step < 3; step++)
        {
            batch.Clear();
            batch.Add(sa, a[150 + step], 150 + step, logits: true);
            // c's prompt in three passes of ten rows, the last row of each asking for logits
            for (int i = 0; i < 10; i++) batch.Add(sc, c[step * 10 + i], step * 10 + i, logits: i == 9);
            batch.Add(sb, b[20 + step], 20 + step, logits: true);
            model.Forward(batch, logits.AsSpan(0, 3 * V));

            AssertClose(aloneA.AsSpan((150 + step) * V, V), logits.AsSpan(0, V), $"a at {150 + step}");
            AssertClose(aloneC.AsSpan((step * 10 + 9) * V, V), logits.AsSpan(V, V), $"c at {step * 10 + 9}");
            AssertClose(aloneB.AsSpan((20 + step) * V, V), logits.AsSpan(2 * V, V), $"b at {20 + step}");
        }
        Assert.Equal((153, 23, 30), (sa.Length, sb.Length, sc.Length));
    }

    private void Prefill(Gemma2Forward model, ForwardBatch batch, Sequence sequence, int[] tokens)
    {
        for (int done = 0; done < tokens.Length; done += model.MaxRows)
        {
            batch.Clear();
            for (int i = done; i < Math.Min(tokens.Length, done + model.MaxRows); i++) batch.Add(sequence, tokens[i], i, logits: false);
            model.Forward(batch, default);
        }
    }

    /// <summary>Matrix-matrix and matrix-vector kernels sum in different orders: the rows agree to float32 rounding.</summary>
    private static void AssertClose(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual, string what)
    {
        double worst = 0, scale = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            worst = Math.Max(worst, Math.Abs(expected[i] - actual[i]));
            scale = Math.Max(scale, Math.Abs(expected[i]));
        }
        Assert.True(worst <= 1e-4 * scale, $"{what}: logits differ by {worst} (largest {scale})");
    }

    [Fact]
    public void MalformedBatchesAreRefusedBeforeAnythingRuns()
    {
        var model = new ReferenceForward(_weights, 64, _pool);
        var other = new ReferenceForward(_weights, 64, _pool);
        var s = model.CreateSequence(64);
        var batch = new ForwardBatch(model.MaxRows + 1);

        void Refused(string expected, Action fill, int logitRows = 0)
        {
            batch.Clear();
            fill();
            var e = Assert.ThrowsAny<Exception>(() => model.Forward(batch, new float[logitRows * V]));
            Assert.Contains(expected, e.Message);
            Assert.Equal(0, s.Length);
        }

        Refused("next position is 0", () => batch.Add(s, 5, 1, false));
        Refused("must be consecutive", () =>
        {
            batch.Add(s, 5, 0, false);
            batch.Add(s, 5, 2, false);
        });
        Refused("another model", () => batch.Add(other.CreateSequence(64), 5, 0, false));
        Refused("outside the vocabulary", () => batch.Add(s, V, 0, false));
        Refused($"at most {model.MaxRows}", () =>
        {
            for (int i = 0; i <= model.MaxRows; i++) batch.Add(s, 5, i, false);
        });
        Refused("logits must hold 1", () => batch.Add(s, 5, 0, true), logitRows: 2);
        Refused("context is full", () =>
        {
            var small = model.CreateSequence(2);
            batch.Add(small, 5, 0, false);
            batch.Add(small, 5, 1, false);
            batch.Add(small, 5, 2, false);
        });
    }

    [Fact]
    public void ALocalLayerRingKeepsWhatARewindNeeds()
    {
        // Window 128, passes of up to 64 rows: a local layer's ring has 191 slots.
        var model = new ReferenceForward(_weights, 256, _pool);
        var s = model.CreateSequence(256);
        Assert.Equal(128 + model.MaxRows - 1, s.Cache.LocalSlots);
        var batch = new ForwardBatch(model.MaxRows);
        Prefill(model, batch, s, Tokens(200, 4));

        // Continuing from p needs keys p − 127 .. p − 1; the ring holds positions 9 .. 199.
        Assert.True(s.CanRewindTo(200));
        Assert.True(s.CanRewindTo(136));
        Assert.False(s.CanRewindTo(135));
        Assert.False(s.CanRewindTo(0));
        Assert.False(s.CanRewindTo(201));
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => s.RewindTo(100));
        Assert.Contains("from 136 on", e.Message);
        s.RewindTo(150);
        Assert.Equal(150, s.Length);
    }

    [Fact]
    public void ARewoundSequenceGivesWhatItGaveBefore()
    {
        var model = Decoders.CreateModel(_weights, compiled: true, _pool, 256);
        int[] tokens = Tokens(180, 5);
        float[] alone = Alone(model, tokens);
        var decoder = new Gemma2Decoder(model, 256);
        decoder.Forward(tokens, 0, default);
        var logits = new float[V];

        decoder.Sequence.RewindTo(170);
        decoder.Step(tokens[170], 170, logits);

        AssertClose(alone.AsSpan(170 * V, V), logits, "after rewinding to 170");
    }
}

/// <summary>Decoding steps of several sequences together allocate nothing, on any thread.</summary>
[Collection(AllocationCountingCollection.Name)]
public sealed class ForwardBatchAllocationTests
{
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void ABatchedDecodingStepAllocatesNothing(bool compiled)
    {
        using var checkpoint = Checkpoint.Open(GoldenCheckpoint.FixturePath("gemma2-demo"));
        using var weights = ModelWeights.Load(checkpoint.Config, checkpoint);
        using var pool = new WorkerPool(2);
        var model = Decoders.CreateModel(weights, compiled, pool, 128);
        var sequences = Enumerable.Range(0, 4).Select(_ => model.CreateSequence(128)).ToArray();
        var batch = new ForwardBatch(model.MaxRows);
        int v = weights.Config.VocabSize;
        var logits = new float[4 * v];
        void Step()
        {
            batch.Clear();
            for (int s = 0; s < sequences.Length; s++) batch.Add(sequences[s], 10 + s, sequences[s].Length, logits: true);
            model.Forward(batch, logits);
        }

        Step();
        var windows = new AllocationWindows();
        windows.Mark();
        for (int window = 0; window < AllocationWindows.Count; window++)
        {
            Step();
            windows.Mark();
        }

        windows.AssertOneWindowAllocatedNothing("a step of 4 sequences");
    }
}
