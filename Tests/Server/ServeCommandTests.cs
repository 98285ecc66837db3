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

    [GeneratedRegex(@"listening on (http://\S+/)")]
    private static partial Regex ListeningOn();
}
