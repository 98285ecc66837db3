using GemmaGen.Tests.Generator;

namespace GemmaGen.Tests.Package;

/// <summary>The fenced code blocks of one section of README.md, in order: tests run them as written, so the README's
/// instructions and what the tests check cannot drift apart.</summary>
internal static class ReadmeSection
{
    /// <summary>The text of each block of <paramref name="language"/> (<c>sh</c>, <c>xml</c>, <c>csharp</c>) between
    /// the heading <paramref name="heading"/> (any level) and the next heading.</summary>
    public static string[] Blocks(string heading, string language)
    {
        string[] lines = File.ReadAllText(RepositoryFiles.Path("README.md")).ReplaceLineEndings("\n").Split('\n');
        var blocks = new List<string>();
        bool inSection = false, found = false;
        string? fence = null; // the language of the block being read
        var text = new List<string>();
        foreach (string line in lines)
        {
            if (fence != null)
            {
                if (line == "```")
                {
                    if (inSection && fence == language) blocks.Add(string.Join('\n', text) + "\n");
                    fence = null;
                }
                else
                {
                    text.Add(line);
                }
            }
            else if (line.StartsWith("```", StringComparison.Ordinal))
            {
                fence = line[3..];
                text.Clear();
            }
            else if (line.StartsWith('#'))
            {
                inSection = line.TrimStart('#') == " " + heading;
                found |= inSection;
            }
        }
        Assert.True(found, $"README.md has no section \"{heading}\"");
        return blocks.ToArray();
    }
}
