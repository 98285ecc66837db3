using Xunit;

namespace GemmaGen.Tests.Infrastructure;

/// <summary>
/// The xunit collection of the tests that count allocations: xunit runs it on its own after the parallel
/// collections, so no other test allocates while they measure.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class AllocationCountingCollection
{
    /// <summary>The collection's name, for <c>[Collection]</c>.</summary>
    public const string Name = "Allocation counting";
}

/// <summary>
/// The bytes the whole process allocates, on every thread (the worker pool's too: <see cref="GC.GetTotalAllocatedBytes(bool)"/>),
/// over <see cref="Count"/> consecutive windows of the same work. The test runner's own threads may still allocate
/// now and then (reporting earlier results), so a test asserts that its quietest window allocated nothing: an
/// allocation per call or per token, on any thread, is in every window.
/// </summary>
public sealed class AllocationWindows
{
    /// <summary>The number of windows.</summary>
    public const int Count = 5;

    private readonly long[] _marks = new long[Count + 1];
    private int _marked;

    /// <summary>Records the bytes allocated so far: once before the first window, then after each (it allocates
    /// nothing itself); marks past the last window are ignored.</summary>
    public void Mark()
    {
        if (_marked < _marks.Length) _marks[_marked++] = GC.GetTotalAllocatedBytes(precise: true);
    }

    /// <summary>The fewest bytes allocated in one window.</summary>
    public long Fewest()
    {
        Assert.True(_marked == _marks.Length, $"{_marked - 1} of {Count} allocation windows were measured");
        long fewest = long.MaxValue;
        for (int i = 1; i < _marks.Length; i++) fewest = Math.Min(fewest, _marks[i] - _marks[i - 1]);
        return fewest;
    }
}
