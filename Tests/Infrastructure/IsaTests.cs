using System.Diagnostics;
using Xunit;

namespace GemmaGen.Tests.Infrastructure;

/// <summary>
/// Re-runs every <see cref="IsaSensitiveAttribute"/> test in a child process with an instruction set disabled, so
/// each SIMD code path (Vector512, Vector256, Vector128) is tested on a machine that has all of them; the normal
/// xunit run covers the full ISA. The switches were checked on .NET 10: <c>DOTNET_EnableAVX512=0</c> turns off
/// Vector512 (the .NET 8 name <c>DOTNET_EnableAVX512F</c> no longer does anything), <c>DOTNET_EnableAVX2=0</c> turns
/// off Vector256 and Vector512, <c>DOTNET_EnableAVXVNNI=0</c> turns off AVX-VNNI (the integer prefill then takes its
/// AVX2 kernel for Q4_0 and the float kernels for Q8_0). The child verifies that before running anything
/// (<see cref="IsaRunner.ExpectationVariable"/>).
/// </summary>
public sealed class IsaTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromMinutes(10);

    [Theory]
    [InlineData("DOTNET_EnableAVX512", IsaRunner.NoVector512)]
    [InlineData("DOTNET_EnableAVX2", IsaRunner.NoVector256)]
    [InlineData("DOTNET_EnableAVXVNNI", IsaRunner.NoAvxVnni)]
    public async Task IsaSensitiveTestsPassWithInstructionSetDisabled(string switchVariable, string expectation)
    {
        string testAssembly = typeof(IsaTests).Assembly.Location;
        var start = new ProcessStartInfo(DotnetHost())
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add(testAssembly);
        start.ArgumentList.Add(IsaRunner.Argument);
        start.Environment[switchVariable] = "0";
        start.Environment[IsaRunner.ExpectationVariable] = expectation;
        string command = $"{switchVariable}=0 {IsaRunner.ExpectationVariable}={expectation} {start.FileName} {testAssembly} {IsaRunner.Argument}";

        using var child = Process.Start(start)!;
        var stdout = child.StandardOutput.ReadToEndAsync();
        var stderr = child.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(Timeout);
        try
        {
            await child.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            child.Kill(entireProcessTree: true);
            await child.WaitForExitAsync();
            Assert.Fail($"`{command}` did not finish in {Timeout.TotalMinutes} minutes and was killed:\n{await Output()}");
        }
        Assert.True(child.ExitCode == 0, $"`{command}` exited with {child.ExitCode}:\n{await Output()}");

        async Task<string> Output()
        {
            string errors = await stderr;
            return await stdout + (errors.Length > 0 ? $"stderr:\n{errors}" : "");
        }
    }

    /// <summary>The dotnet host running this process (the test host runs under it), else the one on PATH.</summary>
    private static string DotnetHost()
    {
        string? current = Environment.ProcessPath;
        return current != null && Path.GetFileNameWithoutExtension(current) == "dotnet" ? current : "dotnet";
    }
}
