using System.IO.Compression;
using System.Text.Json.Nodes;
using Schedules.Core;

namespace Schedules.Torch.Golden;

/// <summary>The verdict on one golden case.</summary>
public sealed record CaseOutcome(string Id, bool Passed, string? Failure)
{
    public static CaseOutcome Pass(string id) => new(id, true, null);
    public static CaseOutcome Fail(string id, string why) => new(id, false, why);
}

/// <summary>
/// Replays a golden trace (one JSON object per case, see ../shared/golden/FORMAT.md) through the library: the schedule
/// parsed from its description, driven by an <see cref="LRScheduler"/> over in-memory SGD(momentum=0.9) param groups,
/// every rate compared with PyTorch's, resumed from our own state JSON where the case saved one.
/// </summary>
public static class GoldenReplay
{
    public const double DefaultRelativeTolerance = 1e-10;
    const double SgdMomentum = 0.9;

    /// <summary>Reads a .jsonl or .jsonl.gz corpus, one case per line.</summary>
    public static IEnumerable<JsonObject> ReadCorpus(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"golden corpus not found: {path}", path);
        using var file = File.OpenRead(path);
        using Stream s = path.EndsWith(".gz", StringComparison.OrdinalIgnoreCase) ? new GZipStream(file, CompressionMode.Decompress) : file;
        using var reader = new StreamReader(s);
        int line = 0;
        while (reader.ReadLine() is { } text)
        {
            line++;
            if (string.IsNullOrWhiteSpace(text)) continue;
            JsonObject? o;
            // A key given twice is refused here rather than crashing the case that reads it.
            try { o = JsonNode.Parse(text, documentOptions: new System.Text.Json.JsonDocumentOptions { AllowDuplicateProperties = false }) as JsonObject; }
            catch (System.Text.Json.JsonException e) { throw new InvalidDataException($"{path}:{line}: not valid JSON: {e.Message}"); }
            yield return o ?? throw new InvalidDataException($"{path}:{line}: a case must be a JSON object");
        }
    }

    public static CaseOutcome Check(JsonObject c, double rtol = DefaultRelativeTolerance)
    {
        string id = (string?)c["id"] ?? "?";
        try { return new Replay(c, id, rtol).Run(); }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            return CaseOutcome.Fail(id, $"replay crashed: {e.GetType().Name}: {e.Message}");
        }
    }

    sealed class Replay(JsonObject c, string id, double rtol)
    {
        readonly double[] _lrs = c["lrs"]!.AsArray().Select(x => (double)x!).ToArray();
        readonly int _steps = (int)c["steps"]!;
        readonly JsonArray? _trace = c["trace"] as JsonArray;
        readonly JsonArray? _lastLr = c["last_lr"] as JsonArray;
        readonly JsonArray? _momentum = c["momentum"] as JsonArray;
        readonly JsonArray? _metrics = c["metrics"] as JsonArray;
        readonly int? _resumeAt = (int?)c["resume_at"];
        readonly bool _refused = c["error"] is not null;
        readonly int? _errorAtStep = (int?)c["error_at_step"]?["step"];
        bool MayRefuse => _refused || _errorAtStep is not null;
        string PyError => c["error"] is { } e ? $"{e["type"]}: {e["message"]}" : c["error_at_step"] is { } s ? $"{s["type"]} at step {s["step"]}: {s["message"]}" : "";

        public CaseOutcome Run()
        {
            Schedule schedule;
            ILRScheduler sched;
            InMemoryParamGroups groups;
            try
            {
                schedule = ScheduleJson.Parse(c["scheduler"]);
                (groups, sched) = Create(schedule);
            }
            catch (InvalidScheduleException e)
            {
                return MayRefuse ? CaseOutcome.Pass(id) : CaseOutcome.Fail(id, "we refused what PyTorch accepted: " + e.Message);
            }
            if (_refused) return CaseOutcome.Fail(id, "PyTorch refused the construction (" + PyError + ") but we accepted it");
            if (Incomplete(schedule) is { } missing) return CaseOutcome.Fail(id, "cannot check the case: " + missing);

            if (Compare(0, groups, sched) is { } f0) return CaseOutcome.Fail(id, f0);
            string? state = null;
            int limit = _errorAtStep is { } es ? es - 1 : _steps;
            for (int i = 0; i < limit; i++)
            {
                if (_resumeAt == i) state = sched.StateDict().ToJson();
                try { StepOnce(sched, i); }
                catch (ScheduleStepException e)
                {
                    return CaseOutcome.Fail(id, $"we failed at step {i + 1} where PyTorch did not: {e.Message}");
                }
                if (Compare(i + 1, groups, sched) is { } f) return CaseOutcome.Fail(id, f);
            }
            if (_errorAtStep is not null) return CaseOutcome.Pass(id); // agreed up to PyTorch's failure; what follows is ours

            if (_resumeAt is { } k && state is not null)
            {
                var (g2, s2) = Create(ScheduleJson.Parse(c["scheduler"]));
                s2.LoadStateDict(SchedulerState.FromJson(state));
                if (Compare(k, g2, s2, checkLast: false) is { } fr) return CaseOutcome.Fail(id, "after resume: " + fr);
                for (int i = k; i < _steps; i++)
                {
                    StepOnce(s2, i);
                    if (Compare(i + 1, g2, s2) is { } f) return CaseOutcome.Fail(id, $"resumed at {k}: {f}");
                }
            }
            return CaseOutcome.Pass(id);
        }

        /// <summary>
        /// Why the case cannot be checked in full, or null. Complete (FORMAT.md): trace[0..steps] (up to the failing step
        /// for error_at_step), one number per param group in every row; last_lr (rows may be null) and momentum the same
        /// length; momentum wherever the schedule cycles it; one metric per step for ReduceLROnPlateau.
        /// </summary>
        string? Incomplete(Schedule schedule)
        {
            int groups = _lrs.Length;
            if (groups == 0) return "lrs is empty (no param groups)";
            if (_steps < 0) return $"steps is {_steps}";
            if (_errorAtStep is { } es && (es < 1 || es > _steps)) return $"error_at_step.step is {es}, outside 1..steps ({_steps})";
            int rows = _errorAtStep ?? _steps + 1;
            if (Rows("trace", _trace, rows, groups, nullRows: false) is { } t) return t;
            if (_lastLr is not null && Rows("last_lr", _lastLr, rows, groups, nullRows: true) is { } l) return l;
            if (schedule.CyclesMomentum && _momentum is null) return "no momentum trace, though the schedule cycles momentum";
            if (_momentum is not null && Rows("momentum", _momentum, rows, groups, nullRows: false) is { } m) return m;
            if (schedule.IsMetricDriven)
            {
                int need = rows - 1;
                if (_metrics is null) return $"no metrics (ReduceLROnPlateau needs one per step, {need})";
                if (_metrics.Count < need || _metrics.Take(need).Any(x => !IsNumber(x))) return $"metrics has {_metrics.Count} entries, {need} numbers needed";
            }
            return null;
        }

        static string? Rows(string field, JsonArray? rows, int want, int groups, bool nullRows)
        {
            if (rows is null) return $"no {field}";
            if (rows.Count != want) return $"{field} has {rows.Count} rows, expected {want}";
            for (int i = 0; i < rows.Count; i++)
            {
                if (rows[i] is null && nullRows) continue;
                if (rows[i] is not JsonArray r || r.Count != groups || r.Any(x => !IsNumber(x)))
                    return $"{field}[{i}] is {rows[i]?.ToJsonString() ?? "null"}, not a list of {groups} numbers (one per param group)";
            }
            return null;
        }

        static bool IsNumber(JsonNode? x) => x is JsonValue v && v.GetValueKind() == System.Text.Json.JsonValueKind.Number;

        (InMemoryParamGroups, ILRScheduler) Create(Schedule s)
        {
            var g = new InMemoryParamGroups(_lrs, SgdMomentum);
            return (g, LRSchedulers.Create(s, g));
        }

        void StepOnce(ILRScheduler s, int i)
        {
            if (s.Schedule.IsMetricDriven) s.Step((double)_metrics![i]!);
            else s.Step();
        }

        string? Compare(int row, InMemoryParamGroups g, ILRScheduler s, bool checkLast = true)
        {
            if (Diff("lr", row, _trace, g.Lrs) is { } a) return a;
            if (checkLast && Diff("last_lr", row, _lastLr, s.GetLastLr()) is { } b) return b;
            if (Diff("momentum", row, _momentum, g.Momenta!) is { } m) return m;
            return null;
        }

        string? Diff(string what, int row, JsonArray? expected, IReadOnlyList<double> ours)
        {
            if (expected is null || row >= expected.Count || expected[row] is not JsonArray exp) return null;
            for (int i = 0; i < exp.Count; i++)
            {
                double want = (double)exp[i]!, got = ours[i];
                if (!Close(got, want, rtol))
                    return $"{what} at step {row}, group {i}: ours {got:R}, PyTorch {want:R} (relative difference {RelDiff(got, want):E2})";
            }
            return null;
        }
    }

    public static bool Close(double a, double b, double rtol) => a == b || Math.Abs(a - b) <= rtol * Math.Max(Math.Abs(a), Math.Abs(b));
    static double RelDiff(double a, double b) => Math.Abs(a - b) / Math.Max(Math.Abs(a), Math.Abs(b));
}
