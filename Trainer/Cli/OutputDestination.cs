namespace Trainer.Cli;

/// <summary>
/// Checks that an output flag's destination can be written, before any work starts: not a directory where a file
/// goes (or the reverse), not under a regular file, and writable (a probe file is created and deleted, so permission
/// bits, ACLs and read-only file systems all count). Throws <see cref="RuntimeFailure"/> naming the flag; leaves nothing.
/// </summary>
public static class OutputDestination
{
    /// <summary>A file the run will create or append to (e.g. --log_json).</summary>
    public static void CheckFile(string flag, string path)
    {
        if (Directory.Exists(path)) throw new RuntimeFailure($"{flag}: '{path}' is a directory, not a file");
        string parent = Path.GetDirectoryName(Path.GetFullPath(path)) ?? "/";
        if (File.Exists(parent)) throw new RuntimeFailure($"{flag}: '{path}' cannot be created: '{parent}' is a file, not a directory");
        if (!Directory.Exists(parent)) throw new RuntimeFailure($"{flag}: directory '{parent}' does not exist");
        Probe(flag, path, parent);
        if (File.Exists(path))
        {
            try { using var _ = new FileStream(path, FileMode.Open, FileAccess.Write, FileShare.ReadWrite); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw new RuntimeFailure($"{flag}: '{path}' cannot be written ({e.Message})"); }
        }
    }

    /// <summary>A directory the run will create if needed and write into (e.g. --save).</summary>
    public static void CheckDirectory(string flag, string path)
    {
        if (File.Exists(path)) throw new RuntimeFailure($"{flag}: '{path}' is a file, not a directory");
        // The nearest existing ancestor is where the run's first write (creating the missing directories) happens.
        string existing = Path.GetFullPath(path);
        while (!Directory.Exists(existing))
        {
            if (File.Exists(existing)) throw new RuntimeFailure($"{flag}: '{path}' cannot be created: '{existing}' is a file, not a directory");
            existing = Path.GetDirectoryName(existing) ?? throw new RuntimeFailure($"{flag}: '{path}' has no existing parent directory");
        }
        Probe(flag, path, existing);
    }

    static void Probe(string flag, string path, string directory)
    {
        string probe = Path.Combine(directory, $".trainer-write-probe-{Environment.ProcessId}-{Guid.NewGuid():N}");
        try
        {
            using (new FileStream(probe, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1, FileOptions.DeleteOnClose)) { }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new RuntimeFailure($"{flag}: '{path}' is not writable: cannot create a file in '{directory}' ({e.Message})");
        }
        finally { try { File.Delete(probe); } catch (Exception e) when (e is IOException or UnauthorizedAccessException) { } }
    }
}
