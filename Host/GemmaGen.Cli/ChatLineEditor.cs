using RadLine;
using Spectre.Console;

namespace GemmaGen.Cli;

/// <summary>
/// The chat prompt on an interactive terminal: RadLine's line editor with the keys of a shell. Left/Right, Home/End,
/// Backspace/Delete are RadLine's; added here: Up/Down walk the history, Ctrl+A/Ctrl+E go to the start/end of the
/// line, Ctrl+U deletes up to the cursor, Ctrl+W the word before it, and Ctrl+D ends the input on an empty line
/// (else deletes the character under the cursor).
/// </summary>
internal static class ChatLineEditor
{
    /// <summary>An editor that draws on <paramref name="console"/> and reads keys from <paramref name="keys"/> (the
    /// terminal when null).</summary>
    public static LineEditor Create(IAnsiConsole console, IInputSource? keys = null)
    {
        var editor = new LineEditor(console, keys) { Prompt = new LineEditorPrompt(">") };
        var bindings = editor.KeyBindings;
        // RadLine moves between the lines of a multi-line text on Up/Down; a chat line is one line.
        bindings.Remove(ConsoleKey.UpArrow);
        bindings.Remove(ConsoleKey.DownArrow);
        bindings.Add<PreviousHistoryCommand>(ConsoleKey.UpArrow);
        bindings.Add<NextHistoryCommand>(ConsoleKey.DownArrow);
        bindings.Add<MoveHomeCommand>(ConsoleKey.A, ConsoleModifiers.Control);
        bindings.Add<MoveEndCommand>(ConsoleKey.E, ConsoleModifiers.Control);
        bindings.Add<DeleteToStartCommand>(ConsoleKey.U, ConsoleModifiers.Control);
        bindings.Add<DeleteWordBeforeCommand>(ConsoleKey.W, ConsoleModifiers.Control);
        bindings.Add<EndOfInputCommand>(ConsoleKey.D, ConsoleModifiers.Control);
        return editor;
    }

    /// <summary>The next line, or null when Ctrl+D ended the input (the editor has moved to a new line).</summary>
    public static string? Read(LineEditor editor) => editor.ReadLine(CancellationToken.None).GetAwaiter().GetResult();

    /// <summary>Ctrl+U: deletes from the start of the line to the cursor.</summary>
    private sealed class DeleteToStartCommand : LineEditorCommand
    {
        public override void Execute(LineEditorContext context)
        {
            context.Buffer.Clear(0, context.Buffer.Position);
            context.Buffer.Move(0);
        }
    }

    /// <summary>Ctrl+W: deletes the spaces before the cursor and the word before them.</summary>
    private sealed class DeleteWordBeforeCommand : LineEditorCommand
    {
        public override void Execute(LineEditorContext context)
        {
            var buffer = context.Buffer;
            string text = buffer.Content;
            int end = buffer.Position, start = end;
            while (start > 0 && char.IsWhiteSpace(text[start - 1])) start--;
            while (start > 0 && !char.IsWhiteSpace(text[start - 1])) start--;
            buffer.Clear(start, end - start);
            buffer.Move(start);
        }
    }

    /// <summary>Ctrl+D: end of input on an empty line, as a shell has it; else deletes the character under the cursor.</summary>
    private sealed class EndOfInputCommand : LineEditorCommand
    {
        public override void Execute(LineEditorContext context)
        {
            if (context.Buffer.Length == 0) context.Submit(SubmitAction.Cancel);
            else new DeleteCommand().Execute(context);
        }
    }
}
