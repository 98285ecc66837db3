extern alias generator;

using GemmaGen.Specs;
using generator::GemmaGen.Generator;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.Text;
using Xunit;

namespace GemmaGen.Tests.Generator;

/// <summary>Every diagnostic the generator reports for a bad spec: id, file, line, column and exact message. A bad
/// spec must produce no source and never make the generator throw (<see cref="GeneratorHarness.Run"/> checks that).</summary>
public sealed class SpecDiagnosticsTests
{
    private const string BadPath = "/specs/bad.json";

    /// <summary>
    /// The members of a valid spec, one per line: '{' is line 1, member i is line i + 2 (model_type on 2 ...
    /// head_dim on 9), a member added by <see cref="Spec"/> goes on line 10. A value starts at column
    /// key length + 7: two spaces of indent, the quoted key, a colon and a space.
    /// </summary>
    private static readonly (string Key, string Value)[] ValidMembers =
    [
        ("model_type", "\"gemma2\""),
        ("vocab_size", "256000"),
        ("hidden_size", "2304"),
        ("intermediate_size", "9216"),
        ("num_hidden_layers", "26"),
        ("num_attention_heads", "8"),
        ("num_key_value_heads", "4"),
        ("head_dim", "256"),
    ];

    /// <summary>The valid spec with each change applied: a new raw JSON value for a key (added at the end when the
    /// key is not there), or null to remove the key.</summary>
    private static string Spec(params (string Key, string? Value)[] changes)
    {
        var members = ValidMembers.Select(m => (m.Key, Value: (string?)m.Value)).ToList();
        foreach ((string key, string? value) in changes)
        {
            int index = members.FindIndex(m => m.Key == key);
            if (index < 0) members.Add((key, value));
            else members[index] = (key, value);
        }
        return "{\n" + string.Join(",\n", members.Where(m => m.Value != null).Select(m => $"  \"{m.Key}\": {m.Value}")) + "\n}\n";
    }

    private static ReportedDiagnostic[] DiagnosticsOf(string? text)
    {
        GeneratorRunResult result = GeneratorHarness.Run(new SpecFile(BadPath, text));
        Assert.Empty(result.GeneratedSources);
        return GeneratorHarness.Diagnostics(result);
    }

    private static void AssertSingle(string? text, string id, int line, int column, string message)
    {
        Assert.Equal([new ReportedDiagnostic(id, BadPath, line, column, message)], DiagnosticsOf(text));
    }

    [Fact]
    public void AValidSpecHasNoDiagnosticsAndOneSource()
    {
        GeneratorRunResult result = GeneratorHarness.Run(new SpecFile("/specs/good.json", Spec()));

        Assert.Empty(result.Diagnostics);
        Assert.Equal(["GemmaGen.Models.Good.g.cs"], GeneratorHarness.HintNames(result));
    }

    [Theory]
    [InlineData("", 1, 1, "Malformed JSON: expected a JSON object ('{') holding the config fields, found the end of the file.")]
    [InlineData(" \n\n", 3, 1, "Malformed JSON: expected a JSON object ('{') holding the config fields, found the end of the file.")]
    [InlineData("[1, 2]", 1, 1, "Malformed JSON: expected a JSON object ('{') holding the config fields, found '['.")]
    [InlineData("\"gemma2\"", 1, 1, "Malformed JSON: expected a JSON object ('{') holding the config fields, found '\"'.")]
    [InlineData("{\n  \"model_type\": \"gemma2\"\n  \"vocab_size\": 1\n}", 3, 3,
        "Malformed JSON: expected ',' or '}' after the value of \"model_type\", found '\"'.")]
    [InlineData("{\n  \"model_type\": \"gemma2\",\n}", 3, 1, "Malformed JSON: expected a property name in double quotes, found '}'.")]
    [InlineData("{\n  \"rms_norm_eps\": NaN\n}", 2, 19,
        "Malformed JSON: expected a value (object, array, string, number, true, false or null), found 'NaN'.")]
    [InlineData("{\n  \"model_type: 1\n}", 2, 17,
        "Malformed JSON: expected '\"' to close the string that starts at line 2, column 3, found a line break.")]
    [InlineData("{ \"a\" 1 }", 1, 7, "Malformed JSON: expected ':' after the property name \"a\", found '1'.")]
    [InlineData("{ \"a\": 01 }", 1, 9, "Malformed JSON: expected ',' or '}' after the value of \"a\", found '1'.")]
    [InlineData("{ \"a\": -x }", 1, 9, "Malformed JSON: expected a digit, found 'x'.")]
    [InlineData("{ \"a\": 1. }", 1, 10, "Malformed JSON: expected a digit, found a space.")]
    [InlineData("{ \"a\": \"\\q\" }", 1, 10,
        "Malformed JSON: expected an escape sequence (\\\", \\\\, \\/, \\b, \\f, \\n, \\r, \\t or \\uXXXX) after '\\', found 'q'.")]
    [InlineData("{ \"a\": \"\\u12G4\" }", 1, 13, "Malformed JSON: expected four hexadecimal digits after '\\u', found 'G4'.")]
    [InlineData("{ \"a\": [1 2] }", 1, 11, "Malformed JSON: expected ',' or ']' after an array element, found '2'.")]
    [InlineData("{ \"a\": tru }", 1, 8,
        "Malformed JSON: expected a value (object, array, string, number, true, false or null), found 'tru'.")]
    [InlineData("{}\n}", 2, 1, "Malformed JSON: expected the end of the file after the top-level value, found '}'.")]
    public void MalformedJsonIsReportedWhereItIsDetected(string text, int line, int column, string message)
    {
        AssertSingle(text, SpecDiagnosticIds.MalformedJson, line, column, message);
    }

    [Fact]
    public void ASpecTruncatedMidFileIsMalformedAtItsEnd()
    {
        string full = File.ReadAllText(RepositoryFiles.Path("Specs", "gemma-2-2b.json")).ReplaceLineEndings("\n");
        string truncated = full[..(full.IndexOf("\"hidden_size\": 2304", StringComparison.Ordinal) + "\"hidden_size\": 23".Length)];

        // Line 15 is `  "hidden_size": 23`: the file ends after its 19th character.
        AssertSingle(truncated, SpecDiagnosticIds.MalformedJson, 15, 20,
            "Malformed JSON: expected ',' or '}' after the value of \"hidden_size\", found the end of the file.");
    }

    [Fact]
    public void ASpecThatCannotBeReadIsReportedAtItsStart()
    {
        AssertSingle(null, SpecDiagnosticIds.MalformedJson, 1, 1,
            "The spec file could not be read: check the path of its GemmaSpec item.");
    }

    [Fact]
    public void ASpecTruncatedInsideAStringNamesWhereTheStringStarts()
    {
        AssertSingle("{\n  \"model_ty", SpecDiagnosticIds.MalformedJson, 2, 12,
            "Malformed JSON: expected '\"' to close the string that starts at line 2, column 3, found the end of the file.");
    }

    [Fact]
    public void NestingDeeperThanTheLimitIsMalformedNotAStackOverflow()
    {
        // The root object is depth 0 and the n-th '[' (at column 5 + n) depth n.
        string text = "{\"a\":" + new string('[', 10_000);

        AssertSingle(text, SpecDiagnosticIds.MalformedJson, 1, 5 + JsonReader.MaxDepth,
            $"Malformed JSON: objects and arrays are nested more than {JsonReader.MaxDepth} deep.");
    }

    [Theory]
    [InlineData("model_type", "the string \"gemma2\"")]
    [InlineData("vocab_size", "a positive integer")]
    [InlineData("hidden_size", "a positive integer")]
    [InlineData("intermediate_size", "a positive integer")]
    [InlineData("num_hidden_layers", "a positive integer")]
    [InlineData("num_attention_heads", "a positive integer")]
    [InlineData("num_key_value_heads", "a positive integer")]
    [InlineData("head_dim", "a positive integer")]
    public void AMissingRequiredFieldIsReportedAtTheOpeningBrace(string key, string expected)
    {
        AssertSingle(Spec((key, null)), SpecDiagnosticIds.MissingField, 1, 1,
            $"Required field '{key}' is missing: add \"{key}\" ({expected}) to the config object.");
    }

    [Theory]
    [InlineData("hidden_size", "\"2304\"", 4, 18, "Field 'hidden_size' must be a positive integer, but it is the string \"2304\".")]
    [InlineData("num_hidden_layers", "26.5", 6, 24, "Field 'num_hidden_layers' must be a positive integer, but it is 26.5.")]
    [InlineData("vocab_size", "null", 3, 17, "Field 'vocab_size' must be a positive integer, but it is null.")]
    [InlineData("model_type", "2", 2, 17, "Field 'model_type' must be the string \"gemma2\", but it is 2.")]
    [InlineData("attn_logit_softcapping", "\"50\"", 10, 29,
        "Field 'attn_logit_softcapping' must be a positive number or null, but it is the string \"50\".")]
    [InlineData("rms_norm_eps", "false", 10, 19, "Field 'rms_norm_eps' must be a positive number, but it is false.")]
    [InlineData("eos_token_id", "true", 10, 19,
        "Field 'eos_token_id' must be a token id or a non-empty list of token ids, but it is true.")]
    [InlineData("eos_token_id", "[1, \"107\"]", 10, 23,
        "Field 'eos_token_id[1]' must be a token id (a non-negative integer), but it is the string \"107\".")]
    [InlineData("rope_parameters", "[10000]", 10, 22, "Field 'rope_parameters' must be an object, but it is an array.")]
    [InlineData("rope_parameters", "{ \"rope_theta\": \"1e4\" }", 10, 38,
        "Field 'rope_parameters.rope_theta' must be a positive number, but it is the string \"1e4\".")]
    [InlineData("hidden_activation", "{}", 10, 24,
        "Field 'hidden_activation' must be the string \"gelu_pytorch_tanh\", but it is an object.")]
    public void AValueOfTheWrongTypeIsReportedAtTheValue(string key, string value, int line, int column, string message)
    {
        AssertSingle(Spec((key, value)), SpecDiagnosticIds.WrongType, line, column, message);
    }

    [Theory]
    [InlineData("hidden_size", "0", 4, 18, "Field 'hidden_size' must be a positive integer, but it is 0.")]
    [InlineData("num_attention_heads", "-8", 7, 26, "Field 'num_attention_heads' must be a positive integer, but it is -8.")]
    [InlineData("vocab_size", "1e12", 3, 17,
        "Field 'vocab_size' must be a positive integer no larger than 2147483647, but it is 1e12.")]
    [InlineData("query_pre_attn_scalar", "0", 10, 28, "Field 'query_pre_attn_scalar' must be a positive number, but it is 0.")]
    [InlineData("sliding_window", "0", 10, 21, "Field 'sliding_window' must be a positive integer, but it is 0.")]
    [InlineData("sliding_window_size", "-1", 10, 26, "Field 'sliding_window_size' must be a positive integer, but it is -1.")]
    [InlineData("final_logit_softcapping", "-30.0", 10, 30,
        "Field 'final_logit_softcapping' must be a positive number, but it is -30.0.")]
    [InlineData("rms_norm_eps", "0", 10, 19, "Field 'rms_norm_eps' must be a positive number, but it is 0.")]
    [InlineData("rope_theta", "1e400", 10, 17,
        "Field 'rope_theta' must be a positive number within the range of a double, but it is 1e400.")]
    [InlineData("max_position_embeddings", "0", 10, 30, "Field 'max_position_embeddings' must be a positive integer, but it is 0.")]
    [InlineData("bos_token_id", "-2", 10, 19, "Field 'bos_token_id' must be a token id (a non-negative integer), but it is -2.")]
    [InlineData("pad_token_id", "-1", 10, 19, "Field 'pad_token_id' must be a token id (a non-negative integer), but it is -1.")]
    [InlineData("eos_token_id", "[]", 10, 19,
        "Field 'eos_token_id' must be a token id or a non-empty list of token ids, but it is an empty array.")]
    public void AnOutOfRangeValueIsReportedAtTheValue(string key, string value, int line, int column, string message)
    {
        AssertSingle(Spec((key, value)), SpecDiagnosticIds.OutOfRange, line, column, message);
    }

    [Fact]
    public void HeadsNotDivisibleByKvHeadsIsReportedAtNumKeyValueHeads()
    {
        AssertSingle(Spec(("num_key_value_heads", "3")), SpecDiagnosticIds.HeadsNotDivisible, 8, 26,
            "num_attention_heads (8) is not a multiple of num_key_value_heads (3): each key/value head must serve the " +
            "same number of query heads, so set num_key_value_heads to a divisor of 8.");
    }

    [Fact]
    public void AModelTypeOtherThanGemma2IsUnsupported()
    {
        AssertSingle(Spec(("model_type", "\"llama\"")), SpecDiagnosticIds.UnsupportedModelType, 2, 17,
            "Unsupported model_type \"llama\": GemmaGen compiles only Gemma 2 configs, whose model_type is \"gemma2\".");
    }

    [Fact]
    public void AnActivationOtherThanTanhGeluIsUnsupported()
    {
        AssertSingle(Spec(("hidden_activation", "\"gelu\"")), SpecDiagnosticIds.UnsupportedActivation, 10, 24,
            "Unsupported hidden_activation \"gelu\": the only supported activation is \"gelu_pytorch_tanh\".");
    }

    [Fact]
    public void TheOlderHiddenActKeyIsNamedWhenItIsTheOneThatIsWrong()
    {
        AssertSingle(Spec(("hidden_act", "\"gelu\"")), SpecDiagnosticIds.UnsupportedActivation, 10, 17,
            "Unsupported hidden_act \"gelu\": the only supported activation is \"gelu_pytorch_tanh\".");
    }

    [Fact]
    public void AnOddHeadDimIsReportedAtHeadDim()
    {
        AssertSingle(Spec(("head_dim", "255")), SpecDiagnosticIds.OddHeadDim, 9, 15,
            "Field 'head_dim' must be an even integer, but it is 255 (rotary embeddings rotate the two halves of each head).");
    }

    [Fact]
    public void ARepeatedKeyIsReportedAtItsSecondOccurrenceNamingTheFirst()
    {
        string text = Spec().Replace("\n}\n", ",\n  \"hidden_size\": 1152\n}\n");

        AssertSingle(text, SpecDiagnosticIds.DuplicateKey, 10, 3,
            "Key 'hidden_size' appears twice in the same object, at line 4, column 3 and here: remove one (JSON readers disagree on which one counts).");
    }

    [Fact]
    public void AProductOfSizesBeyondInt32IsReportedAtTheFieldThatGrowsIt()
    {
        AssertSingle(Spec(("head_dim", "268435456")), SpecDiagnosticIds.OutOfRange, 9, 15,
            "Field 'head_dim' is too large: num_attention_heads × head_dim (the attention width) is 2147483648, more than 2147483647, " +
            "the largest size GemmaGen's kernels index.");
    }

    [Fact]
    public void AnEmbeddingOfMoreThanInt32ElementsIsReportedAtVocabSize()
    {
        AssertSingle(Spec(("hidden_size", "16384")), SpecDiagnosticIds.OutOfRange, 3, 17,
            "Field 'vocab_size' is too large: vocab_size × hidden_size (the embedding's elements) is 4194304000, more than 2147483647, " +
            "the largest size GemmaGen's kernels index.");
    }

    [Fact]
    public void ABatchOfGateAndUpBeyondInt32IsReportedAtIntermediateSize()
    {
        // Every matrix fits (2 × 2^24 × 32 = 2^30 elements), but 64 tokens of gate and up do not (2^31).
        AssertSingle(Spec(("vocab_size", "1000"), ("hidden_size", "32"), ("intermediate_size", "16777216")), SpecDiagnosticIds.OutOfRange, 5, 24,
            "Field 'intermediate_size' is too large: 64 × 2 × intermediate_size (a batch of gate and up) is 2147483648, more than 2147483647, " +
            "the largest size GemmaGen's kernels index.");
    }

    [Fact]
    public void ATokenIdOutsideTheVocabularyIsReportedAtTheId()
    {
        AssertSingle(Spec(("bos_token_id", "256000")), SpecDiagnosticIds.OutOfRange, 10, 19,
            "Field 'bos_token_id' must be a token id below vocab_size (256000), but it is 256000.");
        AssertSingle(Spec(("eos_token_id", "[1, 256001]")), SpecDiagnosticIds.OutOfRange, 10, 23,
            "Field 'eos_token_id[1]' must be a token id below vocab_size (256000), but it is 256001.");
        AssertSingle(Spec(("pad_token_id", "300000")), SpecDiagnosticIds.OutOfRange, 10, 19,
            "Field 'pad_token_id' must be a token id below vocab_size (256000), but it is 300000.");
    }

    [Fact]
    public void TheDiagnosticSpanStartsAtTheOffendingValueAlsoWithCrLfLineEndings()
    {
        string text = Spec(("head_dim", "255")).ReplaceLineEndings("\r\n");

        Diagnostic diagnostic = Assert.Single(GeneratorHarness.Run(new SpecFile(BadPath, text)).Diagnostics);
        Assert.Equal(new LinePosition(8, 14), diagnostic.Location.GetLineSpan().StartLinePosition);
        Assert.Equal(new TextSpan(text.IndexOf("255", StringComparison.Ordinal), 0), diagnostic.Location.SourceSpan);
    }

    [Fact]
    public void EveryErrorInASpecIsReportedInFileOrder()
    {
        string text = Spec(("model_type", "\"llama\""), ("vocab_size", null), ("hidden_size", "0"),
            ("num_key_value_heads", "3"), ("head_dim", "15"));

        Assert.Equal(
            [
                new(SpecDiagnosticIds.MissingField, BadPath, 1, 1,
                    "Required field 'vocab_size' is missing: add \"vocab_size\" (a positive integer) to the config object."),
                new(SpecDiagnosticIds.UnsupportedModelType, BadPath, 2, 17,
                    "Unsupported model_type \"llama\": GemmaGen compiles only Gemma 2 configs, whose model_type is \"gemma2\"."),
                new(SpecDiagnosticIds.OutOfRange, BadPath, 3, 18, "Field 'hidden_size' must be a positive integer, but it is 0."),
                new(SpecDiagnosticIds.HeadsNotDivisible, BadPath, 7, 26,
                    "num_attention_heads (8) is not a multiple of num_key_value_heads (3): each key/value head must serve the " +
                    "same number of query heads, so set num_key_value_heads to a divisor of 8."),
                new ReportedDiagnostic(SpecDiagnosticIds.OddHeadDim, BadPath, 8, 15,
                    "Field 'head_dim' must be an even integer, but it is 15 (rotary embeddings rotate the two halves of each head)."),
            ],
            DiagnosticsOf(text));
    }

    [Fact]
    public void TwoSpecsForTheSameClassReportTheSecondAndEmitTheFirst()
    {
        GeneratorRunResult result = GeneratorHarness.Run(
            new SpecFile("/specs/a.json", Spec(), ClassName: "Same"),
            new SpecFile("/specs/b.json", Spec(("num_hidden_layers", "2")), ClassName: "Same"));

        Assert.Equal(
            [
                new ReportedDiagnostic(SpecDiagnosticIds.DuplicateClassName, "/specs/b.json", 1, 1,
                    "The class GemmaGen.Models.Same is already generated from '/specs/a.json': give this spec a different " +
                    "ClassName or Namespace metadata."),
            ],
            GeneratorHarness.Diagnostics(result));
        Assert.Equal(["GemmaGen.Models.Same.g.cs"], GeneratorHarness.HintNames(result));
        object emitted = Assert.Single(result.TrackedSteps[TrackingNames.Models].SelectMany(step => step.Outputs)).Value;
        Assert.Contains("SourceFileName = a.json", emitted.ToString());
    }

    [Fact]
    public void TwoConfigJsonFilesWithoutClassNameMetadataClash()
    {
        GeneratorRunResult result = GeneratorHarness.Run(
            new SpecFile("/models/tiny-gqa/config.json", Spec()),
            new SpecFile("/models/tiny-softcap/config.json", Spec()));

        Assert.Equal(
            [
                new ReportedDiagnostic(SpecDiagnosticIds.DuplicateClassName, "/models/tiny-softcap/config.json", 1, 1,
                    "The class GemmaGen.Models.Config is already generated from '/models/tiny-gqa/config.json': give this " +
                    "spec a different ClassName or Namespace metadata."),
            ],
            GeneratorHarness.Diagnostics(result));
        Assert.Equal(["GemmaGen.Models.Config.g.cs"], GeneratorHarness.HintNames(result));
    }

    [Fact]
    public void ClassNamesThatDifferOnlyInCaseClashBecauseTheirFileNamesWould()
    {
        GeneratorRunResult result = GeneratorHarness.Run(
            new SpecFile("/specs/a.json", Spec(), ClassName: "Gemma2_2B"),
            new SpecFile("/specs/b.json", Spec(), ClassName: "Gemma2_2b"));

        Assert.Equal(
            [
                new ReportedDiagnostic(SpecDiagnosticIds.DuplicateClassName, "/specs/b.json", 1, 1,
                    "The class GemmaGen.Models.Gemma2_2b clashes with GemmaGen.Models.Gemma2_2B, generated from '/specs/a.json' " +
                    "(generated file names ignore case): give this spec a different ClassName or Namespace metadata."),
            ],
            GeneratorHarness.Diagnostics(result));
        Assert.Equal(["GemmaGen.Models.Gemma2_2B.g.cs"], GeneratorHarness.HintNames(result));
    }

    [Fact]
    public void TheSameClassNameInAnotherNamespaceIsNoClash()
    {
        GeneratorRunResult result = GeneratorHarness.Run(
            new SpecFile("/specs/a.json", Spec(), ClassName: "Same"),
            new SpecFile("/specs/b.json", Spec(), ClassName: "Same", Namespace: "Other.Models"));

        Assert.Empty(result.Diagnostics);
        Assert.Equal(["GemmaGen.Models.Same.g.cs", "Other.Models.Same.g.cs"], GeneratorHarness.HintNames(result));
    }

    private const string InvalidClassName =
        "is not a valid C# class name: use letters, digits and '_', not starting with a digit, not a keyword and not " +
        "only lowercase letters (for example Gemma2_2B).";

    [Theory]
    [InlineData("my-model")]
    [InlineData("2B")]
    [InlineData("class")]
    [InlineData("record")]
    [InlineData("gemma")]
    public void AnInvalidClassNameIsReportedAtTheStartOfTheSpec(string className)
    {
        GeneratorRunResult result = GeneratorHarness.Run(new SpecFile(BadPath, Spec(), ClassName: className));

        Assert.Equal(
            [new ReportedDiagnostic(SpecDiagnosticIds.InvalidName, BadPath, 1, 1, $"ClassName '{className}' {InvalidClassName}")],
            GeneratorHarness.Diagnostics(result));
        Assert.Empty(result.GeneratedSources);
    }

    [Theory]
    [InlineData("1Models")]
    [InlineData("GemmaGen..Models")]
    [InlineData("GemmaGen.Models.")]
    [InlineData("My Models")]
    [InlineData("GemmaGen.namespace")]
    public void AnInvalidNamespaceIsReportedAtTheStartOfTheSpec(string ns)
    {
        GeneratorRunResult result = GeneratorHarness.Run(new SpecFile(BadPath, Spec(), ClassName: "Good", Namespace: ns));

        Assert.Equal(
            [
                new ReportedDiagnostic(SpecDiagnosticIds.InvalidName, BadPath, 1, 1,
                    $"Namespace '{ns}' is not a valid C# namespace: use identifiers separated by dots (for example GemmaGen.Models)."),
            ],
            GeneratorHarness.Diagnostics(result));
        Assert.Empty(result.GeneratedSources);
    }

    [Fact]
    public void AFileNameThatGivesNoValidClassNameAsksForClassNameMetadata()
    {
        GeneratorRunResult result = GeneratorHarness.Run(new SpecFile("/specs/+.json", Spec()));

        Assert.Equal(
            [
                new ReportedDiagnostic(SpecDiagnosticIds.InvalidName, "/specs/+.json", 1, 1,
                    "The class name '+' derived from the file name '+.json' is not a valid C# class name: set ClassName " +
                    "metadata on the GemmaSpec item."),
            ],
            GeneratorHarness.Diagnostics(result));
    }

    [Fact]
    public void ABadSpecDoesNotStopAGoodOne()
    {
        GeneratorRunResult result = GeneratorHarness.Run(
            new SpecFile(BadPath, "{"),
            new SpecFile("/specs/gemma-2-demo.json", Spec()));

        Assert.Equal([SpecDiagnosticIds.MalformedJson], GeneratorHarness.Diagnostics(result).Select(d => d.Id));
        Assert.Equal(["GemmaGen.Models.Gemma2_Demo.g.cs"], GeneratorHarness.HintNames(result));
    }

    [Fact]
    public void AdditionalFilesThatAreNotSpecsAreIgnored()
    {
        GeneratorRunResult result = GeneratorHarness.Run(new SpecFile("/docs/notes.json", "not json", IsSpec: false));

        Assert.Empty(result.Diagnostics);
        Assert.Empty(result.GeneratedSources);
    }
}
