using GemmaGen.Kernels;
using GemmaGen.Models;
using GemmaGen.Specs;
using GemmaGen.Tests.Compiled;

namespace GemmaGen.Tests.Package;

/// <summary>
/// Which compiled class runs a shape that several assemblies compiled: an application that declares a spec of a
/// shape GemmaGen.Host also has built in (the demo model's, in the sample) must run its own class.
/// </summary>
public sealed class CompiledModelRegistryTests
{
    /// <summary>A layer shape no spec of the repository has, so the classes these tests register serve nothing else.</summary>
    private static readonly LayerShape UnusedShape = new(40, 5, 1, 8, 24, 3, 50.0, 30.0, 8.0, 1e-6, 10000.0);

    /// <summary>The built-in demo class of GemmaGen.Host.</summary>
    private static CompiledModel BuiltInDemo
    {
        get
        {
            LayerShape shape = Gemma2_Demo.Shape; // code of GemmaGen.Host: its module initializer has registered its classes
            return Assert.Single(CompiledModelRegistry.All, m => m.ClassName == nameof(Gemma2_Demo) && m.Shape == shape);
        }
    }

    [Fact]
    public void AClassKnowsTheAssemblyItWasCompiledInto()
    {
        Assert.Equal(typeof(GemmaModel).Assembly, BuiltInDemo.Assembly);
        Assert.Equal(typeof(CompiledModelRegistryTests).Assembly, CompiledModelRegistry.Find(TinyGqa.Shape)!.Assembly);
    }

    [Fact]
    public void TheApplicationsOwnClassWinsOverALibrarysClassOfTheSameShape()
    {
        // "Library" reuses the factory of Host's demo class, so it counts as compiled into GemmaGen.Host; "Application"
        // is defined here. The library's registers first, as a library registered before the application's would.
        var library = new CompiledModel("Library", UnusedShape, BuiltInDemo.Create);
        var application = new CompiledModel("Application", UnusedShape, (weights, maxContext, pool) => new ReferenceForward(weights, maxContext, pool));
        CompiledModelRegistry.Register(library);
        CompiledModelRegistry.Register(application);

        Assert.Same(application, CompiledModelRegistry.Find(UnusedShape, typeof(CompiledModelRegistryTests).Assembly));
        Assert.Same(library, CompiledModelRegistry.Find(UnusedShape, typeof(GemmaModel).Assembly));
        // An entry assembly with no class of the shape (the test host here): the first registered.
        Assert.Same(library, CompiledModelRegistry.Find(UnusedShape, application: null));
        Assert.Same(library, CompiledModelRegistry.Find(UnusedShape));
    }

    [Fact]
    public void RegisteringTheSameClassTwiceKeepsOne()
    {
        var shape = UnusedShape with { HiddenSize = 48 };
        var first = new CompiledModel("Twice", shape, (weights, maxContext, pool) => new ReferenceForward(weights, maxContext, pool));
        CompiledModelRegistry.Register(first);
        CompiledModelRegistry.Register(first with { });
        // The same name and shape in another assembly is another class.
        CompiledModelRegistry.Register(first with { Create = BuiltInDemo.Create });

        Assert.Equal(2, CompiledModelRegistry.All.Count(m => m.Shape == shape));
        Assert.Same(first, CompiledModelRegistry.Find(shape, application: null));
    }
}
