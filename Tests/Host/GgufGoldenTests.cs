using GemmaGen.Kernels;
using System.Globalization;
using System.Text.Json;
using GemmaGen.Tests.Infrastructure;
using Xunit;
using Xunit.Abstractions;

namespace GemmaGen.Tests.Host;

/// <summary>
/// Every GGUF fixture file, loaded with <see cref="GemmaModel.Load(string, GemmaModelOptions?)"/> and run on the
/// reference path and on the compiled demo spec, against its goldens (float64 on the weights dequantized from that
/// file, fixtures README): prompt logits and the long-prompt rows within 1e-3 × max |logit| (the reference path in one
/// batch, the compiled one a token at a time through the KV cache, its decode kernels); greedy decoding through
/// the KV cache reproduces <c>generated_ids</c> (and the long prompt's) up to the first step whose margin is below
/// 0.05, and the logits of every step (teacher forcing, a token at a time) stay within the same tolerance. The
/// compiled batched prefill is held to the same tolerance, or, for a matrix whose prefill rounds its inputs to int8
/// (as llama.cpp does; none of a GGUF file's, whose Q8_0 and Q4_0 blocks run as stored with exact prefill), to
/// llama.cpp's own distance from the goldens (<see cref="CompiledPrefillIsNoFurtherFromTheExactGoldensThanLlamaCppsLogits"/>).
/// </summary>
[IsaSensitive]
public sealed class GgufGoldenTests(ITestOutputHelper output)
{
    private const double RelativeTolerance = 1e-3;
    private const double DecisiveMargin = 0.05;

    public static TheoryData<string, bool> Cases()
    {
        var data = new TheoryData<string, bool>();
        foreach (string name in GgufFixtures.Names)
        {
            data.Add(name, true);
            data.Add(name, false);
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void PromptAndLongPromptLogitsMatchTheExactGoldens(string name, bool compiled)
    {
        using var model = Load(name, compiled);
        using var golden = SafetensorsFile.Open(GgufFixtures.GoldenPath(name));
        var (prompt, longRows) = Run(model, golden, stepwise: compiled);

        var expected = golden.GetF32("prompt_logits");
        double tolerance = RelativeTolerance * MaxAbs(expected);
        double diff = MaxDiff(expected, prompt);
        var expectedLong = golden.GetF32("long_prompt_logits");
        double longTolerance = RelativeTolerance * MaxAbs(expectedLong);
        double longDiff = MaxDiff(expectedLong, longRows);
        output.WriteLine($"{name} {model.ExecutionPath}: max |diff| prompt {diff:E2} (tolerance {tolerance:E2}), long rows {longDiff:E2} (tolerance {longTolerance:E2})");
        Assert.True(diff <= tolerance, $"{name}: prompt logits differ by {diff} > {tolerance}");
        Assert.True(longDiff <= longTolerance, $"{name}: long-prompt logits differ by {longDiff} > {longTolerance}");
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void GreedyDecodingThroughTheKvCacheReproducesTheGoldens(string name, bool compiled)
    {
        using var model = Load(name, compiled);
        using var golden = SafetensorsFile.Open(GgufFixtures.GoldenPath(name));
        AssertGreedyReproducesTheDecisiveSteps(model, golden, name);

        // Teacher forcing over the whole continuation: the logits that chose each golden token.
        int[] ids = Ints(golden.GetI64("prompt_ids"));
        int[] continuation = Ints(golden.GetI64("generated_ids"));
        int[] sequence = [.. ids, .. continuation[..^1]];
        var logits = compiled ? Stepwise(model, sequence) : model.ComputeLogits(sequence);
        int v = model.Config.VocabSize;
        var expectedLogits = golden.GetF32("generated_logits");
        var actual = logits.AsSpan((ids.Length - 1) * v, continuation.Length * v);
        double tolerance = RelativeTolerance * MaxAbs(expectedLogits);
        double diff = MaxDiff(expectedLogits, actual);
        Assert.True(diff <= tolerance, $"{name}: teacher-forced logits differ by {diff} > {tolerance}");
    }

    /// <summary>
    /// The compiled batched prefill (<see cref="GemmaModel.ComputeLogits"/>: the prompt in one pass, the long prompt in
    /// chunks) against the exact goldens. Where a matrix runs the integer prefill kernels (int8 inputs, as llama.cpp's
    /// quantized products), no further from them than llama.cpp's own logits are (the <c>llamacpp_*</c> goldens, the
    /// same rows); otherwise within 1e-3 × max |logit| like every other path.
    /// </summary>
    [Theory]
    [MemberData(nameof(Files))]
    public void CompiledPrefillIsNoFurtherFromTheExactGoldensThanLlamaCppsLogits(string name)
    {
        using var model = Load(name, compiled: true);
        using var golden = SafetensorsFile.Open(GgufFixtures.GoldenPath(name));
        var (prompt, longRows) = Run(model, golden, stepwise: false);
        var expected = golden.GetF32("prompt_logits");
        var expectedLong = golden.GetF32("long_prompt_logits");
        double diff = MaxDiff(expected, prompt), longDiff = MaxDiff(expectedLong, longRows);
        double llama = MaxDiff(expected, golden.GetF32("llamacpp_prompt_logits"));
        double llamaLong = MaxDiff(expectedLong, golden.GetF32("llamacpp_long_prompt_logits"));
        // The output matrix too: the tied embedding, a Q6_K one in llama.cpp's Q4_0 file.
        bool integer = model.Weights.Output.Format.RoundsPrefillInputs
            || model.Weights.Layers.Any(l => l.Matrices.Any(m => m.Format.RoundsPrefillInputs));
        double bound = integer ? llama : RelativeTolerance * MaxAbs(expected);
        double longBound = integer ? llamaLong : RelativeTolerance * MaxAbs(expectedLong);
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{name} prefill ({(integer ? "int8 inputs" : "the decode kernels")}): max |diff| prompt {diff:0.000e+00} (llama.cpp {llama:0.000e+00}), long rows {longDiff:0.000e+00} (llama.cpp {llamaLong:0.000e+00})"));
        Assert.True(diff <= bound, $"{name}: the prefill's prompt logits differ from the goldens by {diff} > {bound}");
        Assert.True(longDiff <= longBound, $"{name}: the prefill's long-prompt rows differ from the goldens by {longDiff} > {longBound}");
    }

    /// <summary>
    /// <see cref="DecodeActivations.Int8"/> on the file with Q4_0 blocks: decoding a token at a time and the batched
    /// prefill both round the Q4_0 products' activations to int8 per 16 (the Q6_K output matrix keeps its int16 decode);
    /// the logits stay no further from the exact goldens than llama.cpp's own, and greedy decoding through the KV cache
    /// reproduces the golden ids wherever the exact margin is decisive.
    /// </summary>
    [SkippableFact]
    public void Int8ActivationsAreNoFurtherFromTheExactGoldensThanLlamaCppsLogits()
    {
        Skip.IfNot(System.Runtime.Intrinsics.X86.Avx2.IsSupported && System.Runtime.Intrinsics.X86.Fma.IsSupported,
            "no AVX2 in this process: int8 activations fall back to int16 (DecodeActivationsTests.Without_AVX2_the_setting_changes_nothing)");
        const string name = "q4_0";
        using var model = GemmaModel.Load(GgufFixtures.Path(name), new GemmaModelOptions { Threads = 2, Activations = DecodeActivations.Int8 });
        using var golden = SafetensorsFile.Open(GgufFixtures.GoldenPath(name));
        var expected = golden.GetF32("prompt_logits");
        var expectedLong = golden.GetF32("long_prompt_logits");
        double llama = MaxDiff(expected, golden.GetF32("llamacpp_prompt_logits"));
        double llamaLong = MaxDiff(expectedLong, golden.GetF32("llamacpp_long_prompt_logits"));
        foreach (bool stepwise in new[] { true, false })
        {
            var (prompt, longRows) = Run(model, golden, stepwise);
            double diff = MaxDiff(expected, prompt), longDiff = MaxDiff(expectedLong, longRows);
            string path = stepwise ? "decode" : "prefill";
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{name} int8 activations, {path}: max |diff| prompt {diff:0.000e+00} (llama.cpp {llama:0.000e+00}), long rows {longDiff:0.000e+00} (llama.cpp {llamaLong:0.000e+00})"));
            Assert.True(diff <= llama, $"{name} {path}: prompt logits differ from the goldens by {diff} > llama.cpp's {llama}");
            Assert.True(longDiff <= llamaLong, $"{name} {path}: long-prompt rows differ from the goldens by {longDiff} > llama.cpp's {llamaLong}");
            // Coarser than the int16 products: the setting took effect.
            Assert.True(diff > RelativeTolerance * MaxAbs(expected) || longDiff > RelativeTolerance * MaxAbs(expectedLong),
                $"{name} {path}: within {RelativeTolerance} of the goldens, as only int16 activations would be");
        }
        AssertGreedyReproducesTheDecisiveSteps(model, golden, $"{name} (int8 activations)");
    }

    /// <summary>Greedy decoding through the KV cache of the prompt and the long prompt gives the golden ids up to the
    /// first step whose exact margin is below <see cref="DecisiveMargin"/>.</summary>
    private void AssertGreedyReproducesTheDecisiveSteps(GemmaModel model, SafetensorsFile golden, string name)
    {
        foreach (string prefix in new[] { "", "long_" })
        {
            int[] prompt = Ints(golden.GetI64(prefix + "prompt_ids"));
            int[] expected = Ints(golden.GetI64(prefix + "generated_ids"));
            var margins = golden.GetF32(prefix + "generated_margins").ToArray();
            int decisive = Array.FindIndex(margins, m => m < DecisiveMargin);
            if (decisive < 0) decisive = expected.Length;
            int[] generated = model.GenerateGreedy(prompt, expected.Length);
            Assert.True(expected.AsSpan(0, decisive).SequenceEqual(generated.AsSpan(0, decisive)),
                $"{name} {prefix}prompt: expected [{string.Join(", ", expected)}] up to step {decisive}, got [{string.Join(", ", generated)}]");
            output.WriteLine($"{name} {model.ExecutionPath} {prefix}prompt: {decisive} of {expected.Length} steps are decisive and reproduced; all 16 equal: {expected.SequenceEqual(generated)}");
        }
    }

    public static TheoryData<string> Files() => new(GgufFixtures.Names);

    internal static GemmaModel Load(string name, bool compiled)
    {
        var model = GemmaModel.Load(GgufFixtures.Path(name), new GemmaModelOptions { ForceReference = !compiled, Threads = 2 });
        Assert.Equal(compiled ? "compiled Gemma2_Demo" : "reference", model.ExecutionPath);
        Assert.NotNull(model.Tokenizer);
        return model;
    }

    /// <summary>The prompt's logits, and the long prompt's logits at <c>long_positions</c>: in batches
    /// (<see cref="GemmaModel.ComputeLogits"/>), or a token at a time through the KV cache (<paramref name="stepwise"/>).</summary>
    internal static (float[] Prompt, float[] LongRows) Run(GemmaModel model, SafetensorsFile golden, bool stepwise = false)
    {
        int v = model.Config.VocabSize;
        float[] Logits(int[] tokens) => stepwise ? Stepwise(model, tokens) : model.ComputeLogits(tokens);
        var prompt = Logits(Ints(golden.GetI64("prompt_ids")));
        var all = Logits(Ints(golden.GetI64("long_prompt_ids")));
        long[] positions = golden.GetI64("long_positions");
        var rows = new float[positions.Length * v];
        for (int i = 0; i < positions.Length; i++) all.AsSpan((int)positions[i] * v, v).CopyTo(rows.AsSpan(i * v));
        return (prompt, rows);
    }

    /// <summary>Every position's logits, each token run alone through the KV cache (the decode kernels).</summary>
    internal static float[] Stepwise(GemmaModel model, ReadOnlySpan<int> tokens)
    {
        int v = model.Config.VocabSize;
        var logits = new float[tokens.Length * v];
        var decoder = model.CreateDecoder(tokens.Length);
        for (int i = 0; i < tokens.Length; i++) decoder.Step(tokens[i], i, logits.AsSpan(i * v, v));
        return logits;
    }

    private static int[] Ints(long[] ids) => ids.Select(id => checked((int)id)).ToArray();

    private static double MaxAbs(ReadOnlySpan<float> values)
    {
        double max = 0;
        foreach (float x in values) max = Math.Max(max, Math.Abs(x));
        return max;
    }

    internal static double MaxDiff(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual)
    {
        Assert.Equal(expected.Length, actual.Length);
        double max = 0;
        for (int i = 0; i < expected.Length; i++) max = Math.Max(max, Math.Abs((double)expected[i] - actual[i]));
        return max;
    }
}

/// <summary>
/// The loose cross-check against llama.cpp's own logits on the same files (fixtures README): GemmaGen's distance to
/// them, per file, printed as a table (the one in the README) and bounded by twice the distance between llama.cpp
/// and the exact goldens. Not ISA-sensitive: the bound is three orders of magnitude above any kernel difference.
/// </summary>
public sealed class GgufLlamaCppCrossCheckTests(ITestOutputHelper output)
{
    [Fact]
    public void DistanceToLlamaCppsLogitsPerFile()
    {
        using var measurements = JsonDocument.Parse(File.ReadAllText(Fixtures.Path("gguf", "measurements.json")));
        var files = measurements.RootElement.GetProperty("files");
        output.WriteLine("| file | GemmaGen vs exact (prompt / long rows) | GemmaGen vs llama.cpp (prompt / long rows) | llama.cpp vs exact (prompt / long, all positions) |");
        output.WriteLine("|---|---|---|---|");
        foreach (string name in GgufFixtures.Names)
        {
            using var model = GgufGoldenTests.Load(name, compiled: true);
            using var golden = SafetensorsFile.Open(GgufFixtures.GoldenPath(name));
            var (prompt, longRows) = GgufGoldenTests.Run(model, golden);
            double exact = GgufGoldenTests.MaxDiff(golden.GetF32("prompt_logits"), prompt);
            double exactLong = GgufGoldenTests.MaxDiff(golden.GetF32("long_prompt_logits"), longRows);
            double llama = GgufGoldenTests.MaxDiff(golden.GetF32("llamacpp_prompt_logits"), prompt);
            double llamaLong = GgufGoldenTests.MaxDiff(golden.GetF32("llamacpp_long_prompt_logits"), longRows);
            var file = files.GetProperty(name);
            double reference = file.GetProperty("exact_vs_llamacpp_max_abs").GetDouble();
            double referenceLong = file.GetProperty("exact_vs_llamacpp_long_max_abs_all_positions").GetDouble();
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"| {name} | {exact:0.00e+00} / {exactLong:0.00e+00} | {llama:0.00e+00} / {llamaLong:0.00e+00} | {reference:0.00e+00} / {referenceLong:0.00e+00} |"));
            Assert.True(llama <= 2 * reference, $"{name}: {llama} from llama.cpp's prompt logits, more than twice llama.cpp's own distance {reference}");
            Assert.True(llamaLong <= 2 * referenceLong, $"{name}: {llamaLong} from llama.cpp's long-prompt rows, more than twice {referenceLong}");
        }
    }

}
