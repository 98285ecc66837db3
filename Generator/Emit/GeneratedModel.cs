using GemmaGen.Specs;

namespace GemmaGen.Generator
{
    /// <summary>What the emitter needs to write one spec's class; value-equatable so unchanged specs are cached.</summary>
    /// <param name="ClassName">Name of the generated class (from the file name, or the ClassName item metadata).</param>
    /// <param name="Namespace">Namespace of the generated class.</param>
    /// <param name="SourceFileName">The spec's file name (no directory), for the header comment.</param>
    /// <param name="Config">The parsed spec.</param>
    internal sealed record GeneratedModel(string ClassName, string Namespace, string SourceFileName, Gemma2Config Config);
}
