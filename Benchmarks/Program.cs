using BenchmarkDotNet.Running;

namespace GemmaGen.Benchmarks;

/// <summary>Runs the kernel suites: <c>dotnet run -c Release --project Benchmarks -- --filter '*'</c> (see BENCHMARKS.md).</summary>
public static class Program
{
    public static void Main(string[] args) => BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
}
