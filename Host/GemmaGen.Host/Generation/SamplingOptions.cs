namespace GemmaGen;

/// <summary>
/// How the next token is chosen from the logits. Filters apply in this order: repetition penalty, temperature,
/// top-k, min-p, top-p; then a token is drawn from what is left. <see cref="Greedy"/> (or a temperature of 0)
/// always takes the most likely token.
/// </summary>
public sealed record SamplingOptions
{
    /// <summary>Greedy decoding: the options for exact, repeatable output.</summary>
    public static SamplingOptions GreedyDecoding { get; } = new() { Greedy = true };

    /// <summary>A 64-bit seed (an API's) as the sampler's 32-bit one: the high half folded in, so seeds that differ
    /// anywhere differ.</summary>
    internal static int FoldSeed(long seed) => (int)(seed ^ (seed >>> 32));

    /// <summary>Always take the most likely token (after the repetition penalty).</summary>
    public bool Greedy { get; init; }

    /// <summary>Divides the logits; below 1 sharpens, above 1 flattens. 0 means greedy. Default 1.</summary>
    public float Temperature { get; init; } = 1f;

    /// <summary>Keep only the k most likely tokens; 0 keeps all. Default 0.</summary>
    public int TopK { get; init; }

    /// <summary>Keep the smallest set of most likely tokens whose probability reaches p; 1 keeps all. Default 1.</summary>
    public float TopP { get; init; } = 1f;

    /// <summary>Drop tokens less likely than min-p times the most likely one; 0 keeps all. Default 0.</summary>
    public float MinP { get; init; }

    /// <summary>Tokens already in the context have positive logits divided and negative logits multiplied by this;
    /// 1 is off. Default 1.</summary>
    public float RepetitionPenalty { get; init; } = 1f;

    /// <summary>Seed of the random draw: the same seed, prompt and options give the same text. Null: a random seed.</summary>
    public int? Seed { get; init; }

    /// <summary>Throws <see cref="ArgumentException"/> naming the first invalid option and its valid range.</summary>
    public void Validate()
    {
        if (!(Temperature >= 0) || float.IsInfinity(Temperature))
            throw new ArgumentException($"temperature is {Temperature}; expected a finite number >= 0");
        if (TopK < 0) throw new ArgumentException($"top-k is {TopK}; expected 0 (off) or more");
        if (!(TopP > 0 && TopP <= 1)) throw new ArgumentException($"top-p is {TopP}; expected a number in (0, 1]");
        if (!(MinP >= 0 && MinP < 1)) throw new ArgumentException($"min-p is {MinP}; expected a number in [0, 1)");
        if (!(RepetitionPenalty > 0) || float.IsInfinity(RepetitionPenalty))
            throw new ArgumentException($"repetition penalty is {RepetitionPenalty}; expected a finite number > 0 (1 is off)");
    }
}
