using System.Xml.Linq;
using GemmaGen.Tests.Generator;

namespace GemmaGen.Tests.Package;

/// <summary>samples/GemmaGen.Sample consumes the package as an outside project would: it references the version the
/// repository packs, from the folder the README's pack command writes, and is not part of the solution.</summary>
public sealed class SampleProjectTests
{
    private static readonly string SampleProject = RepositoryFiles.Path("samples", "GemmaGen.Sample", "GemmaGen.Sample.csproj");

    [Fact]
    public void TheSampleReferencesTheVersionTheRepositoryPacks()
    {
        XElement reference = XDocument.Load(SampleProject).Descendants("PackageReference").Single(r => (string?)r.Attribute("Include") == "GemmaGen");

        Assert.Equal(PackedRepository.RepositoryVersion(), (string?)reference.Attribute("Version"));
    }

    [Fact]
    public void TheSampleTakesGemmaGenFromThePackedFolderOnly()
    {
        XDocument config = XDocument.Load(RepositoryFiles.Path("samples", "NuGet.config"));
        XElement local = config.Descendants("packageSources").Elements("add").Single(a => (string?)a.Attribute("value") == "../artifacts/packages");
        string key = (string)local.Attribute("key")!;

        XElement mapping = config.Descendants("packageSourceMapping").Elements("packageSource").Single(s => (string?)s.Attribute("key") == key);
        Assert.Equal(["GemmaGen", "GemmaGen.*"], mapping.Elements("package").Select(p => (string)p.Attribute("pattern")!));
    }

    [Fact]
    public void TheSampleIsNotPartOfTheSolution()
    {
        Assert.DoesNotContain("GemmaGen.Sample", File.ReadAllText(RepositoryFiles.Path("GemmaGen.sln")));
    }
}
