using System.Globalization;
using GemmaGen.Kernels;
using Xunit;

namespace GemmaGen.Tests.Host;

/// <summary>
/// Giving back pages of a mapped checkpoint file (<see cref="MappedFile.ReleasePages"/>), and releasing a tensor of a
/// GGUF file, a safetensors file or a (sharded) checkpoint (<see cref="ITensorSource.Release"/>, which the loader calls
/// once it has copied the tensor): its whole pages leave the process, read from <c>/proc/self/smaps</c> as the resident
/// size of that one mapping (so other tests' memory cannot move it) and page by page from <c>/proc/self/pagemap</c>; a
/// page it shares with a neighbour stays; and the bytes read the same afterwards, through the same views, since a
/// dropped page of a read-only file mapping faults back in.
/// </summary>
public sealed unsafe class CheckpointPageReleaseTests : IDisposable
{
    private const string LinuxOnly = "pages are given back with Linux's madvise and observed in /proc/self/smaps and /proc/self/pagemap (Linux only, with both files)";

    /// <summary>Whether this process can give pages back and see it: Linux, with /proc/self/smaps and /proc/self/pagemap.</summary>
    private static bool Observable => OperatingSystem.IsLinux() && File.Exists("/proc/self/smaps") && File.Exists("/proc/self/pagemap");

    private readonly TempDirectory _temp = new();

    public void Dispose() => _temp.Dispose();

    private static long Page => Environment.SystemPageSize;

    public static TheoryData<string> GgufFiles() => new(GgufFixtures.Names);

    [SkippableFact]
    public void ReleasingARangeDropsExactlyTheWholePagesInsideIt()
    {
        Skip.IfNot(Observable, LinuxOnly);
        byte[] bytes = Pattern((int)(8 * Page));
        string path = _temp.File("eight-pages.bin");
        File.WriteAllBytes(path, bytes);
        using var file = MappedFile.Open(path, "test file", 1, "a byte");
        Touch(file.Start, file.Length);
        Assert.Equal(8 * Page, ResidentBytes(file.Start));

        // Bytes [1, 3 pages + 1) hold the whole pages 1 and 2; pages 0 and 3 are shared with bytes outside the range.
        Assert.Equal(2 * Page, file.ReleasePages(file.Start + 1, 3 * Page));

        Assert.Equal(6 * Page, ResidentBytes(file.Start));
        Assert.Equal([true, false, false, true], Enumerable.Range(0, 4).Select(page => IsPresent(file.Start + page * Page)));
        Assert.True(new ReadOnlySpan<byte>(file.Start, bytes.Length).SequenceEqual(bytes), "the released pages read back differently");
        Assert.Equal(8 * Page, ResidentBytes(file.Start));
    }

    [Fact]
    public void ARangeHoldingNoWholePageGivesNothingBack()
    {
        string path = _temp.File("two-pages.bin");
        File.WriteAllBytes(path, Pattern((int)(2 * Page)));
        using var file = MappedFile.Open(path, "test file", 1, "a byte");
        Assert.Equal(0, file.ReleasePages(file.Start + 1, Page - 1));
        Assert.Equal(0, file.ReleasePages(file.Start + Page / 2, Page));
        Assert.Equal(0, file.ReleasePages(file.Start + Page, 0));
    }

    [Fact]
    public void ARangeOutsideTheMappingOrAfterUnmappingIsRefused()
    {
        string path = _temp.File("two-pages.bin");
        File.WriteAllBytes(path, Pattern((int)(2 * Page)));
        var file = MappedFile.Open(path, "test file", 1, "a byte");
        byte* start = file.Start;
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => file.ReleasePages(start + Page, Page + 1));
        Assert.Contains($"do not lie inside the {2 * Page}-byte mapping", e.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => file.ReleasePages(start - Page, Page));
        Assert.Throws<ArgumentOutOfRangeException>(() => file.ReleasePages(start, -1));
        file.Dispose();
        Assert.Throws<ObjectDisposedException>(() => file.ReleasePages(start, Page));
    }

    [Theory]
    [MemberData(nameof(GgufFiles))]
    public void EveryGgufTensorReadsTheSameBytesAfterItIsReleased(string name)
    {
        byte[] stored = File.ReadAllBytes(GgufFixtures.Path(name));
        using var gguf = GgufCheckpoint.Open(GgufFixtures.Path(name));
        var views = ReadAndReleaseAll(gguf);
        foreach (var tensor in gguf.File.Tensors)
        {
            var view = views[GgufCheckpoint.HuggingFaceName(tensor.Name)!];
            var expected = stored.AsSpan(checked((int)(gguf.File.DataOffset + tensor.Offset)), (int)tensor.ByteLength);
            Assert.True(Bytes(view).SequenceEqual(expected), $"{name}: {tensor.Name} reads differently after the release");
            Assert.True(gguf.File.GetBytes(tensor.Name).SequenceEqual(expected), $"{name}: {tensor.Name} reads differently after the release");
        }
    }

    [Fact]
    public void EverySafetensorsTensorReadsTheSameBytesAfterItIsReleased()
    {
        using var file = SafetensorsFile.Open(Fixtures.Path("tiny-gqa", "model.safetensors"));
        byte[] stored = File.ReadAllBytes(file.Path);
        long bufferStart = stored.Length - file.BufferLength;
        using var checkpoint = Checkpoint.Open(Fixtures.Path("tiny-gqa"));
        var views = ReadAndReleaseAll(checkpoint);
        foreach (var tensor in file.Tensors)
        {
            var expected = stored.AsSpan(checked((int)(bufferStart + tensor.Begin)), (int)tensor.ByteLength);
            Assert.True(Bytes(views[tensor.Name]).SequenceEqual(expected), $"{tensor.Name} reads differently after the release");
        }
    }

    [Fact]
    public void AnUnknownNameIsIgnoredBySourcesAndRefusedByTheGgufContainer()
    {
        using var gguf = GgufCheckpoint.Open(GgufFixtures.Path("q8_0"));
        gguf.Release("no.such.tensor");
        var e = Assert.Throws<CheckpointException>(() => gguf.File.Release("no.such.tensor"));
        Assert.Equal($"{gguf.Path}: no tensor 'no.such.tensor'", e.Message);
        using var checkpoint = Checkpoint.Open(Fixtures.Path("tiny-gqa"));
        checkpoint.Release("no.such.tensor");
        checkpoint.Files[0].Release("no.such.tensor");
    }

    [Fact]
    public void ReleasingFromAnUnmappedSourceIsRefused()
    {
        var gguf = GgufCheckpoint.Open(GgufFixtures.Path("q8_0"));
        gguf.Dispose();
        Assert.Throws<ObjectDisposedException>(() => gguf.Release(CheckpointNames.Embed));
        var checkpoint = Checkpoint.Open(Fixtures.Path("tiny-gqa"));
        checkpoint.Dispose();
        Assert.Throws<ObjectDisposedException>(() => checkpoint.Release(CheckpointNames.Embed));
        Assert.Throws<ObjectDisposedException>(() => checkpoint.Files[0].Release(CheckpointNames.Embed));
    }

    [Theory]
    [InlineData("f32")]
    [InlineData("q4_k_m")]
    public void LoadingASecondTimeFromReleasedTensorsGivesTheSameWeights(string name)
    {
        using var gguf = GgufCheckpoint.Open(GgufFixtures.Path(name));
        using var first = ModelWeights.Load(gguf.Config, gguf);
        using var second = ModelWeights.Load(gguf.Config, gguf);
        WeightAssert.Equal(first, second, v => v);

        using var checkpoint = Checkpoint.Open(Fixtures.Path("tiny-gqa"));
        using var firstCheckpoint = ModelWeights.Load(checkpoint.Config, checkpoint);
        using var secondCheckpoint = ModelWeights.Load(checkpoint.Config, checkpoint);
        WeightAssert.Equal(firstCheckpoint, secondCheckpoint, v => v);
    }

    [SkippableFact]
    public void ReleasingAGgufTensorDropsItsPagesFromTheProcess()
    {
        Skip.IfNot(Observable, LinuxOnly);
        using var gguf = GgufCheckpoint.Open(GgufFixtures.Path("f32"));
        Assert.True(gguf.TryGetTensor(CheckpointNames.Embed, out var embed));
        Assert.Equal(4096L * 256 * 4, embed.ByteLength);
        AssertReleaseDropsPages(gguf, embed);
    }

    [SkippableFact]
    public void ReleasingASafetensorsTensorDropsItsPagesAndKeepsItsNeighbours()
    {
        Skip.IfNot(Observable, LinuxOnly);
        string path = _temp.File("two.safetensors");
        // Odd sizes: neither tensor starts or ends on a page boundary, so each shares a page with what is beside it.
        new SafetensorsWriter()
            .AddF32("a.weight", Floats(1001 * 513, seed: 1), 1001, 513)
            .AddF32("b.weight", Floats(999 * 517, seed: 2), 999, 517)
            .Save(path);
        using var file = SafetensorsFile.Open(path);
        Assert.True(file.TryGetTensor("a.weight", out var a));
        Assert.True(file.TryGetTensor("b.weight", out var b));
        Assert.NotEqual(0, (long)(a.Data + a.ByteLength) % Page);
        Touch(b.Data, b.ByteLength);

        AssertReleaseDropsPages(file, a, whileReleased: () =>
        {
            for (long offset = 0; offset < b.ByteLength; offset += Page)
                Assert.True(IsPresent(b.Data + offset), $"releasing a dropped b's page at byte {offset}");
        });
    }

    [SkippableFact]
    public void ACheckpointReleasesATensorInTheShardThatHoldsIt()
    {
        Skip.IfNot(Observable, LinuxOnly);
        string dir = _temp.Directory("sharded");
        File.Copy(Fixtures.Path("tiny-gqa", "config.json"), Path.Combine(dir, "config.json"));
        new SafetensorsWriter().AddF32("a.weight", Floats(1024 * 700, seed: 3), 1024, 700).Save(Path.Combine(dir, "model-00001-of-00002.safetensors"));
        new SafetensorsWriter().AddF32("b.weight", Floats(1024 * 700, seed: 4), 1024, 700).Save(Path.Combine(dir, "model-00002-of-00002.safetensors"));
        File.WriteAllText(Path.Combine(dir, Checkpoint.IndexFileName), """
            {"metadata": {}, "weight_map": {
              "a.weight": "model-00001-of-00002.safetensors",
              "b.weight": "model-00002-of-00002.safetensors"}}
            """);
        using var checkpoint = Checkpoint.Open(dir);
        Assert.True(checkpoint.TryGetTensor("a.weight", out var a));
        Assert.True(checkpoint.TryGetTensor("b.weight", out var b));
        Touch(a.Data, a.ByteLength);

        AssertReleaseDropsPages(checkpoint, b);

        Assert.True(ResidentBytes(a.Data) >= a.ByteLength, "releasing b (second shard) dropped pages of a (first shard)");
    }

    /// <summary>Reads every tensor, releasing each after reading it, as the loader does; returns the views.</summary>
    private static Dictionary<string, TensorView> ReadAndReleaseAll(ITensorSource source)
    {
        var views = new Dictionary<string, TensorView>();
        foreach (string name in source.TensorNames)
        {
            Assert.True(source.TryGetTensor(name, out var view));
            Touch(view.Data, view.ByteLength);
            source.Release(name);
            views[name] = view;
        }
        return views;
    }

    /// <summary>Touches every page of <paramref name="tensor"/>, releases it, and asserts that the resident size of
    /// its mapping fell by at least the whole pages inside it (all resident before), that a page it shares with
    /// what lies beside it stayed, and, after <paramref name="whileReleased"/> (checks that must run before anything
    /// reads the tensor again), that it still reads the same.</summary>
    private static void AssertReleaseDropsPages(ITensorSource source, TensorView tensor, Action? whileReleased = null)
    {
        byte[] before = Bytes(tensor).ToArray();
        Touch(tensor.Data, tensor.ByteLength);
        long resident = ResidentBytes(tensor.Data);
        long first = ((long)tensor.Data + Page - 1) / Page, end = ((long)tensor.Data + tensor.ByteLength) / Page;
        long inside = (end - first) * Page;
        Assert.True(inside > 0, $"{tensor.Name}: no whole page to release");
        Assert.True(resident >= inside, $"{tensor.Name}: {resident} bytes of the mapping resident after touching its {inside} bytes of whole pages");

        source.Release(tensor.Name);

        long after = ResidentBytes(tensor.Data);
        Assert.True(resident - after >= inside,
            $"{tensor.Name}: releasing it took the mapping from {resident} to {after} resident bytes; its whole pages are {inside} bytes");
        for (long page = first; page < end; page++)
            Assert.False(IsPresent((byte*)(page * Page)), $"{tensor.Name}: page {page - first} of its whole pages is still mapped");
        if ((long)tensor.Data % Page != 0)
            Assert.True(IsPresent(tensor.Data), $"{tensor.Name}: the page its first byte shares with the bytes before it was dropped");
        if ((long)(tensor.Data + tensor.ByteLength) % Page != 0)
            Assert.True(IsPresent(tensor.Data + tensor.ByteLength - 1), $"{tensor.Name}: the page its last byte shares with the bytes after it was dropped");
        whileReleased?.Invoke();
        Assert.True(Bytes(tensor).SequenceEqual(before), $"{tensor.Name} reads differently after the release");
    }

    /// <summary>Reads one byte of every page of [data, data + length), so each is mapped into the process.</summary>
    private static void Touch(byte* data, long length)
    {
        int sum = 0;
        for (long i = 0; i < length; i += Page) sum += data[i];
        if (length > 0) sum += data[length - 1];
        GC.KeepAlive(sum);
    }

    private static ReadOnlySpan<byte> Bytes(TensorView view) => new(view.Data, checked((int)view.ByteLength));

    /// <summary>The resident size (<c>Rss</c>) in bytes of the mapping holding <paramref name="address"/>, as
    /// <c>/proc/self/smaps</c> reports it: this process's pages of that mapping, not the page cache.</summary>
    private static long ResidentBytes(void* address)
    {
        ulong at = (ulong)address;
        bool inMapping = false;
        foreach (string line in File.ReadLines("/proc/self/smaps"))
        {
            int dash = line.IndexOf('-'), space = line.IndexOf(' ');
            if (dash > 0 && space > dash && ulong.TryParse(line.AsSpan(0, dash), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out ulong start)
                && ulong.TryParse(line.AsSpan(dash + 1, space - dash - 1), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out ulong end))
            {
                inMapping = start <= at && at < end;
            }
            else if (inMapping && line.StartsWith("Rss:", StringComparison.Ordinal))
            {
                // "Rss:                1024 kB"
                return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) * 1024;
            }
        }
        throw new InvalidOperationException($"no mapping in /proc/self/smaps holds 0x{at:x}");
    }

    /// <summary>Whether the page holding <paramref name="address"/> is mapped into this process now: bit 63 of its
    /// 8-byte entry in <c>/proc/self/pagemap</c>.</summary>
    private static bool IsPresent(void* address)
    {
        using var pagemap = File.OpenHandle("/proc/self/pagemap");
        Span<byte> entry = stackalloc byte[8];
        Assert.Equal(8, RandomAccess.Read(pagemap, entry, (long)((ulong)address / (ulong)Page * 8)));
        return (BitConverter.ToUInt64(entry) >> 63) != 0;
    }

    private static byte[] Pattern(int length)
    {
        var bytes = new byte[length];
        for (int i = 0; i < length; i++) bytes[i] = (byte)(i * 7 + i / 4096);
        return bytes;
    }

    private static float[] Floats(int count, int seed)
    {
        var random = new Random(seed);
        var values = new float[count];
        for (int i = 0; i < count; i++) values[i] = (float)(random.NextDouble() - 0.5);
        return values;
    }
}
