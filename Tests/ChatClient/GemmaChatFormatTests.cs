using Microsoft.Extensions.AI;

namespace GemmaGen.Tests.ChatClient;

/// <summary>How the client renders a conversation: the turns <see cref="ChatSession"/> builds, system messages folded
/// into the first user turn, assistant messages as model turns.</summary>
public sealed class GemmaChatFormatTests(ChatClientFixture fixture) : IClassFixture<ChatClientFixture>
{
    private GemmaTokenizer Tokenizer => fixture.Model.RequireTokenizer();

    private int[] Render(string? instructions, params ChatMessage[] messages) =>
        new GemmaChatFormat(Tokenizer).Render(messages, instructions, new Dictionary<string, int[]>(), new List<string>());

    [Fact]
    public void AUserMessageIsTheFirstTurnOfAChatSession()
    {
        int[] expected = fixture.Model.CreateChat().TurnTokens("Tell me a story.");

        Assert.Equal(expected, Render(null, new ChatMessage(ChatRole.User, "Tell me a story.")));
        Assert.Equal(expected, Render(null, new ChatMessage(ChatRole.User, "  Tell me a story.\n")));
    }

    [Fact]
    public void SystemMessagesAndInstructionsAreFoldedIntoTheFirstUserTurn()
    {
        Assert.Equal(fixture.Model.CreateChat("Answer briefly.").TurnTokens("Who was there?"),
            Render(null, new ChatMessage(ChatRole.System, "Answer briefly."), new ChatMessage(ChatRole.User, "Who was there?")));
        Assert.Equal(fixture.Model.CreateChat("Be kind.\n\nAnswer briefly.").TurnTokens("Who was there?"),
            Render("Be kind.", new ChatMessage(ChatRole.User, "Who was there?"), new ChatMessage(ChatRole.System, "Answer briefly.")));
        Assert.Equal(fixture.Model.CreateChat().TurnTokens("Answer briefly."),
            Render(null, new ChatMessage(ChatRole.System, "Answer briefly.")));
    }

    [Fact]
    public void AssistantMessagesAreModelTurns()
    {
        var tokenizer = Tokenizer;
        int startOfTurn = tokenizer.StartOfTurnId!.Value, endOfTurn = tokenizer.EndOfTurnId!.Value;
        int[] newline = tokenizer.Encode("\n");
        int[] expected =
        [
            tokenizer.BosId,
            startOfTurn, .. tokenizer.Encode("user\nHello"), endOfTurn, .. newline,
            startOfTurn, .. tokenizer.Encode("model\n"), .. tokenizer.Encode("Hello to you."), endOfTurn, .. newline,
            startOfTurn, .. tokenizer.Encode("user\nAnd then?"), endOfTurn, .. newline,
            startOfTurn, .. tokenizer.Encode("model\n"),
        ];

        Assert.Equal(expected, Render(null,
            new ChatMessage(ChatRole.User, "Hello"), new ChatMessage(ChatRole.Assistant, "Hello to you. "), new ChatMessage(ChatRole.User, "And then?")));
    }

    [Fact]
    public void AKnownReplyIsRenderedAsItsTokens()
    {
        var tokenizer = Tokenizer;
        int[] replyIds = [.. tokenizer.Encode("Hel"), .. tokenizer.Encode("lo")];
        var used = new List<string>();

        int[] rendered = new GemmaChatFormat(tokenizer).Render(
            [new ChatMessage(ChatRole.User, "Hi"), new ChatMessage(ChatRole.Assistant, "Hello"), new ChatMessage(ChatRole.User, "Go on")],
            null, new Dictionary<string, int[]> { ["Hello"] = replyIds }, used);

        int[] header = [tokenizer.StartOfTurnId!.Value, .. tokenizer.Encode("model\n")];
        int replyStart = fixture.Model.CreateChat().TurnTokens("Hi").Length;
        Assert.Equal(replyIds, rendered[replyStart..(replyStart + replyIds.Length)]);
        Assert.Equal(header, rendered[(replyStart - header.Length)..replyStart]);
        Assert.Equal(["Hello"], used);
    }

    [Fact]
    public void OnlySystemUserAndAssistantMessagesAreAccepted()
    {
        Assert.Throws<NotSupportedException>(() => Render(null, new ChatMessage(ChatRole.Tool, "42")));
        Assert.Throws<ArgumentException>(() => Render(null));
    }
}
