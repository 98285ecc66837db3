using GemmaGen.Tests.Infrastructure;

namespace GemmaGen.Tests;

/// <summary>
/// The test assembly's entry point (the project sets GenerateProgramFile to false). Under xunit it is never
/// called; <c>dotnet GemmaGen.Tests.dll --isa-run</c> runs the ISA-sensitive tests in this process, which
/// <see cref="IsaTests"/> starts with AVX-512 or AVX2 disabled.
/// </summary>
public static class Program
{
    public static async Task<int> Main(string[] args)
    {
        if (args.Length == 0) return 0;
        if (args is [IsaRunner.Argument]) return await IsaRunner.RunAsync(Console.Out);
        await Console.Error.WriteLineAsync($"usage: GemmaGen.Tests [{IsaRunner.Argument}]");
        return 2;
    }
}
