using GemmaGen.Tests.Generation;
using Microsoft.Extensions.AI;

namespace GemmaGen.Tests.ChatClient;

/// <summary>
/// <see cref="GemmaChatClient"/> on the demo model: replies equal <see cref="ChatSession"/>'s, streaming equals the
/// whole response, the ChatOptions are honoured, usage is counted, the KV cache is reused when a conversation goes
/// on, cancellation stops a reply, and concurrent requests each get the reply they get alone.
/// </summary>
public sealed class GemmaChatClientTests(ChatClientFixture fixture) : IClassFixture<ChatClientFixture>
{
    private const int ReplyTokens = 12;

    private static readonly ChatOptions Greedy = new() { Temperature = 0, MaxOutputTokens = ReplyTokens };

    private GemmaChatClient NewClient() => new(fixture.Model);

    private static ChatMessage User(string text) => new(ChatRole.User, text);

    /// <summary>ChatSession's greedy reply to each user message in turn, with the client's reply length.</summary>
    private string[] ChatSessionReplies(string? systemPrompt, params string[] userMessages)
    {
        var chat = fixture.Model.CreateChat(systemPrompt);
        var options = new GenerationOptions { MaxTokens = ReplyTokens, Sampling = SamplingOptions.GreedyDecoding };
        return userMessages.Select(text => chat.Send(text, options).Text).ToArray();
    }

    [Fact]
    public async Task AReplyIsChatSessionsReply()
    {
        using var client = NewClient();

        ChatResponse response = await client.GetResponseAsync([new(ChatRole.System, "Answer briefly."), User("The jury said")], Greedy);

        Assert.Equal(ChatSessionReplies("Answer briefly.", "The jury said")[0], response.Text);
        Assert.Equal(ChatRole.Assistant, Assert.Single(response.Messages).Role);
        Assert.Equal("gemma2-demo", response.ModelId);
        Assert.NotNull(response.ResponseId);
    }

    [Fact]
    public async Task UsageCountsThePromptAndTheGeneratedTokens()
    {
        using var client = NewClient();

        ChatResponse response = await client.GetResponseAsync([User("Once upon a time")], Greedy);

        int prompt = fixture.Model.CreateChat().TurnTokens("Once upon a time").Length;
        Assert.Equal(prompt, response.Usage!.InputTokenCount);
        Assert.Equal(0, response.Usage.CachedInputTokenCount);
        Assert.InRange(response.Usage.OutputTokenCount!.Value, 1, ReplyTokens);
        Assert.Equal(prompt + response.Usage.OutputTokenCount, response.Usage.TotalTokenCount);
        Assert.Equal(response.Usage.OutputTokenCount == ReplyTokens ? ChatFinishReason.Length : ChatFinishReason.Stop, response.FinishReason);
    }

    [Fact]
    public async Task AConversationThatGoesOnReusesTheCacheAndEqualsChatSession()
    {
        using var client = NewClient();
        string[] expected = ChatSessionReplies(null, "Once upon a time", "What happened next?");
        var history = new List<ChatMessage> { User("Once upon a time") };

        ChatResponse first = await client.GetResponseAsync(history, Greedy);
        history.AddRange(first.Messages);
        history.Add(User("What happened next?"));
        ChatResponse second = await client.GetResponseAsync(history, Greedy);

        Assert.Equal(expected, new[] { first.Text, second.Text });
        // Everything the first call left in the cache: its prompt and its reply, less the reply's last token, which was
        // chosen but never run through the model.
        Assert.Equal(first.Usage!.TotalTokenCount - 1, second.Usage!.CachedInputTokenCount);
    }

    [Fact]
    public async Task AReplyThatEndedAtEosIsReusedToo()
    {
        // The demo's greedy reply to this message ends at <eos> (not <end_of_turn>) within 32 tokens.
        var options = new ChatOptions { Temperature = 0, MaxOutputTokens = 32 };
        var chat = fixture.Model.CreateChat();
        var generation = new GenerationOptions { MaxTokens = 32, Sampling = SamplingOptions.GreedyDecoding };
        ChatReply expected1 = chat.Send("The jury said", generation);
        Assert.Equal(DemoModel.Eos, expected1.Result.Tokens[^1]);
        string expected2 = chat.Send("What happened next?", generation).Text;
        using var client = NewClient();
        var history = new List<ChatMessage> { User("The jury said") };

        ChatResponse first = await client.GetResponseAsync(history, options);
        history.AddRange(first.Messages);
        history.Add(User("What happened next?"));
        ChatResponse second = await client.GetResponseAsync(history, options);

        Assert.Equal(ChatFinishReason.Stop, first.FinishReason);
        Assert.Equal(expected1.Text, first.Text);
        Assert.Equal(expected2, second.Text);
        Assert.Equal(first.Usage!.TotalTokenCount - 1, second.Usage!.CachedInputTokenCount);
    }

    [Fact]
    public async Task AnotherConversationStartsOver()
    {
        using var client = NewClient();
        await client.GetResponseAsync([User("Once upon a time")], Greedy);

        ChatResponse other = await client.GetResponseAsync([User("The jury said")], Greedy);

        // Only the chat header both conversations begin with (<bos><start_of_turn>user\n) comes from the cache.
        var format = new GemmaChatFormat(fixture.Model.Tokenizer!);
        int[] once = format.Render([User("Once upon a time")], null, new Dictionary<string, int[]>(), new List<string>()), jury = format.Render([User("The jury said")], null, new Dictionary<string, int[]>(), new List<string>());
        int header = once.Zip(jury).TakeWhile(p => p.First == p.Second).Count();
        Assert.InRange(header, 3, 8);
        Assert.Equal(header, other.Usage!.CachedInputTokenCount);
        Assert.Equal(ChatSessionReplies(null, "The jury said")[0], other.Text);
    }

    [Fact]
    public async Task StreamingGivesTheSameReplyPieceByPiece()
    {
        using var client = NewClient();
        using var other = NewClient();
        ChatResponse whole = await other.GetResponseAsync([User("The jury said")], Greedy);

        var updates = new List<ChatResponseUpdate>();
        await foreach (ChatResponseUpdate update in client.GetStreamingResponseAsync([User("The jury said")], Greedy)) updates.Add(update);

        Assert.True(updates.Count > 2, $"{updates.Count} updates");
        Assert.Equal(whole.Text, string.Concat(updates.Select(u => u.Text)));
        Assert.All(updates, u => Assert.Equal(ChatRole.Assistant, u.Role));
        Assert.Single(updates.Select(u => u.ResponseId).Distinct());
        Assert.Equal(whole.FinishReason, updates[^1].FinishReason);
        ChatResponse combined = updates.ToChatResponse();
        Assert.Equal(whole.Text, combined.Text);
        Assert.Equal(whole.Usage!.InputTokenCount, combined.Usage!.InputTokenCount);
        Assert.Equal(whole.Usage.OutputTokenCount, combined.Usage.OutputTokenCount);
    }

    [Fact]
    public async Task MaxOutputTokensLimitsTheReply()
    {
        using var client = NewClient();

        ChatResponse response = await client.GetResponseAsync([User("Once upon a time")], new ChatOptions { Temperature = 0, MaxOutputTokens = 3 });

        Assert.Equal(3, response.Usage!.OutputTokenCount);
        Assert.Equal(ChatFinishReason.Length, response.FinishReason);
    }

    [Fact]
    public async Task TopKOfOneAndATinyTopPAreGreedy()
    {
        using var client = NewClient();
        string greedy = (await client.GetResponseAsync([User("Once upon a time")], Greedy)).Text;

        ChatResponse topK = await client.GetResponseAsync([User("Once upon a time")], new ChatOptions { Temperature = 1, TopK = 1, MaxOutputTokens = ReplyTokens });
        ChatResponse topP = await client.GetResponseAsync([User("Once upon a time")], new ChatOptions { Temperature = 1, TopP = 1e-6f, MaxOutputTokens = ReplyTokens });

        Assert.Equal(greedy, topK.Text);
        Assert.Equal(greedy, topP.Text);
    }

    [Fact]
    public async Task TheSameSeedGivesTheSameSampledReply()
    {
        using var client = NewClient();
        var seeded = new ChatOptions { Temperature = 1.5f, TopK = 0, TopP = 1, Seed = 1234567890123, MaxOutputTokens = ReplyTokens };

        ChatResponse first = await client.GetResponseAsync([User("The jury said")], seeded);
        ChatResponse second = await client.GetResponseAsync([User("The jury said")], seeded);

        Assert.Equal(first.Text, second.Text);
    }

    [Fact]
    public async Task AStopSequenceEndsTheReplyAndIsNotReturned()
    {
        using var client = NewClient();
        var options = new ChatOptions { Temperature = 0, MaxOutputTokens = 24 };
        string whole = (await client.GetResponseAsync([User("Once upon a time")], options)).Text;
        Assert.True(whole.Length > 12, $"the reply '{whole}' is too short to cut");
        string stop = whole.Substring(whole.Length / 2, 3);
        string expected = whole[..whole.IndexOf(stop, StringComparison.Ordinal)];
        options.StopSequences = [stop];

        ChatResponse response = await client.GetResponseAsync([User("Once upon a time")], options);
        var streamed = new List<ChatResponseUpdate>();
        await foreach (ChatResponseUpdate update in client.GetStreamingResponseAsync([User("Once upon a time")], options)) streamed.Add(update);

        Assert.Equal(expected, response.Text);
        Assert.Equal(ChatFinishReason.Stop, response.FinishReason);
        Assert.Equal(expected, string.Concat(streamed.Select(u => u.Text)));
        Assert.Equal(ChatFinishReason.Stop, streamed[^1].FinishReason);
    }

    [Fact]
    public async Task ACancelledRequestThrowsAndTheClientGoesOn()
    {
        using var client = NewClient();
        using var cancelled = new CancellationTokenSource();
        await cancelled.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => client.GetResponseAsync([User("Once upon a time")], Greedy, cancelled.Token));

        using var midway = new CancellationTokenSource();
        var options = new ChatOptions { Temperature = 0, MaxOutputTokens = 200 };
        int updates = 0;
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (ChatResponseUpdate _ in client.GetStreamingResponseAsync([User("Once upon a time")], options, midway.Token))
            {
                if (++updates == 2) await midway.CancelAsync();
            }
        });
        Assert.Equal(2, updates);

        // A request stops between steps, so the cache it leaves is whole: the same conversation again reuses all of its
        // prompt but the last token, which is run again for its logits.
        ChatResponse after = await client.GetResponseAsync([User("Once upon a time")], Greedy);
        Assert.Equal(after.Usage!.InputTokenCount - 1, after.Usage!.CachedInputTokenCount);
        Assert.Equal(ChatSessionReplies(null, "Once upon a time")[0], after.Text);
    }

    [Fact]
    public async Task LeavingAStreamEarlyFreesTheClient()
    {
        using var client = NewClient();
        await foreach (ChatResponseUpdate _ in client.GetStreamingResponseAsync([User("Once upon a time")], new ChatOptions { Temperature = 0, MaxOutputTokens = 200 }))
        {
            break;
        }

        ChatResponse after = await client.GetResponseAsync([User("The jury said")], Greedy);

        Assert.Equal(ChatSessionReplies(null, "The jury said")[0], after.Text);
    }

    [Fact]
    public async Task ConcurrentRequestsEachGetTheReplyTheyGetAlone()
    {
        using var client = NewClient();
        string[] prompts = ["Once upon a time", "The jury said", "She opened the door", "In the morning"];
        ChatOptions OptionsFor(int i) => i % 2 == 0
            ? new ChatOptions { Temperature = 0, MaxOutputTokens = ReplyTokens }
            : new ChatOptions { Temperature = 1, TopK = 20, Seed = 100 + i, MaxOutputTokens = ReplyTokens };
        var alone = new string[prompts.Length];
        for (int i = 0; i < prompts.Length; i++) alone[i] = (await client.GetResponseAsync([User(prompts[i])], OptionsFor(i))).Text;

        // Each prompt twice, half of them streamed, all at once.
        Task<string>[] requests = Enumerable.Range(0, 2 * prompts.Length).Select(n => Task.Run(async () =>
        {
            int i = n % prompts.Length;
            if (n < prompts.Length) return (await client.GetResponseAsync([User(prompts[i])], OptionsFor(i))).Text;
            var text = new System.Text.StringBuilder();
            await foreach (ChatResponseUpdate update in client.GetStreamingResponseAsync([User(prompts[i])], OptionsFor(i))) text.Append(update.Text);
            return text.ToString();
        })).ToArray();
        string[] together = await Task.WhenAll(requests);

        Assert.Equal([.. alone, .. alone], together);
    }

    [Fact]
    public void GetServiceGivesTheMetadataTheModelAndTheClient()
    {
        using var client = NewClient();

        var metadata = Assert.IsType<ChatClientMetadata>(client.GetService(typeof(ChatClientMetadata)));
        Assert.Equal("gemmagen", metadata.ProviderName);
        Assert.Equal("gemma2-demo", metadata.DefaultModelId);
        Assert.Same(fixture.Model, client.GetService<GemmaModel>());
        Assert.Same(client, client.GetService<IChatClient>());
        Assert.Null(client.GetService(typeof(ChatClientMetadata), "key"));
        Assert.Null(client.GetService(typeof(string)));
        Assert.Equal("custom", new GemmaChatClient(fixture.Model, new GemmaChatClientOptions { ModelId = "custom" }).GetService<ChatClientMetadata>()!.DefaultModelId);
    }
}
