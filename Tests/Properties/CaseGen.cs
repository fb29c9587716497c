using System.Text.Json.Nodes;
using FsCheck;
using FsCheck.Fluent;

namespace Tests.Properties;

/// <summary>What a generated case may contain.</summary>
/// <param name="ForTorch113">
/// Leave out what PyTorch changed after 1.13 (see <c>OracleTests</c> for the list and the evidence): composites nested in
/// SequentialLR, MultiplicativeLR as a later SequentialLR child, ReduceLROnPlateau inside a composite, LinearLR with
/// start_factor 0, and resume_at where a CyclicLR is in the tree.
/// </param>
/// <param name="Invalid">Let a few parameters take values PyTorch refuses at construction or fails on while stepping.</param>
public sealed record GenOptions(bool ForTorch113, bool Invalid)
{
    public static readonly GenOptions Oracle = new(ForTorch113: true, Invalid: true);
    public static readonly GenOptions ValidOnly = new(ForTorch113: false, Invalid: false);
}

/// <summary>
/// FsCheck generators for configurations in the golden corpus grammar (../shared/golden/FORMAT.md): every leaf type,
/// SequentialLR/ChainedScheduler nested up to three levels, 1–3 param groups with per-group lists, ReduceLROnPlateau
/// with a metric sequence, resume_at. A case is a JSON object {"id","lrs","steps","scheduler","metrics"?,"resume_at"?}.
/// </summary>
public static class CaseGen
{
    public static readonly string[] Leaves =
    [
        "StepLR", "MultiStepLR", "ConstantLR", "LinearLR", "ExponentialLR", "PolynomialLR", "CosineAnnealingLR",
        "CosineAnnealingWarmRestarts", "CyclicLR", "OneCycleLR", "LambdaLR", "MultiplicativeLR",
    ];

    /// <summary>Leaves whose chainable step composes in a ChainedScheduler (what a user would chain).</summary>
    static readonly string[] Chainable =
        ["StepLR", "MultiStepLR", "ConstantLR", "LinearLR", "ExponentialLR", "PolynomialLR", "CosineAnnealingLR", "MultiplicativeLR", "LambdaLR"];

    // ------------------------------------------------------------------ primitives

    /// <summary>A uniform double in [lo, hi] rounded to <paramref name="digits"/> decimals (the corpus writes short numbers).</summary>
    public static Gen<double> Real(double lo, double hi, int digits = 4) =>
        Gen.Choose(0, 1_000_000).Select(i => Math.Round(lo + (hi - lo) * i / 1_000_000.0, digits));

    public static Gen<int> Int(int lo, int hi) => Gen.Choose(lo, Math.Max(lo, hi));

    static Gen<bool> Chance(double p) => Gen.Choose(0, 9999).Select(i => i < p * 10000);

    static Gen<T> Pick<T>(params T[] xs) => Gen.Elements(xs);

    /// <summary>The good value, or (rarely, when invalid values are on) the bad one.</summary>
    static Gen<T> MaybeBad<T>(GenOptions o, Gen<T> good, T bad, double p = 0.04) =>
        o.Invalid ? Chance(p).SelectMany(b => b ? Gen.Constant(bad) : good) : good;

    static JsonObject Obj(string type, params (string Key, JsonNode? Value)[] fields)
    {
        var o = new JsonObject { ["type"] = type };
        foreach (var (k, v) in fields) o[k] = v;
        return o;
    }

    static JsonArray Arr(IEnumerable<JsonNode?> xs) => new(xs.ToArray());

    // ------------------------------------------------------------------ lr_lambda descriptions

    public static Gen<JsonObject> Lambda(int horizon) =>
        from w in Int(0, Math.Max(1, horizon / 4))
        from t in Int(1, Math.Max(2, horizon))
        from kind in Pick("const", "pow", "step", "warmup_linear", "warmup_cosine", "inverse_sqrt")
        from c in Real(0.1, 1.5)
        from b in Real(0.8, 1.0)
        from g in Real(0.1, 0.9)
        from every in Int(1, 20)
        from cycles in Pick(0.5, 0.5, 1.0, 1.5)
        select kind switch
        {
            "const" => new JsonObject { ["fn"] = "const", ["c"] = c },
            "pow" => new JsonObject { ["fn"] = "pow", ["base"] = b },
            "step" => new JsonObject { ["fn"] = "step", ["gamma"] = g, ["every"] = every },
            "warmup_linear" => new JsonObject { ["fn"] = "warmup_linear", ["warmup"] = w, ["total"] = w + t },
            "warmup_cosine" => new JsonObject { ["fn"] = "warmup_cosine", ["warmup"] = w, ["total"] = w + t, ["cycles"] = cycles },
            _ => new JsonObject { ["fn"] = "inverse_sqrt", ["warmup"] = Math.Max(1, w) },
        };

    /// <summary>Factors near 1, as a MultiplicativeLR user writes them.</summary>
    public static Gen<JsonObject> MultLambda() =>
        from kind in Pick("const", "pow", "step")
        from c in Real(0.8, 1.0)
        from b in Real(0.9, 1.0)
        from g in Real(0.5, 1.0)
        from every in Int(1, 10)
        select kind switch
        {
            "const" => new JsonObject { ["fn"] = "const", ["c"] = c },
            "pow" => new JsonObject { ["fn"] = "pow", ["base"] = b },
            _ => new JsonObject { ["fn"] = "step", ["gamma"] = g, ["every"] = every },
        };

    /// <summary>One function, or (30%) a list with one per param group.</summary>
    static Gen<JsonNode> PerGroupLambda(Gen<JsonObject> one, int groups) =>
        Chance(0.3).SelectMany(list => list
            ? Gen.ListOf(one, groups).Select(fs => (JsonNode)Arr(fs))
            : one.Select(f => (JsonNode)f));

    /// <summary>One number, or (20% with several groups) a list with one per param group.</summary>
    static Gen<JsonNode> PerGroupReal(Gen<double> one, int groups) =>
        Chance(groups > 1 ? 0.2 : 0.05).SelectMany(list => list
            ? Gen.ListOf(one, groups).Select(xs => (JsonNode)Arr(xs.Select(x => (JsonNode)JsonValue.Create(x))))
            : one.Select(x => (JsonNode)JsonValue.Create(x)));

    // ------------------------------------------------------------------ leaves

    public static Gen<JsonObject> Leaf(string t, int horizon, int groups, GenOptions o)
    {
        int h = Math.Max(1, horizon);
        switch (t)
        {
            case "StepLR":
                return from s in MaybeBad(o, Int(1, Math.Max(1, h / 3)), 0)
                       from g in Real(0.05, 1.0)
                       select Obj(t, ("step_size", s), ("gamma", g));
            case "MultiStepLR":
                return from n in Int(1, 5)
                       from ms in Gen.ListOf(Int(1, h + 4), n)
                       from dup in Chance(0.1)
                       from shuffle in Chance(0.05)
                       from g in Real(0.05, 1.0)
                       let distinct = ms.Distinct().OrderBy(x => x).ToList()
                       let withDup = dup ? distinct.Append(distinct[0]).ToList() : distinct
                       let ordered = shuffle ? withDup.AsEnumerable().Reverse().ToList() : withDup
                       select Obj(t, ("milestones", Arr(ordered.Select(m => (JsonNode)m))), ("gamma", g));
            case "ConstantLR":
                return from f in MaybeBad(o, Real(0.01, 1.0), 1.5)
                       from n in Int(0, h)
                       select Obj(t, ("factor", f), ("total_iters", n));
            case "LinearLR":
                // PyTorch 2.11 refuses start_factor 0 ("greater than 0"); 1.13 accepts it and divides by zero later.
                return from sf in o.ForTorch113 ? Real(0.001, 1.0) : MaybeBad(o, Real(0.001, 1.0), 0.0)
                       from ef in MaybeBad(o, Real(0.0, 1.0), 1.5)
                       from n in Int(0, h)
                       select Obj(t, ("start_factor", sf), ("end_factor", ef), ("total_iters", n));
            case "ExponentialLR":
                return Real(0.8, 1.0, 5).Select(g => Obj(t, ("gamma", g)));
            case "PolynomialLR":
                return from n in Int(0, h)
                       from p in Real(0.3, 3.0, 3)
                       select Obj(t, ("total_iters", n), ("power", p));
            case "CosineAnnealingLR":
                return from tm in MaybeBad(o, Int(1, h), 0)
                       from eta in Gen.OneOf(Gen.Constant(0.0), Gen.Constant(0.0), Real(0.0, 0.01, 5))
                       select Obj(t, ("T_max", tm), ("eta_min", eta));
            case "CosineAnnealingWarmRestarts":
                return from t0 in MaybeBad(o, Int(1, Math.Max(1, h / 2)), 0)
                       from tmult in Pick(1, 1, 2, 3)
                       from eta in Gen.OneOf(Gen.Constant(0.0), Real(0.0, 0.01, 5))
                       select Obj(t, ("T_0", t0), ("T_mult", tmult), ("eta_min", eta));
            case "CyclicLR":
                return from b in Real(0.0001, 0.01, 6)
                       from ratio in Real(2, 50, 3)
                       from baseLr in PerGroupReal(Gen.Constant(b), groups)
                       from maxLr in PerGroupReal(Gen.Constant(Math.Round(b * ratio, 6)), groups)
                       from up in Int(1, Math.Max(1, h / 3))
                       from down in Gen.OneOf(Gen.Constant(-1), Int(1, Math.Max(1, h / 3)))
                       from mode in Pick("triangular", "triangular2", "exp_range")
                       from g in Real(0.9, 1.0)
                       from mom in Chance(0.5)
                       from momenta in Momenta(groups, 0.8, 0.9)
                       select WithMomenta(CyclicObj(baseLr, maxLr, up, down, mode, g, mom), momenta);
            case "OneCycleLR":
                return from maxLr in PerGroupReal(Real(0.01, 1.0), groups)
                       from extra in Int(1, 10)
                       from total in MaybeBad(o, Gen.Constant(h + extra), Math.Max(1, h / 2), 0.08)
                       from pct in Real(0.05, 0.6, 3)
                       from anneal in Pick("cos", "linear")
                       from div in Real(5, 50, 2)
                       from fdiv in Real(10, 1e4, 1)
                       from three in Chance(0.3)
                       from mom in Chance(0.5)
                       from momenta in Momenta(groups, 0.85, 0.95)
                       from byEpochs in Chance(0.15)
                       from spe in Int(1, 4)
                       let length = byEpochs
                           ? new (string, JsonNode?)[] { ("epochs", (total + spe - 1) / spe), ("steps_per_epoch", spe) }
                           : [("total_steps", total)]
                       select WithMomenta(Obj(t, [("max_lr", maxLr), .. length, ("pct_start", pct), ("anneal_strategy", anneal),
                           ("div_factor", div), ("final_div_factor", fdiv), ("three_phase", three), ("cycle_momentum", mom)]), momenta);
            case "LambdaLR":
                return PerGroupLambda(Lambda(h), groups).Select(l => Obj(t, ("lr_lambda", l)));
            case "MultiplicativeLR":
                return PerGroupLambda(MultLambda(), groups).Select(l => Obj(t, ("lr_lambda", l)));
            default:
                throw new ArgumentException("no generator for " + t);
        }
    }

    /// <summary>Usually no momenta (PyTorch's defaults), sometimes base_momentum/max_momentum, scalar or per group.</summary>
    static Gen<(JsonNode Base, JsonNode Max)?> Momenta(int groups, double defaultBase, double defaultMax) =>
        Chance(0.3).SelectMany(custom => custom
            ? from b in PerGroupReal(Real(0.6, defaultBase, 3), groups)
              from m in PerGroupReal(Real(defaultMax - 0.05, 0.99, 3), groups)
              select ((JsonNode, JsonNode)?)(b, m)
            : Gen.Constant<(JsonNode, JsonNode)?>(null));

    static JsonObject WithMomenta(JsonObject o, (JsonNode Base, JsonNode Max)? m)
    {
        if (m is { } x) { o["base_momentum"] = x.Base; o["max_momentum"] = x.Max; }
        return o;
    }

    static JsonObject CyclicObj(JsonNode baseLr, JsonNode maxLr, int up, int down, string mode, double gamma, bool momentum)
    {
        var o = Obj("CyclicLR", ("base_lr", baseLr), ("max_lr", maxLr), ("step_size_up", up));
        if (down > 0) o["step_size_down"] = down;
        o["mode"] = mode; o["gamma"] = gamma; o["cycle_momentum"] = momentum;
        return o;
    }

    public static Gen<JsonObject> Plateau(int groups, GenOptions o) =>
        from mode in Pick("min", "max")
        from factor in MaybeBad(o, Real(0.1, 0.9, 3), 1.0)
        from patience in Int(0, 5)
        from threshold in Pick(1e-4, 1e-3, 0.01, 0.1)
        from tmode in Pick("rel", "abs")
        from cooldown in Int(0, 3)
        from minLr in PerGroupReal(Pick(0.0, 1e-5), groups)
        select Obj("ReduceLROnPlateau", ("mode", mode), ("factor", factor), ("patience", patience), ("threshold", threshold),
            ("threshold_mode", tmode), ("cooldown", cooldown), ("min_lr", minLr), ("eps", 1e-8));

    // ------------------------------------------------------------------ trees

    /// <summary>A SequentialLR child: leaves (in the 1.13-safe grammar no composites, no later MultiplicativeLR).</summary>
    static Gen<JsonObject> SequentialChild(int index, int horizon, int groups, int depth, GenOptions o)
    {
        var leafTypes = Leaves.Where(t => !(o.ForTorch113 && index > 0 && t == "MultiplicativeLR")).ToArray();
        // CyclicLR/OneCycleLR set the rates from their own parameters; the corpus puts them in SequentialLR rarely.
        var weighted = Gen.Frequency(
            (12, Gen.Elements(leafTypes.Where(t => t is not ("CyclicLR" or "OneCycleLR")).ToArray())),
            (1, Gen.Elements("CyclicLR", "OneCycleLR")));
        var leaf = weighted.SelectMany(t => Leaf(t, horizon, groups, o));
        if (o.ForTorch113 || depth >= 2) return leaf;
        return Gen.Frequency((6, leaf), (1, Tree(horizon, groups, depth + 1, o, allowPlateau: false)));
    }

    static Gen<JsonObject> Sequential(int horizon, int groups, int depth, GenOptions o) =>
        from n in Int(2, 4)
        from cuts in Gen.ListOf(Int(1, Math.Max(n, horizon - 1)), n - 1)
        from kids in Gen.CollectToList(Enumerable.Range(0, n), i => SequentialChild(i, horizon, groups, depth, o))
        let ms = DistinctIncreasing(cuts)
        select Obj("SequentialLR", ("schedulers", Arr(kids)), ("milestones", Arr(ms.Select(m => (JsonNode)m))));

    /// <summary>n-1 sampled cuts made strictly increasing and positive (the corpus samples without replacement).</summary>
    static List<int> DistinctIncreasing(IEnumerable<int> cuts)
    {
        var ms = cuts.OrderBy(x => x).ToList();
        for (int i = 1; i < ms.Count; i++) if (ms[i] <= ms[i - 1]) ms[i] = ms[i - 1] + 1;
        return ms;
    }

    static Gen<JsonObject> Chained(int horizon, int groups, int depth, GenOptions o)
    {
        var chainable = Gen.Elements(Chainable).SelectMany(t => Leaf(t, horizon, groups, o));
        var anyLeaf = Gen.Elements(Leaves).SelectMany(t => Leaf(t, horizon, groups, o));
        var child = depth >= 2
            ? Gen.Frequency((8, chainable), (1, anyLeaf))
            : Gen.Frequency((12, chainable), (1, anyLeaf), (4, Tree(horizon, groups, depth + 1, o, allowPlateau: false, compositeOnly: true)));
        return from n in Int(2, 3)
               from kids in Gen.ListOf(child, n)
               select Obj("ChainedScheduler", ("schedulers", Arr(kids)));
    }

    /// <summary>A configuration tree; <paramref name="depth"/> 0 is the top.</summary>
    public static Gen<JsonObject> Tree(int horizon, int groups, int depth, GenOptions o, bool allowPlateau = true, bool compositeOnly = false)
    {
        var options = new List<(int, Gen<JsonObject>)>();
        if (depth < 3)
        {
            options.Add((compositeOnly ? 4 : 22, Gen.Fresh(() => Sequential(horizon, groups, depth, o)).SelectMany(g => g)));
            options.Add((compositeOnly ? 6 : 20, Gen.Fresh(() => Chained(horizon, groups, depth, o)).SelectMany(g => g)));
        }
        if (!compositeOnly || options.Count == 0)
        {
            options.Add((53, Gen.Elements(Leaves).SelectMany(t => Leaf(t, horizon, groups, o))));
            if (allowPlateau) options.Add((5, Plateau(groups, o)));
        }
        return Gen.Frequency(options.ToArray());
    }

    /// <summary>Keyword arguments with a PyTorch default, per type (required ones are never dropped).</summary>
    static readonly Dictionary<string, string[]> Optional = new()
    {
        ["StepLR"] = ["gamma"], ["MultiStepLR"] = ["gamma"], ["ConstantLR"] = ["factor", "total_iters"],
        ["LinearLR"] = ["start_factor", "end_factor", "total_iters"], ["PolynomialLR"] = ["total_iters", "power"],
        ["CosineAnnealingLR"] = ["eta_min"], ["CosineAnnealingWarmRestarts"] = ["T_mult", "eta_min"],
        ["CyclicLR"] = ["mode", "gamma", "cycle_momentum", "base_momentum", "max_momentum"],
        ["OneCycleLR"] = ["pct_start", "anneal_strategy", "div_factor", "final_div_factor", "three_phase", "cycle_momentum", "base_momentum", "max_momentum"],
        ["ReduceLROnPlateau"] = ["mode", "factor", "patience", "threshold", "threshold_mode", "cooldown", "min_lr", "eps"],
    };

    /// <summary>Leaves out each optional argument with probability 1/8, walking the tree in order and using one coin per field.</summary>
    static JsonObject DropDefaults(JsonObject spec, IReadOnlyList<int> coins)
    {
        int next = 0;
        void Walk(JsonObject o)
        {
            if (Optional.TryGetValue((string)o["type"]!, out var names))
                foreach (var n in names)
                    if (o.ContainsKey(n) && coins[next++ % coins.Count] == 0) o.Remove(n);
            foreach (var k in o["schedulers"] as JsonArray ?? []) if (k is JsonObject ko) Walk(ko);
        }
        Walk(spec);
        return spec;
    }

    /// <summary>A whole case: groups, initial rates, steps (mostly 1–120, a few long), configuration, metrics, resume_at.</summary>
    public static Gen<JsonObject> Case(GenOptions o, double longFraction = 0.01) =>
        from groups in Pick(1, 1, 2, 3)
        from lrs in Gen.ListOf(Real(1e-4, 1.0, 6), groups)
        from isLong in Chance(longFraction)
        from steps in isLong ? Int(500, 1500) : Int(1, 120)
        from fullHorizon in Chance(0.7)
        from h in fullHorizon ? Gen.Constant(steps) : Int(1, steps + 5)
        from tree in Tree(h, groups, 0, o)
        from coins in Gen.ListOf(Int(0, 7), 97)
        let spec = DropDefaults(tree, coins)
        from metrics in Metrics(steps)
        from resume in Chance(0.5)
        from k in Int(1, Math.Max(1, steps - 1))
        select MakeCase(lrs, steps, spec, metrics, resume && steps >= 2 && !(o.ForTorch113 && Contains(spec, "CyclicLR")) ? k : null);

    static JsonObject MakeCase(IEnumerable<double> lrs, int steps, JsonObject spec, double[] metrics, int? resumeAt)
    {
        var c = new JsonObject
        {
            ["id"] = "",
            ["lrs"] = Arr(lrs.Select(x => (JsonNode)JsonValue.Create(x))),
            ["steps"] = steps,
            ["scheduler"] = spec,
        };
        if ((string?)spec["type"] == "ReduceLROnPlateau") c["metrics"] = Arr(metrics.Select(x => (JsonNode)JsonValue.Create(x)));
        if (resumeAt is { } k) c["resume_at"] = k;
        return c;
    }

    /// <summary>A metric that mostly drifts (down and up) and sometimes stalls, so plateaus happen.</summary>
    public static Gen<double[]> Metrics(int steps) =>
        Gen.ListOf(Gen.Zip(Chance(0.8), Real(0.9, 1.08, 6)), steps).Select(moves =>
        {
            double v = 1.0;
            var m = new double[steps];
            int i = 0;
            foreach (var (move, f) in moves) { if (move) v *= f; m[i++] = Math.Round(v, 6); }
            return m;
        });

    /// <summary>
    /// The case as a reader of its text sees it. ScheduleJson reads numbers with GetValue&lt;double&gt;, which throws on a
    /// JsonValue built from a C# int (only text-backed values convert), so generated trees are written and read back.
    /// </summary>
    public static JsonObject Reparsed(JsonObject o) => (JsonObject)JsonNode.Parse(o.ToJsonString())!;

    public static bool Contains(JsonNode? spec, string type) =>
        spec is JsonObject o && ((string?)o["type"] == type || (o["schedulers"] as JsonArray ?? []).Any(k => Contains(k, type)));

    /// <summary>Composite nesting depth: 0 for a leaf, 1 for a composite of leaves, 2 for a composite holding a composite.</summary>
    public static int Depth(JsonNode? spec) =>
        spec is JsonObject o && o["schedulers"] is JsonArray kids ? 1 + kids.Select(Depth).DefaultIfEmpty(0).Max() : 0;

    public static IEnumerable<string> Types(JsonNode? spec) =>
        spec is JsonObject o
            ? new[] { (string)o["type"]! }.Concat((o["schedulers"] as JsonArray ?? []).SelectMany(Types))
            : [];

    /// <summary>Deterministic sample: the same seed gives the same cases, numbered c0..c(n-1).</summary>
    public static JsonObject[] Sample(Gen<JsonObject> gen, int count, ulong seed, int size = 50)
    {
        // FsCheck.Fluent.Gen.Sample(gen, numberOfSamples, seed, size).
        var xs = Gen.Sample(gen, count, new Rnd(seed), size).ToArray();
        for (int i = 0; i < xs.Length; i++) xs[i]["id"] = $"p{seed}-{i}";
        return xs.Select(Reparsed).ToArray();
    }
}
