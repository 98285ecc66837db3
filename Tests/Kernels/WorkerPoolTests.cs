using System.Collections.Concurrent;
using GemmaGen.Kernels;
using GemmaGen.Tests.Infrastructure;
using Xunit;

namespace GemmaGen.Tests.Kernels;

/// <summary><see cref="WorkerPool"/>: how rows are split, failures, reuse, allocation and shutdown.</summary>
[IsaSensitive]
[Collection(AllocationCountingCollection.Name)]
public sealed class WorkerPoolTests
{
    public static TheoryData<int> ThreadCounts => new() { 1, 2, 3, 4 };

    /// <summary>
    /// <paramref name="count"/> repetitions, or a tenth of them when the pool has more threads than the machine has
    /// cores: a worker then waits for the scheduler to preempt a spinning sibling, and one run takes milliseconds.
    /// </summary>
    private static int Repetitions(int threads, int count) => threads <= Environment.ProcessorCount ? count : count / 10;

    /// <summary>Counts how often each row ran and records each part with the thread that ran it.</summary>
    private sealed class RecordingJob(int total) : IRowJob
    {
        public int[] Hits { get; } = new int[total];

        public ConcurrentQueue<(int Start, int End, Thread Thread)> Parts { get; } = new();

        public void Execute(int start, int end)
        {
            Parts.Enqueue((start, end, Thread.CurrentThread));
            for (int row = start; row < end; row++) Interlocked.Increment(ref Hits[row]);
        }
    }

    /// <summary>Touches its rows without allocating.</summary>
    private sealed class SummingJob : IRowJob
    {
        private long _sum;

        public void Execute(int start, int end) => Interlocked.Add(ref _sum, end - start);
    }

    /// <summary>Throws from the part that starts at row <c>failingStart</c>.</summary>
    private sealed class FailingJob(int failingStart) : IRowJob
    {
        public void Execute(int start, int end)
        {
            if (start == failingStart) throw new InvalidOperationException($"part at {start} failed");
        }
    }

    [Theory]
    [MemberData(nameof(ThreadCounts))]
    public void EveryRowRunsOnceInContiguousGrainAlignedParts(int threads)
    {
        using var pool = new WorkerPool(threads);
        Assert.Equal(threads, pool.Threads);
        foreach (int total in new[] { 1, 2, 3, 5, 7, 16, 33, 64, 100, 257, 1000, 2304 })
        {
            foreach (int grain in new[] { 1, 2, 3, 4, 8, 16, 64, 5000 })
            {
                var job = new RecordingJob(total);
                pool.Run(job, total, grain);

                string context = $"{threads} threads, total {total}, grain {grain}";
                Assert.True(job.Hits.All(h => h == 1), $"{context}: rows run {string.Join(",", job.Hits)} times");
                var parts = job.Parts.OrderBy(p => p.Start).ToArray();
                Assert.True(parts.Length <= threads, $"{context}: {parts.Length} parts");
                int expectedStart = 0;
                foreach (var (start, end, _) in parts)
                {
                    Assert.True(start == expectedStart && start < end, $"{context}: part [{start}, {end}) after {expectedStart}");
                    Assert.True(start % grain == 0 && (end % grain == 0 || end == total), $"{context}: part [{start}, {end}) not grain-aligned");
                    expectedStart = end;
                }
                Assert.Equal(total, expectedStart);
            }
        }
    }

    [Theory]
    [MemberData(nameof(ThreadCounts))]
    public void EachPartRunsOnItsOwnThreadTheCallerTakingTheFirst(int threads)
    {
        using var pool = new WorkerPool(threads);
        var job = new RecordingJob(threads * 64);

        pool.Run(job, threads * 64);

        var parts = job.Parts.OrderBy(p => p.Start).ToArray();
        Assert.Equal(threads, parts.Length);
        Assert.Same(Thread.CurrentThread, parts[0].Thread);
        Assert.Equal(threads, parts.Select(p => p.Thread).Distinct().Count());
    }

    [Fact]
    public void NothingRunsForAnEmptyRange()
    {
        using var pool = new WorkerPool(3);
        var job = new RecordingJob(0);

        pool.Run(job, 0);

        Assert.Empty(job.Parts);
    }

    [Theory]
    [InlineData(2, 50)]
    [InlineData(3, 33)]
    [InlineData(4, 75)]
    [InlineData(4, 0)]
    [InlineData(1, 0)]
    public void AnExceptionInAPartSurfacesOnTheCallerAndThePoolStaysUsable(int threads, int failingStart)
    {
        using var pool = new WorkerPool(threads);
        var failing = new FailingJob(failingStart);

        var thrown = Record.Exception(() => pool.Run(failing, 100));

        // The pool wraps a failure in an AggregateException, except when the caller ran the whole range itself.
        var failure = thrown is AggregateException aggregate ? Assert.Single(aggregate.InnerExceptions) : thrown;
        var invalid = Assert.IsType<InvalidOperationException>(failure);
        Assert.Equal($"part at {failingStart} failed", invalid.Message);

        var job = new RecordingJob(100);
        pool.Run(job, 100);
        Assert.All(job.Hits, h => Assert.Equal(1, h));
    }

    [Theory]
    [MemberData(nameof(ThreadCounts))]
    public void ThousandsOfRunsReuseThePool(int threads)
    {
        const int total = 96;
        int runs = Repetitions(threads, 3000);
        using var pool = new WorkerPool(threads);
        var job = new RecordingJob(total);

        for (int run = 0; run < runs; run++) pool.Run(job, total, grain: 8);

        Assert.All(job.Hits, h => Assert.Equal(runs, h));
    }

    [Theory]
    [MemberData(nameof(ThreadCounts))]
    public void RunAllocatesNothingAfterWarmUp(int threads)
    {
        using var pool = new WorkerPool(threads);
        var job = new SummingJob();
        for (int run = 0; run < Repetitions(threads, 500); run++) pool.Run(job, 1024, grain: 16);

        var windows = new AllocationWindows();
        windows.Mark();
        for (int window = 0; window < AllocationWindows.Count; window++)
        {
            for (int run = 0; run < Repetitions(threads, 400); run++) pool.Run(job, 1024, grain: 16);
            windows.Mark();
        }

        Assert.Equal(0, windows.Fewest());
    }

    [Theory]
    [InlineData(0)]
    [InlineData(200)]
    public void DisposeJoinsTheWorkers(int idleMilliseconds)
    {
        // Workers spin for a while after a job, then block: dispose must end both kinds.
        var pool = new WorkerPool(4);
        var job = new RecordingJob(400);
        pool.Run(job, 400);
        Thread.Sleep(idleMilliseconds);

        pool.Dispose();

        var workers = job.Parts.Select(p => p.Thread).Where(t => t != Thread.CurrentThread).ToArray();
        Assert.Equal(3, workers.Length);
        Assert.All(workers, w => Assert.False(w.IsAlive, $"{w.Name} is still alive"));
        Assert.Throws<ObjectDisposedException>(() => pool.Run(job, 400));
        pool.Dispose();
    }

    [Fact]
    public void APoolNeedsAThread()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new WorkerPool(0));
    }
}
