using System;
using System.Collections.Generic;
using System.Collections.Immutable;
using System.IO;
using System.Text;
using System.Threading;
using GemmaGen.Specs;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.Diagnostics;
using Microsoft.CodeAnalysis.Text;

namespace GemmaGen.Generator
{
    /// <summary>
    /// Compiles each Gemma 2 spec (an <c>AdditionalFiles</c> item that <c>build/GemmaGen.props</c> marks with
    /// <c>GemmaGenSpec=true</c>) into a specialized model class. Stages: pick the spec files and their metadata
    /// (<see cref="TrackingNames.SpecFiles"/>), read and parse each spec (<see cref="TrackingNames.Specs"/>), check
    /// that no two specs generate the same class (<see cref="TrackingNames.ModelSet"/>), then emit one source per
    /// model (<see cref="TrackingNames.Models"/>) and report the diagnostics (<see cref="TrackingNames.Diagnostics"/>).
    /// Every stage's output is value-equatable, so a spec that did not change regenerates nothing; the options are
    /// read into values before parsing, so new options (a new .editorconfig after any item edit) parse nothing again.
    /// </summary>
    [Generator(LanguageNames.CSharp)]
    public sealed class GemmaSpecGenerator : IIncrementalGenerator
    {
        /// <summary>Item metadata <c>GemmaGenSpec</c>: "true" on the additional files that are specs.</summary>
        public const string SpecMetadata = "build_metadata.AdditionalFiles.GemmaGenSpec";

        /// <summary>Item metadata <c>GemmaGenClassName</c>: the generated class's name (default: from the file name).</summary>
        public const string ClassNameMetadata = "build_metadata.AdditionalFiles.GemmaGenClassName";

        /// <summary>Item metadata <c>GemmaGenNamespace</c>: the generated class's namespace (default <see cref="DefaultNamespace"/>).</summary>
        public const string NamespaceMetadata = "build_metadata.AdditionalFiles.GemmaGenNamespace";

        /// <summary>The namespace of a generated class when the spec names none.</summary>
        public const string DefaultNamespace = "GemmaGen.Models";

        /// <inheritdoc/>
        public void Initialize(IncrementalGeneratorInitializationContext context)
        {
            IncrementalValuesProvider<SpecItem> specFiles = context.AdditionalTextsProvider
                .Combine(context.AnalyzerConfigOptionsProvider)
                .Select(static (pair, _) => SpecItemOf(pair.Left, pair.Right.GetOptions(pair.Left)))
                .Where(static file => file.IsSpec)
                .WithTrackingName(TrackingNames.SpecFiles);

            IncrementalValuesProvider<ParsedSpec> specs = specFiles
                .Select(static (file, cancellationToken) => ReadSpec(file, cancellationToken))
                .WithTrackingName(TrackingNames.Specs);

            IncrementalValueProvider<ModelSet> modelSet = specs
                .Collect()
                .Select(static (all, _) => ResolveModels(all))
                .WithTrackingName(TrackingNames.ModelSet);

            IncrementalValuesProvider<GeneratedModel> models = modelSet
                .SelectMany(static (set, _) => set.Models.AsImmutableArray())
                .WithTrackingName(TrackingNames.Models);

            IncrementalValuesProvider<SpecDiagnostic> diagnostics = modelSet
                .SelectMany(static (set, _) => set.Diagnostics.AsImmutableArray())
                .WithTrackingName(TrackingNames.Diagnostics);

            context.RegisterSourceOutput(models, static (output, model) =>
                output.AddSource($"{model.Namespace}.{model.ClassName}.g.cs", ModelEmitter.Emit(model)));
            context.RegisterSourceOutput(diagnostics, static (output, diagnostic) =>
                output.ReportDiagnostic(diagnostic.ToDiagnostic()));
        }

        /// <summary>An additional file with the GemmaSpec metadata its options carry.</summary>
        private static SpecItem SpecItemOf(AdditionalText file, AnalyzerConfigOptions options) =>
            new SpecItem(file,
                options.TryGetValue(SpecMetadata, out string? value) && string.Equals(value, "true", StringComparison.OrdinalIgnoreCase),
                Metadata(options, ClassNameMetadata),
                Metadata(options, NamespaceMetadata));

        /// <summary>Parses one spec and works out its class name and namespace; every problem becomes a diagnostic.</summary>
        private static ParsedSpec ReadSpec(SpecItem spec, CancellationToken cancellationToken)
        {
            AdditionalText file = spec.File;
            string path = file.Path;
            var diagnostics = ImmutableArray.CreateBuilder<SpecDiagnostic>();

            Gemma2Config? config = null;
            string? text = file.GetText(cancellationToken)?.ToString();
            if (text == null)
            {
                diagnostics.Add(new SpecDiagnostic(SpecDiagnosticIds.MalformedJson,
                    "The spec file could not be read: check the path of its GemmaSpec item.", path, 1, 1, 0));
            }
            else
            {
                SpecParseResult parsed = SpecParser.Parse(text);
                config = parsed.Config;
                foreach (SpecError error in parsed.Errors)
                {
                    diagnostics.Add(new SpecDiagnostic(error.Id, error.Message, path, error.Line, error.Column,
                        OffsetOf(text, error.Line, error.Column)));
                }
            }

            string fileName = Path.GetFileName(path);
            string className;
            if (spec.ClassName is { } explicitName)
            {
                className = explicitName;
                if (!IsValidClassName(className))
                {
                    diagnostics.Add(AtFileStart(SpecDiagnosticIds.InvalidName, path,
                        $"ClassName '{className}' is not a valid C# class name: use letters, digits and '_', not starting with a digit, " +
                        "not a keyword and not only lowercase letters (for example Gemma2_2B)."));
                }
            }
            else
            {
                className = ClassNameFromFileName(path);
                if (!IsValidClassName(className))
                {
                    diagnostics.Add(AtFileStart(SpecDiagnosticIds.InvalidName, path,
                        $"The class name '{className}' derived from the file name '{fileName}' is not a valid C# class name: " +
                        "set ClassName metadata on the GemmaSpec item."));
                }
            }

            string ns = spec.Namespace ?? DefaultNamespace;
            if (!IsValidNamespace(ns))
            {
                diagnostics.Add(AtFileStart(SpecDiagnosticIds.InvalidName, path,
                    $"Namespace '{ns}' is not a valid C# namespace: use identifiers separated by dots (for example GemmaGen.Models)."));
            }

            return new ParsedSpec(path, fileName, className, ns, diagnostics.Count == 0 ? config : null,
                new EquatableArray<SpecDiagnostic>(diagnostics.ToImmutable()));
        }

        /// <summary>Keeps the first spec (in item order) of each generated class and reports the others. Names
        /// that differ only in case also clash: they give the same hint name, and hint names ignore case.</summary>
        private static ModelSet ResolveModels(ImmutableArray<ParsedSpec> specs)
        {
            var models = ImmutableArray.CreateBuilder<GeneratedModel>();
            var diagnostics = ImmutableArray.CreateBuilder<SpecDiagnostic>();
            var owners = new Dictionary<string, ParsedSpec>(StringComparer.OrdinalIgnoreCase);
            foreach (ParsedSpec spec in specs)
            {
                diagnostics.AddRange(spec.Diagnostics);
                if (spec.Config == null) continue;
                string fullName = spec.Namespace + "." + spec.ClassName;
                if (owners.TryGetValue(fullName, out ParsedSpec? owner))
                {
                    string ownerName = owner.Namespace + "." + owner.ClassName;
                    string clash = ownerName == fullName
                        ? $"The class {fullName} is already generated from '{owner.Path}'"
                        : $"The class {fullName} clashes with {ownerName}, generated from '{owner.Path}' (generated file names ignore case)";
                    diagnostics.Add(AtFileStart(SpecDiagnosticIds.DuplicateClassName, spec.Path,
                        clash + ": give this spec a different ClassName or Namespace metadata."));
                    continue;
                }
                owners.Add(fullName, spec);
                models.Add(new GeneratedModel(spec.ClassName, spec.Namespace, spec.FileName, spec.Config));
            }
            return new ModelSet(new EquatableArray<GeneratedModel>(models.ToImmutable()),
                new EquatableArray<SpecDiagnostic>(diagnostics.ToImmutable()));
        }

        /// <summary>
        /// The class name for a spec file with no ClassName metadata: the file name's stem split on '-', '_', '.'
        /// and ' ', each part capitalized ("2b" becomes "2B"), joined with '_' after a part that ends in a digit
        /// so numbers stay apart: <c>gemma-2-2b.json</c> → <c>Gemma2_2B</c>, <c>gemma-2-demo.json</c> →
        /// <c>Gemma2_Demo</c>, <c>config.json</c> → <c>Config</c>. A leading digit gets a '_' prefix.
        /// </summary>
        public static string ClassNameFromFileName(string path)
        {
            var name = new StringBuilder();
            foreach (string part in Path.GetFileNameWithoutExtension(path).Split(new[] { '-', '_', '.', ' ' }, StringSplitOptions.RemoveEmptyEntries))
            {
                if (name.Length > 0 && char.IsDigit(name[name.Length - 1])) name.Append('_');
                int digits = 0;
                while (digits < part.Length && char.IsDigit(part[digits])) digits++;
                bool sizeSuffix = digits > 0 && digits < part.Length && IsAllLetters(part, digits);
                name.Append(sizeSuffix
                    ? part.Substring(0, digits) + part.Substring(digits).ToUpperInvariant()
                    : char.ToUpperInvariant(part[0]) + part.Substring(1));
            }
            if (name.Length > 0 && char.IsDigit(name[0])) name.Insert(0, '_');
            return name.ToString();
        }

        private static bool IsAllLetters(string text, int start)
        {
            for (int i = start; i < text.Length; i++)
            {
                if (!char.IsLetter(text[i])) return false;
            }
            return true;
        }

        /// <summary>A class name must be an identifier that is not a keyword; a name of only lowercase ASCII letters
        /// is refused too, because the compiler warns about it (CS8981) and warnings may be errors.</summary>
        private static bool IsValidClassName(string name)
        {
            if (!IsIdentifier(name)) return false;
            foreach (char c in name)
            {
                if (c < 'a' || c > 'z') return true;
            }
            return false;
        }

        private static bool IsValidNamespace(string ns)
        {
            foreach (string part in ns.Split('.'))
            {
                if (!IsIdentifier(part)) return false;
            }
            return true;
        }

        private static bool IsIdentifier(string name) =>
            SyntaxFacts.IsValidIdentifier(name)
            && SyntaxFacts.GetKeywordKind(name) == SyntaxKind.None
            && SyntaxFacts.GetContextualKeywordKind(name) == SyntaxKind.None;

        /// <summary>Item metadata, or null when it is absent or blank (MSBuild passes an unset metadata as "").</summary>
        private static string? Metadata(AnalyzerConfigOptions options, string key) =>
            options.TryGetValue(key, out string? value) && !string.IsNullOrWhiteSpace(value) ? value.Trim() : null;

        private static SpecDiagnostic AtFileStart(string id, string path, string message) =>
            new SpecDiagnostic(id, message, path, 1, 1, 0);

        /// <summary>The character offset of a 1-based line and column, counting line breaks as the JSON reader does.</summary>
        private static int OffsetOf(string text, int line, int column)
        {
            int offset = 0;
            for (int current = 1; current < line && offset < text.Length; offset++)
            {
                char c = text[offset];
                if (c == '\n' || (c == '\r' && (offset + 1 == text.Length || text[offset + 1] != '\n'))) current++;
            }
            return Math.Min(offset + column - 1, text.Length);
        }
    }

    /// <summary>The names of the generator's tracked steps, so tests can check which steps reran.</summary>
    public static class TrackingNames
    {
        /// <summary>One step per spec file: the file and its GemmaSpec metadata, read from the options.</summary>
        public const string SpecFiles = nameof(SpecFiles);

        /// <summary>One step per spec file: the parsed config (or its diagnostics), class name and namespace.</summary>
        public const string Specs = nameof(Specs);

        /// <summary>All specs together, with duplicate class names resolved.</summary>
        public const string ModelSet = nameof(ModelSet);

        /// <summary>One output per generated class.</summary>
        public const string Models = nameof(Models);

        /// <summary>One output per diagnostic.</summary>
        public const string Diagnostics = nameof(Diagnostics);
    }

    /// <summary>An additional file and the metadata the generator reads from its options. The file compares by
    /// reference: the compiler hands over the same instance while the file is unchanged.</summary>
    /// <param name="File">The additional file.</param>
    /// <param name="IsSpec">Whether its item is a GemmaSpec (metadata <c>GemmaGenSpec=true</c>).</param>
    /// <param name="ClassName">The ClassName metadata, or null when it is absent or blank.</param>
    /// <param name="Namespace">The Namespace metadata, or null when it is absent or blank.</param>
    internal sealed record SpecItem(AdditionalText File, bool IsSpec, string? ClassName, string? Namespace);

    /// <summary>One spec file after parsing: what the later stages need, and nothing that is not value-equatable.</summary>
    /// <param name="Path">The spec's path, as the compiler was given it.</param>
    /// <param name="FileName">The file name without directory, for the generated header.</param>
    /// <param name="ClassName">The class to generate.</param>
    /// <param name="Namespace">The namespace of that class.</param>
    /// <param name="Config">The config; null when <paramref name="Diagnostics"/> is not empty.</param>
    /// <param name="Diagnostics">The problems of this spec, its JSON and its metadata.</param>
    internal sealed record ParsedSpec(
        string Path, string FileName, string ClassName, string Namespace, Gemma2Config? Config,
        EquatableArray<SpecDiagnostic> Diagnostics);

    /// <summary>The models to emit (one per class) and every diagnostic of every spec.</summary>
    internal sealed record ModelSet(EquatableArray<GeneratedModel> Models, EquatableArray<SpecDiagnostic> Diagnostics);

    /// <summary>A spec diagnostic as a value: the <see cref="Location"/> is built from it only when reported,
    /// because a Location would defeat the pipeline's caching.</summary>
    /// <param name="Offset">Character offset of <paramref name="Line"/> and <paramref name="Column"/> in the file.</param>
    internal readonly record struct SpecDiagnostic(string Id, string Message, string Path, int Line, int Column, int Offset)
    {
        public Diagnostic ToDiagnostic()
        {
            var position = new LinePosition(Line - 1, Column - 1);
            Location location = Location.Create(Path, new TextSpan(Offset, 0), new LinePositionSpan(position, position));
            return Diagnostic.Create(SpecDiagnosticDescriptors.For(Id), location, Message);
        }
    }

    /// <summary>One descriptor per <see cref="SpecDiagnosticIds"/> id; the message is the parser's, passed as the
    /// only format argument.</summary>
    internal static class SpecDiagnosticDescriptors
    {
        private static readonly ImmutableDictionary<string, DiagnosticDescriptor> ById = new[]
        {
            Create(SpecDiagnosticIds.MalformedJson, "Malformed Gemma spec JSON"),
            Create(SpecDiagnosticIds.MissingField, "Gemma spec is missing a required field"),
            Create(SpecDiagnosticIds.WrongType, "Gemma spec field has the wrong type"),
            Create(SpecDiagnosticIds.OutOfRange, "Gemma spec field is out of range"),
            Create(SpecDiagnosticIds.HeadsNotDivisible, "Attention heads are not a multiple of key/value heads"),
            Create(SpecDiagnosticIds.UnsupportedModelType, "Unsupported model_type"),
            Create(SpecDiagnosticIds.UnsupportedActivation, "Unsupported hidden_activation"),
            Create(SpecDiagnosticIds.DuplicateClassName, "Two Gemma specs generate the same class"),
            Create(SpecDiagnosticIds.InvalidName, "Invalid class name or namespace for a Gemma spec"),
            Create(SpecDiagnosticIds.OddHeadDim, "head_dim is odd"),
            Create(SpecDiagnosticIds.DuplicateKey, "A key appears twice in a Gemma spec object"),
        }.ToImmutableDictionary(d => d.Id);

        public static DiagnosticDescriptor For(string id) => ById[id];

        private static DiagnosticDescriptor Create(string id, string title) =>
            new DiagnosticDescriptor(id, title, "{0}", "GemmaGen", DiagnosticSeverity.Error, isEnabledByDefault: true);
    }
}
