namespace GemmaGen.Tests.ChatClient;

/// <summary>Stop sequences cut a streamed reply before their first character, whatever pieces the text comes in,
/// and no part of one is ever passed on.</summary>
public sealed class StopSequenceFilterTests
{
    private static (string Released, bool Stopped, string Text) Stream(string[] stops, params string[] pieces)
    {
        var filter = new StopSequenceFilter(stops);
        string released = string.Concat(pieces.Select(filter.Push));
        if (!filter.Stopped) released += filter.Flush();
        return (released, filter.Stopped, filter.Text);
    }

    [Fact]
    public void WithoutStopSequencesEveryPieceIsPassedOnAtOnce()
    {
        var filter = new StopSequenceFilter(null);
        Assert.Equal("Once", filter.Push("Once"));
        Assert.Equal(" upon", filter.Push(" upon"));
        Assert.Equal("", filter.Flush());
        Assert.False(filter.Stopped);
    }

    [Theory]
    [InlineData(new[] { "Once upon a time. The end" }, "Once upon a time.")]
    [InlineData(new[] { "Once upon a time.", " The", " end" }, "Once upon a time.")]
    [InlineData(new[] { "Once upon a time. T", "he", " end" }, "Once upon a time.")]
    [InlineData(new[] { "Once upon a time. Th", "e e", "nd of it" }, "Once upon a time.")]
    public void TheReplyEndsBeforeTheStopSequence(string[] pieces, string expected)
    {
        Assert.Equal((expected, true, expected), Stream([" The end", "THE END"], pieces));
    }

    [Fact]
    public void TextThatMayStartAStopSequenceIsHeldBackUntilItDoesNot()
    {
        var filter = new StopSequenceFilter(["\n\nUser:"]);
        Assert.Equal("Hello", filter.Push("Hello\n"));
        Assert.Equal("", filter.Push("\nUs"));
        Assert.Equal("\n\nUsed", filter.Push("ed"));
        Assert.Equal(" it", filter.Push(" it\n\nUser: more"));
        Assert.True(filter.Stopped);
        Assert.Equal("Hello\n\nUsed it", filter.Text);
        Assert.Equal("", filter.Push("ignored"));
    }

    [Fact]
    public void TheEarliestOfSeveralStopSequencesWins()
    {
        Assert.Equal(("a", true, "a"), Stream(["cd", "bcde"], "abcdef"));
    }

    [Fact]
    public void ATextWithoutAStopSequenceIsPassedOnWhole()
    {
        Assert.Equal(("The story ends", false, "The story ends"), Stream(["The end"], "The story", " ends"));
    }
}
