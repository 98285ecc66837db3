extern alias generator;

using GemmaGen.Tests.Infrastructure;

namespace GemmaGen.Tests.Generator;

/// <summary>
/// The generated source of each built-in spec and of the tiny-gqa fixture, compared with the checked-in
/// <c>Tests/Snapshots/*.verified.cs</c>: any change to the emitted kernels shows up as a reviewable diff.
/// Set GEMMAGEN_ACCEPT_SNAPSHOTS=1 to accept a deliberate change.
/// </summary>
public sealed class GeneratedSourceSnapshotTests
{
    public static TheoryData<string, string?, string> Specs() => new()
    {
        { "Specs/gemma-2-2b.json", null, "Gemma2_2B" },
        { "Specs/gemma-2-9b.json", null, "Gemma2_9B" },
        { "Specs/gemma-2-27b.json", null, "Gemma2_27B" },
        { "Specs/gemma-2-demo.json", null, "Gemma2_Demo" },
        { "Tests/Fixtures/tiny-gqa/config.json", "TinyGqa", "TinyGqa" },
    };

    [Theory]
    [MemberData(nameof(Specs))]
    public void Generated_source_matches_the_verified_snapshot(string spec, string? className, string snapshot)
    {
        string path = RepositoryFiles.Path(spec.Split('/'));
        var result = GeneratorHarness.Run(new SpecFile(path, File.ReadAllText(path), className));

        Assert.Empty(result.Diagnostics);
        var source = Assert.Single(result.GeneratedSources);
        Assert.Equal($"GemmaGen.Models.{snapshot}.g.cs", source.HintName);
        SnapshotAssert.Matches(source.SourceText.ToString(), snapshot);
    }
}
