using System.Globalization;
using Xunit;

namespace GemmaGen.Tests.Host;

/// <summary>
/// Giving back pages of a mapped checkpoint file (<see cref="MappedFile.ReleasePages"/>): the whole pages inside a
/// range leave the process, read from <c>/proc/self/smaps</c> as the resident size of that one mapping (so other tests'
/// memory cannot move it) and page by page from <c>/proc/self/pagemap</c>; a page the range shares with its neighbours
/// stays; and the bytes read the same afterwards, since a dropped page of a read-only file mapping faults back in.
/// </summary>
public sealed unsafe class CheckpointPageReleaseTests : IDisposable
{
    private const string LinuxOnly = "pages are given back with Linux's madvise and observed in /proc/self/smaps and /proc/self/pagemap (Linux only)";

    private readonly TempDirectory _temp = new();

    public void Dispose() => _temp.Dispose();

    private static long Page => Environment.SystemPageSize;

    [SkippableFact]
    public void ReleasingARangeDropsExactlyTheWholePagesInsideIt()
    {
        Skip.IfNot(OperatingSystem.IsLinux(), LinuxOnly);
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

    /// <summary>Reads one byte of every page of [data, data + length), so each is mapped into the process.</summary>
    private static void Touch(byte* data, long length)
    {
        int sum = 0;
        for (long i = 0; i < length; i += Page) sum += data[i];
        if (length > 0) sum += data[length - 1];
        GC.KeepAlive(sum);
    }

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
}
