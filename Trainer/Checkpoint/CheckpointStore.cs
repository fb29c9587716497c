using System.Globalization;
using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Serialization;
using Trainer.Cli;

namespace Trainer.Checkpoint;

/// <summary>
/// What must match between a checkpoint and the run that loads it: everything that defines the saved trajectory or
/// changes its math (README "Resume"). The init-only settings are compared when both sides know them (checkpoints
/// written before they were recorded lack them).
/// </summary>
public sealed record CheckpointIdentity(string Model, string Schedule, string Optimizer, string Dtype, int SequenceLength)
{
    public long? Seed { get; init; }
    public double? LearningRate { get; init; }
    public int? TotalBatchSize { get; init; }
    public double? GradClip { get; init; }
    /// <summary>SHA-256 of the training tokens (as int32), so a moved data file still matches and a different one does not.</summary>
    public string? DataSha256 { get; init; }
    /// <summary>Where the training tokens came from (a path or embedded:NAME); for messages only.</summary>
    public string? DataName { get; init; }
    /// <summary>--data_order (infinitrain, llmc): which samples each step reads.</summary>
    public string? DataOrder { get; init; }
}

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
    // Recorded since the run-identity and resume checks (README "Checkpoints"); null in older checkpoints.
    /// <summary>Random id of the run lineage: drawn by a fresh run, carried through every resume.</summary>
    [JsonPropertyName("run_id")] public string? RunId { get; set; }
    [JsonPropertyName("learning_rate")] public double? LearningRate { get; set; }
    [JsonPropertyName("total_batch_size")] public int? TotalBatchSize { get; set; }
    [JsonPropertyName("batch_size")] public int? BatchSize { get; set; }
    [JsonPropertyName("grad_clip")] public double? GradClip { get; set; }
    [JsonPropertyName("device")] public string? Device { get; set; }
    [JsonPropertyName("data")] public string? DataName { get; set; }
    [JsonPropertyName("data_sha256")] public string? DataSha256 { get; set; }
    /// <summary>--data_order; absent in checkpoints written before it existed, which all read InfiniTrain's order.</summary>
    [JsonPropertyName("data_order")] public string? DataOrder { get; set; }
}

/// <summary>A verified checkpoint directory; <paramref name="Notes"/>: what the reader should know (e.g. a skipped newer directory).</summary>
public sealed record CheckpointInfo(string Directory, CheckpointMeta Meta, IReadOnlyList<string> Notes)
{
    public CheckpointInfo(string directory, CheckpointMeta meta) : this(directory, meta, Array.Empty<string>()) { }

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
/// <summary>
/// Checkpoints as directories <c>ROOT/checkpoint_step_NNNNNN/</c> holding model.pt (TorchSharp module state),
/// optimizer.bin (TorchSharp optimizer state), scheduler.json (SchedulerState JSON), trainer.json
/// (<see cref="CheckpointMeta"/>) and manifest.json (format version + SHA-256 of every other file + SHA-256 of the
/// manifest's own contents, written last). A save writes everything into a hidden temporary directory and renames it
/// into place, so a crash leaves the previous checkpoints intact; only the newest <c>keepLast</c> of the same run
/// (<see cref="CheckpointMeta.RunId"/>) are kept, never the one just written.
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
        [JsonPropertyName("sha256")] public Dictionary<string, string>? Sha256 { get; set; } = new();
        /// <summary>SHA-256 of <see cref="CanonicalText"/>: tells a damaged manifest from a damaged file (absent in older manifests).</summary>
        [JsonPropertyName("manifest_sha256")] public string? SelfSha256 { get; set; }
    }

    static string CanonicalText(Manifest m) =>
        $"format_version {m.FormatVersion}\n" + string.Concat((m.Sha256 ?? new()).OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => $"{kv.Key} {kv.Value}\n"));

    /// <summary>Bytes of torch's CPU generator state (what <c>get_rng_state</c> returns; 5056 for the Mersenne Twister).</summary>
    public static int RngStateLength => s_rngStateLength.Value;
    static readonly Lazy<int> s_rngStateLength = new(() => { using var t = TorchSharp.torch.random.get_rng_state(); return (int)t.shape[0]; });

    public static string DirectoryName(int step) => Prefix + step.ToString("D6", CultureInfo.InvariantCulture);

    /// <summary>Writes a checkpoint atomically; <paramref name="writers"/> write each named file to the given path.</summary>
    public static string Save(string root, CheckpointMeta meta, int keepLast, IReadOnlyDictionary<string, Action<string>> writers)
    {
        string tmp = BeginSave(root, meta.Step, Guid.NewGuid().ToString("N")[..8]);
        try
        {
            WriteFiles(tmp, writers);
            return FinishSave(root, tmp, meta, keepLast, writers.Keys);
        }
        catch
        {
            TryDelete(tmp);
            throw;
        }
    }

    /// <summary>
    /// One checkpoint written by several processes (an mpirun job; <paramref name="root"/> on a filesystem they share):
    /// process 0 clears stale temporary folders and creates this checkpoint's, every process writes its own
    /// <paramref name="writers"/> into it, then process 0 checks that all of <paramref name="allFiles"/> are there,
    /// writes trainer.json and the manifest, renames the folder into place and prunes. Collective over
    /// <paramref name="processes"/> (one member per process); a failure on any process throws on every process.
    /// </summary>
    public static string SaveShared(string root, CheckpointMeta meta, int keepLast, IReadOnlyDictionary<string, Action<string>> writers,
        IReadOnlyCollection<string> allFiles, Trainer.Parallel.ICommunicator processes)
    {
        bool leader = processes.Rank == 0;
        string token = Guid.NewGuid().ToString("N")[..8];
        Exception? failure = null;
        string? tmp = null;
        if (leader)
        {
            try { tmp = BeginSave(root, meta.Step, token); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { failure = e; }
        }
        long shared = AgreeOnToken(processes, leader && failure is null ? Convert.ToInt64(token, 16) : -1);
        if (shared < 0) throw failure ?? new CheckpointException($"checkpoint step {meta.Step}: process 0 could not create the checkpoint folder in '{root}'");
        tmp = Path.Combine(root, "." + DirectoryName(meta.Step) + ".tmp-" + shared.ToString("x8", CultureInfo.InvariantCulture));
        try { WriteFiles(tmp, writers); }
        catch (Exception e) when (e is not OutOfMemoryException) { failure = e; }
        FailIfAny(processes, failure, meta.Step, "could not write its files", tmp, leader);
        string final = Path.Combine(root, DirectoryName(meta.Step));
        if (leader)
        {
            try
            {
                foreach (var f in allFiles.Where(f => !File.Exists(Path.Combine(tmp, f))))
                    throw new CheckpointException($"checkpoint step {meta.Step}: {f} was not written into {tmp} (does every process see the same --save folder? it must be on a shared filesystem)");
                final = FinishSave(root, tmp, meta, keepLast, allFiles);
            }
            catch (Exception e) when (e is not OutOfMemoryException) { failure = e; }
        }
        FailIfAny(processes, failure, meta.Step, "could not finish the checkpoint", tmp, leader);
        return final;
    }

    /// <summary>Process 0's token (or -1 when it failed) on every process.</summary>
    static long AgreeOnToken(Trainer.Parallel.ICommunicator processes, long token)
    {
        using var t = TorchSharp.torch.tensor(new[] { token });
        processes.Broadcast(t, 0);
        return t.item<long>();
    }

    /// <summary>Collective: when any process failed, every process throws (the failing one its own exception, naming
    /// the lowest failed process elsewhere) and process 0 removes the temporary folder.</summary>
    static void FailIfAny(Trainer.Parallel.ICommunicator processes, Exception? failure, int step, string what, string tmp, bool leader)
    {
        // Max over (Size - rank) of the failed processes picks the lowest failed rank; 0 = none failed.
        using var t = TorchSharp.torch.tensor(new[] { failure is null ? 0L : processes.Size - processes.Rank });
        processes.AllReduce(t, Trainer.Parallel.ReduceOp.Max);
        long max = t.item<long>();
        if (max == 0) return;
        long firstFailed = processes.Size - max;
        if (leader) TryDelete(tmp);
        if (failure is not null) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(failure).Throw();
        throw new CheckpointException($"checkpoint step {step}: process {firstFailed} {what}; this checkpoint was not written");
    }

    /// <summary>Clears stale temporary folders of <paramref name="root"/> and creates this checkpoint's temporary folder.</summary>
    static string BeginSave(string root, int step, string token)
    {
        Directory.CreateDirectory(root);
        foreach (var stale in Directory.EnumerateDirectories(root, "." + Prefix + "*.tmp-*"))
            TryDelete(stale);
        string tmp = Path.Combine(root, "." + DirectoryName(step) + ".tmp-" + token);
        Directory.CreateDirectory(tmp);
        return tmp;
    }

    static void WriteFiles(string tmp, IReadOnlyDictionary<string, Action<string>> writers)
    {
        foreach (var (name, write) in writers)
        {
            string p = Path.Combine(tmp, name);
            Directory.CreateDirectory(Path.GetDirectoryName(p)!);   // per-rank files live in rank_NNNNNN/
            write(p);
            FlushToDisk(p);
        }
    }

    /// <summary>trainer.json, the manifest over <paramref name="files"/>, the rename into place (replacing an older copy), pruning.</summary>
    static string FinishSave(string root, string tmp, CheckpointMeta meta, int keepLast, IEnumerable<string> files)
    {
        string final = Path.Combine(root, DirectoryName(meta.Step));
        string metaPath = Path.Combine(tmp, MetaFile);
        File.WriteAllText(metaPath, JsonSerializer.Serialize(meta, Json));
        FlushToDisk(metaPath);
        WriteManifest(tmp, files.Append(MetaFile));

        string? old = null;
        if (Directory.Exists(final))
        {
            old = Path.Combine(root, "." + DirectoryName(meta.Step) + ".tmp-old-" + Guid.NewGuid().ToString("N")[..8]);
            Directory.Move(final, old);
        }
        Directory.Move(tmp, final);
        if (old is not null) TryDelete(old);
        Prune(root, keepLast, final, meta.RunId ?? "");
        return final;
    }

    /// <summary>Writes <paramref name="dir"/>/manifest.json: the SHA-256 of each named file there, then of the manifest itself.</summary>
    public static void WriteManifest(string dir, IEnumerable<string> files)
    {
        var manifest = new Manifest { FormatVersion = FormatVersion };
        foreach (var name in files) manifest.Sha256![name] = Sha256(Path.Combine(dir, name));
        manifest.SelfSha256 = Sha256Text(CanonicalText(manifest));
        WriteDurable(Path.Combine(dir, ManifestFile), JsonSerializer.Serialize(manifest, Json));
    }

    static void FlushToDisk(string path)
    {
        using var fs = new FileStream(path, FileMode.Open, FileAccess.ReadWrite);
        fs.Flush(flushToDisk: true);
    }

    static void WriteDurable(string path, string text)
    {
        using var fs = new FileStream(path, FileMode.Create, FileAccess.Write);
        var bytes = System.Text.Encoding.UTF8.GetBytes(text);
        fs.Write(bytes);
        fs.Flush(flushToDisk: true);
    }

    /// <summary>Keeps the newest <paramref name="keepLast"/> checkpoints of run <paramref name="runId"/>; never deletes <paramref name="justWritten"/> or another run's.</summary>
    static void Prune(string root, int keepLast, string justWritten, string runId)
    {
        if (keepLast <= 0) return;
        var ours = List(root).Where(t => RunIdOf(t.Dir) == runId).Select(t => t.Dir).ToList();
        foreach (var dir in ours.Skip(keepLast))
            if (!string.Equals(Path.GetFullPath(dir), Path.GetFullPath(justWritten), StringComparison.Ordinal)) Discard(root, dir);
    }

    /// <summary>Renames a checkpoint out of sight before deleting it, so a crash mid-delete leaves no half checkpoint in the listing.</summary>
    static void Discard(string root, string dir)
    {
        string hidden = Path.Combine(root, "." + Path.GetFileName(dir) + ".tmp-old-" + Guid.NewGuid().ToString("N")[..8]);
        try { Directory.Move(dir, hidden); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return; }
        TryDelete(hidden);
    }

    /// <summary>The run id in a checkpoint's trainer.json ("" when it records none, null when unreadable). Not verified.</summary>
    static string? RunIdOf(string dir)
    {
        try { return (JsonSerializer.Deserialize<CheckpointMeta>(File.ReadAllText(Path.Combine(dir, MetaFile)))?.RunId) ?? ""; }
        catch (Exception e) when (e is IOException or JsonException or UnauthorizedAccessException) { return null; }
    }

    /// <summary>
    /// Why a run of lineage <paramref name="runId"/> that starts at <paramref name="startStep"/> must not save into
    /// <paramref name="root"/>, or null: the folder holds a complete checkpoint of another run (a later --load of the
    /// folder would resume it, and pruning could not tell the runs apart), or one of this run past its start (the
    /// new checkpoints would be shadowed by it).
    /// </summary>
    public static string? SaveConflict(string root, string runId, int startStep)
    {
        foreach (var (dir, step) in List(root))
        {
            string? other = RunIdOf(dir);
            if (other != runId)
                return $"'{root}' holds {Path.GetFileName(dir)} of another run ({(other is null ? $"its {MetaFile} is unreadable" : other.Length == 0 ? "no run id" : "run id " + other)}, this run is {(runId.Length == 0 ? "an older one without a run id" : runId)})";
            if (step > startStep)
                return $"'{root}' holds {Path.GetFileName(dir)} of this run, past step {startStep} where this run starts; it would shadow the checkpoints this run writes";
        }
        return null;
    }

    /// <summary>Complete checkpoints under root, newest first.</summary>
    public static List<(string Dir, int Step)> List(string root) =>
        Scan(root).Where(t => t.Complete).OrderByDescending(t => t.Step).Select(t => (t.Dir, t.Step)).ToList();

    static IEnumerable<(string Dir, int Step, bool Complete)> Scan(string root)
    {
        if (!Directory.Exists(root)) yield break;
        foreach (var d in Directory.EnumerateDirectories(root, Prefix + "*"))
            if (StepOf(d) is int step)
                yield return (d, step, File.Exists(Path.Combine(d, ManifestFile)));
    }

    static int? StepOf(string dir)
    {
        string name = Path.GetFileName(Path.TrimEndingDirectorySeparator(dir));
        return name.StartsWith(Prefix, StringComparison.Ordinal)
            && int.TryParse(name[Prefix.Length..], NumberStyles.None, CultureInfo.InvariantCulture, out int step) ? step : null;
    }

    static void TryDelete(string dir) { try { Directory.Delete(dir, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { } }

    static string Sha256(string path)
    {
        using var fs = File.OpenRead(path);
        return Convert.ToHexStringLower(SHA256.HashData(fs));
    }

    static string Sha256Text(string text) => Convert.ToHexStringLower(SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(text)));

    /// <summary>
    /// Finds the checkpoint (<paramref name="path"/> itself, or the newest complete one under it) and verifies it:
    /// manifest, format version, SHA-256 of every file, the sanity of trainer.json, and every setting of
    /// <paramref name="expected"/>. Throws <see cref="CheckpointException"/> naming the directory, file and field.
    /// </summary>
    public static CheckpointInfo Verify(string path, CheckpointIdentity expected, CheckpointLayout? layout = null)
    {
        if (File.Exists(path)) throw new CheckpointException($"--load: '{path}' is a file, not a checkpoint directory (give a {Prefix}* directory, or the --save folder holding them)");
        if (!Directory.Exists(path)) throw new CheckpointException($"--load: checkpoint directory '{path}' does not exist");
        string dir = path;
        var notes = new List<string>();
        if (!File.Exists(Path.Combine(dir, ManifestFile)))
        {
            var all = List(path);
            if (all.Count == 0) throw new CheckpointException($"--load: '{path}' holds no checkpoint (no {ManifestFile}, no complete {Prefix}* directory)");
            dir = all[0].Dir;
            foreach (var skipped in Scan(path).Where(t => !t.Complete && t.Step > all[0].Step).OrderByDescending(t => t.Step))
                notes.Add($"--load: skipped {skipped.Dir}: newer than {Path.GetFileName(dir)} but incomplete (no {ManifestFile})");
        }
        var manifest = ReadManifest(dir);
        foreach (var (name, sum) in manifest.Sha256!)
        {
            string p = Path.Combine(dir, name);
            if (!File.Exists(p)) throw new CheckpointException($"checkpoint {dir}: {name} is missing");
            string actual = Sha256(p);
            if (!string.Equals(actual, sum, StringComparison.OrdinalIgnoreCase))
                throw new CheckpointException(manifest.SelfSha256 is not null
                    ? $"checkpoint {dir}: {name} is corrupt (SHA-256 {actual}, manifest says {sum})"
                    : $"checkpoint {dir}: {name} does not match {ManifestFile} (SHA-256 {actual}, manifest says {sum}); the file or the manifest is corrupt");
        }
        CheckpointMeta meta;
        try { meta = JsonSerializer.Deserialize<CheckpointMeta>(File.ReadAllText(Path.Combine(dir, MetaFile))) ?? throw new JsonException("empty"); }
        catch (JsonException e) { throw new CheckpointException($"checkpoint {dir}: {MetaFile} is not valid ({e.Message})"); }
        CheckMeta(dir, meta);
        CheckSettings(dir, meta, expected);
        if (layout is not null && CheckpointLayout.Mismatch(meta.Layout ?? new CheckpointLayout { Dp = meta.DataParallel }, layout) is { } why)
            throw new CheckpointException($"checkpoint {dir}: {why}");
        return new CheckpointInfo(dir, meta, notes);
    }

    static Manifest ReadManifest(string dir)
    {
        Manifest manifest;
        try { manifest = JsonSerializer.Deserialize<Manifest>(File.ReadAllText(Path.Combine(dir, ManifestFile))) ?? throw new JsonException("empty"); }
        catch (JsonException e) { throw new CheckpointException($"checkpoint {dir}: {ManifestFile} is not valid ({e.Message})"); }
        if (manifest.FormatVersion != FormatVersion)
            throw new CheckpointException($"checkpoint {dir}: {ManifestFile}: format version {manifest.FormatVersion}, this trainer reads version {FormatVersion}");
        // Its own checksum before the files': a damaged manifest is blamed, not the file whose hash it garbled.
        if (manifest.SelfSha256 is { } self && !string.Equals(self, Sha256Text(CanonicalText(manifest)), StringComparison.OrdinalIgnoreCase))
            throw new CheckpointException($"checkpoint {dir}: {ManifestFile} is corrupt (its manifest_sha256 does not match its contents)");
        if (manifest.Sha256 is null) throw new CheckpointException($"checkpoint {dir}: {ManifestFile} has no sha256 table");
        foreach (var required in new[] { ModelFile, OptimizerFile, SchedulerFile, MetaFile })
            if (!manifest.Sha256.ContainsKey(required)) throw new CheckpointException($"checkpoint {dir}: manifest lists no {required}");
        foreach (var name in manifest.Sha256.Keys)
            if (!IsCheckpointFileName(name))
                throw new CheckpointException($"checkpoint {dir}: {ManifestFile} lists '{name}', not a file name in the checkpoint directory");
        return manifest;
    }

    /// <summary>A file of the checkpoint directory itself, or of one of its per-rank folders (rank_NNNNNN/FILE).</summary>
    static bool IsCheckpointFileName(string name)
    {
        static bool Plain(string n) => n.Length > 0 && n == Path.GetFileName(n) && n is not ("." or "..");
        var parts = name.Split('/');
        return parts.Length == 1 ? Plain(name)
            : parts.Length == 2 && System.Text.RegularExpressions.Regex.IsMatch(parts[0], @"^rank_[0-9]{6}$") && Plain(parts[1]);
    }

    /// <summary>trainer.json holds what this trainer writes: a hand-edited (re-hashed) one is refused by field, before torch sees it.</summary>
    static void CheckMeta(string dir, CheckpointMeta m)
    {
        void Bad(string field, string why) => throw new CheckpointException($"checkpoint {dir}: {MetaFile}: {field} {why}");
        if (m.FormatVersion != FormatVersion) Bad("format_version", $"{m.FormatVersion} is not a version this trainer reads ({FormatVersion})");
        if (m.Step < 1) Bad("step", $"{m.Step} is not a saved step (must be >= 1)");
        if (StepOf(dir) is int named && named != m.Step) Bad("step", $"{m.Step} does not match the directory name {Path.GetFileName(dir)}");
        if (m.ConsumedSamples < 0) Bad("consumed_samples", $"{m.ConsumedSamples} is negative");
        if (m.SequenceLength < 1) Bad("sequence_length", $"{m.SequenceLength} must be >= 1");
        if (m.DataParallel < 1) Bad("data_parallel", $"{m.DataParallel} must be >= 1");
        if (m.BatchSize is < 1) Bad("batch_size", $"{m.BatchSize} must be >= 1");
        if (m.TotalBatchSize is int total)
        {
            if (total < 1) Bad("total_batch_size", $"{total} must be >= 1");
            // Every step consumes total_batch_size / sequence_length samples.
            if (m.ConsumedSamples * m.SequenceLength != (long)m.Step * total)
                Bad("consumed_samples", $"{m.ConsumedSamples} does not match step {m.Step} x total_batch_size {total} / sequence_length {m.SequenceLength}");
        }
        if (m.RngState.Length == 0) Bad("rng_state", "is missing");
        byte[] rng;
        try { rng = Convert.FromBase64String(m.RngState); }
        catch (FormatException) { Bad("rng_state", "is not valid base64"); return; }
        if (rng.Length != RngStateLength) Bad("rng_state", $"holds {rng.Length} bytes; torch's CPU generator state has {RngStateLength}");
    }

    static string Abbrev(string hash) => hash.Length > 16 ? hash[..16] + "…" : hash;

    static string Str(double d) => d.ToString("R", CultureInfo.InvariantCulture);

    static void CheckSettings(string dir, CheckpointMeta meta, CheckpointIdentity expected)
    {
        void Same(string what, string saved, string now)
        {
            if (saved != now) throw new CheckpointException($"checkpoint {dir}: {what} differs — checkpoint has {saved}, this run has {now}; a resume continues the saved run unchanged (README: Resume)");
        }
        Same("model configuration", meta.Model, expected.Model);
        Same("lr schedule", meta.Schedule, expected.Schedule);
        Same("optimizer", meta.Optimizer, expected.Optimizer);
        Same("dtype", meta.Dtype, expected.Dtype);
        Same("sequence length", meta.SequenceLength.ToString(CultureInfo.InvariantCulture), expected.SequenceLength.ToString(CultureInfo.InvariantCulture));
        if (expected.Seed is long seed) Same("--seed", meta.Seed.ToString(CultureInfo.InvariantCulture), seed.ToString(CultureInfo.InvariantCulture));
        if (meta.LearningRate is double lr0 && expected.LearningRate is double lr1) Same("--learning_rate", Str(lr0), Str(lr1));
        if (meta.TotalBatchSize is int t0 && expected.TotalBatchSize is int t1) Same("--total_batch_size", t0.ToString(CultureInfo.InvariantCulture), t1.ToString(CultureInfo.InvariantCulture));
        if (meta.GradClip is double g0 && expected.GradClip is double g1) Same("--grad_clip", Str(g0), Str(g1));
        if (meta.DataSha256 is { } d0 && expected.DataSha256 is { } d1 && !string.Equals(d0, d1, StringComparison.OrdinalIgnoreCase))
            Same("training data", $"{meta.DataName} (tokens SHA-256 {Abbrev(d0)})", $"{expected.DataName} (tokens SHA-256 {Abbrev(d1)})");
        if (expected.DataOrder is { } order) Same("--data_order", meta.DataOrder ?? "infinitrain", order);
    }
}
