using System.Numerics.Tensors;

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

    /// <summary>Chooses the next token. The repetition penalty is applied to <paramref name="logits"/> in place.</summary>
    /// <param name="logits">One logit per vocabulary entry.</param>
    /// <param name="context">The tokens so far, for the repetition penalty.</param>
    public int Sample(Span<float> logits, ReadOnlySpan<int> context)
    {
        if (logits.Length > _probabilities.Length)
            throw new ArgumentException($"{logits.Length} logits for a sampler of {_probabilities.Length} tokens", nameof(logits));
        ApplyRepetitionPenalty(logits, context);
        if (IsGreedy) return GemmaModel.ArgMax(logits);

        int n = logits.Length;
        float inverseTemperature = 1f / _options.Temperature;
        // A temperature so small that its inverse overflows leaves only the top token (0 × ∞ would be NaN).
        if (float.IsInfinity(inverseTemperature)) return GemmaModel.ArgMax(logits);

        // Weights relative to the most likely token, whose weight is exactly 1 (exp(0)).
        var weights = _probabilities.AsSpan(0, n);
        float max = TensorPrimitives.Max(logits);
        TensorPrimitives.Subtract(logits, max, weights);
        TensorPrimitives.Multiply(weights, inverseTemperature, weights);
        TensorPrimitives.Exp(weights, weights);

        // The candidates: every token with a weight, and with at least min-p of the top weight. Compacted to the front.
        float threshold = _options.MinP;
        int count = 0;
        for (int i = 0; i < n; i++)
        {
            float weight = _probabilities[i];
            if (!(weight > 0) || weight < threshold) continue;
            _probabilities[count] = weight;
            _candidates[count] = i;
            count++;
        }
        if (count == 0) return GemmaModel.ArgMax(logits); // NaN logits: nothing to draw from

        if (_options.TopK > 0 && count > _options.TopK) count = SelectLargest(count, _options.TopK);
        if (_options.TopP < 1)
        {
            // Sorting the whole vocabulary for every token would be slow (256k entries): first keep only the tokens of
            // the weight classes (powers of two) that the nucleus can reach, then sort those.
            double target = _options.TopP * Sum(count);
            int kept = KeepNucleusClasses(count, target);
            Array.Sort(_probabilities, _candidates, 0, kept, DescendingComparer.Instance);
            count = NucleusSize(kept, target);
        }

        double draw = _random.NextDouble() * Sum(count);
        for (int i = 0; i < count; i++)
        {
            draw -= _probabilities[i];
            if (draw < 0) return _candidates[i];
        }
        // Rounding left a sliver of the draw: the last candidate takes it (every candidate has a weight above 0).
        return _candidates[count - 1];
    }

    private double Sum(int count)
    {
        double total = 0;
        for (int i = 0; i < count; i++) total += _probabilities[i];
        return total;
    }

    /// <summary>Moves the <paramref name="k"/> largest of the first <paramref name="count"/> candidates to the front
    /// (in no particular order): a min-heap of k, so mostly one comparison per candidate.</summary>
    private int SelectLargest(int count, int k)
    {
        for (int i = k / 2 - 1; i >= 0; i--) SiftDown(i, k);
        for (int i = k; i < count; i++)
        {
            if (_probabilities[i] <= _probabilities[0]) continue;
            _probabilities[0] = _probabilities[i];
            _candidates[0] = _candidates[i];
            SiftDown(0, k);
        }
        return k;
    }

    private void SiftDown(int node, int size)
    {
        float weight = _probabilities[node];
        int id = _candidates[node];
        while (true)
        {
            int child = 2 * node + 1;
            if (child >= size) break;
            if (child + 1 < size && _probabilities[child + 1] < _probabilities[child]) child++;
            if (_probabilities[child] >= weight) break;
            _probabilities[node] = _probabilities[child];
            _candidates[node] = _candidates[child];
            node = child;
        }
        _probabilities[node] = weight;
        _candidates[node] = id;
    }

    /// <summary>
    /// Keeps the candidates whose weight class (the power of two below the weight; weights are at most 1) is one the
    /// nucleus can reach: the classes from the top whose weights sum to <paramref name="target"/>, and one more for
    /// rounding. The nucleus, a prefix of the candidates in descending order, lies within them.
    /// </summary>
    private int KeepNucleusClasses(int count, double target)
    {
        const int Classes = 160;
        Span<double> mass = stackalloc double[Classes];
        mass.Clear();
        for (int i = 0; i < count; i++) mass[WeightClass(_probabilities[i])] += _probabilities[i];
        int last = Classes - 1;
        double sum = 0;
        for (int c = 0; c < Classes; c++)
        {
            sum += mass[c];
            if (sum >= target)
            {
                last = Math.Min(c + 1, Classes - 1);
                break;
            }
        }
        int kept = 0;
        for (int i = 0; i < count; i++)
        {
            if (WeightClass(_probabilities[i]) > last) continue;
            _probabilities[kept] = _probabilities[i];
            _candidates[kept] = _candidates[i];
            kept++;
        }
        return kept;
    }

    /// <summary>0 for weights in [1, ∞) (the top weight is 1), 1 for [1/2, 1), 2 for [1/4, 1/2), ...; subnormals last.</summary>
    private static int WeightClass(float weight) => Math.Clamp(127 - (int)((BitConverter.SingleToUInt32Bits(weight) >> 23) & 0xFF), 0, 159);

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

    /// <summary>The smallest prefix of the sorted candidates whose weights reach <paramref name="target"/> (at least one).</summary>
    private int NucleusSize(int count, double target)
    {
        double sum = 0;
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
