using GemmaGen.Tests.Generator;

namespace GemmaGen.Tests.Package;

/// <summary>A pack without a pre-release label would make a package that a NuGet cache already holding that version
/// never serves: it fails, before building anything, and says what to do.</summary>
[Trait("Category", "Package")]
public sealed class PackageVersionTests
{
    [Fact]
    public async Task APackWithoutAPreReleaseLabelFailsAndSaysWhy()
    {
        string root = Path.Combine(Path.GetTempPath(), "gemmagen-pack-" + Guid.NewGuid().ToString("N")[..12]);
        try
        {
            CommandResult pack = await DotnetCommand.RunAsync(RepositoryFiles.Root, PackedRepository.CommandTimeout,
                "pack", RepositoryFiles.Path("Kernels", "GemmaGen.Kernels.csproj"), "-c", "Release", "-o", Path.Combine(root, "feed"),
                "--artifacts-path", Path.Combine(root, "build"), "-p:NuGetAudit=false", "--disable-build-servers");

            Assert.NotEqual(0, pack.ExitCode);
            Assert.Contains($"error : GemmaGen.Kernels {PackedRepository.RepositoryVersion()}: a local pack needs a pre-release version of its own, " +
                $"or a NuGet cache that already holds {PackedRepository.RepositoryVersion()} serves that older package in its place; " +
                "pack with --version-suffix \"dev.$(date -u +%Y%m%d%H%M%S)\" (a release: -p:StableVersion=true)", pack.Output);
            Assert.False(Directory.Exists(Path.Combine(root, "feed")), "the pack wrote a package");
            Assert.False(Directory.Exists(Path.Combine(root, "build", "bin")), "the pack built the project before it failed");
        }
        finally
        {
            if (Directory.Exists(root)) Directory.Delete(root, recursive: true);
        }
    }
}
