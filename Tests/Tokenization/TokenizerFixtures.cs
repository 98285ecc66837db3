using System.Text.Json;

namespace GemmaGen.Tests.Tokenization;

/// <summary>The tokenizer fixtures copied next to the test assembly, each loaded once for all tests.</summary>
internal static class TokenizerFixtures
{
    private static readonly Lazy<GemmaTokenizer> GemmaLoaded = new(() => GemmaTokenizer.Load(GemmaModelPath));
    private static readonly Lazy<GemmaTokenizer> DemoLoaded = new(() => GemmaTokenizer.Load(DemoPath("tokenizer.model")));
    private static readonly Lazy<IReadOnlyList<GoldenCase>> GoldenLoaded = new(LoadGoldenCases);

    /// <summary>The real Gemma 2 <c>tokenizer.model</c> (256000 pieces).</summary>
    public static string GemmaModelPath => Path.Combine(AppContext.BaseDirectory, "Fixtures", "gemma2-tokenizer", "tokenizer.model");

    /// <summary>The Gemma 2 tokenizer.</summary>
    public static GemmaTokenizer Gemma => GemmaLoaded.Value;

    /// <summary>The demo model's own 4096-piece tokenizer.</summary>
    public static GemmaTokenizer Demo => DemoLoaded.Value;

    /// <summary>The 213 sentencepiece reference cases of <c>gemma2-tokenizer/golden.json</c>.</summary>
    public static IReadOnlyList<GoldenCase> Golden => GoldenLoaded.Value;

    /// <summary>A file of the demo model folder.</summary>
    public static string DemoPath(string file) => Path.Combine(AppContext.BaseDirectory, "Fixtures", "gemma2-demo", file);

    private static IReadOnlyList<GoldenCase> LoadGoldenCases()
    {
        string path = Path.Combine(AppContext.BaseDirectory, "Fixtures", "gemma2-tokenizer", "golden.json");
        using var golden = JsonDocument.Parse(File.ReadAllText(path));
        return golden.RootElement.GetProperty("cases").EnumerateArray()
            .Select(c => new GoldenCase(
                c.GetProperty("text").GetString()!,
                c.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()).ToArray(),
                c.GetProperty("decoded_roundtrip").GetBoolean()))
            .ToList();
    }
}

/// <summary>One reference case: the text, its sentencepiece ids (no BOS), and whether decoding gives the text back.</summary>
internal sealed record GoldenCase(string Text, int[] Ids, bool DecodedRoundtrip);
