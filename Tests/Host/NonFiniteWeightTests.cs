using System.Runtime.InteropServices;
using GemmaGen.Kernels;
using GemmaGen.Tests.Generation;
using Xunit;
using CliProgram = GemmaGen.Cli.Program;

namespace GemmaGen.Tests.Host;

/// <summary>Copies of checkpoints with chosen elements of one tensor replaced by NaN or an infinity.</summary>
internal static class NonFiniteCheckpoint
{
    /// <summary>Copies <paramref name="source"/> (config.json, tokenizer.model when present, model.safetensors) to
    /// <paramref name="target"/>, setting element [row, column] of <paramref name="tensor"/> to each value, written in the
    /// tensor's dtype; with <paramref name="toF16"/> every F32 tensor is stored as F16 first.</summary>
    public static string Write(string source, string target, string tensor, bool toF16, params (long Row, long Column, float Value)[] values)
    {
        Directory.CreateDirectory(target);
        foreach (string name in new[] { "config.json", GemmaModel.TokenizerFileName })
        {
            if (File.Exists(Path.Combine(source, name))) File.Copy(Path.Combine(source, name), Path.Combine(target, name));
        }
        using var file = SafetensorsFile.Open(Path.Combine(source, "model.safetensors"));
        var writer = new SafetensorsWriter();
        foreach (var t in file.Tensors)
        {
            var dtype = toF16 && t.DType == SafetensorsDType.F32 ? SafetensorsDType.F16 : t.DType;
            byte[] bytes = dtype == t.DType
                ? file.GetBytes(t.Name).ToArray()
                : MemoryMarshal.AsBytes(file.GetF32(t.Name).ToArray().Select(v => (Half)v).ToArray().AsSpan()).ToArray();
            if (t.Name == tensor)
            {
                long columns = t.Shape[^1];
                foreach (var (row, column, value) in values) Set(bytes, dtype, row * columns + column, value);
            }
            writer.Add(t.Name, dtype, bytes, [.. t.Shape]);
        }
        writer.Save(Path.Combine(target, "model.safetensors"));
        return target;
    }

    private static void Set(byte[] bytes, SafetensorsDType dtype, long index, float value)
    {
        switch (dtype)
        {
            case SafetensorsDType.F32:
                MemoryMarshal.Cast<byte, float>(bytes.AsSpan())[(int)index] = value;
                break;
            case SafetensorsDType.BF16:
                MemoryMarshal.Cast<byte, ushort>(bytes.AsSpan())[(int)index] = (ushort)(BitConverter.SingleToUInt32Bits(value) >> 16);
                break;
            case SafetensorsDType.F16:
                MemoryMarshal.Cast<byte, Half>(bytes.AsSpan())[(int)index] = (Half)value;
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(dtype));
        }
    }
}

/// <summary>NaN and infinite weights are refused at load with the tensor's name, unless the check is turned off.</summary>
public sealed class NonFiniteWeightTests : IDisposable
{
    private readonly TempDirectory _temp = new();

    public void Dispose() => _temp.Dispose();

    private static (int Exit, string Stdout, string Stderr) Run(params string[] args) => Piped("", args);

    private static (int Exit, string Stdout, string Stderr) Piped(string stdin, params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int exit = CliProgram.Run(args, new StringReader(stdin), stdout, stderr);
        return (exit, stdout.ToString(), stderr.ToString().Replace("\r\n", "\n"));
    }

    [Fact]
    public void AnF32TensorWithANaNAndAnInfinityIsRefusedWithItsName()
    {
        string dir = NonFiniteCheckpoint.Write(Fixtures.Path("tiny-gqa"), _temp.File("f32"), "model.layers.3.mlp.up_proj.weight", false,
            (7, 3, float.PositiveInfinity), (5, 17, float.NaN));

        var e = Assert.Throws<WeightLoadException>(() => GemmaModel.Load(dir, new GemmaModelOptions { Threads = 1 }).Dispose());

        Assert.Equal(
            $"{Path.Combine(dir, "model.safetensors")}: tensor 'model.layers.3.mlp.up_proj.weight' has 2 non-finite values (first NaN at row 5, column 17)",
            e.Message);
    }

    [Theory]
    [InlineData(float.PositiveInfinity, "+infinity")]
    [InlineData(float.NegativeInfinity, "-infinity")]
    [InlineData(float.NaN, "NaN")]
    public void ABF16TensorWithANonFiniteValueIsRefused(float value, string kind)
    {
        string dir = NonFiniteCheckpoint.Write(Fixtures.Path("tiny-gqa-bf16"), _temp.File("bf16"), "model.layers.0.self_attn.k_proj.weight", false,
            (31, 63, value));

        var e = Assert.Throws<WeightLoadException>(() => GemmaModel.Load(dir, new GemmaModelOptions { Threads = 1 }).Dispose());

        Assert.EndsWith($"tensor 'model.layers.0.self_attn.k_proj.weight' has 1 non-finite value (first {kind} at row 31, column 63)", e.Message);
    }

    [Fact]
    public void AnF16NormVectorWithAnInfinityIsRefusedWithItsIndex()
    {
        string dir = NonFiniteCheckpoint.Write(Fixtures.Path("tiny-gqa"), _temp.File("f16"), "model.layers.2.pre_feedforward_layernorm.weight", true,
            (0, 40, float.NegativeInfinity));

        var e = Assert.Throws<WeightLoadException>(() => GemmaModel.Load(dir, new GemmaModelOptions { Threads = 1 }).Dispose());

        Assert.EndsWith("tensor 'model.layers.2.pre_feedforward_layernorm.weight' has 1 non-finite value (first -infinity at index 40)", e.Message);
    }

    [Fact]
    public void WithoutTheCheckTheModelLoads()
    {
        string dir = NonFiniteCheckpoint.Write(Fixtures.Path("tiny-gqa"), _temp.File("f32"), "model.embed_tokens.weight", false, (3, 4, float.NaN));

        using var model = GemmaModel.Load(dir, new GemmaModelOptions { Threads = 1, CheckWeights = false });

        var row = new float[model.Config.HiddenSize];
        model.Weights.Embed.ReadRow(3, row);
        Assert.True(float.IsNaN(row[4]));
    }

    [Fact]
    public void TheCliRefusesNonFiniteWeightsWithExitCode2AndLoadsThemWithNoCheck()
    {
        string dir = NonFiniteCheckpoint.Write(Fixtures.Path("tiny-gqa"), _temp.File("f32"), "model.layers.1.self_attn.o_proj.weight", false,
            (2, 9, float.PositiveInfinity));
        string output = _temp.File("logits.safetensors");

        var refused = Run("logits", "--model", dir, "--tokens", "2,5,7", "--out", output);
        Assert.Equal(2, refused.Exit);
        Assert.Equal(
            $"error: {Path.Combine(dir, "model.safetensors")}: tensor 'model.layers.1.self_attn.o_proj.weight' has 1 non-finite value (first +infinity at row 2, column 9)\n",
            refused.Stderr);
        Assert.False(File.Exists(output));

        var loaded = Run("logits", "--model", dir, "--tokens", "2,5,7", "--out", output, "--no-check");
        Assert.Equal(0, loaded.Exit);
        Assert.True(File.Exists(output));

        var generate = Run("generate", "--model", dir, "--tokens", "2,5,7", "--max-new-tokens", "2", "--greedy", "--ids");
        Assert.Equal(2, generate.Exit);
        Assert.Contains("'model.layers.1.self_attn.o_proj.weight' has 1 non-finite value", generate.Stderr);
    }

    [Fact]
    public void NaNLogitsEndGenerationWithAnErrorNamingTheStep()
    {
        string dir = NonFiniteCheckpoint.Write(DemoModel.Directory, _temp.File("demo"), "model.norm.weight", false, (0, 10, float.NaN));
        using var model = GemmaModel.Load(dir, new GemmaModelOptions { Threads = 1, CheckWeights = false });
        var session = model.CreateSession();
        var tokens = new List<int>();

        var e = Assert.Throws<GenerationException>(() =>
            session.Generate(DemoModel.Cases[0].PromptIds, new GenerationOptions { MaxTokens = 8, Sampling = SamplingOptions.GreedyDecoding }, tokens.Add));

        Assert.StartsWith($"the logits are not finite at step 1 (position {DemoModel.Cases[0].PromptIds.Length - 1}): {model.Config.VocabSize} NaN", e.Message);
        Assert.Empty(tokens);
    }

    [Fact]
    public void TheCliEndsARunWithNaNLogitsWithExitCode2()
    {
        string dir = NonFiniteCheckpoint.Write(DemoModel.Directory, _temp.File("demo"), "model.norm.weight", false, (0, 10, float.NaN));

        var refused = Run("run", "The jury said", "--model", dir, "--max-tokens", "4", "--greedy");
        Assert.Equal(2, refused.Exit);
        Assert.Contains("tensor 'model.norm.weight' has 1 non-finite value (first NaN at index 10)", refused.Stderr);

        var run = Run("run", "The jury said", "--model", dir, "--max-tokens", "4", "--no-check");
        Assert.Equal(2, run.Exit);
        Assert.Equal("", run.Stdout);
        Assert.StartsWith("error: the logits are not finite at step 1", run.Stderr);

        var chat = Piped("Hello\n", "chat", "--model", dir, "--no-check", "--greedy");
        Assert.Equal(2, chat.Exit);
        Assert.StartsWith("error: the logits are not finite at step 1", chat.Stderr);
    }
}
