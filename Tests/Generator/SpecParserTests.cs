using GemmaGen.Specs;
using Xunit;

namespace GemmaGen.Tests.Generator;

/// <summary>The forms of config.json the parser accepts, and the values it reads (the runtime copy of the parser,
/// which is the same source as the generator's).</summary>
public sealed class SpecParserTests
{
    /// <summary>The required fields only, as in a minimal hand-written spec.</summary>
    private const string Minimal = """
        {
          "model_type": "gemma2",
          "vocab_size": 256000,
          "hidden_size": 2304,
          "intermediate_size": 9216,
          "num_hidden_layers": 26,
          "num_attention_heads": 8,
          "num_key_value_heads": 4,
          "head_dim": 256
        }
        """;

    private static Gemma2Config Parse(string json)
    {
        SpecParseResult result = SpecParser.Parse(json);
        Assert.Empty(result.Errors);
        Assert.NotNull(result.Config);
        return result.Config;
    }

    /// <summary><see cref="Minimal"/> with extra members added before the closing brace.</summary>
    private static string MinimalWith(string members) => Minimal.Replace("\"head_dim\": 256", "\"head_dim\": 256,\n" + members);

    [Fact]
    public void AbsentOptionalFieldsTakeTheGemma2Defaults()
    {
        Gemma2Config config = Parse(Minimal);

        var expected = new Gemma2Config("gemma2", 256000, 2304, 9216, 26, 8, 4, 256,
            QueryPreAttnScalar: 256, SlidingWindow: 4096, AttnLogitSoftcapping: 50.0, FinalLogitSoftcapping: 30.0,
            RmsNormEps: 1e-6, RopeTheta: 10000, MaxPositionEmbeddings: 8192, HiddenActivation: "gelu_pytorch_tanh",
            BosTokenId: 2, EosTokenIds: EquatableArray<int>.Create(1), PadTokenId: 0);
        Assert.Equal(expected, config);
    }

    [Fact]
    public void ClassicConfigReadsEveryField()
    {
        Gemma2Config config = Parse(MinimalWith("""
              "query_pre_attn_scalar": 144,
              "sliding_window": 2048,
              "attn_logit_softcapping": 40.5,
              "final_logit_softcapping": 20.0,
              "rms_norm_eps": 1e-05,
              "rope_theta": 500000.0,
              "max_position_embeddings": 4096,
              "hidden_activation": "gelu_pytorch_tanh",
              "bos_token_id": 5,
              "eos_token_id": 6,
              "pad_token_id": 7
            """));

        var expected = new Gemma2Config("gemma2", 256000, 2304, 9216, 26, 8, 4, 256, 144, 2048, 40.5, 20.0, 1e-5,
            500000, 4096, "gelu_pytorch_tanh", 5, EquatableArray<int>.Create(6), 7);
        Assert.Equal(expected, config);
    }

    [Fact]
    public void RopeThetaIsReadFromRopeParametersWhenAbsentAtTopLevel()
    {
        Gemma2Config config = Parse(MinimalWith("""  "rope_parameters": { "rope_type": "default", "rope_theta": 20000.0 }"""));

        Assert.Equal(20000, config.RopeTheta);
    }

    [Fact]
    public void TopLevelRopeThetaWinsOverRopeParameters()
    {
        Gemma2Config config = Parse(MinimalWith("""
              "rope_theta": 30000,
              "rope_parameters": { "rope_theta": 20000.0 }
            """));

        Assert.Equal(30000, config.RopeTheta);
    }

    [Fact]
    public void RopeParametersWithoutRopeThetaTakeTheDefault()
    {
        Assert.Equal(10000, Parse(MinimalWith("""  "rope_parameters": { "rope_type": "default" }""")).RopeTheta);
    }

    [Fact]
    public void EosTokenIdMayBeANumber()
    {
        Assert.Equal(EquatableArray<int>.Create(107), Parse(MinimalWith("""  "eos_token_id": 107""")).EosTokenIds);
    }

    [Fact]
    public void EosTokenIdMayBeAList()
    {
        Assert.Equal(EquatableArray<int>.Create(1, 107), Parse(MinimalWith("""  "eos_token_id": [1, 107]""")).EosTokenIds);
    }

    [Fact]
    public void UnknownKeysOfAnyShapeAreIgnored()
    {
        Gemma2Config config = Parse(MinimalWith("""
              "architectures": ["Gemma2ForCausalLM"],
              "torch_dtype": "bfloat16",
              "transformers_version": "4.42.4",
              "cache_implementation": "hybrid",
              "attention_bias": false,
              "attention_dropout": 0.0,
              "initializer_range": 0.02,
              "use_cache": true,
              "quantization_config": { "bits": 4, "groups": [ { "a": null } ] }
            """));

        Assert.Equal(Parse(Minimal), config);
    }

    [Fact]
    public void LegacySlidingWindowSizeIsUsedWhenSlidingWindowIsAbsent()
    {
        Assert.Equal(1024, Parse(MinimalWith("""  "sliding_window_size": 1024""")).SlidingWindow);
    }

    [Fact]
    public void SlidingWindowWinsOverTheLegacyKey()
    {
        Assert.Equal(512, Parse(MinimalWith("""
              "sliding_window_size": 1024,
              "sliding_window": 512
            """)).SlidingWindow);
    }

    [Fact]
    public void NullSoftcapsMeanDisabled()
    {
        Gemma2Config config = Parse(MinimalWith("""
              "attn_logit_softcapping": null,
              "final_logit_softcapping": null
            """));

        Assert.Null(config.AttnLogitSoftcapping);
        Assert.Null(config.FinalLogitSoftcapping);
    }

    [Theory]
    [InlineData("\"hidden_act\": \"gelu_pytorch_tanh\"")]
    [InlineData("\"hidden_activation\": null, \"hidden_act\": \"gelu_pytorch_tanh\"")]
    [InlineData("\"hidden_activation\": null")]
    public void TheOlderHiddenActKeyAndNullActivationAreAccepted(string members)
    {
        Assert.Equal("gelu_pytorch_tanh", Parse(MinimalWith(members)).HiddenActivation);
    }

    [Theory]
    [InlineData("2304.0")]
    [InlineData("2.304e3")]
    [InlineData("2304E+0")]
    public void AnIntegerMayBeWrittenAsANumberWithNoFraction(string hiddenSize)
    {
        Assert.Equal(2304, Parse(Minimal.Replace("2304", hiddenSize)).HiddenSize);
    }

    [Fact]
    public void StringEscapesAreDecoded()
    {
        Assert.Equal("gemma2", Parse(Minimal.Replace("\"gemma2\"", "\"gemma\\u0032\"")).ModelType);
    }

    [Fact]
    public void ARepeatedKeyIsAnErrorAtItsSecondOccurrence()
    {
        SpecParseResult result = SpecParser.Parse(MinimalWith("""  "hidden_size": 1152"""));

        Assert.Null(result.Config);
        SpecError error = Assert.Single(result.Errors);
        Assert.Equal((SpecDiagnosticIds.DuplicateKey, 10, 3), (error.Id, error.Line, error.Column));
        Assert.Contains("'hidden_size' appears twice in the same object, at line 4, column 3", error.Message);
    }

    [Fact]
    public void ARepeatedKeyInANestedObjectIsAnErrorToo()
    {
        SpecParseResult result = SpecParser.Parse(MinimalWith("""  "rope_parameters": {"rope_theta": 1, "rope_theta": 2}"""));

        Assert.Equal(SpecDiagnosticIds.DuplicateKey, Assert.Single(result.Errors).Id);
    }

    [Fact]
    public void ByteOrderMarkTabsAndCrLfLineEndingsAreAccepted()
    {
        Gemma2Config config = Parse("\uFEFF" + Minimal.Replace("\n", "\r\n").Replace("  ", "\t"));

        Assert.Equal(Parse(Minimal), config);
    }

    [Fact]
    public void PositionsCountCrLfAsOneLineBreak()
    {
        SpecParseResult result = SpecParser.Parse(Minimal.Replace("\"head_dim\": 256", "\"head_dim\": 0").Replace("\n", "\r\n"));

        SpecError error = Assert.Single(result.Errors);
        Assert.Equal((SpecDiagnosticIds.OutOfRange, 9, 15), (error.Id, error.Line, error.Column));
    }

    /// <summary>A Gemma 2 config with the values all published sizes share (caps 50/30, eps 1e-6, θ 10000, ...).</summary>
    private static Gemma2Config Config(int vocab, int hidden, int intermediate, int layers, int heads, int kvHeads,
        int headDim, double queryPreAttnScalar, int window, int context, double attnCap = 50, double finalCap = 30) =>
        new("gemma2", vocab, hidden, intermediate, layers, heads, kvHeads, headDim, queryPreAttnScalar, window,
            attnCap, finalCap, 1e-6, 10000, context, "gelu_pytorch_tanh", 2, EquatableArray<int>.Create(1), 0);

    /// <summary>The specs compiled into the host: the three published sizes and the demo model.</summary>
    private static readonly Dictionary<string, Gemma2Config> PublishedSpecs = new()
    {
        ["gemma-2-2b.json"] = Config(256000, 2304, 9216, 26, 8, 4, 256, 256, 4096, 8192),
        ["gemma-2-9b.json"] = Config(256000, 3584, 14336, 42, 16, 8, 256, 256, 4096, 8192),
        ["gemma-2-27b.json"] = Config(256000, 4608, 36864, 46, 32, 16, 128, 144, 4096, 8192),
        ["gemma-2-demo.json"] = Config(4096, 256, 768, 6, 4, 2, 64, 64, 128, 1024),
    };

    /// <summary>Every fixture checkpoint's config.json (the table in Tests/Fixtures/README.md).</summary>
    private static readonly Dictionary<string, Gemma2Config> FixtureConfigs = new()
    {
        ["tiny-gqa"] = Config(1000, 64, 192, 4, 4, 2, 16, 16, 8, 512),
        ["tiny-gqa-bf16"] = Config(1000, 64, 192, 4, 4, 2, 16, 16, 8, 512),
        ["tiny-softcap"] = Config(512, 64, 128, 2, 2, 1, 32, 32, 4, 512, attnCap: 2, finalCap: 5),
        ["tiny-27b-like"] = Config(512, 192, 384, 3, 8, 4, 32, 24, 16, 512),
        ["tiny-long"] = Config(256, 64, 128, 2, 2, 1, 32, 32, 32, 4096),
        ["synth-2b"] = Config(4096, 2304, 9216, 2, 8, 4, 256, 256, 4096, 8192),
        ["synth-9b"] = Config(4096, 3584, 14336, 2, 16, 8, 256, 256, 4096, 8192),
    };

    public static TheoryData<string> PublishedSpecFiles => new(PublishedSpecs.Keys);

    public static TheoryData<string> FixtureFolders => new(FixtureConfigs.Keys);

    [Theory]
    [MemberData(nameof(PublishedSpecFiles))]
    public void EachSpecInSpecsParses(string file)
    {
        Assert.Equal(PublishedSpecs[file], Parse(File.ReadAllText(RepositoryFiles.Path("Specs", file))));
    }

    [Fact]
    public void EverySpecInSpecsIsListed()
    {
        string[] files = Directory.GetFiles(RepositoryFiles.Path("Specs"), "*.json").Select(f => Path.GetFileName(f)).Order().ToArray();

        Assert.Equal(PublishedSpecs.Keys.Order(), files);
    }

    [Fact]
    public void TheDemoCheckpointConfigParsesLikeTheDemoSpec()
    {
        Assert.Equal(PublishedSpecs["gemma-2-demo.json"], Parse(File.ReadAllText(RepositoryFiles.Path("models", "gemma2-demo", "config.json"))));
    }

    [Theory]
    [MemberData(nameof(FixtureFolders))]
    public void EachFixtureConfigParses(string folder)
    {
        Assert.Equal(FixtureConfigs[folder], Parse(File.ReadAllText(RepositoryFiles.Path("Tests", "Fixtures", folder, "config.json"))));
    }

    [Fact]
    public void EveryFixtureConfigIsListed()
    {
        string[] folders = Directory.GetFiles(RepositoryFiles.Path("Tests", "Fixtures"), "config.json", SearchOption.AllDirectories)
            .Select(f => Path.GetFileName(Path.GetDirectoryName(f)!)).Order().ToArray();

        Assert.Equal(FixtureConfigs.Keys.Order(), folders);
    }
}
