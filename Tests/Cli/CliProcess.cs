using System.Diagnostics;
using System.Text;

namespace GemmaGen.Tests.Cli;

/// <summary>What one run of the <c>gemmagen</c> process produced.</summary>
public sealed record CliRun(int ExitCode, string Stdout, string Stderr)
{
    /// <summary>The lines of stderr, without the final newline.</summary>
    public string[] StderrLines => Stderr.Length == 0 ? [] : Stderr.TrimEnd('\n').Split('\n');

    public override string ToString() => $"exit {ExitCode}\n--- stdout ---\n{Stdout}\n--- stderr ---\n{Stderr}";
}

/// <summary>Runs the built <c>gemmagen.dll</c> (copied into the test output by the project reference) as a real
/// process, <c>dotnet gemmagen.dll ...</c>, with a timeout.</summary>
public static class CliProcess
{
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    /// <summary>The CLI next to the test assembly; its built-in demo model is <c>models/gemma2-demo</c> beside it.</summary>
    public static string Dll => Path.Combine(AppContext.BaseDirectory, "gemmagen.dll");

    /// <summary>The dotnet host running this test process (or the one on the PATH).</summary>
    public static string DotnetHost
    {
        get
        {
            string? hostPath = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH");
            if (!string.IsNullOrEmpty(hostPath) && File.Exists(hostPath)) return hostPath;
            string? process = Environment.ProcessPath;
            if (process != null && Path.GetFileNameWithoutExtension(process) == "dotnet") return process;
            return "dotnet";
        }
    }

    public static CliRun Run(params string[] args) => Piped(stdin: null, args);

    /// <summary>Runs <c>gemmagen args</c> with <paramref name="stdin"/> piped in (closed at once when null).</summary>
    public static CliRun Piped(string? stdin, params string[] args) => Start(args, out var process).Finish(process, stdin);

    /// <summary>Starts the process; the caller writes stdin and waits with <see cref="Finish"/>.</summary>
    public static Running Start(string[] args, out Process process)
    {
        var info = new ProcessStartInfo(DotnetHost)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            StandardOutputEncoding = new UTF8Encoding(false),
            StandardErrorEncoding = new UTF8Encoding(false),
            StandardInputEncoding = new UTF8Encoding(false),
            WorkingDirectory = AppContext.BaseDirectory,
        };
        info.ArgumentList.Add(Dll);
        foreach (string arg in args) info.ArgumentList.Add(arg);
        info.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        process = Process.Start(info) ?? throw new InvalidOperationException("could not start " + info.FileName);
        var running = new Running();
        var p = process;
        running.Stdout = Task.Run(() => Pump(p.StandardOutput, running.StdoutText));
        running.Stderr = Task.Run(() => Pump(p.StandardError, running.StderrText));
        return running;
    }

    private static void Pump(StreamReader reader, StringBuilder into)
    {
        var buffer = new char[4096];
        int read;
        while ((read = reader.Read(buffer, 0, buffer.Length)) > 0)
        {
            lock (into) into.Append(buffer, 0, read);
        }
    }

    /// <summary>A started process and what it has written so far.</summary>
    public sealed class Running
    {
        public StringBuilder StdoutText { get; } = new();

        public StringBuilder StderrText { get; } = new();

        public Task Stdout { get; set; } = Task.CompletedTask;

        public Task Stderr { get; set; } = Task.CompletedTask;

        public string StdoutSoFar
        {
            get
            {
                lock (StdoutText) return StdoutText.ToString();
            }
        }

        public string StderrSoFar
        {
            get
            {
                lock (StderrText) return StderrText.ToString();
            }
        }

        /// <summary>Writes <paramref name="stdin"/> (when given), closes stdin, waits for the exit (killing the process
        /// after <see cref="Timeout"/>) and returns the output, with \r\n turned into \n.</summary>
        public CliRun Finish(Process process, string? stdin)
        {
            using (process)
            {
                try
                {
                    if (stdin != null) process.StandardInput.Write(stdin);
                    process.StandardInput.Close();
                }
                catch (IOException)
                {
                    // The process exited without reading its input.
                }
                if (!process.WaitForExit(Timeout))
                {
                    process.Kill(entireProcessTree: true);
                    process.WaitForExit();
                    Assert.Fail($"gemmagen did not finish within {Timeout.TotalSeconds} s; stdout so far:\n{StdoutSoFar}");
                }
                process.WaitForExit();
                Task.WaitAll([Stdout, Stderr], Timeout);
                return new CliRun(process.ExitCode, Normalize(StdoutText.ToString()), Normalize(StderrText.ToString()));
            }
        }
    }

    private static string Normalize(string text) => text.Replace("\r\n", "\n");

    /// <summary>Whether <see cref="Interrupt"/> can send Ctrl+C (SIGINT) on this system.</summary>
    public static bool CanInterrupt => OperatingSystem.IsLinux() || OperatingSystem.IsMacOS();

    /// <summary>Sends SIGINT, what a terminal sends on Ctrl+C.</summary>
    public static void Interrupt(Process process)
    {
        const int sigint = 2;
        Assert.Equal(0, SendSignal(process.Id, sigint));
    }

    [System.Runtime.InteropServices.DllImport("libc", SetLastError = true, EntryPoint = "kill")]
    private static extern int SendSignal(int pid, int signal);

    /// <summary>Waits until <paramref name="condition"/> holds, the process exits, or 30 s pass.</summary>
    public static void WaitFor(Process process, Func<bool> condition)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (!condition() && !process.HasExited && DateTime.UtcNow < deadline) Thread.Sleep(10);
    }
}

/// <summary>Directories of the fixtures in the test output.</summary>
public static class CliFixtures
{
    public static string Path(params string[] parts) => System.IO.Path.Combine([AppContext.BaseDirectory, "Fixtures", .. parts]);
}

/// <summary>A fresh directory under the system temp folder, deleted on dispose.</summary>
public sealed class ScratchDirectory : IDisposable
{
    public ScratchDirectory() => Directory.CreateDirectory(Root);

    public string Root { get; } = Path.Combine(Path.GetTempPath(), "gemmagen-cli-tests-" + Guid.NewGuid().ToString("N"));

    /// <summary>A new, empty subdirectory.</summary>
    public string NewDirectory(string name) => Directory.CreateDirectory(Path.Combine(Root, name)).FullName;

    /// <summary>A new subdirectory holding copies of <paramref name="files"/> of <paramref name="fixture"/>.</summary>
    public string CopyOf(string fixture, string name, params string[] files)
    {
        string directory = NewDirectory(name);
        foreach (string file in files) File.Copy(CliFixtures.Path(fixture, file), Path.Combine(directory, file));
        return directory;
    }

    public void Dispose()
    {
        try
        {
            Directory.Delete(Root, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
