namespace GemmaGen.Kernels;

/// <summary>A unit of parallel work over rows [start, end); implementations are allocated once and reused.</summary>
public interface IRowJob
{
    /// <summary>Processes rows [<paramref name="start"/>, <paramref name="end"/>).</summary>
    void Execute(int start, int end);
}

/// <summary>
/// A persistent pool that splits a row range into contiguous parts, one per thread, the caller taking the
/// first. Workers spin briefly for the next job (a hand-off costs well under a microsecond) and then block,
/// so an idle pool, or one whose cores another process wants, burns no CPU. No allocation per call.
/// </summary>
public sealed class WorkerPool : IDisposable
{
    /// <summary>Spin-wait rounds before blocking; after the first few, each round yields the core.</summary>
    private const int SpinIterations = 2_000;

    private readonly Thread[] _workers;
    private readonly object _gate = new();
    private readonly object _runGate = new();
    private IRowJob? _job;
    private int _total;
    private int _grain;
    private long _generation;
    private int _pending;
    private int _sleepers;
    private bool _disposed;
    private Exception? _failure;

    /// <param name="threads">Threads that work on a job, the caller's included; at least 1.</param>
    public WorkerPool(int threads)
    {
        if (threads < 1) throw new ArgumentOutOfRangeException(nameof(threads), threads, "a pool needs at least one thread");
        Threads = threads;
        _workers = new Thread[threads - 1];
        for (int i = 0; i < _workers.Length; i++)
        {
            int part = i + 1;
            _workers[i] = new Thread(() => WorkerLoop(part)) { IsBackground = true, Name = $"gemmagen-worker-{part}" };
            _workers[i].Start();
        }
    }

    /// <summary>Threads that work on a job, the caller's included.</summary>
    public int Threads { get; }

    /// <summary>Runs <paramref name="job"/> over [0, <paramref name="total"/>), split into contiguous parts whose
    /// boundaries are multiples of <paramref name="grain"/>. Returns when every part is done. Callers on different
    /// threads (decoders of several sessions sharing the pool) take turns.</summary>
    public void Run(IRowJob job, int total, int grain = 1)
    {
        // One job at a time: decoders of different sessions may share the pool from different threads.
        lock (_runGate) RunExclusive(job, total, grain);
    }

    private void RunExclusive(IRowJob job, int total, int grain)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(grain);
        if (total <= 0) return;
        if (_workers.Length == 0 || total <= grain)
        {
            job.Execute(0, total);
            return;
        }
        _job = job;
        _total = total;
        _grain = grain;
        _failure = null;
        Volatile.Write(ref _pending, _workers.Length);
        Interlocked.Increment(ref _generation);
        if (Volatile.Read(ref _sleepers) > 0)
        {
            lock (_gate) Monitor.PulseAll(_gate);
        }

        Exception? own = null;
        try
        {
            ExecutePart(job, 0);
        }
        catch (Exception e)
        {
            own = e;
        }

        var spin = new SpinWait();
        while (Volatile.Read(ref _pending) != 0) spin.SpinOnce(sleep1Threshold: -1);
        _job = null;
        var failure = own ?? _failure;
        if (failure != null) throw new AggregateException("a worker failed", failure);
    }

    private void ExecutePart(IRowJob job, int part)
    {
        var (start, end) = Range(part);
        if (start < end) job.Execute(start, end);
    }

    /// <summary>Part <paramref name="part"/> of the current job: contiguous, grain-aligned, sizes within a grain of each other.</summary>
    private (int Start, int End) Range(int part)
    {
        int units = (_total + _grain - 1) / _grain;
        int start = (int)((long)units * part / Threads) * _grain;
        int end = (int)((long)units * (part + 1) / Threads) * _grain;
        return (Math.Min(start, _total), Math.Min(end, _total));
    }

    private void WorkerLoop(int part)
    {
        long seen = 0;
        while (true)
        {
            long generation = WaitForJob(seen);
            if (generation < 0) return;
            seen = generation;
            try
            {
                ExecutePart(_job!, part);
            }
            catch (Exception e)
            {
                Interlocked.CompareExchange(ref _failure, e, null);
            }
            Interlocked.Decrement(ref _pending);
        }
    }

    /// <summary>Spins for a new generation, then blocks; -1 once the pool is disposed.</summary>
    private long WaitForJob(long seen)
    {
        var spinner = new SpinWait();
        for (int i = 0; i < SpinIterations; i++)
        {
            long g = Volatile.Read(ref _generation);
            if (g != seen) return g;
            if (Volatile.Read(ref _disposed)) return -1;
            spinner.SpinOnce(sleep1Threshold: -1);
        }
        lock (_gate)
        {
            Interlocked.Increment(ref _sleepers);
            try
            {
                while (true)
                {
                    if (_disposed) return -1;
                    long g = Volatile.Read(ref _generation);
                    if (g != seen) return g;
                    Monitor.Wait(_gate);
                }
            }
            finally
            {
                Interlocked.Decrement(ref _sleepers);
            }
        }
    }

    /// <summary>Stops the worker threads.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        lock (_gate)
        {
            Volatile.Write(ref _disposed, true);
            Monitor.PulseAll(_gate);
        }
        foreach (var worker in _workers) worker.Join();
    }
}
