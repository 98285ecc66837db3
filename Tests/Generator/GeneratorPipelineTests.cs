extern alias generator;

using generator::GemmaGen.Generator;
using Microsoft.CodeAnalysis;
using Xunit;

namespace GemmaGen.Tests.Generator;

/// <summary>What the generator emits for valid specs, how it names the classes, and that a second run over
/// unchanged input is fully cached.</summary>
public sealed class GeneratorPipelineTests
{
    private static SpecFile RepositorySpec(string file, string? className = null, string? ns = null) =>
        new(RepositoryFiles.Path("Specs", file), File.ReadAllText(RepositoryFiles.Path("Specs", file)), className, ns);

    [Theory]
    [InlineData("gemma-2-2b.json", "Gemma2_2B")]
    [InlineData("gemma-2-9b.json", "Gemma2_9B")]
    [InlineData("gemma-2-27b.json", "Gemma2_27B")]
    [InlineData("gemma-2-demo.json", "Gemma2_Demo")]
    [InlineData("/models/tiny-gqa/config.json", "Config")]
    [InlineData("tiny-27b-like.json", "Tiny27BLike")]
    [InlineData("my_model.v2.json", "MyModelV2")]
    [InlineData("2b.json", "_2B")]
    public void TheClassNameComesFromTheFileName(string path, string className)
    {
        Assert.Equal(className, GemmaSpecGenerator.ClassNameFromFileName(path));
    }

    [Fact]
    public void TheFourSpecsGenerateOneClassEachInTheDefaultNamespace()
    {
        GeneratorRunResult result = GeneratorHarness.Run(
            RepositorySpec("gemma-2-2b.json"), RepositorySpec("gemma-2-9b.json"),
            RepositorySpec("gemma-2-27b.json"), RepositorySpec("gemma-2-demo.json"));

        Assert.Empty(result.Diagnostics);
        Assert.Equal(
            ["GemmaGen.Models.Gemma2_2B.g.cs", "GemmaGen.Models.Gemma2_9B.g.cs", "GemmaGen.Models.Gemma2_27B.g.cs", "GemmaGen.Models.Gemma2_Demo.g.cs"],
            GeneratorHarness.HintNames(result));
    }

    [Fact]
    public void ClassNameAndNamespaceMetadataNameTheClass()
    {
        GeneratorRunResult result = GeneratorHarness.Run(RepositorySpec("gemma-2-2b.json", "Small", "MyApp.Models"));

        Assert.Empty(result.Diagnostics);
        Assert.Equal(["MyApp.Models.Small.g.cs"], GeneratorHarness.HintNames(result));
    }

    private static readonly string[] OurSteps = [TrackingNames.Specs, TrackingNames.ModelSet, TrackingNames.Models, TrackingNames.Diagnostics];

    [Fact]
    public void ASecondRunOverTheSameInputIsFullyCached()
    {
        GeneratorDriver driver = GeneratorHarness.CreateDriver(
            RepositorySpec("gemma-2-2b.json"), RepositorySpec("gemma-2-9b.json"),
            new SpecFile("/specs/bad.json", "{ \"model_type\": \"llama\" }"));

        driver = driver.RunGenerators(GeneratorHarness.Compilation);
        driver = driver.RunGenerators(GeneratorHarness.Compilation);
        GeneratorRunResult second = driver.GetRunResult().Results.Single();

        Assert.Null(second.Exception);
        foreach (string name in OurSteps)
        {
            Assert.True(second.TrackedSteps.ContainsKey(name), $"step {name} was not tracked");
            Assert.All(second.TrackedSteps[name].SelectMany(step => step.Outputs),
                output => Assert.True(output.Reason is IncrementalStepRunReason.Cached or IncrementalStepRunReason.Unchanged,
                    $"{name}: {output.Reason} for {output.Value}"));
        }
    }

    [Fact]
    public void EditingOneSpecLeavesTheOtherSpecsModelCached()
    {
        SpecFile small = RepositorySpec("gemma-2-2b.json"), large = RepositorySpec("gemma-2-9b.json");
        GeneratorDriver driver = GeneratorHarness.CreateDriver(small, large).RunGenerators(GeneratorHarness.Compilation);

        var edited = new InMemoryAdditionalText(small.Path, small.Text!.Replace("\"num_hidden_layers\": 26", "\"num_hidden_layers\": 24"));
        driver = driver.ReplaceAdditionalText(small.AdditionalText, edited).RunGenerators(GeneratorHarness.Compilation);
        GeneratorRunResult result = driver.GetRunResult().Results.Single();

        Assert.Null(result.Exception);
        var specs = result.TrackedSteps[TrackingNames.Specs].SelectMany(step => step.Outputs).ToArray();
        Assert.Equal(2, specs.Length);
        Assert.Equal(IncrementalStepRunReason.Modified, Assert.Single(specs, o => o.Value.ToString()!.Contains("Gemma2_2B")).Reason);
        Assert.Equal(IncrementalStepRunReason.Cached, Assert.Single(specs, o => o.Value.ToString()!.Contains("Gemma2_9B")).Reason);

        var models = result.TrackedSteps[TrackingNames.Models].SelectMany(step => step.Outputs).ToArray();
        Assert.Equal(2, models.Length);
        Assert.Equal(IncrementalStepRunReason.Modified, Assert.Single(models, o => o.Value.ToString()!.Contains("Gemma2_2B")).Reason);
        Assert.True(Assert.Single(models, o => o.Value.ToString()!.Contains("Gemma2_9B")).Reason
            is IncrementalStepRunReason.Cached or IncrementalStepRunReason.Unchanged);
    }
}
