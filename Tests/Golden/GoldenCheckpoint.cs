using GemmaGen.Kernels;

namespace GemmaGen.Tests.Golden;

/// <summary>A fixture checkpoint with its reference outputs (Hugging Face transformers, float64), and decoders over it.</summary>
internal sealed class GoldenCheckpoint : IDisposable
{
    public GoldenCheckpoint(string folder)
    {
        Directory = FixturePath(folder);
        Checkpoint = Checkpoint.Open(Directory);
        Weights = ModelWeights.Load(Checkpoint.Config, Checkpoint);
        Golden = SafetensorsFile.Open(Path.Combine(Directory, "golden.safetensors"));
        PromptIds = Golden.GetI64("prompt_ids").Select(id => (int)id).ToArray();
    }

    public static string FixturePath(string folder) => Path.Combine(AppContext.BaseDirectory, "Fixtures", folder);

    public string Directory { get; }

    public Checkpoint Checkpoint { get; }

    public ModelWeights Weights { get; }

    public SafetensorsFile Golden { get; }

    public int[] PromptIds { get; }

    public int VocabSize => Weights.Config.VocabSize;

    /// <summary>A decoder on the compiled kernels (which must exist for this shape) or on the reference path.</summary>
    public Gemma2Decoder CreateDecoder(bool compiled, WorkerPool pool, int maxContext) => Decoders.Create(Weights, compiled, pool, maxContext);

    public void Dispose()
    {
        Weights.Dispose();
        Checkpoint.Dispose();
        Golden.Dispose();
    }
}

/// <summary>Makes the decoder a test asks for, and proves which code it is.</summary>
internal static class Decoders
{
    public static Gemma2Decoder Create(ModelWeights weights, bool compiled, WorkerPool pool, int maxContext) =>
        new(CreateModel(weights, compiled, pool, maxContext), maxContext);

    /// <summary>The forward pass on the compiled spec of the weights' shape, or the reference.</summary>
    public static Gemma2Forward CreateModel(ModelWeights weights, bool compiled, WorkerPool pool, int maxContext)
    {
        if (!compiled) return new ReferenceForward(weights, maxContext, pool);
        var spec = CompiledModelRegistry.Find(weights.Config.Shape);
        Assert.True(spec != null, $"no compiled spec matches {weights.Config.Shape}");
        var model = spec.Create(weights, maxContext, pool);
        Assert.Equal("compiled " + spec.ClassName, model.ExecutionPath);
        return model;
    }
}

/// <summary>Records every activation a decoder reports, by name, one row per position.</summary>
internal sealed class ActivationRecorder(int positions, int width) : IActivationObserver
{
    private readonly Dictionary<string, float[]> _values = [];

    public IReadOnlyDictionary<string, float[]> Values => _values;

    public void Observe(string name, int position, ReadOnlySpan<float> values)
    {
        if (!_values.TryGetValue(name, out var rows)) _values[name] = rows = new float[positions * width];
        values.CopyTo(rows.AsSpan(position * width, width));
    }
}
