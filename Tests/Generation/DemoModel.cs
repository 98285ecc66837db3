using System.Text.Json;

namespace GemmaGen.Tests.Generation;

/// <summary>One case of the demo model's golden.json (reference outputs, not GemmaGen's).</summary>
/// <param name="Margins">At each greedy step, the reference's top logit minus its second.</param>
public sealed record DemoCase(string Prompt, int[] PromptIds, int[] GreedyIds, string GreedyText, double[] Margins);

/// <summary>The built-in demo model as the tests see it: <c>Fixtures/gemma2-demo</c> and its goldens.</summary>
public static class DemoModel
{
    /// <summary><c>&lt;eos&gt;</c>, <c>&lt;bos&gt;</c>, <c>&lt;start_of_turn&gt;</c>, <c>&lt;end_of_turn&gt;</c> in the demo vocabulary.</summary>
    public const int Eos = 1, Bos = 2, StartOfTurn = 4, EndOfTurn = 5;

    public static string Directory => Path.Combine(AppContext.BaseDirectory, "Fixtures", "gemma2-demo");

    private static readonly Lazy<DemoCase[]> s_cases = new(() =>
    {
        using var golden = JsonDocument.Parse(File.ReadAllText(Path.Combine(Directory, "golden.json")));
        return golden.RootElement.GetProperty("cases").EnumerateArray().Select(c => new DemoCase(
            c.GetProperty("prompt").GetString()!,
            c.GetProperty("prompt_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray(),
            c.GetProperty("greedy_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray(),
            c.GetProperty("greedy_text").GetString()!,
            c.GetProperty("margins").EnumerateArray().Select(e => e.GetDouble()).ToArray())).ToArray();
    });

    /// <summary>The golden cases (three prompts, 32 greedy tokens each).</summary>
    public static IReadOnlyList<DemoCase> Cases => s_cases.Value;

    /// <summary>Loads the demo model (two threads: the test machine's cores are shared).</summary>
    public static GemmaModel Load(int? maxContext = null) =>
        GemmaModel.Load(Directory, new GemmaModelOptions { Threads = 2, MaxContext = maxContext });
}

/// <summary>One demo model per test class (xunit runs a class's tests one at a time; the worker pool is not shared
/// between classes that run in parallel).</summary>
public sealed class DemoModelFixture : IDisposable
{
    public GemmaModel Model { get; } = DemoModel.Load();

    public void Dispose() => Model.Dispose();
}
