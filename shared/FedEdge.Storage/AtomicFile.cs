using System.Runtime.InteropServices;

namespace FedEdge.Storage;

/// <summary>
/// Crash-safe file replacement: write a temporary file in the same directory, fsync it, rename it over
/// the target and fsync the directory, so a reader sees either the old or the new content, never a torn
/// file, even after power loss (POSIX rename atomicity; the directory fsync makes the rename durable).
/// </summary>
public static class AtomicFile
{
    /// <summary>Suffix of in-progress files; leftovers are incomplete writes and may be deleted.</summary>
    public const string TempSuffix = ".tmp";

    /// <summary>
    /// Writes <paramref name="path"/> atomically. <paramref name="write"/> fills the temporary file.
    /// On any failure (for example a full disk) the temporary file is removed and the old content of
    /// <paramref name="path"/>, if any, is untouched.
    /// </summary>
    public static void Write(string path, Action<Stream> write, bool fsync = true, Func<Stream, Stream>? wrapStream = null)
    {
        var directory = Path.GetDirectoryName(Path.GetFullPath(path))!;
        var temp = Path.Combine(directory, $".{Path.GetFileName(path)}.{Environment.ProcessId}.{Guid.NewGuid():N}{TempSuffix}");
        try
        {
            using (var file = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 64 * 1024))
            {
                var target = wrapStream is null ? file : wrapStream(file);
                write(target);
                target.Flush();
                if (fsync)
                    file.Flush(flushToDisk: true);
            }
            File.Move(temp, path, overwrite: true);
        }
        catch
        {
            TryDelete(temp);
            throw;
        }
        if (fsync)
            SyncDirectory(directory);
    }

    /// <summary>Writes <paramref name="bytes"/> to <paramref name="path"/> atomically.</summary>
    public static void WriteAllBytes(string path, ReadOnlySpan<byte> bytes, bool fsync = true)
    {
        var copy = bytes.ToArray();
        Write(path, s => s.Write(copy), fsync);
    }

    /// <summary>Deletes temporary files left by writes that were interrupted by a crash.</summary>
    public static int DeleteLeftovers(string directory)
    {
        var deleted = 0;
        foreach (var temp in System.IO.Directory.EnumerateFiles(directory, "*" + TempSuffix))
        {
            if (TryDelete(temp))
                deleted++;
        }
        return deleted;
    }

    /// <summary>Makes renames and deletions in <paramref name="directory"/> durable (no-op off Unix).</summary>
    public static void SyncDirectory(string directory)
    {
        if (OperatingSystem.IsWindows())
            return; // NTFS journals metadata; there is no directory handle to flush.
        var fd = Native.open(directory, Native.O_RDONLY | Native.O_DIRECTORY(), 0);
        if (fd < 0)
            return; // Best effort: some file systems refuse to open directories.
        try
        {
            Native.fsync(fd);
        }
        finally
        {
            Native.close(fd);
        }
    }

    private static bool TryDelete(string path)
    {
        try
        {
            File.Delete(path);
            return true;
        }
        catch (IOException)
        {
            return false;
        }
        catch (UnauthorizedAccessException)
        {
            return false;
        }
    }

    private static class Native
    {
        public const int O_RDONLY = 0;

        // O_DIRECTORY differs between Linux on arm/aarch64 and x86.
        public static int O_DIRECTORY() => RuntimeInformation.ProcessArchitecture is Architecture.Arm or Architecture.Arm64 && OperatingSystem.IsLinux()
            ? 0x4000
            : OperatingSystem.IsMacOS() ? 0x100000 : 0x10000;

        [DllImport("libc", SetLastError = true)]
        public static extern int open([MarshalAs(UnmanagedType.LPUTF8Str)] string path, int flags, int mode);

        [DllImport("libc", SetLastError = true)]
        public static extern int fsync(int fd);

        [DllImport("libc", SetLastError = true)]
        public static extern int close(int fd);
    }
}
