using System.Text.RegularExpressions;
using System.Xml.Linq;
using GemmaGen.Tests.Generator;

namespace GemmaGen.Tests.Package;

/// <summary>
/// The repository packed by the README's pack command, run as written (the first block of "Use GemmaGen in your
/// project") in the repository's folder, and a folder for projects that consume it as a developer's would: their
/// NuGet.config takes GemmaGen from the packed folder and everything else from nuget.org. The README's commands run
/// in a shell whose home is a temp folder and whose build output goes there too, so the repository gets nothing
/// but the two packages in artifacts/packages (deleted afterwards); the machine's package cache is a fallback
/// folder, so packages already there (the repository's dependencies) need no network.
/// </summary>
/// <remarks>
/// Layout: <c>home/</c> (the shell's home), <c>build/</c> (build output), <c>packages/</c> (the consumers' package
/// cache), <c>projects/</c> (NuGet.config, Directory.Build.props and one folder per consumer).
/// </remarks>
public sealed partial class PackedRepository : IAsyncLifetime
{
    /// <summary>The README section whose commands a developer follows to use the package.</summary>
    public const string UseSection = "Use GemmaGen in your project";

    /// <summary>Longest a pack, a build or one block of the README's commands may take.</summary>
    public static readonly TimeSpan CommandTimeout = TimeSpan.FromMinutes(5);

    /// <summary>The temp folder.</summary>
    public string Root { get; } = Path.Combine(Path.GetTempPath(), "gemmagen-package-" + Guid.NewGuid().ToString("N")[..12]);

    /// <summary>The home folder of the shell the README's commands run in.</summary>
    public string Home => Path.Combine(Root, "home");

    /// <summary>The version the pack gave the packages.</summary>
    public string Version { get; private set; } = "";

    /// <summary>The folder the pack wrote the .nupkg files to.</summary>
    public string Feed { get; private set; } = "";

    /// <summary>The environment of the shell the README's commands run in (added to the test run's).</summary>
    public IReadOnlyDictionary<string, string> ShellEnvironment { get; private set; } = new Dictionary<string, string>();

    /// <summary>Where the consuming projects go, one folder each.</summary>
    public string Projects => Path.Combine(Root, "projects");

    private readonly List<string> _packages = [];

    /// <summary>The version prefix Directory.Build.props gives every package.</summary>
    public static string RepositoryVersion() =>
        XDocument.Load(RepositoryFiles.Path("Directory.Build.props")).Descendants("VersionPrefix").Single().Value;

    /// <summary>Runs the README's pack command and writes the consumers' NuGet.config and Directory.Build.props.</summary>
    public async Task InitializeAsync()
    {
        Directory.CreateDirectory(Projects);
        Directory.CreateDirectory(Home);
        string machinePackages = await MachinePackageFolderAsync();
        ShellEnvironment = new Dictionary<string, string>
        {
            ["HOME"] = Home,
            // Read by MSBuild as properties: build output (bin, obj) of whatever the commands build goes to the temp
            // folder, not into the repository's folders; no vulnerability lookups; no build servers left running.
            ["ArtifactsPath"] = Path.Combine(Root, "build"),
            ["NuGetAudit"] = "false",
            ["UseSharedCompilation"] = "false",
            ["MSBUILDDISABLENODEREUSE"] = "1",
            ["NUGET_FALLBACK_PACKAGES"] = machinePackages,
        };

        string pack = ReadmeSection.Blocks(UseSection, "sh")[0];
        Assert.StartsWith("dotnet pack ", pack);
        CommandResult packed = (await DotnetCommand.RunShellAsync(pack, RepositoryFiles.Root, CommandTimeout, ShellEnvironment))
            .Succeeded("the README's pack command");
        _packages.AddRange(CreatedPackage().Matches(packed.Output).Select(m => m.Groups["path"].Value));
        Match host = Assert.Single(CreatedPackage().Matches(packed.Output), m => m.Groups["id"].Value == "GemmaGen");
        Assert.Contains(_packages, p => Path.GetFileName(p) == $"GemmaGen.Kernels.{host.Groups["version"].Value}.nupkg");
        Version = host.Groups["version"].Value;
        Feed = Path.GetDirectoryName(host.Groups["path"].Value)!;

        File.WriteAllText(Path.Combine(Projects, "NuGet.config"), $"""
            <?xml version="1.0" encoding="utf-8"?>
            <configuration>
              <config>
                <add key="globalPackagesFolder" value="../packages" />
              </config>
              <packageSources>
                <clear />
                <add key="gemmagen-packed" value="{Feed}" />
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

    /// <summary>Deletes the temp folder and the packages of this run.</summary>
    public Task DisposeAsync()
    {
        Directory.Delete(Root, recursive: true);
        foreach (string package in _packages) File.Delete(package);
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

    /// <summary>What <c>dotnet pack</c> prints for each package it writes.</summary>
    [GeneratedRegex(@"Successfully created package '(?<path>[^']*[/\\](?<id>GemmaGen(\.Kernels)?)\.(?<version>\d[^']*)\.nupkg)'")]
    private static partial Regex CreatedPackage();
}
