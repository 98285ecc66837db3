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
}
