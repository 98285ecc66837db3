using System.Diagnostics;
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
/// over <see cref="Count"/> windows of the same work, and the fewest of them: an allocation per call or per token, on
/// any thread, is in every window. The test host allocates on its own, though: 168 bytes every 100 ms from a timer of the
/// test platform's (measured in a test that does nothing), and bursts when it reports a finished test. So a window opens
/// only once the process has been quiet for a moment, there is a pause between one window's end and the next one's
/// start (outside both), and each window's work must take well under 100 ms: then <see cref="Count"/> windows span
/// fewer ticks than there are windows, and at least one window is quiet unless the code under test allocates.
/// </summary>
public sealed class AllocationWindows
{
    /// <summary>The number of windows.</summary>
    public const int Count = 8;

    private static readonly TimeSpan Gap = TimeSpan.FromMilliseconds(5);
    private static readonly TimeSpan Quiet = TimeSpan.FromMilliseconds(30);
    private static readonly TimeSpan MostToWait = TimeSpan.FromSeconds(2);

    private readonly long[] _bytes = new long[Count];
    private readonly long[] _ticks = new long[Count];
    private int _measured;
    private long _start = -1;
    private long _started;

    /// <summary>Waits (at most two seconds) until the process goes a moment without allocating, so that the first
    /// window does not open in the middle of the runner's reporting.</summary>
    public AllocationWindows()
    {
        var waited = Stopwatch.StartNew();
        while (waited.Elapsed < MostToWait)
        {
            long before = GC.GetTotalAllocatedBytes(precise: true);
            Thread.Sleep(Quiet);
            if (GC.GetTotalAllocatedBytes(precise: true) == before) break;
        }
    }

    /// <summary>Closes the open window (if any), pauses, and opens the next: call it once before the first window, then
    /// after each. It allocates nothing; marks past the last window are ignored.</summary>
    public void Mark()
    {
        if (_measured == Count) return;
        long now = GC.GetTotalAllocatedBytes(precise: true);
        if (_start >= 0)
        {
            _ticks[_measured] = Stopwatch.GetTimestamp() - _started;
            _bytes[_measured++] = now - _start;
        }
        if (_measured == Count) return;
        Thread.Sleep(Gap);
        _started = Stopwatch.GetTimestamp();
        _start = GC.GetTotalAllocatedBytes(precise: true);
    }

    /// <summary>Asserts that the quietest window allocated nothing; the message names the <paramref name="work"/> of one
    /// window and lists every window's bytes and milliseconds (a window of 100 ms or more cannot be quiet in the test host).</summary>
    public void AssertOneWindowAllocatedNothing(string work)
    {
        Assert.True(_measured == Count, $"{_measured} of {Count} allocation windows were measured");
        long fewest = _bytes.Min();
        Assert.True(fewest == 0, $"{work} allocated {fewest} bytes or more in each window: " +
            string.Join(", ", _bytes.Zip(_ticks, (bytes, ticks) => $"{bytes} B in {ticks * 1000.0 / Stopwatch.Frequency:F0} ms")));
    }
}
