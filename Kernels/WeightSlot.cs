namespace GemmaGen.Kernels;

/// <summary>A checkpoint tensor a compiled model binds: its Hugging Face name and shape ([out, in] for matrices).</summary>
public sealed record WeightSlot(string Name, params int[] Shape)
{
    public override string ToString() => $"{Name} [{string.Join(", ", Shape)}]";
}
