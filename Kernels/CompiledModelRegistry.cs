using System.Reflection;
using GemmaGen.Specs;

namespace GemmaGen.Kernels;

/// <summary>Creates the forward pass of a compiled spec over weights whose layer shape matches it, with RoPE tables for
/// <paramref name="maxContext"/> positions at first.</summary>
public delegate Gemma2Forward CompiledModelFactory(ModelWeights weights, int maxContext, WorkerPool pool);

/// <summary>A spec compiled by the generator: its class, the layer shape it is specialized for, and a factory.</summary>
/// <param name="ClassName">The generated class's name, as <c>ExecutionPath</c> shows it.</param>
/// <param name="Shape">The layer shape the class is specialized for.</param>
/// <param name="Create">Creates the class over weights of its shape.</param>
public sealed record CompiledModel(string ClassName, LayerShape Shape, CompiledModelFactory Create)
{
    /// <summary>The assembly the class was compiled into: the one that defines its factory.</summary>
    public Assembly Assembly => Create.Method.Module.Assembly;
}

/// <summary>
/// Every compiled spec in the process; generated classes register themselves from a module initializer, so a
/// host finds the specialization for a checkpoint by its config alone. When several classes have the shape a
/// checkpoint needs, the application's own class wins: one compiled into the entry assembly is preferred over
/// one of a library (GemmaGen's built-in specs among them); otherwise the first registered.
/// </summary>
public static class CompiledModelRegistry
{
    private static readonly object Gate = new();
    private static readonly List<CompiledModel> Models = [];

    /// <summary>Adds a compiled spec; registering the same class of the same assembly again changes nothing.</summary>
    public static void Register(CompiledModel model)
    {
        lock (Gate)
        {
            if (!Models.Any(m => m.ClassName == model.ClassName && m.Shape == model.Shape && m.Assembly == model.Assembly)) Models.Add(model);
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

    /// <summary>The compiled spec to run layers of <paramref name="shape"/>: one of the entry assembly, else the
    /// first registered; null when none has that shape.</summary>
    public static CompiledModel? Find(LayerShape shape) => Find(shape, Assembly.GetEntryAssembly());

    /// <summary>The first compiled spec of <paramref name="shape"/> compiled into <paramref name="application"/>,
    /// else the first of any assembly, or null.</summary>
    internal static CompiledModel? Find(LayerShape shape, Assembly? application)
    {
        lock (Gate)
        {
            return Models.FirstOrDefault(m => m.Shape == shape && m.Assembly == application)
                ?? Models.FirstOrDefault(m => m.Shape == shape);
        }
    }
}
