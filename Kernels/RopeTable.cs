using System.Runtime.CompilerServices;

namespace GemmaGen.Kernels;

/// <summary>
/// Rotary embedding tables for positions [0, maxContext): cos and sin of p·θ^(-2i/d) for i &lt; d/2, computed in
/// double and rounded once to float32. Rotation is rotate-half (NeoX): element i pairs with i + d/2.
/// </summary>
public sealed unsafe class RopeTable
{
    private readonly float[] _cos;
    private readonly float[] _sin;

    /// <summary>The tables of positions [0, <paramref name="maxContext"/>) for heads of <paramref name="headDim"/> (even)
    /// and base <paramref name="theta"/>.</summary>
    public RopeTable(int headDim, double theta, int maxContext)
    {
        if (headDim % 2 != 0) throw new ArgumentException($"head_dim {headDim} is odd; rotary embedding needs an even head_dim");
        HeadDim = headDim;
        MaxContext = maxContext;
        int half = headDim / 2;
        _cos = GC.AllocateUninitializedArray<float>(checked(maxContext * half), pinned: true);
        _sin = GC.AllocateUninitializedArray<float>(checked(maxContext * half), pinned: true);
        var inverseFrequency = new double[half];
        for (int i = 0; i < half; i++) inverseFrequency[i] = Math.Pow(theta, -2.0 * i / headDim);
        for (int p = 0; p < maxContext; p++)
        {
            for (int i = 0; i < half; i++)
            {
                double angle = p * inverseFrequency[i];
                _cos[p * half + i] = (float)Math.Cos(angle);
                _sin[p * half + i] = (float)Math.Sin(angle);
            }
        }
    }

    /// <summary>Positions the tables cover.</summary>
    public int MaxContext { get; }

    /// <summary>Width of one head (d); a position's row holds d/2 values.</summary>
    public int HeadDim { get; }

    /// <summary>cos φ for position <paramref name="position"/>: d/2 floats.</summary>
    public float* Cos(int position) => (float*)Unsafe.AsPointer(ref _cos[position * (HeadDim / 2)]);

    /// <summary>sin φ for position <paramref name="position"/>: d/2 floats.</summary>
    public float* Sin(int position) => (float*)Unsafe.AsPointer(ref _sin[position * (HeadDim / 2)]);

    /// <summary>Rotates one head in place (scalar; the generated kernels inline their own vector form).</summary>
    public void Apply(Span<float> head, int position)
    {
        int half = HeadDim / 2;
        float* c = Cos(position), s = Sin(position);
        for (int i = 0; i < half; i++)
        {
            float a = head[i], b = head[i + half];
            head[i] = a * c[i] - b * s[i];
            head[i + half] = b * c[i] + a * s[i];
        }
    }
}
