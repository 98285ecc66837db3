namespace GemmaGen;

/// <summary>Why generation stopped.</summary>
public enum StopReason
{
    /// <summary>The model produced an end token (<c>&lt;eos&gt;</c>, <c>&lt;end_of_turn&gt;</c> or a config eos id).</summary>
    EndToken,

    /// <summary>The requested number of tokens was generated.</summary>
    MaxTokens,

    /// <summary>The KV cache is full; the session must be reset (or a new one started) to go on.</summary>
    ContextFull,

    /// <summary>The cancellation token fired.</summary>
    Cancelled,
}

/// <summary>Timings of one generation call.</summary>
/// <param name="PromptTokens">Tokens processed before the first new one (the prefill).</param>
/// <param name="PrefillSeconds">Time of the prefill.</param>
/// <param name="TimeToFirstToken">From the call to the first generated token.</param>
/// <param name="GeneratedTokens">Tokens generated (the end token included).</param>
/// <param name="DecodeSeconds">Time spent after the first token on the rest.</param>
public sealed record GenerationStats(int PromptTokens, double PrefillSeconds, TimeSpan TimeToFirstToken, int GeneratedTokens, double DecodeSeconds)
{
    /// <summary>Prompt tokens that were already in the KV cache (a prefix a <see cref="GenerationScheduler"/> reused), not
    /// counted in <see cref="PromptTokens"/>.</summary>
    public int CachedTokens { get; init; }

    /// <summary>Prompt tokens per second of prefill.</summary>
    public double PrefillTokensPerSecond => PrefillSeconds > 0 ? PromptTokens / PrefillSeconds : 0;

    /// <summary>Tokens per second after the first.</summary>
    public double DecodeTokensPerSecond => DecodeSeconds > 0 ? (GeneratedTokens - 1) / DecodeSeconds : 0;

    /// <summary>One line for people: prompt tokens, prefill tok/s, time to first token, generated tokens, decode tok/s.</summary>
    public override string ToString() =>
        $"prompt {PromptTokens} tokens, prefill {PrefillTokensPerSecond:F1} tok/s, first token after {TimeToFirstToken.TotalMilliseconds:F0} ms, " +
        $"generated {GeneratedTokens} tokens, decode {DecodeTokensPerSecond:F1} tok/s";
}

/// <summary>What one generation call produced.</summary>
/// <param name="Tokens">The generated ids, the end token included when there was one.</param>
/// <param name="StopReason">Why it stopped.</param>
/// <param name="Stats">Timings.</param>
public sealed record GenerationResult(int[] Tokens, StopReason StopReason, GenerationStats Stats);
