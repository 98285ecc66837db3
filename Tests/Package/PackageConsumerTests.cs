using System.Text.Json;

namespace GemmaGen.Tests.Package;

/// <summary>
/// The real thing: the repository packed, and new projects that reference the package from the packed folder and
/// declare specs the repository has never seen. One compiles an odd shape and runs it on a checkpoint of that shape,
/// on its compiled class and on the reference path; one has a broken spec and fails its build at the spec's line
/// and column. Slow (a pack and two builds: about two minutes on two cores).
/// </summary>
[Trait("Category", "Package")]
[Collection(PackedRepositoryCollection.Name)]
public sealed class PackageConsumerTests(PackedRepository packed)
{
    /// <summary>The demo checkpoint as the test build copies it: GemmaGen.Host has a built-in class of its shape.</summary>
    private static string DemoDirectory => Path.Combine(AppContext.BaseDirectory, "Fixtures", "gemma2-demo");

    /// <summary>More tokens than the odd shape's window, so local layers wrap their ring of keys.</summary>
    private static readonly int[] Tokens = [2, 17, 42, 99, 150, 7, 250, 31, 64];

    /// <summary>Prints the execution paths and the logits of <see cref="Tokens"/> on both paths as JSON.</summary>
    private static readonly string ConsumerProgram = $$"""
        using System.Text.Json;
        using GemmaGen;

        // args: the odd shape's checkpoint, the demo checkpoint.
        int[] tokens = [{{string.Join(", ", Tokens)}}];
        using var compiled = GemmaModel.Load(args[0], new GemmaModelOptions { Threads = 1 });
        using var reference = GemmaModel.Load(args[0], new GemmaModelOptions { Threads = 1, ForceReference = true });
        using var demo = GemmaModel.Load(args[1], new GemmaModelOptions { Threads = 1 });
        Console.WriteLine(JsonSerializer.Serialize(new
        {
            compiledPath = compiled.ExecutionPath,
            referencePath = reference.ExecutionPath,
            demoPath = demo.ExecutionPath,
            oddModelAssembly = typeof(Consumer.Models.OddModel).Assembly.GetName().Name,
            oddModelHiddenSize = Consumer.Models.OddModel.HiddenSize,
            compiledLogits = compiled.ComputeLogits(tokens),
            referenceLogits = reference.ComputeLogits(tokens),
        }));
        """;

    [Fact]
    public async Task AConsumerCompilesItsOwnSpecsAndTheCompiledClassAgreesWithTheReferencePath()
    {
        string checkpoint = Path.Combine(packed.Root, "odd-checkpoint");
        RandomCheckpoint.Write(checkpoint);
        string project = packed.CreateProject("consumer",
            $"""
                <GemmaSpec Include="odd-model.json" ClassName="OddModel" Namespace="Consumer.Models" />
                <GemmaSpec Include="{Path.Combine(DemoDirectory, "config.json")}" ClassName="DemoModel" Namespace="Consumer.Models" />
            """,
            ("odd-model.json", RandomCheckpoint.ConfigJson), ("Program.cs", ConsumerProgram));

        (await PackedRepository.BuildAsync(project)).Succeeded("dotnet build of the consumer");
        CommandResult run = (await DotnetCommand.RunAsync(project, PackedRepository.CommandTimeout,
            Path.Combine(project, "bin", "Release", "net10.0", "consumer.dll"), checkpoint, DemoDirectory)).Succeeded("the consumer");

        using var report = JsonDocument.Parse(run.Output);
        JsonElement root = report.RootElement;
        Assert.Equal("compiled OddModel", root.GetProperty("compiledPath").GetString());
        Assert.Equal("reference", root.GetProperty("referencePath").GetString());
        // The consumer's own class of the demo shape wins over GemmaGen.Host's built-in Gemma2_Demo.
        Assert.Equal("compiled DemoModel", root.GetProperty("demoPath").GetString());
        Assert.Equal("consumer", root.GetProperty("oddModelAssembly").GetString());
        Assert.Equal(RandomCheckpoint.Hidden, root.GetProperty("oddModelHiddenSize").GetInt32());

        float[] compiled = root.GetProperty("compiledLogits").Deserialize<float[]>()!;
        float[] reference = root.GetProperty("referenceLogits").Deserialize<float[]>()!;
        Assert.Equal(Tokens.Length * RandomCheckpoint.Vocab, compiled.Length);
        Assert.Equal(reference.Length, compiled.Length);
        Assert.All(reference, value => Assert.True(float.IsFinite(value)));
        Assert.True(reference.Max(MathF.Abs) > 0.01f, "the logits are all about zero: the comparison would prove nothing");
        int worst = Enumerable.Range(0, compiled.Length).MaxBy(i => MathF.Abs(compiled[i] - reference[i]));
        Assert.True(MathF.Abs(compiled[worst] - reference[worst]) <= 1e-4f,
            $"logit {worst % RandomCheckpoint.Vocab} of position {worst / RandomCheckpoint.Vocab}: compiled {compiled[worst]}, reference {reference[worst]}");
    }

    [Fact]
    public async Task ABrokenSpecFailsTheBuildAtItsLineAndColumn()
    {
        string spec = RandomCheckpoint.ConfigJson.Replace("\"num_key_value_heads\": 2", "\"num_key_value_heads\": 4");
        string[] lines = spec.Split('\n');
        int line = Array.FindIndex(lines, l => l.Contains("\"num_key_value_heads\"")) + 1;
        int column = lines[line - 1].IndexOf('4') + 1;
        string project = packed.CreateProject("broken",
            """    <GemmaSpec Include="broken.json" ClassName="BrokenModel" />""",
            ("broken.json", spec), ("Program.cs", "Console.WriteLine();\n"));

        CommandResult build = await PackedRepository.BuildAsync(project);

        Assert.NotEqual(0, build.ExitCode);
        Assert.Contains($"{Path.Combine(project, "broken.json")}({line},{column}): error GEMMAGEN005: num_attention_heads (6) is not a multiple of num_key_value_heads (4)",
            build.Output);
        Assert.DoesNotContain("error CS", build.Output);
    }
}
