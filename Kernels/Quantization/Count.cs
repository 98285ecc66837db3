namespace GemmaGen.Kernels;

/// <summary>A small count as a type, for kernels whose register blocking depends on it: each instantiation sees
/// <see cref="Value"/> as a constant, so its branches on it fold away and its accumulators stay in registers.</summary>
internal interface ICount
{
    static abstract int Value { get; }
}

internal struct Count1 : ICount { public static int Value => 1; }

internal struct Count2 : ICount { public static int Value => 2; }

internal struct Count3 : ICount { public static int Value => 3; }

internal struct Count4 : ICount { public static int Value => 4; }

internal struct Count5 : ICount { public static int Value => 5; }

internal struct Count6 : ICount { public static int Value => 6; }

internal struct Count7 : ICount { public static int Value => 7; }

internal struct Count8 : ICount { public static int Value => 8; }
