using System.Buffers;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Unicode;

namespace GemmaGen;

/// <summary>Checks every checkpoint file gets before it is opened or decoded.</summary>
internal static unsafe partial class CheckpointFiles
{
    /// <summary>
    /// Refuses a path that is not a regular file (after following links): opening a named pipe for reading blocks
    /// until a writer comes, and a character device such as /dev/zero never ends. .NET reports neither
    /// (<see cref="FileSystemInfo.Attributes"/> is <c>Normal</c> for both), so the type comes from Linux's statx.
    /// Elsewhere, or where statx is unavailable, the check is skipped.
    /// </summary>
    /// <param name="path">The file; it exists.</param>
    /// <param name="error">Makes the exception to throw from a message that names the file.</param>
    public static void RequireRegularFile(string path, Func<string, Exception> error)
    {
        if (KindOf(path) is { } kind)
            throw error($"{path}: is {kind}, not a regular file; expected the file itself (a special file would block or never end)");
    }

    /// <summary>Decodes UTF-8, refusing invalid bytes rather than replacing them.</summary>
    /// <param name="path">The file, for the message.</param>
    /// <param name="bytes">The text.</param>
    /// <param name="fileOffset">Where <paramref name="bytes"/> start in the file.</param>
    /// <param name="error">Makes the exception to throw from a message that names the file and the offset.</param>
    public static string DecodeUtf8(string path, ReadOnlySpan<byte> bytes, long fileOffset, Func<string, Exception> error)
    {
        RequireUtf8(path, bytes, fileOffset, error);
        return Encoding.UTF8.GetString(bytes);
    }

    /// <summary>Refuses bytes that are not valid UTF-8, naming the file offset of the first bad byte.</summary>
    public static void RequireUtf8(string path, ReadOnlySpan<byte> bytes, long fileOffset, Func<string, Exception> error)
    {
        if (Utf8.IsValid(bytes)) return;
        int offset = 0;
        while (Rune.DecodeFromUtf8(bytes[offset..], out _, out int consumed) == OperationStatus.Done) offset += consumed;
        throw error($"{path}: invalid UTF-8 at byte offset {fileOffset + offset} (byte 0x{bytes[offset]:X2}); the file must be UTF-8 text");
    }

    /// <summary>"a named pipe (FIFO)", "a character device", ... for a special file; null for a regular file, a
    /// directory, or when the type cannot be read.</summary>
    private static string? KindOf(string path)
    {
        if (!OperatingSystem.IsLinux()) return null;
        const int AtFdCwd = -100, StatxType = 0x1, ModeOffset = 28;
        byte* buffer = stackalloc byte[256];
        try
        {
            if (Statx(AtFdCwd, path, 0, StatxType, buffer) != 0) return null;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return null;
        }
        int type = *(ushort*)(buffer + ModeOffset) & 0xF000;
        return type switch
        {
            0x1000 => "a named pipe (FIFO)",
            0x2000 => "a character device",
            0x6000 => "a block device",
            0xC000 => "a socket",
            _ => null,
        };
    }

    /// <summary>statx(2): its struct has the same layout on every Linux architecture (stx_mode, a u16, at byte 28).</summary>
    [LibraryImport("libc", EntryPoint = "statx", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Statx(int dirfd, string path, int flags, uint mask, byte* buffer);
}
