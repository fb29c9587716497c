using System.Globalization;
using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Serialization;
using Trainer.Cli;

namespace Trainer.Checkpoint;

/// <summary>What must match between a checkpoint and the run that loads it.</summary>
public sealed record CheckpointIdentity(string Model, string Schedule, string Optimizer, string Dtype, int SequenceLength);

/// <summary>trainer.json: where the run stood when the checkpoint was written.</summary>
public sealed class CheckpointMeta
{
    [JsonPropertyName("format_version")] public int FormatVersion { get; set; } = CheckpointStore.FormatVersion;
    [JsonPropertyName("step")] public int Step { get; set; }
    [JsonPropertyName("consumed_samples")] public long ConsumedSamples { get; set; }
    [JsonPropertyName("model")] public string Model { get; set; } = "";
    [JsonPropertyName("schedule")] public string Schedule { get; set; } = "";
    [JsonPropertyName("optimizer")] public string Optimizer { get; set; } = "";
    [JsonPropertyName("dtype")] public string Dtype { get; set; } = "";
    [JsonPropertyName("sequence_length")] public int SequenceLength { get; set; }
    [JsonPropertyName("seed")] public long Seed { get; set; }
    [JsonPropertyName("data_parallel")] public int DataParallel { get; set; }
    /// <summary>Absent in checkpoints written before the parallel runtime: those are replicated (pure DP).</summary>
    [JsonPropertyName("layout")] public CheckpointLayout Layout { get; set; } = new();
    [JsonPropertyName("rng_state")] public string RngState { get; set; } = "";
}

/// <summary>A verified checkpoint directory.</summary>
public sealed record CheckpointInfo(string Directory, CheckpointMeta Meta)
{
    public string ModelPath => Path.Combine(Directory, CheckpointStore.ModelFile);
    public string OptimizerPath => Path.Combine(Directory, CheckpointStore.OptimizerFile);
    public string SchedulerPath => Path.Combine(Directory, CheckpointStore.SchedulerFile);
}

/// <summary>
/// Checkpoints as directories <c>ROOT/checkpoint_step_NNNNNN/</c> holding model.pt (TorchSharp module state),
/// optimizer.bin (TorchSharp optimizer state), scheduler.json (SchedulerState JSON), trainer.json
/// (<see cref="CheckpointMeta"/>) and manifest.json (format version + SHA-256 of every other file, written last).
/// A save writes everything into a hidden temporary directory and renames it into place, so a crash leaves the
/// previous checkpoints intact; only the newest <c>keepLast</c> are kept.
/// </summary>
public static class CheckpointStore
{
    public const int FormatVersion = 1;
    public const string ModelFile = "model.pt";
    public const string OptimizerFile = "optimizer.bin";
    public const string SchedulerFile = "scheduler.json";
    public const string MetaFile = "trainer.json";
    public const string ManifestFile = "manifest.json";
    const string Prefix = "checkpoint_step_";

    static readonly JsonSerializerOptions Json = new() { WriteIndented = true };

    sealed class Manifest
    {
        [JsonPropertyName("format_version")] public int FormatVersion { get; set; }
        [JsonPropertyName("sha256")] public Dictionary<string, string> Sha256 { get; set; } = new();
    }

    public static string DirectoryName(int step) => Prefix + step.ToString("D6", CultureInfo.InvariantCulture);

    /// <summary>Writes a checkpoint atomically; <paramref name="writers"/> write each named file to the given path.</summary>
    public static string Save(string root, CheckpointMeta meta, int keepLast, IReadOnlyDictionary<string, Action<string>> writers)
    {
        Directory.CreateDirectory(root);
        foreach (var stale in Directory.EnumerateDirectories(root, "." + Prefix + "*.tmp-*"))
            TryDelete(stale);
        string final = Path.Combine(root, DirectoryName(meta.Step));
        string tmp = Path.Combine(root, "." + DirectoryName(meta.Step) + ".tmp-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(tmp);
        try
        {
            var manifest = new Manifest { FormatVersion = FormatVersion };
            foreach (var (name, write) in writers)
            {
                string p = Path.Combine(tmp, name);
                Directory.CreateDirectory(Path.GetDirectoryName(p)!);   // per-rank files live in rank_NNNNNN/
                write(p);
                FlushToDisk(p);
                manifest.Sha256[name] = Sha256(p);
            }
            string metaPath = Path.Combine(tmp, MetaFile);
            File.WriteAllText(metaPath, JsonSerializer.Serialize(meta, Json));
            manifest.Sha256[MetaFile] = Sha256(metaPath);
            WriteDurable(Path.Combine(tmp, ManifestFile), JsonSerializer.Serialize(manifest, Json));

            string? old = null;
            if (Directory.Exists(final))
            {
                old = Path.Combine(root, "." + DirectoryName(meta.Step) + ".tmp-old-" + Guid.NewGuid().ToString("N")[..8]);
                Directory.Move(final, old);
            }
            Directory.Move(tmp, final);
            if (old is not null) TryDelete(old);
        }
        catch
        {
            TryDelete(tmp);
            throw;
        }
        Prune(root, keepLast);
        return final;
    }

    static void FlushToDisk(string path)
    {
        using var fs = new FileStream(path, FileMode.Open, FileAccess.ReadWrite);
        fs.Flush(flushToDisk: true);
    }

    static void WriteDurable(string path, string text)
    {
        using var fs = new FileStream(path, FileMode.CreateNew, FileAccess.Write);
        var bytes = System.Text.Encoding.UTF8.GetBytes(text);
        fs.Write(bytes);
        fs.Flush(flushToDisk: true);
    }

    static void Prune(string root, int keepLast)
    {
        if (keepLast <= 0) return;
        foreach (var (dir, _) in List(root).Skip(keepLast)) TryDelete(dir);
    }

    /// <summary>Complete checkpoints under root, newest first.</summary>
    public static List<(string Dir, int Step)> List(string root)
    {
        var found = new List<(string, int)>();
        if (!Directory.Exists(root)) return found;
        foreach (var d in Directory.EnumerateDirectories(root, Prefix + "*"))
        {
            string name = Path.GetFileName(d);
            if (int.TryParse(name[Prefix.Length..], NumberStyles.None, CultureInfo.InvariantCulture, out int step)
                && File.Exists(Path.Combine(d, ManifestFile)))
                found.Add((d, step));
        }
        return found.OrderByDescending(t => t.Item2).ToList();
    }

    static void TryDelete(string dir) { try { Directory.Delete(dir, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { } }

    static string Sha256(string path)
    {
        using var fs = File.OpenRead(path);
        return Convert.ToHexStringLower(SHA256.HashData(fs));
    }

    /// <summary>
    /// Finds the checkpoint (<paramref name="path"/> itself, or the newest one under it) and verifies it:
    /// format version, SHA-256 of every file, model configuration, schedule, optimizer, dtype and sequence length.
    /// Throws <see cref="RuntimeFailure"/> naming the mismatch.
    /// </summary>
    public static CheckpointInfo Verify(string path, CheckpointIdentity expected, CheckpointLayout? layout = null)
    {
        if (!Directory.Exists(path)) throw new RuntimeFailure($"--load: checkpoint directory '{path}' does not exist");
        string dir = path;
        if (!File.Exists(Path.Combine(dir, ManifestFile)))
        {
            var all = List(path);
            if (all.Count == 0) throw new RuntimeFailure($"--load: '{path}' holds no checkpoint (no {ManifestFile}, no complete {Prefix}* directory)");
            dir = all[0].Dir;
        }
        Manifest manifest;
        try { manifest = JsonSerializer.Deserialize<Manifest>(File.ReadAllText(Path.Combine(dir, ManifestFile))) ?? throw new JsonException("empty"); }
        catch (JsonException e) { throw new RuntimeFailure($"checkpoint {dir}: {ManifestFile} is not valid ({e.Message})"); }
        if (manifest.FormatVersion != FormatVersion)
            throw new RuntimeFailure($"checkpoint {dir}: format version {manifest.FormatVersion}, this trainer reads version {FormatVersion}");
        foreach (var required in new[] { ModelFile, OptimizerFile, SchedulerFile, MetaFile })
            if (!manifest.Sha256.ContainsKey(required)) throw new RuntimeFailure($"checkpoint {dir}: manifest lists no {required}");
        foreach (var (name, sum) in manifest.Sha256)
        {
            string p = Path.Combine(dir, name);
            if (!File.Exists(p)) throw new RuntimeFailure($"checkpoint {dir}: {name} is missing");
            string actual = Sha256(p);
            if (!string.Equals(actual, sum, StringComparison.OrdinalIgnoreCase))
                throw new RuntimeFailure($"checkpoint {dir}: {name} is corrupt (SHA-256 {actual}, manifest says {sum})");
        }
        CheckpointMeta meta;
        try { meta = JsonSerializer.Deserialize<CheckpointMeta>(File.ReadAllText(Path.Combine(dir, MetaFile))) ?? throw new JsonException("empty"); }
        catch (JsonException e) { throw new RuntimeFailure($"checkpoint {dir}: {MetaFile} is not valid ({e.Message})"); }
        void Same(string what, string saved, string now)
        {
            if (saved != now) throw new RuntimeFailure($"checkpoint {dir}: {what} differs — checkpoint has {saved}, this run has {now}");
        }
        Same("model configuration", meta.Model, expected.Model);
        Same("lr schedule", meta.Schedule, expected.Schedule);
        Same("optimizer", meta.Optimizer, expected.Optimizer);
        Same("dtype", meta.Dtype, expected.Dtype);
        Same("sequence length", meta.SequenceLength.ToString(CultureInfo.InvariantCulture), expected.SequenceLength.ToString(CultureInfo.InvariantCulture));
        if (layout is not null && CheckpointLayout.Mismatch(meta.Layout ?? new CheckpointLayout { Dp = meta.DataParallel }, layout) is { } why)
            throw new RuntimeFailure($"checkpoint {dir}: {why}");
        return new CheckpointInfo(dir, meta);
    }
}
