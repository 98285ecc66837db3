// GemmaGen in a project of its own: the GemmaGen package, one GemmaSpec item (the demo model's config.json, compiled
// into this assembly as Sample.DemoModel), a checkpoint of that shape, text generation and a chat through IChatClient.
//
//   dotnet run --project samples/GemmaGen.Sample [-- <checkpoint directory>]

using GemmaGen;
using Microsoft.Extensions.AI;

string directory = args.Length > 0 ? args[0] : Path.Combine(AppContext.BaseDirectory, "models", "gemma2-demo");
using GemmaModel model = GemmaModel.Load(directory);

// The checkpoint's layer shape is the spec's, so the class compiled into this assembly runs it (GemmaGen.Host has a
// built-in class of that shape too; the application's own wins).
Console.WriteLine($"model: {directory}");
Console.WriteLine($"path:  {model.ExecutionPath} (Sample.DemoModel: hidden {Sample.DemoModel.HiddenSize}, " +
    $"{Sample.DemoModel.Heads} heads / {Sample.DemoModel.KvHeads} kv heads of {Sample.DemoModel.HeadDim}, window {Sample.DemoModel.SlidingWindow})");

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
