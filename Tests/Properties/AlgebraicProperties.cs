using System.Text.Json.Nodes;
using Expecto;
using FsCheck;
using FsCheck.Fluent;
using Microsoft.FSharp.Core;
using Schedules.Core;
using Schedules.Torch;
using Tests.Harness;

namespace Tests.Properties;

/// <summary>
/// Laws of the library that need no oracle: resume is invisible, JSON round-trips, every refusal names its reason and
/// place, and a state never loads into another schedule. FsCheck with a fixed seed (LR_PROPERTY_SEED overrides it).
/// </summary>
public static class AlgebraicProperties
{
    public const ulong DefaultSeed = 20_261_128;
    static ulong Seed => ulong.TryParse(Environment.GetEnvironmentVariable("LR_PROPERTY_SEED"), out var s) ? s : DefaultSeed;

    /// <summary>FsCheck's configuration: fixed seed, throws with the counterexample on failure.</summary>
    static Config Config(int tests, string name)
    {
        Say.Line($"properties: {name}: seed {Seed} (LR_PROPERTY_SEED), {tests} tests");
        return FsCheck.Config.QuickThrowOnFailure
            .WithMaxTest(tests)
            .WithQuietOnSuccess(true)
            .WithName(name)
            .WithReplay(FSharpOption<Replay>.Some(new Replay(new Rnd(Seed), FSharpOption<int>.None)));
    }

    static void Check<T>(string name, int tests, Gen<T> gen, Action<T> property) =>
        FsCheck.Check.One(Config(tests, name), Prop.ForAll(Arb.From(gen), property));

    [Tests]
    public static Test All => Spec.List("properties",
        Spec.Case("resume at a random step equals the uninterrupted run bit for bit", ResumeIsInvisible),
        Spec.Case("resume of ReduceLROnPlateau with random metrics equals the uninterrupted run", PlateauResumeIsInvisible),
        Spec.Case("JSON round trip is the identity and keeps the trace", JsonRoundTrip),
        Spec.Case("every refused value names its parameter and JSON path", RefusalsNameTheirReason),
        Spec.Case("a configuration with several problems lists all of them", AllProblemsListed),
        Spec.Case("per-group lists of the wrong length are refused when bound", WrongListLengths),
        Spec.Case("a state does not load into a different schedule", StateMismatchRefused));

    // ================================================================== (a) resume

    /// <summary>A random valid case and where to cut it (0..steps, as a fraction).</summary>
    static Gen<(JsonObject Case, int Cut)> Resumable(bool plateau) =>
        from c in CaseGen.Case(GenOptions.ValidOnly, longFraction: 0.02)
            .Where(c => ((string?)c["scheduler"]!["type"] == "ReduceLROnPlateau") == plateau)
        from cut in Gen.Choose(0, 1000)
        select (CaseGen.Reparsed(c), cut);

    static Gen<(JsonObject Case, int Cut)> PlateauCases =>
        from groups in Gen.Elements(1, 2, 3)
        from lrs in Gen.ListOf(CaseGen.Real(1e-4, 1.0, 6), groups)
        from steps in Gen.Choose(1, 150)
        from spec in CaseGen.Plateau(groups, GenOptions.ValidOnly)
        from metrics in CaseGen.Metrics(steps)
        from cut in Gen.Choose(0, 1000)
        select (CaseGen.Reparsed(new JsonObject
        {
            ["id"] = "plateau",
            ["lrs"] = new JsonArray(lrs.Select(x => (JsonNode)JsonValue.Create(x)).ToArray()),
            ["steps"] = steps,
            ["scheduler"] = spec,
            ["metrics"] = new JsonArray(metrics.Select(x => (JsonNode)JsonValue.Create(x)).ToArray()),
        }), cut);

    static int _refusedForResume, _resumeRuns;

    static void ResumeIsInvisible()
    {
        _refusedForResume = _resumeRuns = 0;
        Check("resume", 300, Resumable(plateau: false), x => ResumeLaw(x.Case, x.Cut));
        if (_refusedForResume * 5 > _resumeRuns)
            throw new Exception($"{_refusedForResume} of {_resumeRuns} valid-grammar cases were refused: the property tested too little");
    }

    static void PlateauResumeIsInvisible() => Check("plateau resume", 200, PlateauCases, x => ResumeLaw(x.Case, x.Cut));

    /// <summary>Every group's lr, last_lr and momentum after a step, or the failure where the step threw.</summary>
    sealed record Row(double[] Lrs, double[] Last, double[]? Momenta, string? Error);

    static Row Snapshot(InMemoryParamGroups g, ILRScheduler s) => new(g.Lrs.ToArray(), s.GetLastLr().ToArray(), g.Momenta?.ToArray(), null);

    static void StepOnce(ILRScheduler s, JsonObject c, int i)
    {
        if (s.Schedule.IsMetricDriven) s.Step((double)c["metrics"]![i]!);
        else s.Step();
    }

    static double[] Lrs(JsonObject c) => c["lrs"]!.AsArray().Select(x => (double)x!).ToArray();

    static void ResumeLaw(JsonObject c, int cut)
    {
        Interlocked.Increment(ref _resumeRuns);
        Schedule schedule;
        InMemoryParamGroups g1;
        ILRScheduler s1;
        try
        {
            schedule = ScheduleJson.Parse(c["scheduler"]);
            g1 = new InMemoryParamGroups(Lrs(c), 0.9);
            s1 = LRSchedulers.Create(schedule, g1);
        }
        catch (InvalidScheduleException) { Interlocked.Increment(ref _refusedForResume); return; }

        int steps = (int)c["steps"]!;
        int k = (int)((long)steps * cut / 1000);
        var rows = new List<Row> { Snapshot(g1, s1) };
        string? state = null;
        for (int i = 0; i < steps; i++)
        {
            if (i == k) state = s1.StateDict().ToJson();
            try { StepOnce(s1, c, i); }
            catch (ScheduleStepException e) { rows.Add(new Row([], [], null, e.GetType().Name)); break; }
            rows.Add(Snapshot(g1, s1));
        }
        if (k == steps && rows[^1].Error is null) state = s1.StateDict().ToJson();
        if (state is null) return; // the run failed before the cut: nothing to resume

        var g2 = new InMemoryParamGroups(Lrs(c), 0.9);
        var s2 = LRSchedulers.Create(ScheduleJson.Parse(c["scheduler"]), g2);
        s2.LoadStateDict(SchedulerState.FromJson(state));
        Same(rows[k], Snapshot(g2, s2), k, c, state);
        for (int i = k; i < rows.Count - 1; i++)
        {
            Row got;
            try { StepOnce(s2, c, i); got = Snapshot(g2, s2); }
            catch (ScheduleStepException e) { got = new Row([], [], null, e.GetType().Name); }
            Same(rows[i + 1], got, i + 1, c, state);
            if (got.Error is not null) break;
        }
    }

    static void Same(Row want, Row got, int step, JsonObject c, string state)
    {
        static bool Bits(double[]? a, double[]? b) =>
            a is null ? b is null : b is not null && a.Length == b.Length &&
                                    Enumerable.Range(0, a.Length).All(i => BitConverter.DoubleToInt64Bits(a[i]) == BitConverter.DoubleToInt64Bits(b[i]));
        string? what =
            want.Error != got.Error ? $"uninterrupted {want.Error ?? "stepped"}, resumed {got.Error ?? "stepped"}" :
            !Bits(want.Lrs, got.Lrs) ? $"lr {Show(want.Lrs)} vs resumed {Show(got.Lrs)}" :
            !Bits(want.Last, got.Last) ? $"last_lr {Show(want.Last)} vs resumed {Show(got.Last)}" :
            !Bits(want.Momenta, got.Momenta) ? $"momentum {Show(want.Momenta)} vs resumed {Show(got.Momenta)}" : null;
        if (what is not null)
            throw new Exception($"resumed run differs at step {step}: {what}\n  case: {c.ToJsonString()}\n  state: {state}");
    }

    static string Show(double[]? xs) => xs is null ? "none" : "[" + string.Join(", ", xs.Select(x => x.ToString("R"))) + "]";

    // ================================================================== (b) JSON

    /// <summary>Runs a schedule the way a trainer does and returns every row (bit patterns compare exactly).</summary>
    static List<Row> Drive(Schedule s, JsonObject c)
    {
        var g = new InMemoryParamGroups(Lrs(c), 0.9);
        var sched = LRSchedulers.Create(s, g);
        var rows = new List<Row> { Snapshot(g, sched) };
        for (int i = 0; i < (int)c["steps"]!; i++)
        {
            try { StepOnce(sched, c, i); }
            catch (ScheduleStepException e) { rows.Add(new Row([], [], null, e.GetType().Name)); break; }
            rows.Add(Snapshot(g, sched));
        }
        return rows;
    }

    static void JsonRoundTrip()
    {
        var gen = Gen.Frequency(
            (9, CaseGen.Case(GenOptions.ValidOnly, longFraction: 0.01)),
            (1, PlateauCases.Select(x => x.Case))).Select(CaseGen.Reparsed);
        int refused = 0, total = 0;
        Check("json round trip", 300, gen, c =>
        {
            total++;
            Schedule s;
            try { s = ScheduleJson.Parse(c["scheduler"]); }
            catch (InvalidScheduleException) { refused++; return; }
            string j = s.ToJson();
            var back = ScheduleJson.Parse(j); // from text
            if (back.ToJson() != j)
                throw new Exception($"Parse(s.ToJson()).ToJson() != s.ToJson()\n  first:  {j}\n  second: {back.ToJson()}\n  given:  {c["scheduler"]!.ToJsonString()}");
            List<Row> a, b;
            try { a = Drive(s, c); b = Drive(back, c); }
            catch (InvalidScheduleException) { return; } // refused when bound (both are, by the identity above)
            for (int i = 0; i < a.Count; i++) Same(a[i], i < b.Count ? b[i] : new Row([], [], null, "missing"), i, c, j);
            if (a.Count != b.Count) throw new Exception($"round-tripped schedule ran {b.Count - 1} steps, the original {a.Count - 1}\n  case: {c.ToJsonString()}");
        });
        if (refused * 5 > total) throw new Exception($"{refused} of {total} valid-grammar schedules were refused");
    }

    // ================================================================== (c) refusals

    /// <summary>One broken node: where its problem must be reported, relative to the node (null = the node's own path), and which parameter.</summary>
    sealed record Bad(JsonNode Node, string Parameter, string? Sub = null, bool TopLevelOnly = false, string Why = "");

    static JsonObject O(string type, params (string K, JsonNode? V)[] fields)
    {
        var o = new JsonObject { ["type"] = type };
        foreach (var (k, v) in fields) o[k] = v;
        return o;
    }

    static JsonNode N(double d) => JsonValue.Create(d);
    static JsonNode N(int i) => JsonValue.Create(i);
    static JsonNode S(string s) => JsonValue.Create(s);
    static JsonArray A(params JsonNode?[] xs) => new(xs);

    static Gen<Bad> BadNodes =>
        from neg in Gen.Choose(-5, 0)
        from big in CaseGen.Real(1.01, 3.0, 3)
        from below in CaseGen.Real(-2.0, -0.01, 3)
        from pick in Gen.Choose(0, 29)
        select pick switch
        {
            0 => new Bad(O("StepLR", ("step_size", N(neg))), "step_size", Why: "step_size <= 0"),
            1 => new Bad(O("StepLR", ("step_size", S("3"))), "step_size", Why: "string for an integer"),
            2 => new Bad(O("StepLR", ("step_size", N(2.5))), "step_size", Why: "fraction for an integer"),
            3 => new Bad(O("StepLR", ("gamma", N(0.5))), "step_size", Why: "required field missing"),
            4 => new Bad(O("StepLR", ("step_size", N(3)), ("gamma", JsonValue.Create(true))), "gamma", Why: "bool for a number"),
            5 => new Bad(O("ConstantLR", ("factor", N(big))), "factor", Why: "factor > 1"),
            6 => new Bad(O("ConstantLR", ("factor", N(below))), "factor", Why: "factor < 0"),
            7 => new Bad(O("ConstantLR", ("factor", N(0.5)), ("total_iters", N(neg - 1))), "total_iters", Why: "negative total_iters"),
            8 => new Bad(O("LinearLR", ("start_factor", N(neg == 0 ? 0.0 : below))), "start_factor", Why: "start_factor <= 0"),
            9 => new Bad(O("LinearLR", ("start_factor", N(big))), "start_factor", Why: "start_factor > 1"),
            10 => new Bad(O("LinearLR", ("end_factor", N(big))), "end_factor", Why: "end_factor > 1"),
            11 => new Bad(O("CosineAnnealingLR", ("T_max", N(neg))), "T_max", Why: "T_max <= 0"),
            12 => new Bad(O("CosineAnnealingWarmRestarts", ("T_0", N(neg))), "T_0", Why: "T_0 <= 0"),
            13 => new Bad(O("CosineAnnealingWarmRestarts", ("T_0", N(5)), ("T_mult", N(neg))), "T_mult", Why: "T_mult < 1"),
            14 => new Bad(O("OneCycleLR", ("max_lr", N(0.1)), ("total_steps", N(neg))), "total_steps", Why: "total_steps <= 0"),
            15 => new Bad(O("OneCycleLR", ("max_lr", N(0.1)), ("total_steps", N(10)), ("pct_start", N(big))), "pct_start", Why: "pct_start > 1"),
            16 => new Bad(O("CyclicLR", ("base_lr", N(0.001)), ("max_lr", N(0.01)), ("mode", S("sideways"))), "mode", Why: "unknown mode"),
            17 => new Bad(O("CyclicLR", ("base_lr", N(0.001)), ("max_lr", N(0.01)), ("step_size_up", N(neg - 1))), "step_size_up", Why: "negative step_size_up"),
            18 => new Bad(O("MultiStepLR", ("milestones", N(5))), "milestones", Why: "number for a list"),
            19 => new Bad(O("MultiStepLR", ("milestones", A(N(2), S("x")))), "milestones", Why: "string in an integer list"),
            20 => new Bad(O("WarmupLR", ("warmup", N(5))), "type", Why: "unknown type"),
            21 => new Bad(O("ExponentialLR", ("gamma", N(0.9)), ("gama", N(0.5))), "gama", Why: "unknown field"),
            22 => new Bad(O("LambdaLR", ("lr_lambda", new JsonObject { ["fn"] = "step", ["gamma"] = 0.5, ["every"] = neg })), "every", ".lr_lambda", Why: "lambda every <= 0"),
            23 => new Bad(O("LambdaLR", ("lr_lambda", new JsonObject { ["fn"] = "nope" })), "fn", ".lr_lambda", Why: "unknown lambda"),
            24 => new Bad(O("MultiplicativeLR", ("lr_lambda", A(new JsonObject { ["fn"] = "const", ["c"] = 0.9 }, new JsonObject { ["fn"] = "inverse_sqrt", ["warmup"] = neg }))), "warmup", ".lr_lambda[1]", Why: "lambda warmup <= 0 in a per-group list"),
            25 => new Bad(O("LambdaLR", ("lr_lambda", A())), "lr_lambda", Why: "empty per-group list"),
            26 => new Bad(O("SequentialLR", ("schedulers", A(O("ExponentialLR", ("gamma", N(0.9))), O("StepLR", ("step_size", N(2))))), ("milestones", A(N(3), N(6)))), "milestones", Why: "milestones of the wrong length"),
            27 => new Bad(O("ChainedScheduler", ("schedulers", A())), "schedulers", Why: "no children"),
            28 => new Bad(N(42), "scheduler", Why: "not an object"),
            _ => new Bad(O("ReduceLROnPlateau", ("factor", N(1.0 + big - 1.01))), "factor", TopLevelOnly: true, Why: "plateau factor >= 1"),
        };

    static readonly JsonObject[] GoodLeaves =
    [
        O("StepLR", ("step_size", N(3))),
        O("ExponentialLR", ("gamma", N(0.95))),
        O("LinearLR", ("start_factor", N(0.5)), ("total_iters", N(4))),
        O("CosineAnnealingLR", ("T_max", N(10))),
    ];

    /// <summary>
    /// Puts broken nodes into a tree (top level, a ChainedScheduler child, or one level deeper) beside good ones, and
    /// returns the tree with the (path, parameter) each problem must be reported at.
    /// </summary>
    static Gen<(JsonNode Tree, List<(string Path, string Param, string Why)> Expected)> BrokenTree(int minBad, int maxBad) =>
        from n in Gen.Choose(minBad, maxBad)
        from bads in Gen.ListOf(BadNodes, n)
        from nest in Gen.Choose(0, 2)
        from goodPick in Gen.ListOf(Gen.Choose(0, GoodLeaves.Length - 1), 3)
        select Place(bads.ToList(), nest, goodPick.ToList());

    static (JsonNode, List<(string, string, string)>) Place(List<Bad> bads, int nest, List<int> goods)
    {
        var expected = new List<(string, string, string)>();
        if (bads.Count == 1 && nest == 0)
        {
            var b = bads[0];
            expected.Add(("$" + (b.Sub ?? ""), b.Parameter, b.Why));
            return (b.Node.DeepClone(), expected);
        }
        // ChainedScheduler([good, inner?, bad...]) where inner = ChainedScheduler([good, bad...]) takes every other bad node.
        var top = new JsonArray { GoodLeaves[goods[0]].DeepClone() };
        JsonArray? inner = null;
        if (nest == 2)
        {
            inner = new JsonArray { GoodLeaves[goods[1]].DeepClone() };
            top.Add(O("ChainedScheduler", ("schedulers", inner)));
        }
        for (int i = 0; i < bads.Count; i++)
        {
            var b = bads[i];
            bool deep = inner is not null && i % 2 == 1;
            var arr = deep ? inner! : top;
            string parentPath = deep ? "$.schedulers[1]" : "$";
            int idx = arr.Count;
            if (b.TopLevelOnly)
            {
                // ReduceLROnPlateau as a child is refused by its parent, at the parent's path, naming the child.
                expected.Add((parentPath, $"schedulers[{idx}]", "ReduceLROnPlateau inside a composite"));
                arr.Add(O("ReduceLROnPlateau", ("factor", N(0.5))));
                continue;
            }
            expected.Add(($"{parentPath}.schedulers[{idx}]" + (b.Sub ?? ""), b.Parameter, b.Why));
            arr.Add(b.Node.DeepClone());
        }
        inner?.Add(GoodLeaves[goods[2]].DeepClone());
        return (O("ChainedScheduler", ("schedulers", top)), expected);
    }

    static void CheckRefusal(JsonNode tree, List<(string Path, string Param, string Why)> expected)
    {
        string text = tree.ToJsonString();
        InvalidScheduleException e;
        try { ScheduleJson.Parse(text); throw new Exception($"accepted an invalid configuration: {text}\n  expected problems: {Describe(expected)}"); }
        catch (InvalidScheduleException x) { e = x; }
        var missing = expected.Where(x => !e.Problems.Any(p => p.Path == x.Path && p.Parameter == x.Param)).ToList();
        if (missing.Count > 0)
            throw new Exception($"refusal does not name {Describe(missing)}\n  config: {text}\n  problems: {string.Join(" | ", e.Problems)}");
        // A problem must sit at a broken node (or inside it). The library also repeats an lr_lambda problem at the owning
        // scheduler's path (LambdaLR re-validates its functions): tolerated as the same parameter one level up.
        var stray = e.Problems.Where(p => !expected.Any(x =>
            p.Path == x.Path || p.Path.StartsWith(x.Path + ".") ||
            (p.Parameter == x.Param && x.Path.StartsWith(p.Path + ".lr_lambda")))).ToList();
        if (stray.Count > 0)
            throw new Exception($"refusal reports problems where nothing is wrong: {string.Join(" | ", stray)}\n  config: {text}\n  expected: {Describe(expected)}");
        foreach (var x in expected)
            if (!e.Message.Contains(x.Path) || !e.Message.Contains(x.Param))
                throw new Exception($"the message does not show {x.Path} {x.Param}: {e.Message}");
    }

    static string Describe(IEnumerable<(string Path, string Param, string Why)> xs) =>
        string.Join(", ", xs.Select(x => $"{x.Path} {x.Param} ({x.Why})"));

    static void RefusalsNameTheirReason() =>
        Check("refusals", 400, BrokenTree(1, 1), x => CheckRefusal(x.Tree, x.Expected));

    static void AllProblemsListed() =>
        Check("several problems", 300, BrokenTree(2, 4), x => CheckRefusal(x.Tree, x.Expected));

    /// <summary>A per-group list whose length is not the group count parses (the count is the optimizer's) and is refused when bound.</summary>
    static void WrongListLengths()
    {
        var gen =
            from groups in Gen.Choose(1, 3)
            from listLen in Gen.Choose(1, 4).Where(n => n != groups)
            from kind in Gen.Choose(0, 4)
            from nested in Gen.Elements(false, true)
            let list = new JsonArray(Enumerable.Range(0, listLen).Select(i => (JsonNode)JsonValue.Create(0.01 * (i + 1))).ToArray())
            let lambdas = new JsonArray(Enumerable.Range(0, listLen).Select(_ => (JsonNode)new JsonObject { ["fn"] = "const", ["c"] = 0.5 }).ToArray())
            let node = kind switch
            {
                0 => O("LambdaLR", ("lr_lambda", lambdas)),
                1 => O("MultiplicativeLR", ("lr_lambda", lambdas)),
                2 => O("CyclicLR", ("base_lr", list), ("max_lr", N(0.5))),
                3 => O("OneCycleLR", ("max_lr", list), ("total_steps", N(10))),
                _ => O("ReduceLROnPlateau", ("min_lr", list)),
            }
            let param = kind switch { 0 or 1 => "lr_lambda", 2 => "base_lr", 3 => "max_lr", _ => "min_lr" }
            let wrap = nested && kind != 4
            select (Tree: wrap ? O("ChainedScheduler", ("schedulers", A(O("ExponentialLR", ("gamma", N(0.9))), node))) : node,
                    Path: wrap ? "$.schedulers[1]" : "$", Param: param, Groups: groups);
        Check("list lengths", 200, gen, x =>
        {
            var s = ScheduleJson.Parse(x.Tree.ToJsonString());
            try
            {
                LRSchedulers.Create(s, new InMemoryParamGroups(Enumerable.Repeat(0.1, x.Groups).ToArray(), 0.9));
                throw new Exception($"bound a per-group list of the wrong length to {x.Groups} groups: {x.Tree.ToJsonString()}");
            }
            catch (InvalidScheduleException e)
            {
                if (!e.Problems.Any(p => p.Path == x.Path && p.Parameter == x.Param))
                    throw new Exception($"refusal does not name {x.Path} {x.Param}: {string.Join(" | ", e.Problems)}\n  config: {x.Tree.ToJsonString()}");
            }
        });
    }

    // ================================================================== (d) state into another schedule

    static void StateMismatchRefused()
    {
        var valid = CaseGen.Case(GenOptions.ValidOnly, longFraction: 0).Select(CaseGen.Reparsed);
        var gen = from a in valid from b in valid from steps in Gen.Choose(0, 20) from extraGroup in Gen.Elements(false, true)
                  select (A: a, B: b, Steps: steps, ExtraGroup: extraGroup);
        int checkedCount = 0;
        Check("state mismatch", 200, gen, x =>
        {
            Schedule sa, sb;
            ILRScheduler ra;
            try
            {
                sa = ScheduleJson.Parse(x.A["scheduler"]);
                sb = ScheduleJson.Parse(x.B["scheduler"]);
                ra = LRSchedulers.Create(sa, new InMemoryParamGroups(Lrs(x.A), 0.9));
            }
            catch (InvalidScheduleException) { return; }
            for (int i = 0; i < Math.Min(x.Steps, (int)x.A["steps"]!); i++)
            {
                try { StepOnce(ra, x.A, i); } catch (ScheduleStepException) { break; }
            }
            string state = ra.StateDict().ToJson();

            // Into a different schedule (same groups): refused.
            if (sa.ToJson() != sb.ToJson())
            {
                ILRScheduler rb;
                try { rb = LRSchedulers.Create(sb, new InMemoryParamGroups(Lrs(x.A), 0.9)); }
                catch (InvalidScheduleException) { rb = null!; }
                if (rb is not null)
                {
                    checkedCount++;
                    ExpectRefused(() => rb.LoadStateDict(SchedulerState.FromJson(state)), "a different schedule", sa, sb, state);
                }
            }
            // Into the same schedule on another number of groups: refused.
            var lrs = Lrs(x.A).ToList();
            if (x.ExtraGroup) lrs.Add(0.05); else if (lrs.Count > 1) lrs.RemoveAt(lrs.Count - 1); else return;
            ILRScheduler rc;
            try { rc = LRSchedulers.Create(sa, new InMemoryParamGroups(lrs, 0.9)); }
            catch (InvalidScheduleException) { return; } // a per-group list that does not fit the new count
            ExpectRefused(() => rc.LoadStateDict(SchedulerState.FromJson(state)), $"{lrs.Count} param groups", sa, sa, state);
        });
        if (checkedCount < 100) throw new Exception($"only {checkedCount} different-schedule loads were tried");
    }

    static void ExpectRefused(Action load, string what, Schedule from, Schedule into, string state)
    {
        try { load(); }
        catch (SchedulerStateException) { return; }
        catch (Exception e) { throw new Exception($"loading a state into {what} threw {e.GetType().Name} instead of SchedulerStateException: {e.Message}\n  saved by: {from.ToJson()}\n  into: {into.ToJson()}"); }
        throw new Exception($"a state was loaded into {what}\n  saved by: {from.ToJson()}\n  into: {into.ToJson()}\n  state: {state}");
    }
}
