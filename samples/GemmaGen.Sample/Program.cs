// GemmaGen in a project of its own: the GemmaGen package, one GemmaSpec item (the demo model's config.json, compiled
// into this assembly as Sample.DemoModel), a checkpoint of that shape, text generation and a chat through IChatClient.
//
//   dotnet run --project samples/GemmaGen.Sample -c Release [-- <checkpoint directory>]

using GemmaGen;
using GemmaGen.Kernels;
using GemmaGen.Specs;
using Microsoft.Extensions.AI;

string directory = args.Length > 0 ? args[0] : Path.Combine(AppContext.BaseDirectory, "models", "gemma2-demo");
using GemmaModel? model = TryLoad(directory);
if (model is null) return 2;

// The compiled class whose layer shape equals the checkpoint's runs it (GemmaGen.Host has a built-in class of the
// demo shape too; the application's own wins); with none, the runtime-shape reference decoder does.
Gemma2Config c = model.Config;
string shape = $"hidden {c.HiddenSize}, {c.NumAttentionHeads} heads / {c.NumKeyValueHeads} kv heads of {c.HeadDim}, " +
    $"intermediate {c.IntermediateSize}, window {c.SlidingWindow}";
Console.WriteLine($"model: {directory}");
Console.WriteLine(model.CompiledSpec is { } spec
    ? $"path:  {model.ExecutionPath}, because its spec has the checkpoint's layer shape ({shape}; the class is compiled into {spec.Assembly.GetName().Name})"
    : $"path:  {model.ExecutionPath}, because no compiled spec has the checkpoint's layer shape ({shape}); " +
      $"to compile one, add <GemmaSpec Include=\"{Path.Combine(Path.GetFullPath(directory), "config.json")}\" /> to the project");

// Text generation: a session holds the sequence in its KV cache; tokens stream out as they are sampled.
GemmaTokenizer tokenizer = model.RequireTokenizer();
GenerationSession session = model.CreateSession();
StreamingDecoder text = tokenizer.CreateStreamingDecoder();
const string prompt = "Once upon a time";
Console.Write($"\n{prompt}");
GenerationResult result = session.Generate(tokenizer.Encode(prompt, addBos: true),
    new GenerationOptions { MaxTokens = 48, Sampling = new SamplingOptions { Temperature = 0.8f, TopK = 40, TopP = 0.95f, Seed = 7 } },
    id => Console.Write(text.Push(id)));
Console.WriteLine(text.Flush());
Console.WriteLine($"[{result.Stats}]");

// A chat through Microsoft.Extensions.AI: any code written against IChatClient runs on the model.
using IChatClient client = new GemmaChatClient(model);
var options = new ChatOptions { Temperature = 0.7f, TopK = 40, Seed = 42, MaxOutputTokens = 40 };
List<ChatMessage> history =
[
    new(ChatRole.System, "You tell short stories."),
    new(ChatRole.User, "Tell me about a dragon who was afraid of the dark."),
];
Console.Write("\nassistant: ");
var updates = new List<ChatResponseUpdate>();
await foreach (ChatResponseUpdate update in client.GetStreamingResponseAsync(history, options))
{
    Console.Write(update.Text);
    updates.Add(update);
}
ChatResponse first = updates.ToChatResponse();
Console.WriteLine($"\n[{first.Usage?.InputTokenCount} prompt tokens, {first.Usage?.OutputTokenCount} generated, {first.FinishReason}]");

// The conversation goes on: the client finds the previous turn in its KV cache and processes only the new tokens.
history.AddMessages(first);
history.Add(new ChatMessage(ChatRole.User, "What happened next?"));
ChatResponse second = await client.GetResponseAsync(history, options);
Console.WriteLine($"\nassistant: {second.Text}");
Console.WriteLine($"[{second.Usage?.InputTokenCount} prompt tokens, {second.Usage?.CachedInputTokenCount} of them cached, " +
    $"{second.Usage?.OutputTokenCount} generated, {second.FinishReason}]");
return 0;

// A checkpoint that cannot be loaded, or that has no tokenizer.model (this sample works with text), ends the sample
// with GemmaGen's one-line message, which names the file and what was expected.
static GemmaModel? TryLoad(string directory)
{
    GemmaModel? model = null;
    try
    {
        model = GemmaModel.Load(directory);
        model.RequireTokenizer();
        return model;
    }
    catch (Exception e) when (e is CheckpointException or WeightLoadException or TokenizerException)
    {
        model?.Dispose();
        Console.Error.WriteLine($"error: {e.Message}");
        return null;
    }
}
