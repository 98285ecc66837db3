using System.Globalization;

namespace GemmaGen.Kernels;

/// <summary>
/// The memory a model may take before the kernel kills the process: the smaller of <c>MemAvailable</c> in
/// /proc/meminfo and the memory limit of the process's cgroup and its ancestors (v2 <c>memory.max</c>, v1
/// <c>memory.limit_in_bytes</c>). Linux only; elsewhere unknown.
/// </summary>
public static class AvailableMemory
{
    /// <summary>Bytes available to this process now, or null when unknown (not Linux, or nothing readable).</summary>
    public static long? Read()
    {
        if (!OperatingSystem.IsLinux()) return null;
        return Smaller(ParseMemInfo(ReadOrNull("/proc/meminfo")), CgroupLimit(ReadOrNull("/proc/self/cgroup") ?? ""));
    }

    /// <summary><c>MemAvailable</c> of a /proc/meminfo text, in bytes; null when absent.</summary>
    internal static long? ParseMemInfo(string? meminfo)
    {
        foreach (string line in (meminfo ?? "").Split('\n'))
        {
            string[] parts = line.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
            if (parts is ["MemAvailable:", var kilobytes, "kB"] && long.TryParse(kilobytes, NumberStyles.None, CultureInfo.InvariantCulture, out long kb))
                return kb * 1024;
        }
        return null;
    }

    /// <summary>A cgroup limit file's value in bytes (<c>memory.max</c> or <c>memory.limit_in_bytes</c>); null for
    /// "max", v1's "no limit" (2^63 rounded down to a page) or anything unreadable.</summary>
    internal static long? ParseLimit(string? text)
    {
        if (!long.TryParse(text?.Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out long bytes)) return null;
        return bytes >= long.MaxValue / 2 ? null : bytes;
    }

    /// <summary>The smaller of two figures, either of which may be unknown.</summary>
    internal static long? Smaller(long? a, long? b) => a is { } x && b is { } y ? Math.Min(x, y) : a ?? b;

    /// <summary>
    /// The tightest memory limit on the cgroup named in a /proc/self/cgroup text (v2 line <c>0::/path</c>, v1 line
    /// <c>N:...memory...:/path</c>) and on its ancestors; null when none is set.
    /// </summary>
    /// <param name="procSelfCgroup">The text of /proc/self/cgroup.</param>
    /// <param name="readFile">Reads a file under /sys/fs/cgroup, null when it does not exist (tests pass their own).</param>
    internal static long? CgroupLimit(string procSelfCgroup, Func<string, string?>? readFile = null)
    {
        readFile ??= ReadOrNull;
        long? limit = null;
        foreach (string line in procSelfCgroup.Split('\n'))
        {
            string[] fields = line.Trim().Split(':', 3);
            if (fields.Length != 3) continue;
            (string root, string file) = fields[1] switch
            {
                "" when fields[0] == "0" => ("/sys/fs/cgroup", "memory.max"),
                var controllers when controllers.Split(',').Contains("memory") => ("/sys/fs/cgroup/memory", "memory.limit_in_bytes"),
                _ => ("", ""),
            };
            if (root.Length == 0) continue;
            // In a container the path may be the host's; "/" (the namespace's root) is always tried.
            string path = fields[2].TrimEnd('/');
            while (true)
            {
                limit = Smaller(limit, ParseLimit(readFile($"{root}{path}/{file}")));
                if (path.Length == 0) break;
                path = path[..path.LastIndexOf('/')];
            }
        }
        return limit;
    }

    private static string? ReadOrNull(string path)
    {
        try
        {
            return File.Exists(path) ? File.ReadAllText(path) : null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }
}
