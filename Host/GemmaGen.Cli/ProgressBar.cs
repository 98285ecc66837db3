namespace GemmaGen.Cli;

/// <summary>A one-line progress bar on stderr, drawn only when stderr is a terminal (never into pipes or logs).</summary>
internal sealed class ProgressBar : IDisposable
{
    private const int Width = 30;
    private readonly TextWriter _writer;
    private readonly string _label;
    private readonly bool _enabled;
    private int _drawn = -1;

    public ProgressBar(TextWriter writer, string label)
    {
        _writer = writer;
        _label = label;
        _enabled = ReferenceEquals(writer, Console.Error) && !Console.IsErrorRedirected;
    }

    /// <summary>Redraws the bar for <paramref name="fraction"/> (0 to 1) when it moved by a cell.</summary>
    public void Report(double fraction)
    {
        if (!_enabled) return;
        int filled = (int)Math.Round(Math.Clamp(fraction, 0, 1) * Width);
        if (filled == _drawn) return;
        _drawn = filled;
        _writer.Write($"\r{_label} [{new string('#', filled)}{new string('.', Width - filled)}] {fraction * 100,3:F0}%");
    }

    /// <summary>Clears the line.</summary>
    public void Dispose()
    {
        if (_enabled && _drawn >= 0) _writer.Write("\r" + new string(' ', _label.Length + Width + 10) + "\r");
    }
}
