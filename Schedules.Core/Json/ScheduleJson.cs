using System.Text.Json;
using System.Text.Json.Nodes;

namespace Schedules.Core;

/// <summary>
/// The library's text format, the golden corpus's grammar: <c>{"type": PyTorch class name, ...its keyword arguments}</c>,
/// with SequentialLR/ChainedScheduler nesting children under "schedulers" and lr_lambda given as function descriptions.
/// Parsing reports every problem with its JSON path; writing spells out every argument, so Parse(Write(s)) == s.
/// </summary>
public static class ScheduleJson
{
    public static readonly IReadOnlyList<string> TypeNames =
    [
        "StepLR", "MultiStepLR", "ConstantLR", "LinearLR", "ExponentialLR", "PolynomialLR", "CosineAnnealingLR",
        "CosineAnnealingWarmRestarts", "CyclicLR", "OneCycleLR", "LambdaLR", "MultiplicativeLR", "ReduceLROnPlateau",
        "SequentialLR", "ChainedScheduler",
    ];

    public static readonly IReadOnlyList<string> LambdaFns =
        ["const", "pow", "step", "warmup_linear", "warmup_cosine", "inverse_sqrt", "one_minus_sqrt", "cosine_decay", "cosine_warmup"];

    /// <summary>Parses a schedule, or throws <see cref="ScheduleFormatException"/> listing every problem.</summary>
    public static Schedule Parse(string json) => OrThrow(TryParse(json, out var problems), problems);

    /// <summary>Parses a schedule from an already parsed JSON value.</summary>
    public static Schedule Parse(JsonNode? node) => OrThrow(TryParse(node, out var problems), problems);

    static Schedule OrThrow(Schedule? s, IReadOnlyList<ScheduleProblem> problems) =>
        s ?? throw new ScheduleFormatException(problems);

    /// <summary>The schedule, or null and every problem found (each with its JSON path); never both.</summary>
    public static Schedule? TryParse(string json, out IReadOnlyList<ScheduleProblem> problems)
    {
        JsonNode? node;
        try { node = JsonNode.Parse(json, documentOptions: new JsonDocumentOptions { AllowTrailingCommas = false }); }
        catch (JsonException e)
        {
            problems = [new ScheduleProblem("$", "json", Short(json), "not valid JSON: " + e.Message)];
            return null;
        }
        return TryParse(node, out problems);
    }

    /// <inheritdoc cref="TryParse(string, out IReadOnlyList{ScheduleProblem})"/>
    public static Schedule? TryParse(JsonNode? node, out IReadOnlyList<ScheduleProblem> problems)
    {
        // A parsed JsonObject keeps a key given twice until it is read, then throws ArgumentException: refuse it first.
        var duplicates = node is null ? [] : DuplicateKeys(node.ToJsonString());
        if (duplicates.Count > 0) { problems = duplicates; return null; }
        var found = new List<ScheduleProblem>();
        var s = new Reader(found).Node(node, "$");
        if (s is null && found.Count == 0) found.Add(new ScheduleProblem("$", "json", "null", "not a schedule object"));
        problems = found;
        return found.Count == 0 ? s : null;
    }

    /// <summary>Every key given twice in one object, at that object's JSON path ($, $.schedulers[1], $.lr_lambda[0], ...).</summary>
    static List<ScheduleProblem> DuplicateKeys(string json)
    {
        var found = new List<ScheduleProblem>();
        var reader = new Utf8JsonReader(System.Text.Encoding.UTF8.GetBytes(json));
        var open = new Stack<Container>();
        string ChildPath() => open.Count == 0 ? "$" : open.Peek().Keys is null ? $"{open.Peek().Path}[{open.Peek().Index}]" : $"{open.Peek().Path}.{open.Peek().Key}";
        void ValueDone() { if (open.Count > 0 && open.Peek().Keys is null) open.Peek().Index++; }
        while (reader.Read())
        {
            switch (reader.TokenType)
            {
                case JsonTokenType.StartObject: open.Push(new Container(ChildPath(), [])); break;
                case JsonTokenType.StartArray: open.Push(new Container(ChildPath(), null)); break;
                case JsonTokenType.EndObject or JsonTokenType.EndArray: open.Pop(); ValueDone(); break;
                case JsonTokenType.PropertyName:
                    var top = open.Peek();
                    top.Key = reader.GetString()!;
                    if (!top.Keys!.Add(top.Key))
                        found.Add(new ScheduleProblem(top.Path, top.Key, "(repeated)", "given more than once in this object (JSON readers disagree on which value wins)"));
                    break;
                default: ValueDone(); break;
            }
        }
        return found;
    }

    /// <summary>An object (with the keys seen so far) or an array (with the index of its next element) being read.</summary>
    sealed class Container(string path, System.Collections.Generic.HashSet<string>? keys)
    {
        public string Path { get; } = path;
        public System.Collections.Generic.HashSet<string>? Keys { get; } = keys;
        public string Key { get; set; } = "";
        public int Index { get; set; }
    }

    static string Short(string s) => s.Length <= 40 ? s : s[..40] + "...";

    /// <summary>Reads one configuration tree, collecting problems instead of stopping at the first.</summary>
    sealed class Reader(List<ScheduleProblem> problems)
    {
        public void Add(ScheduleProblem p) => problems.Add(p);

        void Problem(string path, string param, object? value, string rule) =>
            problems.Add(new ScheduleProblem(path, param, ProblemList.Show(value), rule));

        public Schedule? Node(JsonNode? node, string path)
        {
            if (node is not JsonObject o)
            {
                Problem(path, "scheduler", Describe(node), "must be an object with a \"type\"");
                return null;
            }
            var f = new Fields(o, path, this);
            var type = f.Str("type", null, required: true);
            if (type is null) return null;
            if (!TypeNames.Contains(type))
            {
                Problem(path, "type", type, "unknown scheduler type; known: " + string.Join(", ", TypeNames));
                return null;
            }
            Schedule? result = type switch
            {
                "StepLR" => f.Build(() => new StepLR(f.Int("step_size", null, required: true)!.Value, f.Dbl("gamma", TorchDefaults.StepGamma)!.Value)),
                "MultiStepLR" => f.Build(() => new MultiStepLR(f.IntList("milestones", required: true)!, f.Dbl("gamma", TorchDefaults.StepGamma)!.Value)),
                "ConstantLR" => f.Build(() => new ConstantLR(f.Dbl("factor", 1.0 / 3)!.Value, f.Int("total_iters", 5)!.Value)),
                "LinearLR" => f.Build(() => new LinearLR(f.Dbl("start_factor", 1.0 / 3)!.Value, f.Dbl("end_factor", 1.0)!.Value, f.Int("total_iters", 5)!.Value)),
                "ExponentialLR" => f.Build(() => new ExponentialLR(f.Dbl("gamma", null, required: true)!.Value)),
                "PolynomialLR" => f.Build(() => new PolynomialLR(f.Int("total_iters", 5)!.Value, f.Dbl("power", 1.0)!.Value)),
                "CosineAnnealingLR" => f.Build(() => new CosineAnnealingLR(f.Int("T_max", null, required: true)!.Value, f.Dbl("eta_min", 0.0)!.Value)),
                "CosineAnnealingWarmRestarts" => f.Build(() => new CosineAnnealingWarmRestarts(
                    f.Int("T_0", null, required: true)!.Value, f.Int("T_mult", 1)!.Value, f.Dbl("eta_min", 0.0)!.Value)),
                "CyclicLR" => f.Build(() => new CyclicLR(
                    f.DblGroups("base_lr", null, required: true)!.Value, f.DblGroups("max_lr", null, required: true)!.Value,
                    f.Int("step_size_up", 2000)!.Value, f.Int("step_size_down", null),
                    f.Enum("mode", "triangular", ["triangular", "triangular2", "exp_range"]) switch { "triangular2" => CyclicMode.Triangular2, "exp_range" => CyclicMode.ExpRange, _ => CyclicMode.Triangular },
                    f.Dbl("gamma", TorchDefaults.CyclicGamma)!.Value, f.Bool("cycle_momentum", true),
                    f.DblGroups("base_momentum", 0.8), f.DblGroups("max_momentum", 0.9))),
                "OneCycleLR" => f.Build(() => new OneCycleLR(
                    f.DblGroups("max_lr", null, required: true)!.Value, f.Int("total_steps", null), f.Int("epochs", null), f.Int("steps_per_epoch", null),
                    f.Dbl("pct_start", TorchDefaults.OneCyclePctStart)!.Value,
                    f.Enum("anneal_strategy", "cos", ["cos", "linear"]) == "linear" ? AnnealStrategy.Linear : AnnealStrategy.Cos,
                    f.Bool("cycle_momentum", true), f.DblGroups("base_momentum", 0.85), f.DblGroups("max_momentum", 0.95),
                    f.Dbl("div_factor", TorchDefaults.OneCycleDivFactor)!.Value, f.Dbl("final_div_factor", TorchDefaults.OneCycleFinalDivFactor)!.Value, f.Bool("three_phase", false))),
                "ReduceLROnPlateau" => f.Build(() => new ReduceLROnPlateau(
                    f.Enum("mode", "min", ["min", "max"]) == "max" ? PlateauMode.Max : PlateauMode.Min,
                    f.Dbl("factor", TorchDefaults.PlateauFactor)!.Value, f.Int("patience", TorchDefaults.PlateauPatience)!.Value, f.Dbl("threshold", TorchDefaults.PlateauThreshold)!.Value,
                    f.Enum("threshold_mode", "rel", ["rel", "abs"]) == "abs" ? ThresholdMode.Abs : ThresholdMode.Rel,
                    f.Int("cooldown", TorchDefaults.PlateauCooldown)!.Value, f.DblGroups("min_lr", 0.0), f.Dbl("eps", 1e-8)!.Value)),
                "LambdaLR" => f.Build(() => new LambdaLR(f.Lambdas("lr_lambda"))),
                "MultiplicativeLR" => f.Build(() => new MultiplicativeLR(f.Lambdas("lr_lambda"))),
                "SequentialLR" => Sequential(f, o, path),
                "ChainedScheduler" => Chained(f, o, path),
                _ => null,
            };
            f.RejectUnknown();
            return result;
        }

        List<Schedule?>? Children(Fields f, JsonObject o, string path)
        {
            var arr = f.Raw("schedulers", required: true);
            if (arr is null) return null;
            if (arr is not JsonArray a) { Problem(path, "schedulers", Describe(arr), "must be a list of schedulers"); return null; }
            return a.Select((c, i) => Node(c, $"{path}.schedulers[{i}]")).ToList();
        }

        Schedule? Sequential(Fields f, JsonObject o, string path)
        {
            var kids = Children(f, o, path);
            var ms = f.IntList("milestones", required: true);
            if (kids is null || ms is null) return null;
            var p = SequentialLR.Problems(kids.Select(k => k?.TypeName).ToArray(), ms, new ProblemList(path));
            problems.AddRange(p.Items);
            return p.Any || kids.Any(k => k is null) ? null : new SequentialLR(kids!, ms);
        }

        Schedule? Chained(Fields f, JsonObject o, string path)
        {
            var kids = Children(f, o, path);
            if (kids is null) return null;
            var p = ChainedScheduler.Problems(kids.Select(k => k?.TypeName).ToArray(), new ProblemList(path));
            problems.AddRange(p.Items);
            return p.Any || kids.Any(k => k is null) ? null : new ChainedScheduler(kids!);
        }

        public LrLambda? Lambda(JsonNode? node, string path)
        {
            if (node is not JsonObject o) { Problem(path, "lr_lambda", Describe(node), "must be a function description {\"fn\": ...}"); return null; }
            var f = new Fields(o, path, this);
            var fn = f.Str("fn", null, required: true);
            if (fn is null) return null;
            LrLambda? r = fn switch
            {
                "const" => f.BuildLambda(() => new LrLambda.Const(f.Dbl("c", null, required: true)!.Value)),
                "pow" => f.BuildLambda(() => new LrLambda.Pow(f.Dbl("base", null, required: true)!.Value)),
                "step" => f.BuildLambda(() => new LrLambda.Step(f.Dbl("gamma", null, required: true)!.Value, f.Int("every", null, required: true)!.Value)),
                "warmup_linear" => f.BuildLambda(() => new LrLambda.WarmupLinear(f.Int("warmup", null, required: true)!.Value, f.Int("total", null, required: true)!.Value)),
                "warmup_cosine" => f.BuildLambda(() => new LrLambda.WarmupCosine(f.Int("warmup", null, required: true)!.Value, f.Int("total", null, required: true)!.Value, f.Dbl("cycles", 0.5)!.Value)),
                "inverse_sqrt" => f.BuildLambda(() => new LrLambda.InverseSqrt(f.Int("warmup", null, required: true)!.Value)),
                "one_minus_sqrt" => f.BuildLambda(() => new LrLambda.OneMinusSqrt(f.Int("length", null, required: true)!.Value, f.Dbl("floor", 0.0)!.Value)),
                "cosine_decay" => f.BuildLambda(() => new LrLambda.CosineDecay(f.Int("length", null, required: true)!.Value, f.Dbl("floor", 0.0)!.Value)),
                "cosine_warmup" => f.BuildLambda(() => new LrLambda.CosineWarmup(f.Int("warmup", null, required: true)!.Value, f.Dbl("start", 0.0)!.Value)),
                _ => null,
            };
            if (fn == "custom")
            {
                f.Str("name", null);
                Problem(path, "fn", fn, "a C# function lambda cannot be rebuilt from JSON; use one of: " + string.Join(", ", LambdaFns));
            }
            else if (r is null && LambdaFns.Contains(fn) == false)
                Problem(path, "fn", fn, "unknown lr_lambda function; known: " + string.Join(", ", LambdaFns));
            f.RejectUnknown();
            if (r is null) return null;
            // Report a function's value problems here, at its own path; the owning scheduler then is not built (no repeat).
            var own = r.Problems(path).ToList();
            problems.AddRange(own);
            return own.Count == 0 ? r : null;
        }

        public static ShownValue Describe(JsonNode? n) => new(n switch
        {
            null => "null",
            JsonArray => "a list",
            JsonObject => "an object",
            JsonValue v => v.ToJsonString(),
            _ => n.ToJsonString(),
        });

        /// <summary>Typed access to one object's fields; remembers which were read to reject the rest.</summary>
        public sealed class Fields(JsonObject o, string path, Reader r)
        {
            readonly System.Collections.Generic.HashSet<string> _seen = ["type", "fn"];
            bool _failed;

            public JsonNode? Raw(string name, bool required = false)
            {
                _seen.Add(name);
                if (!o.TryGetPropertyValue(name, out var v)) { if (required) Fail(name, new ShownValue("(missing)"), "is required"); return null; }
                return v;
            }

            void Fail(string name, object? value, string rule) { _failed = true; r.Problem(path, name, value, rule); }

            public string? Str(string name, string? dflt, bool required = false)
            {
                var v = Raw(name, required);
                if (v is null) return dflt;
                if (v is JsonValue jv && jv.TryGetValue<string>(out var s)) return s;
                Fail(name, Describe(v), "must be a string");
                return dflt;
            }

            public string Enum(string name, string dflt, string[] allowed)
            {
                var s = Str(name, dflt)!;
                if (!allowed.Contains(s)) { Fail(name, s, "must be one of " + string.Join(", ", allowed)); return dflt; }
                return s;
            }

            public bool Bool(string name, bool dflt)
            {
                var v = Raw(name);
                if (v is null) return dflt;
                if (v is JsonValue jv && jv.GetValueKind() is JsonValueKind.True or JsonValueKind.False) return jv.GetValue<bool>();
                Fail(name, Describe(v), "must be true or false");
                return dflt;
            }

            static bool IsNumber(JsonNode v) => v is JsonValue jv && jv.GetValueKind() == JsonValueKind.Number;

            // Works for parsed text and for values built in C# (JsonValue.Create(3) holds an int, not a double).
            static double Number(JsonNode v)
            {
                var jv = (JsonValue)v;
                if (jv.TryGetValue<double>(out var d)) return d;
                if (jv.TryGetValue<int>(out var i)) return i;
                if (jv.TryGetValue<long>(out var l)) return l;
                if (jv.TryGetValue<float>(out var f)) return f;
                if (jv.TryGetValue<decimal>(out var m)) return (double)m;
                return double.Parse(jv.ToJsonString(), System.Globalization.CultureInfo.InvariantCulture);
            }

            public double? Dbl(string name, double? dflt, bool required = false)
            {
                var v = Raw(name, required);
                if (v is null) return dflt ?? (required ? 0 : null);
                if (IsNumber(v)) return Number(v);
                Fail(name, Describe(v), "must be a number");
                return dflt ?? 0;
            }

            int? AsInt(JsonNode v, string name)
            {
                if (IsNumber(v))
                {
                    double d = Number(v);
                    if (d == Math.Floor(d) && Math.Abs(d) <= int.MaxValue && !v.ToJsonString().Contains('.') && !v.ToJsonString().Contains('e'))
                        return (int)d;
                }
                Fail(name, Describe(v), "must be an integer");
                return null;
            }

            public int? Int(string name, int? dflt, bool required = false)
            {
                var v = Raw(name, required);
                if (v is null) return dflt ?? (required ? 0 : null);
                return AsInt(v, name) ?? dflt ?? 0;
            }

            public int[]? IntList(string name, bool required = false)
            {
                var v = Raw(name, required);
                if (v is null) return required ? [] : null;
                if (v is not JsonArray a) { Fail(name, Describe(v), "must be a list of integers"); return []; }
                return a.Select(x => x is null ? null : AsInt(x, name)).Select(x => x ?? 0).ToArray();
            }

            public PerGroup<double>? DblGroups(string name, double? dflt, bool required = false)
            {
                var v = Raw(name, required);
                if (v is null) return dflt is { } d ? PerGroup<double>.One(d) : (required ? PerGroup<double>.One(0) : null);
                if (IsNumber(v)) return PerGroup<double>.One(Number(v));
                if (v is JsonArray a && a.All(x => x is not null && IsNumber(x)))
                {
                    if (a.Count == 0) { Fail(name, new ShownValue("[]"), "a per-group list cannot be empty"); return PerGroup<double>.One(0); }
                    return PerGroup<double>.List(a.Select(x => Number(x!)));
                }
                Fail(name, Describe(v), "must be a number or a list of numbers (one per param group)");
                return PerGroup<double>.One(0);
            }

            /// <summary>lr_lambda: one function description or a list; a placeholder (and a recorded failure) when unreadable.</summary>
            public PerGroup<LrLambda> Lambdas(string name)
            {
                var placeholder = PerGroup<LrLambda>.One(new LrLambda.Const(1.0));
                var v = Raw(name, required: true);
                if (v is null) return placeholder;
                if (v is JsonArray a)
                {
                    if (a.Count == 0) { Fail(name, new ShownValue("[]"), "a per-group list cannot be empty"); return placeholder; }
                    var fs = a.Select((x, i) => r.Lambda(x, $"{path}.{name}[{i}]")).ToList();
                    if (fs.Any(x => x is null)) { _failed = true; return placeholder; }
                    return PerGroup<LrLambda>.List(fs!);
                }
                var one = r.Lambda(v, $"{path}.{name}");
                if (one is null) { _failed = true; return placeholder; }
                return PerGroup<LrLambda>.One(one);
            }

            /// <summary>Constructs the schedule when every field read cleanly; its own value rules become problems at this path.</summary>
            public Schedule? Build(Func<Schedule> make)
            {
                Schedule? s = null;
                try { s = make(); }
                catch (InvalidScheduleException e)
                {
                    // A field that did not read cleanly was replaced by a placeholder: its value rules say nothing new.
                    if (!_failed) foreach (var p in e.Problems) r.Add(p with { Path = path });
                    return null;
                }
                return _failed ? null : s;
            }

            public LrLambda? BuildLambda(Func<LrLambda> make)
            {
                var l = make();
                return _failed ? null : l;
            }

            public void RejectUnknown()
            {
                foreach (var (k, v) in o)
                    if (!_seen.Contains(k)) r.Problem(path, k, Describe(v), "unknown field for this type");
            }
        }
    }

    // ---------------------------------------------------------------- writing

    /// <summary>Writes the schedule with every argument spelled out (compact JSON, keys in PyTorch's order).</summary>
    public static string Write(Schedule s, bool indented = false) =>
        ToNode(s).ToJsonString(new JsonSerializerOptions { WriteIndented = indented });

    public static JsonObject ToNode(Schedule s)
    {
        var o = new JsonObject { ["type"] = s.TypeName };
        switch (s)
        {
            case StepLR x: o["step_size"] = x.StepSize; o["gamma"] = x.Gamma; break;
            case MultiStepLR x: o["milestones"] = Ints(x.Milestones); o["gamma"] = x.Gamma; break;
            case ConstantLR x: o["factor"] = x.Factor; o["total_iters"] = x.TotalIters; break;
            case LinearLR x: o["start_factor"] = x.StartFactor; o["end_factor"] = x.EndFactor; o["total_iters"] = x.TotalIters; break;
            case ExponentialLR x: o["gamma"] = x.Gamma; break;
            case PolynomialLR x: o["total_iters"] = x.TotalIters; o["power"] = x.Power; break;
            case CosineAnnealingLR x: o["T_max"] = x.TMax; o["eta_min"] = x.EtaMin; break;
            case CosineAnnealingWarmRestarts x: o["T_0"] = x.T0; o["T_mult"] = x.TMult; o["eta_min"] = x.EtaMin; break;
            case CyclicLR x:
                o["base_lr"] = Groups(x.BaseLr); o["max_lr"] = Groups(x.MaxLr); o["step_size_up"] = x.StepSizeUp;
                if (x.StepSizeDown is { } d) o["step_size_down"] = d;
                o["mode"] = x.Mode switch { CyclicMode.Triangular2 => "triangular2", CyclicMode.ExpRange => "exp_range", _ => "triangular" };
                o["gamma"] = x.Gamma; o["cycle_momentum"] = x.CycleMomentum;
                o["base_momentum"] = Groups(x.BaseMomentum); o["max_momentum"] = Groups(x.MaxMomentum);
                break;
            case OneCycleLR x:
                o["max_lr"] = Groups(x.MaxLr);
                if (x.TotalStepsGiven is { } t) o["total_steps"] = t;
                if (x.Epochs is { } ep) o["epochs"] = ep;
                if (x.StepsPerEpoch is { } spe) o["steps_per_epoch"] = spe;
                o["pct_start"] = x.PctStart; o["anneal_strategy"] = x.AnnealStrategy == AnnealStrategy.Linear ? "linear" : "cos";
                o["cycle_momentum"] = x.CycleMomentum; o["base_momentum"] = Groups(x.BaseMomentum); o["max_momentum"] = Groups(x.MaxMomentum);
                o["div_factor"] = x.DivFactor; o["final_div_factor"] = x.FinalDivFactor; o["three_phase"] = x.ThreePhase;
                break;
            case ReduceLROnPlateau x:
                o["mode"] = x.Mode == PlateauMode.Max ? "max" : "min"; o["factor"] = x.Factor; o["patience"] = x.Patience;
                o["threshold"] = x.Threshold; o["threshold_mode"] = x.ThresholdMode == ThresholdMode.Abs ? "abs" : "rel";
                o["cooldown"] = x.Cooldown; o["min_lr"] = Groups(x.MinLr); o["eps"] = x.Eps;
                break;
            case LambdaLR x: o["lr_lambda"] = Lambdas(x.LrLambda); break;
            case MultiplicativeLR x: o["lr_lambda"] = Lambdas(x.LrLambda); break;
            case SequentialLR x:
                o["schedulers"] = new JsonArray(x.Schedulers.Select(c => (JsonNode)ToNode(c)).ToArray());
                o["milestones"] = Ints(x.Milestones);
                break;
            case ChainedScheduler x:
                o["schedulers"] = new JsonArray(x.Schedulers.Select(c => (JsonNode)ToNode(c)).ToArray());
                break;
            default: throw new NotSupportedException($"no JSON form for {s.GetType().Name}");
        }
        return o;
    }

    static JsonArray Ints(IEnumerable<int> xs) => new(xs.Select(x => (JsonNode)JsonValue.Create(x)).ToArray());

    static JsonNode Groups(PerGroup<double> g) =>
        g.IsList ? new JsonArray(g.Values.Select(v => (JsonNode)JsonValue.Create(v)).ToArray()) : JsonValue.Create(g.Values[0]);

    static JsonNode Lambdas(PerGroup<LrLambda> g) =>
        g.IsList ? new JsonArray(g.Values.Select(v => (JsonNode)Lambda(v)).ToArray()) : Lambda(g.Values[0]);

    static JsonObject Lambda(LrLambda f) => f switch
    {
        LrLambda.Const c => new JsonObject { ["fn"] = "const", ["c"] = c.C },
        LrLambda.Pow p => new JsonObject { ["fn"] = "pow", ["base"] = p.Base },
        LrLambda.Step s => new JsonObject { ["fn"] = "step", ["gamma"] = s.Gamma, ["every"] = s.Every },
        LrLambda.WarmupLinear w => new JsonObject { ["fn"] = "warmup_linear", ["warmup"] = w.Warmup, ["total"] = w.Total },
        LrLambda.WarmupCosine w => new JsonObject { ["fn"] = "warmup_cosine", ["warmup"] = w.Warmup, ["total"] = w.Total, ["cycles"] = w.Cycles },
        LrLambda.InverseSqrt i => new JsonObject { ["fn"] = "inverse_sqrt", ["warmup"] = i.Warmup },
        LrLambda.OneMinusSqrt o => new JsonObject { ["fn"] = "one_minus_sqrt", ["length"] = o.Length, ["floor"] = o.Floor },
        LrLambda.CosineDecay d => new JsonObject { ["fn"] = "cosine_decay", ["length"] = d.Length, ["floor"] = d.Floor },
        LrLambda.CosineWarmup c => new JsonObject { ["fn"] = "cosine_warmup", ["warmup"] = c.Warmup, ["start"] = c.Start },
        LrLambda.Custom c => new JsonObject { ["fn"] = "custom", ["name"] = c.Name },
        _ => throw new NotSupportedException($"lr_lambda {f.Fn} has no JSON form"),
    };
}
