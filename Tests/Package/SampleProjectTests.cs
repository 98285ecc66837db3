using System.Xml.Linq;
using GemmaGen.Tests.Generator;

namespace GemmaGen.Tests.Package;

/// <summary>samples/GemmaGen.Sample consumes the package as an outside project would: it references the newest
/// version the repository packs, from the folder the README's pack command writes, and is not part of the solution.
/// The README's command runs it on the pack of this test run, on the demo checkpoint and on others.</summary>
[Trait("Category", "Package")]
[Collection(PackedRepositoryCollection.Name)]
public sealed class SampleProjectTests(PackedRepository packed)
{
    private static readonly string SampleProject = RepositoryFiles.Path("samples", "GemmaGen.Sample", "GemmaGen.Sample.csproj");

    /// <summary>The README's command that runs the sample (after its pack command).</summary>
    private static string RunCommand => Assert.Single(ReadmeSection.Blocks("Packing, and the sample", "sh")).Split('\n')[1];

    [Fact]
    public void TheSampleReferencesTheNewestPackOfTheRepositorysVersion()
    {
        XElement reference = XDocument.Load(SampleProject).Descendants("PackageReference").Single(r => (string?)r.Attribute("Include") == "GemmaGen");

        Assert.Equal(PackedRepository.RepositoryVersion() + "-*", (string?)reference.Attribute("Version"));
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

    [Fact]
    public async Task TheSampleSaysWhichPathRunsAndWhyAndEndsWithOneLineOnACheckpointItCannotUse()
    {
        Assert.Equal("dotnet run --project samples/GemmaGen.Sample -c Release", RunCommand);

        CommandResult demo = (await RunSampleAsync(RunCommand)).Succeeded("the sample on the demo checkpoint");
        Assert.Contains("path:  compiled DemoModel, because its spec has the checkpoint's layer shape (hidden 256, 4 heads / 2 kv heads of 64, " +
            "intermediate 768, window 128; the class is compiled into GemmaGen.Sample)", demo.Output);
        Assert.Contains("cached", demo.Output); // the chat's second turn reached its statistics line

        // The demo checkpoint with another window: a layer shape no compiled spec has.
        string otherShape = Path.Combine(packed.Root, "other-shape");
        Directory.CreateDirectory(otherShape);
        string demoDirectory = Path.Combine(AppContext.BaseDirectory, "Fixtures", "gemma2-demo");
        foreach (string file in Directory.GetFiles(demoDirectory)) File.Copy(file, Path.Combine(otherShape, Path.GetFileName(file)));
        string config = File.ReadAllText(Path.Combine(otherShape, "config.json"));
        Assert.Contains("\"sliding_window\": 128", config);
        File.WriteAllText(Path.Combine(otherShape, "config.json"), config.Replace("\"sliding_window\": 128", "\"sliding_window\": 96"));

        CommandResult reference = (await RunSampleAsync($"{RunCommand} --no-build -- '{otherShape}'")).Succeeded("the sample on a shape of its own");
        Assert.Contains("path:  reference, because no compiled spec has the checkpoint's layer shape (hidden 256, 4 heads / 2 kv heads of 64, " +
            $"intermediate 768, window 96); to compile one, add <GemmaSpec Include=\"{Path.Combine(otherShape, "config.json")}\" /> to the project",
            reference.Output);

        // tiny-gqa has no tokenizer.model; the other folder does not exist.
        string tinyGqa = Path.Combine(AppContext.BaseDirectory, "Fixtures", "tiny-gqa");
        Assert.False(File.Exists(Path.Combine(tinyGqa, "tokenizer.model")));
        foreach ((string directory, string expected) in new[]
                 {
                     (tinyGqa, Path.Combine(tinyGqa, "tokenizer.model")),
                     (Path.Combine(packed.Root, "no-such-checkpoint"), Path.Combine(packed.Root, "no-such-checkpoint")),
                 })
        {
            CommandResult failed = await RunSampleAsync($"{RunCommand} --no-build -- '{directory}'");

            Assert.True(failed.ExitCode == 2, $"the sample on {directory} exited {failed.ExitCode}:\n{failed.Output}");
            string[] lines = failed.Output.ReplaceLineEndings("\n").Split('\n', StringSplitOptions.RemoveEmptyEntries);
            string error = Assert.Single(lines);
            Assert.StartsWith("error: " + expected, error);
        }
    }

    private Task<CommandResult> RunSampleAsync(string command) =>
        DotnetCommand.RunShellAsync(command, RepositoryFiles.Root, PackedRepository.CommandTimeout, packed.ShellEnvironment);
}
