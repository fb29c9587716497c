using System.Text.Json;
using System.Text.Json.Nodes;
using Schedules.Core;

namespace Schedules.Torch;

/// <summary>ReduceLROnPlateau's part of a scheduler state: its counters and the rates they produced.</summary>
public sealed record PlateauState(PlateauCounters Counters, IReadOnlyList<double> Lrs);

/// <summary>Loading a scheduler state failed: wrong format or version, or a state made for another schedule or optimizer.</summary>
public sealed class SchedulerStateException(string message) : InvalidOperationException(message);

/// <summary>
/// A scheduler's checkpoint: the schedule's description (so loading into a different schedule is refused), the number of
/// steps taken and the base rates; from these the run is rebuilt exactly. ReduceLROnPlateau adds its counters and rates.
/// </summary>
public sealed record SchedulerState(
    string Schedule,
    HyperParameter Target,
    int LastEpoch,
    IReadOnlyList<double> BaseLrs,
    IReadOnlyList<double>? BaseMomenta,
    PlateauState? Plateau)
{
    public const string Format = "lr-scheduler-state";
    public const int Version = 1;

    public string ToJson(bool indented = false)
    {
        var o = new JsonObject
        {
            ["format"] = Format,
            ["version"] = Version,
            ["schedule"] = JsonNode.Parse(Schedule),
            ["target"] = Target == HyperParameter.Momentum ? "momentum" : "lr",
            ["last_epoch"] = LastEpoch,
            ["base_lrs"] = Numbers(BaseLrs),
        };
        if (BaseMomenta is not null) o["base_momenta"] = Numbers(BaseMomenta);
        if (Plateau is { } p)
            o["plateau"] = new JsonObject
            {
                ["last_epoch"] = p.Counters.LastEpoch,
                ["best"] = Num(p.Counters.Best),
                ["num_bad_epochs"] = p.Counters.NumBadEpochs,
                ["cooldown_counter"] = p.Counters.CooldownCounter,
                ["lrs"] = Numbers(p.Lrs),
            };
        return o.ToJsonString(new JsonSerializerOptions { WriteIndented = indented });
    }

    public static SchedulerState FromJson(string json)
    {
        JsonObject o;
        // A key given twice is refused here (JsonException) rather than by an ArgumentException when it is read.
        try { o = JsonNode.Parse(json, documentOptions: new JsonDocumentOptions { AllowDuplicateProperties = false }) as JsonObject ?? throw new SchedulerStateException("a scheduler state must be a JSON object"); }
        catch (JsonException e) { throw new SchedulerStateException("the scheduler state is not valid JSON: " + e.Message); }
        try
        {
            if ((string?)o["format"] != Format) throw new SchedulerStateException($"not a scheduler state (format is {o["format"]?.ToJsonString() ?? "missing"}, expected \"{Format}\")");
            int version = (int?)o["version"] ?? throw new SchedulerStateException("the scheduler state has no version");
            if (version != Version) throw new SchedulerStateException($"scheduler state version {version} is not supported (this build reads version {Version})");
            var schedule = o["schedule"] as JsonObject ?? throw new SchedulerStateException("the scheduler state has no schedule description");
            // Canonical form: parse and write back, so the comparison with the live schedule is exact.
            string description;
            try { description = ScheduleJson.Parse(schedule).ToJson(); }
            catch (NotSupportedException) { description = schedule.ToJsonString(); }
            catch (InvalidScheduleException) { description = schedule.ToJsonString(); }
            var target = (string?)o["target"] switch
            {
                "lr" or null => HyperParameter.LearningRate,
                "momentum" => HyperParameter.Momentum,
                var t => throw new SchedulerStateException($"unknown target \"{t}\""),
            };
            int lastEpoch = (int?)o["last_epoch"] ?? throw new SchedulerStateException("the scheduler state has no last_epoch");
            var baseLrs = ReadNumbers(o["base_lrs"], "base_lrs") ?? throw new SchedulerStateException("the scheduler state has no base_lrs");
            var momenta = ReadNumbers(o["base_momenta"], "base_momenta");
            PlateauState? plateau = null;
            if (o["plateau"] is JsonObject p)
                plateau = new PlateauState(
                    new PlateauCounters((int)p["last_epoch"]!, ReadNum(p["best"], "plateau.best"), (int)p["num_bad_epochs"]!, (int)p["cooldown_counter"]!),
                    ReadNumbers(p["lrs"], "plateau.lrs") ?? throw new SchedulerStateException("the plateau state has no lrs"));
            return new SchedulerState(description, target, lastEpoch, baseLrs, momenta, plateau);
        }
        catch (Exception e) when (e is InvalidOperationException or FormatException or NullReferenceException && e is not SchedulerStateException)
        {
            throw new SchedulerStateException("the scheduler state is malformed: " + e.Message);
        }
    }

    static JsonArray Numbers(IEnumerable<double> xs) => new(xs.Select(Num).ToArray());
    static JsonNode Num(double d) => double.IsFinite(d) ? JsonValue.Create(d) : JsonValue.Create(double.IsNaN(d) ? "nan" : d > 0 ? "inf" : "-inf");

    static double ReadNum(JsonNode? n, string what) => n switch
    {
        JsonValue v when v.TryGetValue<double>(out var d) => d,
        JsonValue v when v.TryGetValue<string>(out var s) && s is "inf" or "-inf" or "nan" =>
            s == "inf" ? double.PositiveInfinity : s == "-inf" ? double.NegativeInfinity : double.NaN,
        _ => throw new SchedulerStateException($"{what} must be a number"),
    };

    static double[]? ReadNumbers(JsonNode? n, string what) => n switch
    {
        null => null,
        JsonArray a => a.Select((x, i) => ReadNum(x, $"{what}[{i}]")).ToArray(),
        _ => throw new SchedulerStateException($"{what} must be a list of numbers"),
    };
}
