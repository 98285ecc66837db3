extern alias generator;

using System.Collections.Immutable;
using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using generator::GemmaGen.Generator;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.Diagnostics;
using Microsoft.CodeAnalysis.Text;
using Xunit;

namespace GemmaGen.Tests.Generator;

/// <summary>A file handed to the generator as an AdditionalFiles item, with the metadata build/GemmaGen.props
/// would give it. <paramref name="Text"/> null is a file the compiler could not read; <paramref name="IsSpec"/>
/// false is an additional file that is not a spec.</summary>
internal sealed record SpecFile(string Path, string? Text, string? ClassName = null, string? Namespace = null, bool IsSpec = true)
{
    /// <summary>The file as the compiler passes it to the generator; a test replaces this instance to edit the file.</summary>
    public AdditionalText AdditionalText { get; } = new InMemoryAdditionalText(Path, Text);
}

/// <summary>An additional file whose text is held in memory (null: the file could not be read).</summary>
internal sealed class InMemoryAdditionalText(string path, string? text) : AdditionalText
{
    private readonly SourceText? _text = text == null ? null : SourceText.From(text);

    public override string Path => path;

    public override SourceText? GetText(CancellationToken cancellationToken = default) => _text;
}

/// <summary>A reported diagnostic, flattened for exact comparison: 1-based line and column, as a build log shows them.</summary>
internal sealed record ReportedDiagnostic(string Id, string Path, int Line, int Column, string Message);

/// <summary>Runs <see cref="GemmaSpecGenerator"/> over in-memory files, as the compiler would.</summary>
internal static class GeneratorHarness
{
    /// <summary>The generator ignores the compilation, so an empty one does.</summary>
    public static readonly CSharpCompilation Compilation = CSharpCompilation.Create("GeneratorTests",
        options: new CSharpCompilationOptions(OutputKind.DynamicallyLinkedLibrary));

    /// <summary>A driver over <paramref name="files"/> that records every tracked step.</summary>
    public static GeneratorDriver CreateDriver(params SpecFile[] files) =>
        CSharpGeneratorDriver.Create(
            [new GemmaSpecGenerator().AsSourceGenerator()],
            files.Select(f => f.AdditionalText),
            parseOptions: null,
            optionsProvider: new InMemoryOptionsProvider(files),
            driverOptions: new GeneratorDriverOptions(IncrementalGeneratorOutputKind.None, trackIncrementalGeneratorSteps: true));

    /// <summary>Runs the generator once and checks that it did not throw.</summary>
    public static GeneratorRunResult Run(params SpecFile[] files)
    {
        GeneratorRunResult result = CreateDriver(files).RunGenerators(Compilation).GetRunResult().Results.Single();
        Assert.Null(result.Exception);
        return result;
    }

    /// <summary>The diagnostics of a run, in report order.</summary>
    public static ReportedDiagnostic[] Diagnostics(GeneratorRunResult result) =>
        result.Diagnostics.Select(d =>
        {
            Assert.Equal(DiagnosticSeverity.Error, d.Severity);
            FileLinePositionSpan span = d.Location.GetLineSpan();
            return new ReportedDiagnostic(d.Id, span.Path, span.StartLinePosition.Line + 1,
                span.StartLinePosition.Character + 1, d.GetMessage(CultureInfo.InvariantCulture));
        }).ToArray();

    /// <summary>The hint names of the generated sources.</summary>
    public static string[] HintNames(GeneratorRunResult result) =>
        result.GeneratedSources.Select(s => s.HintName).ToArray();

    /// <summary>Per-file options keyed by path, as the compiler reads them from the generated .editorconfig. Like
    /// MSBuild, it writes every requested metadata, with an empty value when the item does not set it.</summary>
    private sealed class InMemoryOptionsProvider(IEnumerable<SpecFile> files) : AnalyzerConfigOptionsProvider
    {
        private readonly Dictionary<string, AnalyzerConfigOptions> _byPath = files.ToDictionary(
            f => f.Path,
            f => (AnalyzerConfigOptions)new InMemoryOptions(f.IsSpec
                ? ImmutableDictionary<string, string>.Empty
                    .Add(GemmaSpecGenerator.SpecMetadata, "true")
                    .Add(GemmaSpecGenerator.ClassNameMetadata, f.ClassName ?? "")
                    .Add(GemmaSpecGenerator.NamespaceMetadata, f.Namespace ?? "")
                : ImmutableDictionary<string, string>.Empty));

        public override AnalyzerConfigOptions GlobalOptions => InMemoryOptions.Empty;

        public override AnalyzerConfigOptions GetOptions(SyntaxTree tree) => InMemoryOptions.Empty;

        public override AnalyzerConfigOptions GetOptions(AdditionalText textFile) =>
            _byPath.TryGetValue(textFile.Path, out AnalyzerConfigOptions? options) ? options : InMemoryOptions.Empty;
    }

    private sealed class InMemoryOptions(ImmutableDictionary<string, string> values) : AnalyzerConfigOptions
    {
        public static readonly InMemoryOptions Empty = new(ImmutableDictionary<string, string>.Empty);

        public override bool TryGetValue(string key, [NotNullWhen(true)] out string? value) => values.TryGetValue(key, out value);
    }
}

/// <summary>Files of the repository the tests read in place (Specs/ is not copied to the output directory).</summary>
internal static class RepositoryFiles
{
    /// <summary>The repository root: the nearest folder above the test assembly that holds GemmaGen.sln.</summary>
    public static string Root { get; } = FindRoot();

    public static string Path(params string[] parts) => System.IO.Path.Combine([Root, .. parts]);

    private static string FindRoot()
    {
        for (DirectoryInfo? dir = new(AppContext.BaseDirectory); dir != null; dir = dir.Parent)
        {
            if (File.Exists(System.IO.Path.Combine(dir.FullName, "GemmaGen.sln"))) return dir.FullName;
        }
        throw new InvalidOperationException("GemmaGen.sln not found above " + AppContext.BaseDirectory);
    }
}
