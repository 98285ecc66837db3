namespace GemmaGen.Cli;

/// <summary>Ctrl+C stops the current generation instead of the process (a second Ctrl+C while idle exits).</summary>
internal sealed class Cancellation : IDisposable
{
    private CancellationTokenSource _current = new();

    public Cancellation() => Console.CancelKeyPress += OnCancel;

    /// <summary>A token for the next generation; a previous Ctrl+C is forgotten.</summary>
    public CancellationToken Next()
    {
        if (_current.IsCancellationRequested)
        {
            _current.Dispose();
            _current = new CancellationTokenSource();
        }
        return _current.Token;
    }

    private void OnCancel(object? sender, ConsoleCancelEventArgs e)
    {
        e.Cancel = true;
        _current.Cancel();
    }

    public void Dispose()
    {
        Console.CancelKeyPress -= OnCancel;
        _current.Dispose();
    }
}
