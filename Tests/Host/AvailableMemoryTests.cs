using GemmaGen.Kernels;
using Xunit;

namespace GemmaGen.Tests.Host;

/// <summary>The memory figure loading compares against, read from sample /proc and /sys/fs/cgroup texts.</summary>
public sealed class AvailableMemoryTests
{
    private const string MemInfo = """
        MemTotal:       24683548 kB
        MemFree:        22414864 kB
        MemAvailable:   23680000 kB
        Buffers:          219720 kB
        """;

    [Fact]
    public void MemAvailableIsReadInBytes()
    {
        Assert.Equal(23_680_000L * 1024, AvailableMemory.ParseMemInfo(MemInfo));
    }

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("MemTotal:       24683548 kB\nMemFree:        22414864 kB\n")]
    public void NoMemAvailableLineIsUnknown(string? meminfo)
    {
        Assert.Null(AvailableMemory.ParseMemInfo(meminfo));
    }

    [Theory]
    [InlineData("8589934592\n", 8589934592L)]
    [InlineData("max\n", null)]
    [InlineData("9223372036854771712\n", null)] // cgroup v1's "no limit"
    [InlineData("", null)]
    public void ALimitFileReadsAsBytesOrNoLimit(string text, long? expected)
    {
        Assert.Equal(expected, AvailableMemory.ParseLimit(text));
    }

    [Fact]
    public void CgroupV2TakesTheTightestLimitOfTheGroupAndItsAncestors()
    {
        var files = new Dictionary<string, string>
        {
            ["/sys/fs/cgroup/user.slice/memory.max"] = "4294967296\n",
            ["/sys/fs/cgroup/user.slice/app.scope/memory.max"] = "max\n",
        };

        long? limit = AvailableMemory.CgroupLimit("0::/user.slice/app.scope\n", path => files.GetValueOrDefault(path));

        Assert.Equal(4294967296L, limit);
    }

    [Fact]
    public void CgroupV1ReadsTheMemoryControllersLimit()
    {
        const string cgroup = "9:name=systemd:/\n5:devices:/\n4:cpu,memory:/job/42\n0::/\n";
        var files = new Dictionary<string, string>
        {
            ["/sys/fs/cgroup/memory/job/42/memory.limit_in_bytes"] = "2147483648\n",
            ["/sys/fs/cgroup/memory/memory.limit_in_bytes"] = "9223372036854771712\n",
        };

        Assert.Equal(2147483648L, AvailableMemory.CgroupLimit(cgroup, path => files.GetValueOrDefault(path)));
    }

    [Fact]
    public void AContainerSeesItsLimitAtTheRootOfItsNamespace()
    {
        // The group is named by its host path, which the container's /sys/fs/cgroup does not have.
        var files = new Dictionary<string, string> { ["/sys/fs/cgroup/memory.max"] = "1073741824\n" };

        Assert.Equal(1073741824L, AvailableMemory.CgroupLimit("0::/kubepods/pod1/abc\n", path => files.GetValueOrDefault(path)));
    }

    [Fact]
    public void NoLimitAnywhereIsNull()
    {
        Assert.Null(AvailableMemory.CgroupLimit("0::/\n", _ => null));
    }

    [Theory]
    [InlineData(100L, 200L, 100L)]
    [InlineData(300L, 200L, 200L)]
    [InlineData(null, 200L, 200L)]
    [InlineData(100L, null, 100L)]
    [InlineData(null, null, null)]
    public void TheSmallerFigureCounts(long? memAvailable, long? cgroup, long? expected)
    {
        Assert.Equal(expected, AvailableMemory.Smaller(memAvailable, cgroup));
    }

    [SkippableFact]
    public void ThisMachinesFigureIsKnownOnLinux()
    {
        Skip.IfNot(OperatingSystem.IsLinux(), "read from /proc/meminfo (Linux only)");
        Assert.True(AvailableMemory.Read() > 0);
    }
}
