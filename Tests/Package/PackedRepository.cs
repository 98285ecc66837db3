using System.Xml.Linq;
using GemmaGen.Tests.Generator;

namespace GemmaGen.Tests.Package;

/// <summary>
/// The repository packed into a temp folder, and a folder for projects that consume it as a developer's would:
/// their NuGet.config takes GemmaGen from the packed folder and everything else from nuget.org. The packages are
/// restored into a cache folder of their own, so a fresh pack is never shadowed by an older one of the same
/// version; the machine's package cache is a fallback folder, so packages already there (the repository's
/// dependencies) need no network.
/// </summary>
/// <remarks>
/// Layout: <c>pack.slnf</c> (the packed projects), <c>build/</c> (their build output), <c>feed/</c> (the packages),
/// <c>packages/</c> (the consumers' package cache), <c>projects/</c> (NuGet.config, Directory.Build.props and one
/// folder per consumer).
/// </remarks>
public sealed class PackedRepository : IAsyncLifetime
{
    /// <summary>Longest a pack or a build may take.</summary>
    public static readonly TimeSpan CommandTimeout = TimeSpan.FromMinutes(5);

    /// <summary>The temp folder.</summary>
    public string Root { get; } = Path.Combine(Path.GetTempPath(), "gemmagen-package-" + Guid.NewGuid().ToString("N")[..12]);

    /// <summary>The version the packages get: the repository's, with a pre-release label of this run.</summary>
    public string Version { get; } = RepositoryVersion() + "-test." + Guid.NewGuid().ToString("N")[..12];

    /// <summary>Where the consuming projects go, one folder each.</summary>
    public string Projects => Path.Combine(Root, "projects");

    /// <summary>The packed .nupkg files.</summary>
    public string Feed => Path.Combine(Root, "feed");

    /// <summary>The version Directory.Build.props gives every package.</summary>
    public static string RepositoryVersion() =>
        XDocument.Load(RepositoryFiles.Path("Directory.Build.props")).Descendants("Version").Single().Value;

    /// <summary>Packs GemmaGen and GemmaGen.Kernels (building them, the generator and the built-in specs afresh in
    /// the temp folder) and writes the consumers' NuGet.config and Directory.Build.props.</summary>
    public async Task InitializeAsync()
    {
        Directory.CreateDirectory(Projects);
        string solution = Path.Combine(Root, "pack.slnf");
        File.WriteAllText(solution, $$"""
            { "solution": { "path": {{Json(RepositoryFiles.Path("GemmaGen.sln"))}}, "projects": [
                "Generator/GemmaGen.Generator.csproj", "Kernels/GemmaGen.Kernels.csproj", "Host/GemmaGen.Host/GemmaGen.Host.csproj" ] } }
            """);
        (await DotnetCommand.RunAsync(RepositoryFiles.Root, CommandTimeout,
            "pack", solution, "-c", "Release", "-o", Feed, "--artifacts-path", Path.Combine(Root, "build"),
            $"-p:Version={Version}", "-p:NuGetAudit=false", "--disable-build-servers")).Succeeded("dotnet pack");

        string machinePackages = await MachinePackageFolderAsync();
        File.WriteAllText(Path.Combine(Projects, "NuGet.config"), $"""
            <?xml version="1.0" encoding="utf-8"?>
            <configuration>
              <config>
                <add key="globalPackagesFolder" value="../packages" />
              </config>
              <packageSources>
                <clear />
                <add key="gemmagen-packed" value="../feed" />
                <add key="nuget.org" value="https://api.nuget.org/v3/index.json" />
              </packageSources>
              <fallbackPackageFolders>
                <clear />
                <add key="machine" value="{machinePackages}" />
              </fallbackPackageFolders>
              <packageSourceMapping>
                <packageSource key="gemmagen-packed">
                  <package pattern="GemmaGen" />
                  <package pattern="GemmaGen.*" />
                </packageSource>
                <packageSource key="nuget.org">
                  <package pattern="*" />
                </packageSource>
              </packageSourceMapping>
            </configuration>
            """);
        // Nothing of a folder above (the temp folder's parents) reaches the consumers.
        File.WriteAllText(Path.Combine(Projects, "Directory.Build.props"), """
            <Project>
              <PropertyGroup>
                <ImportDirectoryPackagesProps>false</ImportDirectoryPackagesProps>
              </PropertyGroup>
            </Project>
            """);
    }

    /// <summary>Writes a console project named <paramref name="name"/> that references the packed GemmaGen, with
    /// <paramref name="items"/> (GemmaSpec items) and <paramref name="files"/> (name → text) in its folder.</summary>
    /// <returns>The project's folder.</returns>
    public string CreateProject(string name, string items, params (string Name, string Text)[] files)
    {
        string directory = Path.Combine(Projects, name);
        Directory.CreateDirectory(directory);
        File.WriteAllText(Path.Combine(directory, name + ".csproj"), $"""
            <Project Sdk="Microsoft.NET.Sdk">
              <PropertyGroup>
                <OutputType>Exe</OutputType>
                <TargetFramework>net10.0</TargetFramework>
                <Nullable>enable</Nullable>
                <ImplicitUsings>enable</ImplicitUsings>
                <TreatWarningsAsErrors>true</TreatWarningsAsErrors>
                <NuGetAudit>false</NuGetAudit>
              </PropertyGroup>
              <ItemGroup>
                <PackageReference Include="GemmaGen" Version="{Version}" />
              </ItemGroup>
              <ItemGroup>
            {items}
              </ItemGroup>
            </Project>
            """);
        foreach ((string file, string text) in files) File.WriteAllText(Path.Combine(directory, file), text);
        return directory;
    }

    /// <summary>Builds a project folder in Release, as <c>dotnet build</c> on the command line does.</summary>
    internal static Task<CommandResult> BuildAsync(string directory) =>
        DotnetCommand.RunAsync(directory, CommandTimeout, "build", "-c", "Release", "--disable-build-servers");

    /// <summary>Deletes the temp folder.</summary>
    public Task DisposeAsync()
    {
        Directory.Delete(Root, recursive: true);
        return Task.CompletedTask;
    }

    /// <summary>The machine's package cache: NUGET_PACKAGES, or what NuGet's settings name (~/.nuget/packages by default).</summary>
    private static async Task<string> MachinePackageFolderAsync()
    {
        if (Environment.GetEnvironmentVariable("NUGET_PACKAGES") is { Length: > 0 } folder) return folder;
        CommandResult locals = (await DotnetCommand.RunAsync(RepositoryFiles.Root, CommandTimeout, "nuget", "locals", "global-packages", "--list"))
            .Succeeded("dotnet nuget locals");
        const string Label = "global-packages:";
        string line = locals.Output.Split('\n').Single(l => l.TrimStart().StartsWith(Label, StringComparison.Ordinal));
        return line.Trim()[Label.Length..].Trim();
    }

    private static string Json(string text) => System.Text.Json.JsonSerializer.Serialize(text);
}
