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

    /// <summary>Throws from the chunk that holds row <c>failingRow</c>.</summary>
    private sealed class FailingJob(int failingRow) : IRowJob
    {
        public void Execute(int start, int end)
        {
            if (start <= failingRow && failingRow < end) throw new InvalidOperationException($"row {failingRow} failed");
        }
    }

    [Theory]
    [MemberData(nameof(ThreadCounts))]
    public void EveryRowRunsOnceInContiguousGrainAlignedChunks(int threads)
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
                // about ChunksPerThread chunks per thread: a chunk is units / (threads · ChunksPerThread) grains, rounded down
                Assert.True(parts.Length < 2 * threads * WorkerPool.ChunksPerThread, $"{context}: {parts.Length} chunks");
                int expectedStart = 0;
                foreach (var (start, end, _) in parts)
                {
                    Assert.True(start == expectedStart && start < end, $"{context}: chunk [{start}, {end}) after {expectedStart}");
                    Assert.True(start % grain == 0 && (end % grain == 0 || end == total), $"{context}: chunk [{start}, {end}) not grain-aligned");
                    expectedStart = end;
                }
                Assert.Equal(total, expectedStart);
            }
        }
    }

    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    public void AStalledThreadCostsOnlyTheChunkItHolds(int threads)
    {
        // One worker stalls in its first chunk (as when another process takes its core) until the others have run
        // every other row: with chunks taken from a shared counter they can; with a fixed share per thread they could
        // not, and the wait would time out.
        using var pool = new WorkerPool(threads);
        var job = new StallingJob(Thread.CurrentThread, total: 4096);

        pool.Run(job, 4096, grain: 16);

        Assert.True(job.OthersFinished, $"the other threads ran {job.RunByOthers} of the {4096 - job.StalledRows} rows the stalled chunk left");
        Assert.True(job.StalledRows <= 4096 / (threads * WorkerPool.ChunksPerThread), $"the stalled thread held {job.StalledRows} rows");
    }

    /// <summary>The first chunk a worker thread (not the caller) takes blocks until every other row has run; the caller's
    /// first chunk waits until that stall has begun (so the caller cannot run the whole job before a worker wakes).</summary>
    private sealed class StallingJob(Thread caller, int total) : IRowJob
    {
        private readonly ManualResetEventSlim _othersDone = new();
        private readonly ManualResetEventSlim _stallBegan = new();
        private int _callerWaited;
        private int _stalled;
        private int _stalledRows;
        private int _runByOthers;

        public int StalledRows => Volatile.Read(ref _stalledRows);

        public int RunByOthers => Volatile.Read(ref _runByOthers);

        public bool OthersFinished { get; private set; }

        public void Execute(int start, int end)
        {
            if (Thread.CurrentThread != caller && Interlocked.CompareExchange(ref _stalled, 1, 0) == 0)
            {
                Volatile.Write(ref _stalledRows, end - start);
                _stallBegan.Set();
                CheckDone();
                OthersFinished = _othersDone.Wait(TimeSpan.FromSeconds(20));
                return;
            }
            if (Thread.CurrentThread == caller && Interlocked.Exchange(ref _callerWaited, 1) == 0) _stallBegan.Wait(TimeSpan.FromSeconds(20));
            Interlocked.Add(ref _runByOthers, end - start);
            CheckDone();
        }

        private void CheckDone()
        {
            if (StalledRows > 0 && RunByOthers == total - StalledRows) _othersDone.Set();
        }
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
        Assert.Equal($"row {failingStart} failed", invalid.Message);

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

        windows.AssertOneWindowAllocatedNothing($"{Repetitions(threads, 400)} runs of the pool");
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

        var workers = pool.WorkerThreads;
        Assert.Equal(3, workers.Count);
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
