namespace GemmaGen.Kernels;

/// <summary>A checkpoint tensor a compiled model binds: its Hugging Face name and shape ([out, in] for matrices).</summary>
public sealed record WeightSlot(string Name, params int[] Shape)
{
    /// <summary>The name and shape, as <c>name [rows, cols]</c>.</summary>
    public override string ToString() => $"{Name} [{string.Join(", ", Shape)}]";
}
