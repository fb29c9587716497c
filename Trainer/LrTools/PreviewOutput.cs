using Trainer.Cli;

namespace Trainer.LrTools;

/// <summary>Writes a preview's bytes to a file atomically: a temporary file beside it, then a rename over the target.</summary>
public static class PreviewOutput
{
    /// <summary>Refuses (<see cref="UsageException"/>) an output path that cannot be written, before any work is done.</summary>
    public static void CheckWritable(string path)
    {
        string full;
        try { full = Path.GetFullPath(path); }
        catch (Exception e) when (e is ArgumentException or NotSupportedException or PathTooLongException)
        {
            throw new UsageException($"--output: '{path}' is not a valid path ({e.Message})");
        }
        if (Directory.Exists(full)) throw new UsageException($"--output: '{path}' is a directory");
        string? dir = Path.GetDirectoryName(full);
        if (dir is null || !Directory.Exists(dir)) throw new UsageException($"--output: directory '{Path.GetDirectoryName(path)}' does not exist");
    }

    /// <summary>Writes <paramref name="bytes"/> to <paramref name="path"/>: readers see the old file or the whole new one, never a part.</summary>
    public static void WriteAtomic(string path, ReadOnlySpan<byte> bytes)
    {
        CheckWritable(path);
        string full = Path.GetFullPath(path);
        string dir = Path.GetDirectoryName(full)!;
        string temp = Path.Combine(dir, $".{Path.GetFileName(full)}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
        try
        {
            using (var fs = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None))
            {
                fs.Write(bytes);
                fs.Flush(flushToDisk: true);
            }
            File.Move(temp, full, overwrite: true);
        }
        catch
        {
            try { File.Delete(temp); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            throw;
        }
    }
}
