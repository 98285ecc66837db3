using GemmaGen.Kernels;
using GemmaGen.Tests.Golden;
using GemmaGen.Tests.Host;
using Xunit.Abstractions;

namespace GemmaGen.Tests.Quantization;

/// <summary>
/// The demo model's perplexity over <c>Fixtures/heldout.txt</c> (original prose written for this test, so the model
/// never saw it) with its BF16 weights as stored, then quantized at load: Q8_0 may raise it by at most 1%, Q4_0 by
/// at most 5%; and the GGUF fixtures' int8 prefill against their exact products, by at most 0.5% either way.
/// The text is cut into windows of <see cref="Window"/> tokens, each starting with BOS, and every token
/// after the first of a window is scored.
/// </summary>
public sealed class DemoPerplexityTests(ITestOutputHelper output)
{
    private const int Window = 256;

    private static readonly Lazy<double> BF16Perplexity = new(() => Perplexity(null));

    [Theory]
    [InlineData("q8_0", 0.01)]
    [InlineData("q4_0", 0.05)]
    public void Quantized_weights_raise_the_perplexity_by_at_most(string formatName, double maxRise)
    {
        var format = WeightFormat.Find(formatName)!;
        double baseline = BF16Perplexity.Value, quantized = Perplexity(format);
        double rise = quantized / baseline - 1;
        output.WriteLine($"perplexity BF16 {baseline:F3}, {format} {quantized:F3}: {rise:+0.00%;-0.00%}");
        Assert.True(baseline is > 1 and < 1000, $"the BF16 perplexity {baseline} is implausible: is the text English prose?");
        Assert.True(rise <= maxRise, $"{format} raises the perplexity from {baseline:F3} to {quantized:F3} ({rise:P2} > {maxRise:P0})");
    }

    /// <summary>
    /// The quantized GGUF fixtures (the demo quantized by llama.cpp) as stored: the compiled prefill, whose windows round
    /// the inputs of the K-quant matrices to int8 per 32 (<see cref="KQuantMatMul"/>) and those of the Q8_0 and Q4_0
    /// blocks per 16 (<see cref="QuantizedMatMul"/>), against the reference path over the same weights, which
    /// multiplies the dequantized rows with float inputs.
    /// </summary>
    [SkippableTheory]
    [InlineData("q8_0", 0.005)]
    [InlineData("q4_0", 0.005)]
    [InlineData("q4_k_m", 0.005)]
    [InlineData("q6_k", 0.005)]
    public void The_int8_prefill_of_a_quantized_file_moves_its_perplexity_by_at_most(string name, double maxRise)
    {
        Skip.IfNot(WeightFormat.Q6_K.RoundsPrefillInputs && WeightFormat.Q8_0F16.RoundsPrefillInputs,
            "no AVX2 and FMA in this process: the prefill of GGUF's blocks computes as exactly as decoding");
        using var gguf = GgufCheckpoint.Open(GgufFixtures.Path(name));
        var tokenizer = gguf.LoadTokenizer()!;
        using var weights = ModelWeights.Load(gguf.Config, gguf);
        double exact = Perplexity(weights, tokenizer, compiled: false), rounded = Perplexity(weights, tokenizer, compiled: true);
        double rise = rounded / exact - 1;
        output.WriteLine($"{name}: perplexity with exact inputs {exact:F4}, with the int8 prefill {rounded:F4}: {rise:+0.000%;-0.000%}");
        Assert.True(exact is > 1 and < 1000, $"the perplexity {exact} is implausible: is the text English prose?");
        Assert.True(Math.Abs(rise) <= maxRise, $"{name}: the int8 prefill moves the perplexity from {exact:F4} to {rounded:F4} ({rise:P3}, more than {maxRise:P1})");
    }

    private static double Perplexity(WeightFormat? format)
    {
        string directory = GoldenCheckpoint.FixturePath("gemma2-demo");
        var tokenizer = GemmaTokenizer.Load(Path.Combine(directory, "tokenizer.model"));
        using var checkpoint = Checkpoint.Open(directory);
        using var weights = ModelWeights.Load(checkpoint.Config, checkpoint, format);
        return Perplexity(weights, tokenizer, compiled: true);
    }

    /// <summary>The perplexity of <paramref name="weights"/> over the held-out text, through the compiled path or the
    /// reference.</summary>
    private static double Perplexity(ModelWeights weights, GemmaTokenizer tokenizer, bool compiled)
    {
        var text = tokenizer.Encode(File.ReadAllText(GoldenCheckpoint.FixturePath("heldout.txt")));
        using var pool = new WorkerPool(2);
        int v = weights.Config.VocabSize;
        var decoder = Decoders.Create(weights, compiled, pool, Window);
        var logits = new float[Window * v];
        double negativeLogLikelihood = 0;
        int scored = 0;
        for (int start = 0; start < text.Length; start += Window - 1)
        {
            var tokens = new[] { tokenizer.BosId }.Concat(text.Skip(start).Take(Window - 1)).ToArray();
            if (tokens.Length < 2) break;
            decoder.Reset();
            var window = logits.AsSpan(0, tokens.Length * v);
            decoder.Forward(tokens, 0, window);
            for (int t = 0; t + 1 < tokens.Length; t++)
            {
                negativeLogLikelihood -= LogSoftmax(window.Slice(t * v, v), tokens[t + 1]);
                scored++;
            }
        }
        return Math.Exp(negativeLogLikelihood / scored);
    }

    private static double LogSoftmax(ReadOnlySpan<float> logits, int token)
    {
        double max = double.NegativeInfinity, sum = 0;
        foreach (float z in logits) max = Math.Max(max, z);
        foreach (float z in logits) sum += Math.Exp(z - max);
        return logits[token] - max - Math.Log(sum);
    }
}
