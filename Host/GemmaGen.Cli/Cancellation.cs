namespace GemmaGen.Cli;

/// <summary>
/// Ctrl+C during a generation stops that generation instead of the process; Ctrl+C while nothing is generating
/// (in <c>chat</c>, while waiting for the next line) exits as usual.
/// </summary>
internal sealed class Cancellation : IDisposable
{
    private readonly object _gate = new();
    private CancellationTokenSource _current = new();
    private bool _generating;

    public Cancellation() => Console.CancelKeyPress += OnCancel;

    /// <summary>Starts a generation: Ctrl+C cancels the token until the returned scope is disposed. A Ctrl+C of an
    /// earlier generation is forgotten.</summary>
    public Scope Begin()
    {
        lock (_gate)
        {
            if (_current.IsCancellationRequested)
            {
                _current.Dispose();
                _current = new CancellationTokenSource();
            }
            _generating = true;
            return new Scope(this, _current.Token);
        }
    }

    private void End()
    {
        lock (_gate) _generating = false;
    }

    private void OnCancel(object? sender, ConsoleCancelEventArgs e)
    {
        lock (_gate)
        {
            if (!_generating) return; // idle: let Ctrl+C end the process
            e.Cancel = true;
            _current.Cancel();
        }
    }

    public void Dispose()
    {
        Console.CancelKeyPress -= OnCancel;
        lock (_gate) _current.Dispose();
    }

    /// <summary>One generation's cancellation token; disposing it marks the end of the generation.</summary>
    public readonly struct Scope(Cancellation owner, CancellationToken token) : IDisposable
    {
        public CancellationToken Token { get; } = token;

        public void Dispose() => owner.End();
    }
}
