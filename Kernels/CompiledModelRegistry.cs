using GemmaGen.Specs;

namespace GemmaGen.Kernels;

/// <summary>Creates a decoder of a compiled spec over weights whose layer shape matches it.</summary>
public delegate Gemma2Decoder CompiledDecoderFactory(ModelWeights weights, int maxContext, WorkerPool pool);

/// <summary>A spec compiled by the generator: its class, the layer shape it is specialized for, and a factory.</summary>
public sealed record CompiledModel(string ClassName, LayerShape Shape, CompiledDecoderFactory Create);

/// <summary>
/// Every compiled spec in the process; generated classes register themselves from a module initializer, so a
/// host finds the specialization for a checkpoint by its config alone.
/// </summary>
public static class CompiledModelRegistry
{
    private static readonly object Gate = new();
    private static readonly List<CompiledModel> Models = [];

    public static void Register(CompiledModel model)
    {
        lock (Gate)
        {
            if (!Models.Any(m => m.ClassName == model.ClassName && m.Shape == model.Shape)) Models.Add(model);
        }
    }

    /// <summary>The compiled specs registered so far, in registration order.</summary>
    public static IReadOnlyList<CompiledModel> All
    {
        get
        {
            lock (Gate) return Models.ToArray();
        }
    }

    /// <summary>The first compiled spec whose layer shape equals <paramref name="shape"/>, or null.</summary>
    public static CompiledModel? Find(LayerShape shape)
    {
        lock (Gate) return Models.FirstOrDefault(m => m.Shape == shape);
    }
}
