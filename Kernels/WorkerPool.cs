namespace GemmaGen.Kernels;

/// <summary>A unit of parallel work over rows [start, end); implementations are allocated once and reused.</summary>
public interface IRowJob
{
    /// <summary>Processes rows [<paramref name="start"/>, <paramref name="end"/>).</summary>
    void Execute(int start, int end);
}

/// <summary>
/// A persistent pool that splits a row range into contiguous, grain-aligned chunks, about
/// <see cref="ChunksPerThread"/> per thread, which the threads (the caller's included) take from a shared counter
/// as they become free: a thread slowed down by another process on its core costs the job at most the chunk it
/// holds, not a fixed share. Workers spin briefly for the next job (a hand-off costs well under a microsecond) and
/// then block, so an idle pool, or one whose cores another process wants, burns no CPU. No allocation per call.
/// </summary>
public sealed class WorkerPool : IDisposable
{
    /// <summary>Spin-wait rounds before blocking; after the first few, each round yields the core.</summary>
    private const int SpinIterations = 2_000;

    /// <summary>Chunks a job is cut into per thread: enough that a slow thread's last chunk is a small part of the job,
    /// few enough that taking one (an interlocked add) and the kernels' per-call set-up stay negligible.</summary>
    public const int ChunksPerThread = 4;

    private readonly Thread[] _workers;
    private readonly object _gate = new();
    private readonly object _runGate = new();
    private IRowJob? _job;
    private int _total;
    private int _grain;
    private int _units;
    private long _run;
    private int _chunkUnits;
    private int _nextUnit;
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
            _workers[i] = new Thread(WorkerLoop) { IsBackground = true, Name = $"gemmagen-worker-{part}" };
            _workers[i].Start();
        }
    }

    /// <summary>The pool's own threads (not the callers'), for tests.</summary>
    internal IReadOnlyList<Thread> WorkerThreads => _workers;

    /// <summary>Threads that work on a job, the caller's included.</summary>
    public int Threads { get; }

    /// <summary>Runs <paramref name="job"/> over [0, <paramref name="total"/>), split into contiguous chunks whose
    /// boundaries are multiples of <paramref name="grain"/>, each run once by whichever thread takes it. Returns when
    /// every chunk is done. Callers on different threads take turns.</summary>
    public void Run(IRowJob job, int total, int grain = 1)
    {
        // One job at a time: decoders of different sessions may share the pool from different threads.
        lock (_runGate) RunExclusive(job, total, grain);
    }

    /// <summary>Runs started by every pool so far: each run's number is unique in the process.</summary>
    private static long s_runs;

    [ThreadStatic]
    private static long t_run;

    /// <summary>The number of the pool run whose chunks this thread is executing, or 0 outside one. Within a run the
    /// job's inputs do not change, so a kernel may keep what it derived from them (its quantized input) for the
    /// run's later chunks on the same thread.</summary>
    internal static long CurrentRun => t_run;

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
        _units = (int)(((long)total + grain - 1) / grain);
        _chunkUnits = Math.Max(1, _units / (Threads * ChunksPerThread));
        Volatile.Write(ref _nextUnit, 0);
        _run = Interlocked.Increment(ref s_runs);
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
            ExecuteChunks(job);
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

    /// <summary>Takes chunks of the current job until none is left.</summary>
    private void ExecuteChunks(IRowJob job)
    {
        int chunk = _chunkUnits, units = _units, grain = _grain, total = _total;
        t_run = _run;
        try
        {
            while (true)
            {
                int first = Interlocked.Add(ref _nextUnit, chunk) - chunk;
                if (first >= units) return;
                long end = Math.Min((long)(first + chunk) * grain, total);
                job.Execute(first * grain, (int)end);
            }
        }
        finally
        {
            t_run = 0;
        }
    }

    private void WorkerLoop()
    {
        // The thread's statics are allocated on first touch: touch them now, not in the first job (a zero-allocation
        // window of a later run must not see it).
        t_run = 0;
        long seen = 0;
        while (true)
        {
            long generation = WaitForJob(seen);
            if (generation < 0) return;
            seen = generation;
            try
            {
                ExecuteChunks(_job!);
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

/// <summary>
/// What a kernel derived its scratch from inside one pool run (<see cref="WorkerPool.CurrentRun"/>): the input's
/// address and shape. Within a run the job's inputs do not change, so a later chunk on the same thread whose key equals
/// the one its scratch holds may reuse what was derived (the quantized input); outside a run (run 0) nothing is reused.
/// </summary>
internal readonly record struct RunInput(long Run, nint X, int Stride, int Tokens, int Cols, int Offset, int Block)
{
    /// <summary>The key of <paramref name="x"/> in the current run of this thread: what a kernel derived with
    /// <paramref name="offset"/> (its weights' offset, or a mark of its own) and inputs rounded per
    /// <paramref name="block"/> values.</summary>
    public static unsafe RunInput Of(float* x, int stride, int tokens, int cols, int offset, int block = QuantizedLayout.BlockSize) =>
        new(WorkerPool.CurrentRun, (nint)x, stride, tokens, cols, offset, block);

    /// <summary>Whether scratch holding <paramref name="held"/> already holds what this key derives.</summary>
    public bool IsHeldIn(RunInput held) => Run != 0 && this == held;
}

