using Xunit;
using Xunit.Sdk;

namespace GemmaGen.Tests.Infrastructure;

/// <summary>Tests of <see cref="SnapshotAssert"/> on a temporary snapshot directory.</summary>
public sealed class SnapshotAssertTests : IDisposable
{
    private readonly string _directory = Path.Combine(Path.GetTempPath(), "gemmagen-snapshots-" + Guid.NewGuid().ToString("N"));

    private string Verified => Path.Combine(_directory, "Sample.verified.cs");

    private string Received => Path.Combine(_directory, "Sample.received.cs");

    public void Dispose()
    {
        if (Directory.Exists(_directory)) Directory.Delete(_directory, recursive: true);
    }

    private static string Numbered(int count, int changedLine = -1) =>
        string.Concat(Enumerable.Range(1, count).Select(i => i == changedLine ? $"changed {i}\n" : $"line {i}\n"));

    [Fact]
    public void MatchPassesAndDeletesStaleReceivedFile()
    {
        Directory.CreateDirectory(_directory);
        File.WriteAllText(Verified, Numbered(5));
        File.WriteAllText(Received, "stale");

        SnapshotAssert.MatchesIn(_directory, Numbered(5), "Sample", accept: false);

        Assert.False(File.Exists(Received));
    }

    [Fact]
    public void LineEndingsAreIgnored()
    {
        Directory.CreateDirectory(_directory);
        File.WriteAllText(Verified, "a\r\nb\r\n");

        SnapshotAssert.MatchesIn(_directory, "a\nb\n", "Sample", accept: false);
        SnapshotAssert.MatchesIn(_directory, "a\r\nb\r\n", "Sample", accept: false);
    }

    [Fact]
    public void MismatchWritesReceivedFileAndNamesTheChangedLine()
    {
        Directory.CreateDirectory(_directory);
        File.WriteAllText(Verified, Numbered(40));

        var e = Assert.Throws<XunitException>(() => SnapshotAssert.MatchesIn(_directory, Numbered(40, changedLine: 17), "Sample", accept: false));

        Assert.Equal(Numbered(40, changedLine: 17), File.ReadAllText(Received));
        Assert.Equal(Numbered(40), File.ReadAllText(Verified));
        Assert.Contains("@@ -14,7 +14,7 @@", e.Message);
        Assert.Contains("-   17       | line 17", e.Message);
        Assert.Contains("+         17 | changed 17", e.Message);
        Assert.Contains("    16    16 | line 16", e.Message);
        Assert.DoesNotContain("line 10\n", e.Message);
        Assert.DoesNotContain("line 30\n", e.Message);
        Assert.Contains(Received, e.Message);
        Assert.Contains(SnapshotAssert.AcceptVariable + "=1", e.Message);
    }

    [Fact]
    public void DistantChangesGetSeparateHunksWithTheirLineNumbers()
    {
        Directory.CreateDirectory(_directory);
        File.WriteAllText(Verified, Numbered(60));
        string actual = Numbered(60, changedLine: 5).Replace("line 50\n", "changed 50\nadded\n");

        var e = Assert.Throws<XunitException>(() => SnapshotAssert.MatchesIn(_directory, actual, "Sample", accept: false));

        Assert.Contains("@@ -2,7 +2,7 @@", e.Message);
        Assert.Contains("@@ -47,7 +47,8 @@", e.Message);
        Assert.Contains("+         51 | added", e.Message);
        Assert.Contains("    51    52 | line 51", e.Message);
    }

    [Fact]
    public void MissingVerifiedFileFailsAndWritesReceivedFile()
    {
        var e = Assert.Throws<XunitException>(() => SnapshotAssert.MatchesIn(_directory, "class C { }\n", "Sample", accept: false));

        Assert.Contains("has no verified file", e.Message);
        Assert.Contains("+          1 | class C { }", e.Message);
        Assert.Equal("class C { }\n", File.ReadAllText(Received));
        Assert.False(File.Exists(Verified));
    }

    [Fact]
    public void LongDiffIsCapped()
    {
        Directory.CreateDirectory(_directory);
        File.WriteAllText(Verified, Numbered(1000));

        var e = Assert.Throws<XunitException>(() => SnapshotAssert.MatchesIn(_directory, Numbered(1000).Replace("line", "row"), "Sample", accept: false));

        Assert.Contains("more diff lines not shown", e.Message);
        Assert.True(e.Message.Split('\n').Length < 220, $"message has {e.Message.Split('\n').Length} lines");
    }

    [Fact]
    public void AcceptModeWritesVerifiedFileAndPasses()
    {
        Directory.CreateDirectory(_directory);
        File.WriteAllText(Verified, Numbered(3));
        File.WriteAllText(Received, "stale");

        SnapshotAssert.MatchesIn(_directory, "new\r\ntext\r\n", "Sample", accept: true);

        Assert.Equal("new\ntext\n", File.ReadAllText(Verified));
        Assert.False(File.Exists(Received));
        SnapshotAssert.MatchesIn(_directory, "new\ntext\n", "Sample", accept: false);
    }

    [Fact]
    public void AcceptModeCreatesMissingSnapshot()
    {
        SnapshotAssert.MatchesIn(_directory, "first\n", "Sample", accept: true);

        Assert.Equal("first\n", File.ReadAllText(Verified));
    }

    [Theory]
    [InlineData("")]
    [InlineData("sub/Sample")]
    [InlineData("..\\Sample")]
    public void NameMustBeAPlainFileName(string name)
    {
        Assert.Throws<ArgumentException>(() => SnapshotAssert.MatchesIn(_directory, "x", name, accept: false));
    }

    [Fact]
    public void SnapshotDirectoryIsTheTestsProjectsSnapshotsFolder()
    {
        string tests = Path.Combine(_directory, "Tests");
        Directory.CreateDirectory(Path.Combine(tests, "Generator", "Emit"));
        File.WriteAllText(Path.Combine(tests, "GemmaGen.Tests.csproj"), "<Project />");

        Assert.Equal(Path.Combine(tests, "Snapshots"), SnapshotAssert.SnapshotDirectory(Path.Combine(tests, "Generator", "Emit", "EmitterTests.cs")));
        Assert.Equal(Path.Combine(tests, "Snapshots"), SnapshotAssert.SnapshotDirectory(Path.Combine(tests, "Program.cs")));
        Assert.Throws<InvalidOperationException>(() => SnapshotAssert.SnapshotDirectory(Path.Combine(_directory, "Elsewhere.cs")));
    }

    [Fact]
    public void SnapshotDirectoryOfThisFileIsInTheSourceTree()
    {
        string directory = SnapshotAssert.SnapshotDirectory(ThisFile());

        Assert.Equal("Snapshots", Path.GetFileName(directory));
        Assert.True(File.Exists(Path.Combine(Path.GetDirectoryName(directory)!, "GemmaGen.Tests.csproj")));

        static string ThisFile([System.Runtime.CompilerServices.CallerFilePath] string path = "") => path;
    }
}
