using GemmaGen.Cli;
using RadLine;
using Spectre.Console;

namespace GemmaGen.Tests.Cli;

/// <summary>The chat prompt's line editor, fed keys as a terminal sends them (Ctrl+letter: the letter with Control
/// and its control character).</summary>
public sealed class ChatLineEditorTests
{
    private readonly StringWriter _screen = new();
    private readonly Keys _keys = new();
    private readonly LineEditor _editor;

    public ChatLineEditorTests()
    {
        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Ansi = AnsiSupport.Yes,
            ColorSystem = ColorSystemSupport.NoColors,
            Interactive = InteractionSupport.Yes,
            Out = new AnsiConsoleOutput(_screen),
        });
        _editor = ChatLineEditor.Create(console, _keys);
    }

    private string? Line(params object[] keys)
    {
        foreach (object key in keys) _keys.Push(key);
        // A guard, not a measurement: keys that end no line would keep the editor waiting.
        using var guard = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        string? line = _editor.ReadLine(guard.Token).GetAwaiter().GetResult();
        Assert.False(guard.IsCancellationRequested, "the keys ended no line");
        Assert.Equal(0, _keys.Count);
        return line;
    }

    [Fact]
    public void LeftRightHomeAndEndMoveTheCursor()
    {
        Assert.Equal("hello", Line("helo", ConsoleKey.LeftArrow, "l", ConsoleKey.Enter));
        Assert.Equal("[hello] world", Line("hello", ConsoleKey.Home, "[", ConsoleKey.End, " world", ConsoleKey.Home,
            ConsoleKey.RightArrow, ConsoleKey.RightArrow, ConsoleKey.RightArrow, ConsoleKey.RightArrow, ConsoleKey.RightArrow, ConsoleKey.RightArrow,
            "]", ConsoleKey.Enter));
    }

    [Fact]
    public void CtrlAAndCtrlEGoToTheStartAndTheEnd()
    {
        Assert.Equal("<abc>", Line("abc", Ctrl('A'), "<", Ctrl('E'), ">", ConsoleKey.Enter));
    }

    [Fact]
    public void CtrlUDeletesUpToTheCursor()
    {
        Assert.Equal("def", Line("abc def", ConsoleKey.LeftArrow, ConsoleKey.LeftArrow, ConsoleKey.LeftArrow, Ctrl('U'), ConsoleKey.Enter));
        Assert.Equal("x", Line("abc", Ctrl('U'), "x", ConsoleKey.Enter));
    }

    [Fact]
    public void CtrlWDeletesTheWordBeforeTheCursor()
    {
        Assert.Equal("one ", Line("one two  ", Ctrl('W'), ConsoleKey.Enter));
        Assert.Equal("one three", Line("one two three", ConsoleKey.LeftArrow, ConsoleKey.LeftArrow, ConsoleKey.LeftArrow,
            ConsoleKey.LeftArrow, ConsoleKey.LeftArrow, Ctrl('W'), ConsoleKey.Enter));
        Assert.Equal("", Line("one two", Ctrl('W'), Ctrl('W'), Ctrl('W'), ConsoleKey.Enter));
    }

    [Fact]
    public void UpAndDownWalkTheHistory()
    {
        Line("first", ConsoleKey.Enter);
        Line("second", ConsoleKey.Enter);

        Assert.Equal("second", Line(ConsoleKey.UpArrow, ConsoleKey.Enter));
        Assert.Equal("first!", Line(ConsoleKey.UpArrow, ConsoleKey.UpArrow, ConsoleKey.UpArrow, "!", ConsoleKey.Enter));
        // The history is now first, second, first!: up to the oldest, one down.
        Assert.Equal("second", Line(ConsoleKey.UpArrow, ConsoleKey.UpArrow, ConsoleKey.UpArrow, ConsoleKey.DownArrow, ConsoleKey.Enter));
    }

    [Fact]
    public void CtrlDOnAnEmptyLineEndsTheInputOnANewLine()
    {
        Assert.Null(Line(Ctrl('D')));
        Assert.EndsWith("\n", _screen.ToString().Replace("\r\n", "\n"));
        // On text it deletes the character under the cursor.
        Assert.Equal("ac", Line("abc", ConsoleKey.LeftArrow, ConsoleKey.LeftArrow, Ctrl('D'), ConsoleKey.Enter));
    }

    private static ConsoleKeyInfo Ctrl(char letter) => new((char)(letter - 'A' + 1), ConsoleKey.A + (letter - 'A'), shift: false, alt: false, control: true);

    /// <summary>Keys queued by a test.</summary>
    private sealed class Keys : IInputSource
    {
        private readonly Queue<ConsoleKeyInfo> _queue = new();

        public int Count => _queue.Count;

        public bool ByPassProcessing => true;

        public void Push(object key)
        {
            switch (key)
            {
                case string text:
                    foreach (char c in text) _queue.Enqueue(new ConsoleKeyInfo(c, default, false, false, false));
                    break;
                case ConsoleKey named:
                    _queue.Enqueue(new ConsoleKeyInfo(named == ConsoleKey.Enter ? '\r' : '\0', named, false, false, false));
                    break;
                case ConsoleKeyInfo info:
                    _queue.Enqueue(info);
                    break;
                default:
                    throw new ArgumentException($"not a key: {key}");
            }
        }

        public bool IsKeyAvailable() => _queue.Count > 0;

        public ConsoleKeyInfo ReadKey() => _queue.Dequeue();
    }
}
