using System.Runtime.CompilerServices;
using System.Text;
using DiffPlex;
using Xunit.Sdk;

namespace GemmaGen.Tests.Infrastructure;

/// <summary>
/// Verify-style snapshot assertions (the Verify library cannot be restored here). A snapshot named N is the
/// checked-in file <c>Tests/Snapshots/N.verified.cs</c> in the source tree. When the text differs from it (line
/// endings aside) or it does not exist, the text is written to <c>N.received.cs</c> beside it and the assertion
/// fails with a line diff; accept a change by moving the received file over the verified one, or by running the
/// tests with <c>GEMMAGEN_ACCEPT_SNAPSHOTS=1</c>, which writes the verified files instead of failing.
/// </summary>
public static class SnapshotAssert
{
    /// <summary>Set to 1 to accept every received text as the new verified snapshot.</summary>
    public const string AcceptVariable = "GEMMAGEN_ACCEPT_SNAPSHOTS";

    /// <summary>Diff lines shown in a failure message at most.</summary>
    private const int MaxDiffLines = 200;

    /// <summary>Unchanged lines shown around each change.</summary>
    private const int ContextLines = 3;

    /// <summary>Asserts that <paramref name="actual"/> equals the verified snapshot <paramref name="name"/>.</summary>
    /// <param name="actual">The text under test, e.g. a generated source file.</param>
    /// <param name="name">The snapshot's file name without <c>.verified.cs</c>, e.g. <c>TinyGqa.Model</c>.</param>
    /// <param name="sourceFile">Filled in by the compiler: locates the Tests folder of the source tree.</param>
    public static void Matches(string actual, string name, [CallerFilePath] string sourceFile = "") =>
        MatchesIn(SnapshotDirectory(sourceFile), actual, name, Environment.GetEnvironmentVariable(AcceptVariable) == "1");

    /// <summary>
    /// <see cref="Matches"/> with the snapshot directory and the accept mode given: compares <paramref name="actual"/>
    /// with <c>{directory}/{name}.verified.cs</c>. On a match, deletes a stale <c>.received.cs</c>; on a mismatch,
    /// writes the verified file if <paramref name="accept"/>, else writes the received file and throws.
    /// </summary>
    /// <exception cref="XunitException">The snapshot is missing or differs, and <paramref name="accept"/> is false.</exception>
    internal static void MatchesIn(string directory, string actual, string name, bool accept)
    {
        if (name.Length == 0 || name.IndexOfAny(['/', '\\', '\0']) >= 0)
            throw new ArgumentException($"snapshot name '{name}' must be a plain file name", nameof(name));
        string verifiedPath = Path.Combine(directory, name + ".verified.cs");
        string receivedPath = Path.Combine(directory, name + ".received.cs");
        string received = NormalizeLineEndings(actual);
        string? verified = File.Exists(verifiedPath) ? NormalizeLineEndings(File.ReadAllText(verifiedPath)) : null;

        if (verified == received)
        {
            File.Delete(receivedPath);
            return;
        }
        Directory.CreateDirectory(directory);
        if (accept)
        {
            File.WriteAllText(verifiedPath, received);
            File.Delete(receivedPath);
            return;
        }
        File.WriteAllText(receivedPath, received);

        var message = new StringBuilder();
        message.AppendLine(verified == null
            ? $"Snapshot '{name}' has no verified file {verifiedPath}."
            : $"Snapshot '{name}' does not match {verifiedPath}.");
        message.AppendLine("Diff (- verified, + received; line numbers verified, received):");
        message.Append(Diff(verified ?? "", received));
        message.AppendLine($"Received: {receivedPath}");
        message.Append($"To accept, review it and run `mv \"{receivedPath}\" \"{verifiedPath}\"`, or rerun the tests with {AcceptVariable}=1.");
        throw new XunitException(message.ToString());
    }

    /// <summary>The <c>Snapshots</c> folder of the Tests project that holds <paramref name="sourceFile"/>.</summary>
    internal static string SnapshotDirectory(string sourceFile)
    {
        for (var dir = new DirectoryInfo(Path.GetDirectoryName(sourceFile) ?? ""); dir != null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "GemmaGen.Tests.csproj"))) return Path.Combine(dir.FullName, "Snapshots");
        }
        throw new InvalidOperationException(
            $"no GemmaGen.Tests.csproj above '{sourceFile}': snapshots live in the source tree, so the tests must run " +
            "where they were built, without a PathMap that hides the source paths");
    }

    private static string NormalizeLineEndings(string text) => text.ReplaceLineEndings("\n");

    /// <summary>
    /// A unified-style line diff: each change with <see cref="ContextLines"/> unchanged lines around it, grouped in
    /// <c>@@ -start,count +start,count @@</c> hunks, every line numbered; at most <see cref="MaxDiffLines"/> lines.
    /// </summary>
    internal static string Diff(string verified, string received)
    {
        var diff = Differ.Instance.CreateLineDiffs(verified, received, ignoreWhitespace: false);
        var before = diff.PiecesOld;
        var after = diff.PiecesNew;
        var blocks = diff.DiffBlocks;
        var lines = new List<string>();
        for (int first = 0; first < blocks.Count;)
        {
            // One hunk: this block and the following ones whose unchanged gap the context of both would cover.
            int last = first;
            while (last + 1 < blocks.Count &&
                   blocks[last + 1].DeleteStartA - (blocks[last].DeleteStartA + blocks[last].DeleteCountA) <= 2 * ContextLines)
            {
                last++;
            }
            int oldLine = Math.Max(0, blocks[first].DeleteStartA - ContextLines);
            int newLine = blocks[first].InsertStartB - (blocks[first].DeleteStartA - oldLine);
            int lastOldEnd = blocks[last].DeleteStartA + blocks[last].DeleteCountA;
            int oldEnd = Math.Min(before.Count, lastOldEnd + ContextLines);
            int newEnd = blocks[last].InsertStartB + blocks[last].InsertCountB + (oldEnd - lastOldEnd);
            lines.Add($"@@ -{oldLine + 1},{oldEnd - oldLine} +{newLine + 1},{newEnd - newLine} @@");
            for (int b = first; b <= last; b++)
            {
                var block = blocks[b];
                for (; oldLine < block.DeleteStartA; oldLine++, newLine++) lines.Add(Line(' ', oldLine, newLine, before[oldLine]));
                for (int n = 0; n < block.DeleteCountA; n++, oldLine++) lines.Add(Line('-', oldLine, null, before[oldLine]));
                for (int n = 0; n < block.InsertCountB; n++, newLine++) lines.Add(Line('+', null, newLine, after[newLine]));
            }
            for (; oldLine < oldEnd; oldLine++, newLine++) lines.Add(Line(' ', oldLine, newLine, before[oldLine]));
            first = last + 1;
        }

        var text = new StringBuilder();
        foreach (string line in lines.Take(MaxDiffLines)) text.AppendLine(line);
        if (lines.Count > MaxDiffLines) text.AppendLine($"... {lines.Count - MaxDiffLines} more diff lines not shown; compare the files.");
        return text.ToString();
    }

    /// <summary>One diff line: marker, 1-based line numbers in the verified and received text, the text.</summary>
    private static string Line(char marker, int? oldLine, int? newLine, string text) =>
        $"{marker}{(oldLine + 1)?.ToString() ?? "",5} {(newLine + 1)?.ToString() ?? "",5} | {text}";
}
