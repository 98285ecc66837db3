namespace GemmaGen;

/// <summary>
/// Chooses tokens from logits by <see cref="SamplingOptions"/>. Every buffer is allocated once, for the vocabulary
/// size, so sampling a token allocates nothing.
/// </summary>
public sealed class Sampler
{
    private readonly SamplingOptions _options;
    private readonly Random _random;
    private readonly float[] _probabilities;
    private readonly int[] _candidates;
    private readonly bool[] _penalized;

    /// <exception cref="ArgumentException">An option is out of range.</exception>
    public Sampler(SamplingOptions options, int vocabSize)
    {
        options.Validate();
        _options = options;
        _random = options.Seed is int seed ? new Random(seed) : new Random();
        _probabilities = new float[vocabSize];
        _candidates = new int[vocabSize];
        _penalized = new bool[vocabSize];
    }

    /// <summary>True when the choice is the argmax (no randomness).</summary>
    public bool IsGreedy => _options.Greedy || _options.Temperature == 0;

    /// <summary>Chooses the next token. <paramref name="logits"/> is modified (penalty and temperature).</summary>
    /// <param name="logits">One logit per vocabulary entry.</param>
    /// <param name="context">The tokens so far, for the repetition penalty.</param>
    public int Sample(Span<float> logits, ReadOnlySpan<int> context)
    {
        ApplyRepetitionPenalty(logits, context);
        if (IsGreedy) return GemmaModel.ArgMax(logits);

        int n = logits.Length;
        float max = float.NegativeInfinity;
        for (int i = 0; i < n; i++) max = Math.Max(max, logits[i]);
        float inverseTemperature = 1f / _options.Temperature;
        for (int i = 0; i < n; i++)
        {
            _probabilities[i] = MathF.Exp((logits[i] - max) * inverseTemperature);
            _candidates[i] = i;
        }

        // The most likely token has probability weight 1 (exp(0)); min-p compares against it directly.
        int count = n;
        if (_options.MinP > 0) count = KeepAtLeast(count, _options.MinP);
        if (_options.TopK > 0 || _options.TopP < 1)
        {
            Array.Sort(_probabilities, _candidates, 0, count, DescendingComparer.Instance);
            if (_options.TopK > 0) count = Math.Min(count, _options.TopK);
            if (_options.TopP < 1) count = NucleusSize(count);
        }

        float total = 0;
        for (int i = 0; i < count; i++) total += _probabilities[i];
        float draw = (float)_random.NextDouble() * total;
        for (int i = 0; i < count; i++)
        {
            draw -= _probabilities[i];
            if (draw < 0) return _candidates[i];
        }
        return _candidates[count - 1];
    }

    private void ApplyRepetitionPenalty(Span<float> logits, ReadOnlySpan<int> context)
    {
        float penalty = _options.RepetitionPenalty;
        if (penalty == 1 || context.IsEmpty) return;
        foreach (int id in context)
        {
            if ((uint)id >= (uint)logits.Length || _penalized[id]) continue;
            _penalized[id] = true;
            logits[id] = logits[id] > 0 ? logits[id] / penalty : logits[id] * penalty;
        }
        foreach (int id in context)
        {
            if ((uint)id < (uint)logits.Length) _penalized[id] = false;
        }
    }

    /// <summary>Compacts the candidates whose weight is at least <paramref name="threshold"/> to the front.</summary>
    private int KeepAtLeast(int count, float threshold)
    {
        int kept = 0;
        for (int i = 0; i < count; i++)
        {
            if (_probabilities[i] < threshold) continue;
            _probabilities[kept] = _probabilities[i];
            _candidates[kept] = _candidates[i];
            kept++;
        }
        return kept;
    }

    /// <summary>The smallest prefix of the sorted candidates whose share of the total reaches top-p (at least one).</summary>
    private int NucleusSize(int count)
    {
        float total = 0;
        for (int i = 0; i < count; i++) total += _probabilities[i];
        float target = _options.TopP * total, sum = 0;
        for (int i = 0; i < count; i++)
        {
            sum += _probabilities[i];
            if (sum >= target) return i + 1;
        }
        return count;
    }

    private sealed class DescendingComparer : IComparer<float>
    {
        public static readonly DescendingComparer Instance = new();

        public int Compare(float x, float y) => y.CompareTo(x);
    }
}
