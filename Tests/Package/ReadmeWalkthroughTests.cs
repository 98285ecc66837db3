using System.Xml.Linq;

namespace GemmaGen.Tests.Package;

/// <summary>The tests that need the repository packed share one pack per run.</summary>
[CollectionDefinition(Name)]
public sealed class PackedRepositoryCollection : ICollectionFixture<PackedRepository>
{
    /// <summary>The collection's name.</summary>
    public const string Name = "Packed repository";
}

/// <summary>
/// "Use GemmaGen in your project" followed literally: its shell blocks run as written, from the repository's folder
/// in a shell of its own (see <see cref="PackedRepository"/>, which runs the first, the pack), the XML block goes
/// into the new project file before <c>&lt;/Project&gt;</c> and the C# block becomes Program.cs.
/// </summary>
[Trait("Category", "Package")]
[Collection(PackedRepositoryCollection.Name)]
public sealed class ReadmeWalkthroughTests(PackedRepository packed)
{
    [Fact]
    public async Task TheReadmesStepsMakeAnAppOutsideTheRepositoryThatRunsItsOwnCompiledClass()
    {
        string[] shell = ReadmeSection.Blocks(PackedRepository.UseSection, "sh");
        string[] xml = ReadmeSection.Blocks(PackedRepository.UseSection, "xml");
        string[] csharp = ReadmeSection.Blocks(PackedRepository.UseSection, "csharp");
        Assert.Equal(3, shell.Length); // the pack, the new app, running it

        (await DotnetCommand.RunShellAsync(shell[1], Generator.RepositoryFiles.Root, PackedRepository.CommandTimeout, packed.ShellEnvironment))
            .Succeeded("the README's commands that make the app");

        string app = Path.Combine(packed.Home, "MyApp");
        string project = Path.Combine(app, "MyApp.csproj");
        // dotnet add package wrote the first line: the package of this run's pack, the newest in the folder.
        XElement reference = Assert.Single(XDocument.Load(project).Descendants("PackageReference"));
        Assert.Equal("GemmaGen", (string?)reference.Attribute("Include"));
        Assert.Equal(packed.Version, (string?)reference.Attribute("Version"));

        string text = File.ReadAllText(project);
        Assert.Equal(1, text.Split("</Project>").Length - 1);
        File.WriteAllText(project, text.Replace("</Project>", xml[0] + "</Project>"));
        File.WriteAllText(Path.Combine(app, "Program.cs"), csharp[0]);

        CommandResult run = (await DotnetCommand.RunShellAsync(shell[2], app, PackedRepository.CommandTimeout, packed.ShellEnvironment))
            .Succeeded("dotnet run of the README's app");

        string[] lines = run.Output.ReplaceLineEndings("\n").Split('\n');
        int path = Array.IndexOf(lines, "path: compiled MyModel");
        Assert.True(path >= 0, "the app did not run on its own compiled class:\n" + run.Output);
        Assert.True(string.Concat(lines[(path + 1)..]).Count(char.IsLetter) >= 20, "the app generated no text:\n" + run.Output);
    }

    [Fact]
    public void TheSamplesPackCommandIsTheOneOfTheReadmesSteps()
    {
        string pack = ReadmeSection.Blocks(PackedRepository.UseSection, "sh")[0];
        string[] sample = ReadmeSection.Blocks("Packing, and the sample", "sh");

        Assert.StartsWith(pack, Assert.Single(sample));
    }
}
