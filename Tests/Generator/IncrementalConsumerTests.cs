extern alias generator;

using System.Collections.Immutable;
using System.Diagnostics.CodeAnalysis;
using generator::GemmaGen.Generator;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.Diagnostics;
using Xunit;

namespace GemmaGen.Tests.Generator;

/// <summary>
/// The generator inside a consuming project across edits, as an IDE or a compiler server drives it: one driver kept
/// between runs, fed the edited compilation, additional files and options. Editing a spec regenerates that spec's
/// class only; a C# edit, a new additional file or an edit of a file that is not a spec regenerates nothing and
/// parses no spec again.
/// </summary>
public sealed class IncrementalConsumerTests
{
    private static readonly string DemoSpecText = File.ReadAllText(RepositoryFiles.Path("Specs", "gemma-2-demo.json"));
    private static readonly string SmallSpecText = File.ReadAllText(RepositoryFiles.Path("Tests", "Fixtures", "tiny-gqa", "config.json"));

    private static readonly SpecFile DemoSpec = new("/app/models/demo/config.json", DemoSpecText, "DemoModel", "App.Models");
    private static readonly SpecFile SmallSpec = new("/app/models/small/config.json", SmallSpecText, "SmallModel", "App.Models");
    private static readonly SpecFile BrokenSpec = new("/app/models/broken/config.json",
        DemoSpecText.Replace("\"model_type\": \"gemma2\"", "\"model_type\": \"llama\""), "BrokenModel", "App.Models");
    private static readonly SpecFile Notes = new("/app/notes.txt", "release notes", IsSpec: false);

    private const string DemoSource = "App.Models.DemoModel.g.cs";
    private const string SmallSource = "App.Models.SmallModel.g.cs";

    /// <summary>The steps that parse, resolve, emit and report. The step before them (<see cref="TrackingNames.SpecFiles"/>)
    /// reads each file's options, so it runs again whenever the options are new, and must find them unchanged.</summary>
    private static readonly string[] ParseAndLaterSteps = [TrackingNames.Specs, TrackingNames.ModelSet, TrackingNames.Models, TrackingNames.Diagnostics];

    [Fact]
    public void TheFirstRunGeneratesOneSourcePerValidSpecAndReportsTheBrokenOne()
    {
        var project = ConsumerProject.Create(DemoSpec, SmallSpec, BrokenSpec, Notes);

        GeneratorRunResult result = project.Run();

        Assert.Equal([DemoSource, SmallSource], GeneratorHarness.HintNames(result).Order());
        Assert.Equal(BrokenSpec.Path, Assert.Single(GeneratorHarness.Diagnostics(result)).Path);
    }

    [Fact]
    public void ACSharpEditRegeneratesNothing()
    {
        var project = ConsumerProject.Create(DemoSpec, SmallSpec, BrokenSpec, Notes);
        GeneratorRunResult first = project.Run();

        GeneratorRunResult result = project.EditCSharp("namespace App; public static class Program { public static int Main() => 1; }").Run();

        AssertNothingRan(first, result);
    }

    [Fact]
    public void AnotherAdditionalFileRegeneratesNothing()
    {
        var project = ConsumerProject.Create(DemoSpec, SmallSpec, BrokenSpec, Notes);
        GeneratorRunResult first = project.Run();

        GeneratorRunResult result = project.AddFile(new SpecFile("/app/appsettings.json", "{ \"model\": \"demo\" }", IsSpec: false)).Run();

        AssertNothingRan(first, result);
    }

    [Fact]
    public void EditingAFileThatIsNotASpecRegeneratesNothing()
    {
        var project = ConsumerProject.Create(DemoSpec, SmallSpec, BrokenSpec, Notes);
        GeneratorRunResult first = project.Run();

        GeneratorRunResult result = project.EditFile(Notes, "release notes, edited").Run();

        AssertNothingRan(first, result);
    }

    [Fact]
    public void EditingOneSpecRegeneratesOnlyItsClass()
    {
        var project = ConsumerProject.Create(DemoSpec, SmallSpec, BrokenSpec, Notes);
        GeneratorRunResult first = project.Run();

        string edited = SmallSpecText.Replace("\"num_hidden_layers\": 4", "\"num_hidden_layers\": 5");
        Assert.NotEqual(SmallSpecText, edited);
        GeneratorRunResult result = project.EditFile(SmallSpec, edited).Run();

        Assert.Equal(IncrementalStepRunReason.Cached, ReasonOf(result, TrackingNames.Specs, "DemoModel"));
        Assert.Equal(IncrementalStepRunReason.Modified, ReasonOf(result, TrackingNames.Specs, "SmallModel"));
        Assert.True(ReasonOf(result, TrackingNames.Models, "DemoModel") is IncrementalStepRunReason.Cached or IncrementalStepRunReason.Unchanged);
        Assert.Equal(IncrementalStepRunReason.Modified, ReasonOf(result, TrackingNames.Models, "SmallModel"));
        Assert.Equal([SmallSource], RegeneratedSources(first, result));
        Assert.Equal(GeneratedText(first, DemoSource), GeneratedText(result, DemoSource));
        Assert.Contains("SpecLayers = 5;", GeneratedText(result, SmallSource));
    }

    [Fact]
    public void RenamingOneSpecsClassRegeneratesOnlyThatSpec()
    {
        var project = ConsumerProject.Create(DemoSpec, SmallSpec, BrokenSpec, Notes);
        GeneratorRunResult first = project.Run();

        GeneratorRunResult result = project.SetClassName(SmallSpec, "TinyModel").Run();

        Assert.Equal(IncrementalStepRunReason.Cached, ReasonOf(result, TrackingNames.Specs, "DemoModel"));
        Assert.Equal(IncrementalStepRunReason.Modified, ReasonOf(result, TrackingNames.Specs, "TinyModel"));
        Assert.Equal(["App.Models.TinyModel.g.cs"], RegeneratedSources(first, result));
        Assert.Equal([DemoSource, "App.Models.TinyModel.g.cs"], GeneratorHarness.HintNames(result).Order());
    }

    /// <summary>No spec parsed again, nothing resolved, emitted or reported again: the sources and the diagnostic
    /// are the last run's.</summary>
    private static void AssertNothingRan(GeneratorRunResult previous, GeneratorRunResult result)
    {
        Assert.Equal([DemoSource, SmallSource], GeneratorHarness.HintNames(result).Order());
        Assert.Equal(BrokenSpec.Path, Assert.Single(GeneratorHarness.Diagnostics(result)).Path);
        Assert.All(Outputs(result, TrackingNames.SpecFiles), output => Assert.True(
            output.Reason is IncrementalStepRunReason.Cached or IncrementalStepRunReason.Unchanged, $"{TrackingNames.SpecFiles}: {output.Reason} for {output.Value}"));
        foreach (string name in ParseAndLaterSteps)
        {
            Assert.All(Outputs(result, name), output =>
                Assert.True(output.Reason == IncrementalStepRunReason.Cached, $"{name}: {output.Reason} for {output.Value}"));
        }
        Assert.Empty(RegeneratedSources(previous, result));
    }

    private static (object Value, IncrementalStepRunReason Reason)[] Outputs(GeneratorRunResult result, string name)
    {
        Assert.True(result.TrackedSteps.ContainsKey(name), $"step {name} was not tracked");
        var outputs = result.TrackedSteps[name].SelectMany(step => step.Outputs).ToArray();
        Assert.NotEmpty(outputs);
        return outputs;
    }

    /// <summary>The reason of the one output of step <paramref name="name"/> whose value names <paramref name="className"/>.</summary>
    private static IncrementalStepRunReason ReasonOf(GeneratorRunResult result, string name, string className) =>
        Assert.Single(result.TrackedSteps[name].SelectMany(step => step.Outputs), o => o.Value.ToString()!.Contains(className)).Reason;

    /// <summary>
    /// The hint names of the sources <paramref name="result"/> emitted again rather than reused from
    /// <paramref name="previous"/>. A reused source is the same <see cref="Microsoft.CodeAnalysis.Text.SourceText"/> instance; the count is
    /// checked against the source output step, which says how many outputs were new or modified.
    /// </summary>
    private static string[] RegeneratedSources(GeneratorRunResult previous, GeneratorRunResult result)
    {
        string[] regenerated = result.GeneratedSources
            .Where(s => !previous.GeneratedSources.Any(p => p.HintName == s.HintName && ReferenceEquals(p.SourceText, s.SourceText)))
            .Select(s => s.HintName)
            .Order()
            .ToArray();
        int emitted = result.TrackedOutputSteps[WellKnownGeneratorOutputs.SourceOutput]
            .SelectMany(step => step.Outputs)
            .Count(o => o.Reason is IncrementalStepRunReason.New or IncrementalStepRunReason.Modified);
        Assert.Equal(emitted, regenerated.Length);
        return regenerated;
    }

    private static string GeneratedText(GeneratorRunResult result, string hintName) =>
        result.GeneratedSources.Single(s => s.HintName == hintName).SourceText.ToString();

    /// <summary>
    /// A consuming project: its C# sources and its additional files (specs with their GemmaSpec metadata, and
    /// others), and one generator driver kept across edits. Like MSBuild, every edit of the item list writes a new
    /// .editorconfig, so the compiler sees new options for every file, changed or not.
    /// </summary>
    private sealed class ConsumerProject
    {
        private GeneratorDriver _driver;
        private CSharpCompilation _compilation;
        private ImmutableArray<SpecFile> _files;

        private ConsumerProject(GeneratorDriver driver, CSharpCompilation compilation, ImmutableArray<SpecFile> files)
        {
            _driver = driver;
            _compilation = compilation;
            _files = files;
        }

        public static ConsumerProject Create(params SpecFile[] files)
        {
            var compilation = CSharpCompilation.Create("App",
                [CSharpSyntaxTree.ParseText("namespace App; public static class Program { public static int Main() => 0; }", path: "/app/Program.cs")],
                options: new CSharpCompilationOptions(OutputKind.ConsoleApplication));
            GeneratorDriver driver = CSharpGeneratorDriver.Create(
                [new GemmaSpecGenerator().AsSourceGenerator()],
                files.Select(f => f.AdditionalText),
                parseOptions: null,
                optionsProvider: new ItemOptionsProvider(files),
                driverOptions: new GeneratorDriverOptions(IncrementalGeneratorOutputKind.None, trackIncrementalGeneratorSteps: true));
            return new ConsumerProject(driver, compilation, [.. files]);
        }

        /// <summary>Runs the generator over the project as it is now and checks that it did not throw.</summary>
        public GeneratorRunResult Run()
        {
            _driver = _driver.RunGenerators(_compilation);
            GeneratorRunResult result = _driver.GetRunResult().Results.Single();
            Assert.Null(result.Exception);
            return result;
        }

        public ConsumerProject EditCSharp(string text)
        {
            SyntaxTree old = _compilation.SyntaxTrees.Single();
            _compilation = _compilation.ReplaceSyntaxTree(old, CSharpSyntaxTree.ParseText(text, path: old.FilePath));
            return this;
        }

        public ConsumerProject AddFile(SpecFile file)
        {
            _files = _files.Add(file);
            _driver = _driver.AddAdditionalTexts([file.AdditionalText]).WithUpdatedAnalyzerConfigOptions(new ItemOptionsProvider(_files));
            return this;
        }

        /// <summary>Saves new text to <paramref name="file"/>: the compiler gets a new additional text for it.</summary>
        public ConsumerProject EditFile(SpecFile file, string text)
        {
            var edited = new SpecFile(file.Path, text, file.ClassName, file.Namespace, file.IsSpec);
            _files = _files.Replace(file, edited);
            _driver = _driver.ReplaceAdditionalText(file.AdditionalText, edited.AdditionalText)
                .WithUpdatedAnalyzerConfigOptions(new ItemOptionsProvider(_files));
            return this;
        }

        /// <summary>Changes the ClassName metadata of <paramref name="spec"/>: the file itself is unchanged (a record
        /// copy keeps its <see cref="SpecFile.AdditionalText"/>), only the options are new.</summary>
        public ConsumerProject SetClassName(SpecFile spec, string className)
        {
            _files = _files.Replace(spec, spec with { ClassName = className });
            _driver = _driver.WithUpdatedAnalyzerConfigOptions(new ItemOptionsProvider(_files));
            return this;
        }
    }

    /// <summary>The options MSBuild's generated .editorconfig gives each additional file: every compiler-visible
    /// metadata of build/GemmaGen.props, empty when the item does not set it.</summary>
    private sealed class ItemOptionsProvider(IEnumerable<SpecFile> files) : AnalyzerConfigOptionsProvider
    {
        private readonly Dictionary<string, AnalyzerConfigOptions> _byPath = files.ToDictionary(
            f => f.Path,
            f => (AnalyzerConfigOptions)new ItemOptions(ImmutableDictionary<string, string>.Empty
                .Add(GemmaSpecGenerator.SpecMetadata, f.IsSpec ? "true" : "")
                .Add(GemmaSpecGenerator.ClassNameMetadata, f.ClassName ?? "")
                .Add(GemmaSpecGenerator.NamespaceMetadata, f.Namespace ?? "")));

        public override AnalyzerConfigOptions GlobalOptions => ItemOptions.Empty;

        public override AnalyzerConfigOptions GetOptions(SyntaxTree tree) => ItemOptions.Empty;

        public override AnalyzerConfigOptions GetOptions(AdditionalText textFile) =>
            _byPath.TryGetValue(textFile.Path, out AnalyzerConfigOptions? options) ? options : ItemOptions.Empty;
    }

    private sealed class ItemOptions(ImmutableDictionary<string, string> values) : AnalyzerConfigOptions
    {
        public static readonly ItemOptions Empty = new(ImmutableDictionary<string, string>.Empty);

        public override bool TryGetValue(string key, [NotNullWhen(true)] out string? value) => values.TryGetValue(key, out value);
    }
}
