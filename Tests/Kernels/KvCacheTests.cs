using GemmaGen.Kernels;
using GemmaGen.Specs;
using GemmaGen.Tests.Infrastructure;
using Xunit;

namespace GemmaGen.Tests.Kernels;

/// <summary><see cref="KvCache"/> slot counts, ring-buffer slots and storage layout.</summary>
[IsaSensitive]
public sealed unsafe class KvCacheTests
{
    private const int Window = 4;
    private const int KvHeads = 2;
    private const int HeadDim = 8;

    private static KvCache Create(int maxContext, int layers = 5) =>
        new(KernelTestData.Config(layers: layers, heads: 4, kvHeads: KvHeads, headDim: HeadDim, slidingWindow: Window), maxContext);

    [Theory]
    [InlineData(0, true)]
    [InlineData(1, false)]
    [InlineData(2, true)]
    [InlineData(3, false)]
    [InlineData(40, true)]
    [InlineData(41, false)]
    public void EvenLayersAreLocal(int layer, bool local)
    {
        Assert.Equal(local, LayerSchedule.IsLocal(layer));
    }

    [Theory]
    [InlineData(10, 4)] // context longer than the window: a ring of W slots
    [InlineData(4, 4)]
    [InlineData(3, 3)] // context shorter than the window: no more slots than positions
    public void LocalLayersKeepTheWindowGlobalLayersTheContext(int maxContext, int localSlots)
    {
        var cache = Create(maxContext);

        Assert.Equal([localSlots, maxContext, localSlots, maxContext, localSlots], cache.Slots);
        Assert.Equal(maxContext, cache.MaxContext);
        Assert.Equal(KvHeads, cache.KvHeads);
        Assert.Equal(HeadDim, cache.HeadDim);
        Assert.Equal(2L * sizeof(float) * KvHeads * HeadDim * (3 * localSlots + 2 * maxContext), cache.ByteLength);
    }

    [Fact]
    public void LocalSlotsAreARingOfTheWindow()
    {
        var cache = Create(maxContext: 100);

        for (int p = 0; p < 100; p++) Assert.Equal(p % Window, cache.Slot(0, p));
        for (int p = 0; p + Window < 100; p++) Assert.Equal(cache.Slot(2, p), cache.Slot(2, p + Window));
        for (int p = 0; p + Window <= 100; p++)
        {
            // The W positions a query at p + W - 1 sees occupy W distinct slots.
            var window = Enumerable.Range(p, Window).Select(q => cache.Slot(4, q)).Distinct().Count();
            Assert.Equal(Window, window);
        }
    }

    [Fact]
    public void GlobalSlotIsThePosition()
    {
        var cache = Create(maxContext: 100);

        for (int p = 0; p < 100; p++)
        {
            Assert.Equal(p, cache.Slot(1, p));
            Assert.Equal(p, cache.Slot(3, p));
        }
    }

    [Fact]
    public void EveryLayerHasItsOwnKeysAndValues()
    {
        var cache = Create(maxContext: 10);
        int layers = cache.Slots.Length;

        // Element [h, slot, i] of layer l's keys is (h·Slots + slot)·d + i; fill each array's full extent with
        // its own marker, then check that no write landed in another.
        for (int l = 0; l < layers; l++)
        {
            int length = KvHeads * cache.Slots[l] * HeadDim;
            new Span<float>(cache.Keys(l), length).Fill(2 * l);
            new Span<float>(cache.Values(l), length).Fill(2 * l + 1);
        }
        for (int l = 0; l < layers; l++)
        {
            int length = KvHeads * cache.Slots[l] * HeadDim;
            Assert.All(new Span<float>(cache.Keys(l), length).ToArray(), v => Assert.Equal(2 * l, v));
            Assert.All(new Span<float>(cache.Values(l), length).ToArray(), v => Assert.Equal(2 * l + 1, v));
        }
    }

    /// <summary>A q8_0 cache gives back each stored value within half a quantization step of its block, the step being
    /// max|block| / 127 (rounded up to bf16, 7 fraction bits: less than 2⁻⁷ more); an all-zero block stays zero, and each block keeps
    /// its own scale (one block of large values next to one of small ones).</summary>
    [Fact]
    public void AQ8CacheGivesBackEachValueWithinHalfAStepOfItsBlock()
    {
        const int d = 96, heads = 2;
        var config = KernelTestData.Config(layers: 2, heads: 4, kvHeads: heads, headDim: d, slidingWindow: Window);
        var cache = new KvCache(config, maxContext: 6, precision: KvPrecision.Q8_0);
        var rows = new List<(int Layer, bool Key, long At, float[] Row)>();
        int seed = 0;
        for (int layer = 0; layer < 2; layer++)
            foreach (bool key in new[] { true, false })
                for (int h = 0; h < heads; h++)
                    for (int slot = 0; slot < cache.Slots[layer]; slot++)
                    {
                        var row = KernelTestData.RandomFloats(d, ++seed, scale: 3f);
                        for (int i = 0; i < 32; i++) row[i] *= 1000f;  // block 0 large
                        if (seed % 3 == 0) Array.Clear(row, 64, 32);   // block 2 zero in some rows
                        long at = ((long)h * cache.Slots[layer] + slot) * d;
                        cache.Store(layer, key, at, row);
                        rows.Add((layer, key, at, row));
                    }

        var back = new float[d];
        foreach (var (layer, key, at, row) in rows)
        {
            cache.Load(layer, key, at, back);
            for (int b = 0; b < d / 32; b++)
            {
                double max = 0;
                for (int i = 32 * b; i < 32 * b + 32; i++) max = Math.Max(max, Math.Abs(row[i]));
                double halfStep = max / 127 * (1 + 1.0 / 128) / 2;
                for (int i = 32 * b; i < 32 * b + 32; i++)
                {
                    double error = Math.Abs(back[i] - row[i]);
                    Assert.True(error <= halfStep * (1 + 1e-6), $"layer {layer} {(key ? "key" : "value")} at {at} [{i}]: {back[i]} for {row[i]}, half a step is {halfStep}");
                }
                if (max == 0) Assert.All(back[(32 * b)..(32 * b + 32)], v => Assert.Equal(0f, v));
            }
        }
    }

    [Fact]
    public void AQ8CacheTakesAnInt8PerElementAndABf16ScalePerBlock()
    {
        var config = KernelTestData.Config(layers: 5, heads: 4, kvHeads: KvHeads, headDim: 64, slidingWindow: Window);
        var cache = new KvCache(config, maxContext: 10, precision: KvPrecision.Q8_0);

        // 3 local layers of 4 slots and 2 global of 10, keys and values, 64 bytes and 2 scales of 2 bytes per head row
        Assert.Equal(2L * KvHeads * (3 * 4 + 2 * 10) * (64 + 2 * 2), cache.ByteLength);
        Assert.Equal(cache.ByteLength, KvCache.ByteLengthOf(config, 10, 1, KvPrecision.Q8_0));
    }
}
