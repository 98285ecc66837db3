namespace GemmaGen.Tests.ChatClient;

/// <summary>The built-in demo model (its tokenizer has <c>&lt;start_of_turn&gt;</c> and <c>&lt;end_of_turn&gt;</c>),
/// loaded once for a test class, on two threads: the test machine's cores are shared.</summary>
public sealed class ChatClientFixture : IDisposable
{
    /// <summary>The demo checkpoint as the test build copies it.</summary>
    public static string DemoDirectory => Path.Combine(AppContext.BaseDirectory, "Fixtures", "gemma2-demo");

    /// <summary>The demo model.</summary>
    public GemmaModel Model { get; } = GemmaModel.Load(DemoDirectory, new GemmaModelOptions { Threads = 2, MaxContext = 512 });

    /// <summary>Frees the model.</summary>
    public void Dispose() => Model.Dispose();
}
