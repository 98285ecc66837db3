using System.Diagnostics;
using System.Text;

namespace GemmaGen.Tests.Package;

/// <summary>What a <c>dotnet</c> command printed (stdout and stderr interleaved) and how it exited.</summary>
internal sealed record CommandResult(int ExitCode, string Output)
{
    /// <summary>Fails with the command's output unless it exited 0.</summary>
    public CommandResult Succeeded(string what)
    {
        Assert.True(ExitCode == 0, $"{what} exited {ExitCode}:\n{Output}");
        return this;
    }
}

/// <summary>
/// Runs the <c>dotnet</c> command the tests run under, as a developer would in a shell of their own: no MSBuild
/// settings or NuGet cache location inherited from the test run, no build servers left running afterwards.
/// </summary>
internal static class DotnetCommand
{
    /// <summary>The dotnet host: the SDK's own when the test run gives it, else the one on the PATH.</summary>
    public static string Host { get; } =
        Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host ? host
        : Environment.ProcessPath is { } current && Path.GetFileNameWithoutExtension(current) == "dotnet" ? current
        : "dotnet";

    /// <summary>Runs <c>dotnet</c> with <paramref name="arguments"/> in <paramref name="workingDirectory"/>; a command
    /// still running after <paramref name="timeout"/> is killed with its children and fails the test.</summary>
    public static Task<CommandResult> RunAsync(string workingDirectory, TimeSpan timeout, params string[] arguments) =>
        RunProgramAsync(Host, workingDirectory, timeout, new Dictionary<string, string>(), arguments);

    /// <summary>Runs <paramref name="script"/> with bash (stopping at the first command that fails) in
    /// <paramref name="workingDirectory"/>, with the <c>dotnet</c> of the tests first on the PATH and
    /// <paramref name="environment"/> added to the environment.</summary>
    public static Task<CommandResult> RunShellAsync(string script, string workingDirectory, TimeSpan timeout, IReadOnlyDictionary<string, string> environment)
    {
        var variables = new Dictionary<string, string>(environment);
        if (Path.IsPathRooted(Host))
        {
            variables["PATH"] = Path.GetDirectoryName(Host) + Path.PathSeparator + Environment.GetEnvironmentVariable("PATH");
        }
        return RunProgramAsync("bash", workingDirectory, timeout, variables, "-e", "-o", "pipefail", "-c", script);
    }

    private static async Task<CommandResult> RunProgramAsync(string program, string workingDirectory, TimeSpan timeout,
        IReadOnlyDictionary<string, string> environment, params string[] arguments)
    {
        var start = new ProcessStartInfo(program)
        {
            WorkingDirectory = workingDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string argument in arguments) start.ArgumentList.Add(argument);
        foreach (string name in start.Environment.Keys.ToArray())
        {
            // The test run's MSBuild settings point into its own build; NUGET_PACKAGES would override the cache
            // folder a test's NuGet.config names.
            if (name.StartsWith("MSBuild", StringComparison.OrdinalIgnoreCase) || name == "NUGET_PACKAGES") start.Environment.Remove(name);
        }
        start.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        start.Environment["DOTNET_NOLOGO"] = "1";
        start.Environment["DOTNET_CLI_UI_LANGUAGE"] = "en";
        foreach ((string name, string value) in environment) start.Environment[name] = value;

        using var process = new Process { StartInfo = start };
        var output = new StringBuilder();
        process.OutputDataReceived += (_, e) => { if (e.Data != null) lock (output) output.AppendLine(e.Data); };
        process.ErrorDataReceived += (_, e) => { if (e.Data != null) lock (output) output.AppendLine(e.Data); };
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        using var deadline = new CancellationTokenSource(timeout);
        try
        {
            await process.WaitForExitAsync(deadline.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync();
            Assert.Fail($"{program} {string.Join(' ', arguments)} did not finish in {timeout}:\n{output}");
        }
        lock (output) return new CommandResult(process.ExitCode, output.ToString());
    }
}
