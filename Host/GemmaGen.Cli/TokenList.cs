using System.Globalization;
using GemmaGen.Specs;

namespace GemmaGen.Cli;

/// <summary>The <c>--tokens</c> syntax: comma-separated token ids, such as <c>2,651,6037</c>.</summary>
internal static class TokenList
{
    /// <summary>Parses a token list; every item must be a non-negative decimal integer.</summary>
    /// <exception cref="UsageException">The list is empty or an item is not a token id.</exception>
    public static int[] Parse(string text)
    {
        var items = text.Split(',');
        var tokens = new int[items.Length];
        for (int i = 0; i < items.Length; i++)
        {
            string item = items[i].Trim();
            if (!int.TryParse(item, NumberStyles.None, CultureInfo.InvariantCulture, out tokens[i]))
                throw new UsageException(
                    $"--tokens: item {i + 1} ('{item}') is not a token id; expected comma-separated non-negative integers such as 2,651,6037");
        }
        return tokens;
    }

    /// <summary>Checks every id against the model's vocabulary.</summary>
    /// <exception cref="UsageException">An id is not below the vocabulary size.</exception>
    public static void CheckVocabulary(ReadOnlySpan<int> tokens, Gemma2Config config)
    {
        for (int i = 0; i < tokens.Length; i++)
        {
            if (tokens[i] >= config.VocabSize)
                throw new UsageException(
                    $"--tokens: item {i + 1} is token id {tokens[i]}, outside the model's vocabulary of {config.VocabSize} (ids 0 to {config.VocabSize - 1})");
        }
    }

    /// <summary>Checks that <paramref name="positions"/> fit the model's trained context.</summary>
    /// <exception cref="UsageException">They do not.</exception>
    public static void CheckContext(long positions, Gemma2Config config, string what)
    {
        if (positions > config.MaxPositionEmbeddings)
            throw new UsageException(
                $"{what} need {positions} positions, more than the model's context of {config.MaxPositionEmbeddings} (max_position_embeddings)");
    }
}
