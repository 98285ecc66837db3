using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using GemmaGen.Kernels;

namespace GemmaGen.Benchmarks;

/// <summary>
/// Generated kernels written once more for runtime shapes, for issue 10 item 6's comparison
/// (<see cref="SpecializationBenchmarks"/>): the same blocking and the same order of operations (so the same floats),
/// the dimension a parameter instead of a constant. What the two measure apart is what the constant buys.
/// </summary>
public static unsafe class RuntimeShapeKernels
{
    /// <summary>The generated <c>ApplyRope</c> as a loop over the half-head (<paramref name="half"/> a multiple of 16),
    /// 512-bit.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Rope(float* x, float* cos, float* sin, int half)
    {
        for (int i = 0; i < half; i += 16)
        {
            Vector512<float> a = Vector512.Load(x + i), b = Vector512.Load(x + half + i), c = Vector512.Load(cos + i), s = Vector512.Load(sin + i);
            (a * c - b * s).Store(x + i);
            (b * c + a * s).Store(x + half + i);
        }
    }
}
