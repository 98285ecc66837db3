using System.Net;
using System.Text.RegularExpressions;
using GemmaGen.Tests.Cli;

namespace GemmaGen.Tests.Server;

/// <summary><c>gemmagen serve</c> as a process: its options, serving the demo model, Ctrl+C.</summary>
public sealed partial class ServeCommandTests
{
    [Theory]
    [InlineData("--host", "nowhere", "--host nowhere: expected an IP address")]
    [InlineData("--port", "70000", "--port 70000: expected an integer from 0 to 65535")]
    [InlineData("--parallel", "0", "--parallel 0: expected an integer from 1 to 64")]
    [InlineData("--queue", "-1", "--queue -1: expected an integer, 0 or more")]
    [InlineData("--max-body", "0", "--max-body 0: expected an integer, 1 or more")]
    public void BadOption_IsAUsageError(string option, string value, string message)
    {
        var run = CliProcess.Run("serve", option, value);
        Assert.Equal(2, run.ExitCode);
        Assert.Contains("error: " + message, run.Stderr);
        Assert.DoesNotContain("   at ", run.Stderr);
    }

    [SkippableFact]
    public async Task Serve_AnswersOnAFreePort_AndStopsOnCtrlC()
    {
        Skip.IfNot(CliProcess.CanInterrupt, "no SIGINT on this system");
        var running = CliProcess.Start(["serve", "--port", "0", "--threads", "1", "--parallel", "2"], out var process);
        CliProcess.WaitFor(process, () => running.StderrSoFar.Contains("Ctrl+C stops"));
        string stderr = running.StderrSoFar;
        var match = ListeningOn().Match(stderr);
        Assert.True(match.Success, stderr);
        var address = new Uri(match.Groups[1].Value);
        Assert.Equal(IPAddress.Loopback, IPAddress.Parse(address.Host));

        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(60) };
        using (var health = await http.GetAsync(new Uri(address, "/health"))) Assert.Equal(HttpStatusCode.OK, health.StatusCode);
        using (var completion = await http.PostAsync(new Uri(address, "/v1/completions"), new StringContent("""{"prompt": "The jury said", "max_tokens": 3}""")))
        {
            Assert.Equal(HttpStatusCode.OK, completion.StatusCode);
            Assert.Contains("\"completion_tokens\":3", await completion.Content.ReadAsStringAsync());
        }

        CliProcess.Interrupt(process);
        var result = running.Finish(process, stdin: null);
        Assert.Equal(0, result.ExitCode);
        Assert.Contains("[stopped]", result.Stderr);
    }

    [Fact]
    public void BenchServe_ReportsEachClientCount()
    {
        var run = CliProcess.Run("bench-serve", "--spec", "gemma-2-demo", "--clients", "1,3", "--prompt", "4", "--tokens", "3", "--requests", "2", "--threads", "1", "--json");
        Assert.True(run.ExitCode == 0, run.ToString());
        using var report = System.Text.Json.JsonDocument.Parse(run.Stdout);
        var runs = report.RootElement.GetProperty("runs").EnumerateArray().ToArray();
        Assert.Equal([1, 3], runs.Select(r => r.GetProperty("clients").GetInt32()));
        foreach (var r in runs)
        {
            Assert.True(r.GetProperty("aggregate_tok_s").GetDouble() > 0);
            Assert.True(r.GetProperty("ttft_p95_ms").GetDouble() >= r.GetProperty("ttft_p50_ms").GetDouble());
        }
        Assert.Equal(1.0, runs[0].GetProperty("speedup").GetDouble());
    }

    [Theory]
    [InlineData("0")]
    [InlineData("1,x")]
    [InlineData("65")]
    public void BenchServe_RefusesBadClientCounts(string clients)
    {
        var run = CliProcess.Run("bench-serve", "--spec", "gemma-2-demo", "--clients", clients);
        Assert.Equal(2, run.ExitCode);
        Assert.Contains($"error: --clients {clients}: expected client counts from 1 to 64", run.Stderr);
    }

    [GeneratedRegex(@"listening on (http://\S+/)")]
    private static partial Regex ListeningOn();
}
