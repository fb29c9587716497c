using System.Globalization;
using Schedules.Core;

namespace Trainer.Cli;

/// <summary>The LR-schedule flags, as given on the command line (see <see cref="SchedulerFlags"/>).</summary>
public sealed record SchedulerFlagValues
{
    /// <summary>--lr-scheduler: one of <see cref="SchedulerFlags.Kinds"/>.</summary>
    public string Scheduler { get; init; } = "cosine";
    /// <summary>--lr-schedule: JSON, @file or a path to a .json file; wins over --lr-scheduler.</summary>
    public string? ScheduleJson { get; init; }
    /// <summary>--warmup-steps: -1 = auto (10% of total steps for cosine, the default, and warmup-stable-decay; 0 otherwise).</summary>
    public int WarmupSteps { get; init; } = -1;
    /// <summary>--warmup-start-factor: LinearLR start_factor of the warmup; 0 = auto, <see cref="Recipes.DefaultWarmupStart"/> = 1/(warmup+1) (LR ramps as lr·(k+1)/(warmup+1)).</summary>
    public double WarmupStartFactor { get; init; }
    /// <summary>--lr_warmup_init: absolute warmup start LR (InfiniTrain); used when WarmupStartFactor is 0.</summary>
    public double WarmupInitLr { get; init; }
    /// <summary>The peak LR FromFlags was called with (for WarmupInitLr).</summary>
    internal double PeakLr { get; init; }
    /// <summary>--total-steps: steps the schedule spans (warmup included); 0 = --num_iteration.</summary>
    public int TotalSteps { get; init; }
    public int StepSize { get; init; }
    /// <summary>--gamma: NaN = the schedule's default (<see cref="SchedulerFlags.DefaultGamma"/>).</summary>
    public double Gamma { get; init; } = double.NaN;
    public int[] Milestones { get; init; } = Array.Empty<int>();
    public double MinLr { get; init; }
    public double Power { get; init; } = 1.0;
    public int T0 { get; init; }
    public int TMult { get; init; } = 1;
    public int StepSizeUp { get; init; }
    public string CyclicMode { get; init; } = "triangular";
    public bool CycleMomentum { get; init; }
    public double PctStart { get; init; } = TorchDefaults.OneCyclePctStart;
    public double DivFactor { get; init; } = TorchDefaults.OneCycleDivFactor;
    public double FinalDivFactor { get; init; } = TorchDefaults.OneCycleFinalDivFactor;
    public int DecaySteps { get; init; }
    public string DecayShape { get; init; } = "linear";
    public int Patience { get; init; } = TorchDefaults.PlateauPatience;
    public double Threshold { get; init; } = TorchDefaults.PlateauThreshold;
    public int Cooldown { get; init; } = TorchDefaults.PlateauCooldown;
    public double ConstantFactor { get; init; } = 1.0;
    public int ConstantIters { get; init; }
}

/// <summary>
/// Maps the trainer's LR-schedule flags to a <see cref="Schedule"/> (pure: no I/O except reading an <c>@file</c>
/// given to --lr-schedule). <c>Trainer train</c> and <c>Trainer lr preview</c> share it: <see cref="Define"/> declares
/// the flags on a <see cref="FlagSet"/>, <see cref="Read"/> reads them back, <see cref="FromFlags"/> builds the schedule.
/// Every schedule is built by the library's <see cref="Recipes"/> (cosine = <see cref="Recipes.WarmupCosine"/>,
/// warmup-stable-decay = <see cref="Recipes.WarmupStableDecay"/>, inverse-sqrt = <see cref="Recipes.InverseSqrt"/>, any
/// other kind or --lr_schedule with --warmup-steps W &gt; 0 = <see cref="Recipes.WithWarmup"/>); the schedule proper spans
/// total − W steps. The defaults live once: PyTorch's in <see cref="TorchDefaults"/>, the flags' own in
/// <see cref="SchedulerFlagValues"/> and the constants below, and --help is written from them.
/// </summary>
public static class SchedulerFlags
{
    /// <summary>--decay_shape values and the recipe's decay shape each names.</summary>
    public static readonly IReadOnlyDictionary<string, DecayShape> DecayShapes = new Dictionary<string, DecayShape>
    {
        ["linear"] = Schedules.Core.DecayShape.Linear, ["cosine"] = Schedules.Core.DecayShape.Cosine, ["1-sqrt"] = Schedules.Core.DecayShape.OneMinusSqrt,
    };

    public static readonly string[] Kinds =
    {
        "constant", "steplr", "multisteplr", "linear", "exponential", "polynomial", "cosine", "cosine-restarts",
        "cyclic", "onecycle", "warmup-stable-decay", "inverse-sqrt", "plateau", "none",
    };

    const string G = "LR schedule";

    /// <summary>--gamma when not given: PyTorch's for steplr, multisteplr and plateau; the flags' own for exponential
    /// (PyTorch has none) and cyclic exp_range.</summary>
    public const double ExponentialGamma = 0.9, ExpRangeGamma = 0.99;

    public static double DefaultGamma(string kind, string cyclicMode) => kind switch
    {
        "exponential" => ExponentialGamma,
        "cyclic" => cyclicMode == "exp_range" ? ExpRangeGamma : TorchDefaults.CyclicGamma,
        _ => TorchDefaults.StepGamma, // steplr, multisteplr, plateau (ReduceLROnPlateau's factor is also 0.1)
    };

    /// <summary>The share of the steps that auto warmup (-1) gives cosine and warmup-stable-decay, and the share of the steps
    /// after warmup that warmup-stable-decay's decay takes by default.</summary>
    const int AutoWarmupDivisor = 10, AutoDecayDivisor = 5;

    static string Num(double d) => d.ToString(CultureInfo.InvariantCulture);

    public static void Define(FlagSet f)
    {
        f.String("lr_scheduler", "cosine",
            "LR schedule: constant|steplr|multisteplr|linear|exponential|polynomial|cosine|cosine-restarts|cyclic|onecycle|\n" +
            "warmup-stable-decay|inverse-sqrt|plateau|none. Each maps to the PyTorch scheduler of that name:\n" +
            "  constant: ConstantLR(--constant-factor, --constant-iters) (default factor 1: the LR stays --learning_rate)\n" +
            $"  steplr: StepLR(--step-size, --gamma={Num(TorchDefaults.StepGamma)})   multisteplr: MultiStepLR(--milestones, --gamma={Num(TorchDefaults.StepGamma)})\n" +
            "  linear: LinearLR(1, --min-lr/lr, steps) decays linearly to --min-lr\n" +
            $"  exponential: ExponentialLR(--gamma={Num(ExponentialGamma)})   polynomial: PolynomialLR(steps, --power) decays to 0\n" +
            "  cosine: CosineAnnealingLR(T_max=steps, eta_min=--min-lr)\n" +
            "  cosine-restarts: CosineAnnealingWarmRestarts(--t0, --t-mult, eta_min=--min-lr)\n" +
            "  cyclic: CyclicLR(base_lr=--min-lr (or lr/10 when 0), max_lr=lr, --step-size-up, --cyclic-mode, --gamma)\n" +
            "  onecycle: OneCycleLR(max_lr=lr, total_steps=steps, --pct-start, --div-factor, --final-div-factor)\n" +
            "  warmup-stable-decay: warmup, constant LR, then the last --decay-steps decay (--decay-shape linear|cosine|1-sqrt) to --min-lr\n" +
            "  inverse-sqrt: LambdaLR(inverse_sqrt): lr*k/W for k < W (W = --warmup-steps), then lr*sqrt(W/k)\n" +
            $"  plateau: ReduceLROnPlateau on the train loss (factor --gamma={Num(TorchDefaults.PlateauFactor)}, --patience, --threshold, --cooldown, min_lr --min-lr)\n" +
            "  none: no scheduler, the LR stays --learning_rate\n" +
            "'steps' is --total-steps minus the warmup.", G, "lr_decay_style");
        f.String("lr_schedule", "",
            "Any schedule in the library's JSON format (PyTorch class names and keyword arguments), given inline,\n" +
            "as @FILE, or as a path to a .json file; overrides --lr-scheduler and its flags.", G);
        f.Int("warmup_steps", -1, "Linear warmup steps before the schedule (SequentialLR(LinearLR -> schedule)); -1 = auto:\n" +
            $"{100 / AutoWarmupDivisor}% of --total-steps for cosine (the default) and warmup-stable-decay, 0 for the others. Before a\n" +
            "--lr_schedule ChainedScheduler whose members multiply the rate (ConstantLR, LinearLR, StepLR, MultiStepLR, ExponentialLR,\n" +
            "MultiplicativeLR, PolynomialLR) the warmup is chained as one more member over the chain's first steps (PyTorch cannot\n" +
            "switch into a chain); other compositions PyTorch cannot run after a warmup are refused.", G, "lr_warmup_iters");
        f.Double("warmup_start_factor", 0.0, "LinearLR start_factor of the warmup; 0 = 1/(warmup+1), so step k has lr*(k+1)/(warmup+1).", G);
        f.Double("lr_warmup_init", 0.0, "InfiniTrain's warmup start LR (absolute); when > 0 and --warmup-start-factor is 0, start_factor = lr_warmup_init / learning_rate.", G);
        f.Int("total_steps", 0, "Steps the schedule spans, warmup included; 0 = --num_iteration.", G, "lr_decay_iters");
        f.Int("step_size", 0, "StepLR step_size; 0 = max(1, steps/3).", G);
        f.Double("gamma", double.NaN, "Decay factor (steplr, multisteplr, exponential, cyclic exp_range, plateau factor); nan = the schedule's default:\n" +
            $"{Num(TorchDefaults.StepGamma)} (steplr, multisteplr, plateau), {Num(ExponentialGamma)} (exponential), {Num(ExpRangeGamma)} (cyclic exp_range).", G);
        f.String("milestones", "", "MultiStepLR milestones, comma-separated steps (after warmup); default: 50%,75% of steps.", G);
        f.Double("min_lr", 0.0, "Floor LR: eta_min of cosine and cosine-restarts, end of linear and warmup-stable-decay, min_lr of plateau,\nbase_lr of cyclic.", G);
        f.Double("power", 1.0, "PolynomialLR power.", G);
        f.Int("t0", 0, "CosineAnnealingWarmRestarts T_0; 0 = max(1, steps/2).", G);
        f.Int("t_mult", 1, "CosineAnnealingWarmRestarts T_mult.", G);
        f.Int("step_size_up", 0, "CyclicLR step_size_up; 0 = max(1, steps/4).", G);
        f.String("cyclic_mode", "triangular", "CyclicLR mode: triangular|triangular2|exp_range.", G);
        f.Bool("cycle_momentum", false, "CyclicLR/OneCycleLR cycle_momentum (SGD momentum or Adam beta1).", G);
        var d = new SchedulerFlagValues();
        f.Double("pct_start", d.PctStart, "OneCycleLR pct_start.", G);
        f.Double("div_factor", d.DivFactor, "OneCycleLR div_factor.", G);
        f.Double("final_div_factor", d.FinalDivFactor, "OneCycleLR final_div_factor.", G);
        f.Int("decay_steps", 0, $"warmup-stable-decay: length of the final decay; 0 = {100 / AutoDecayDivisor}% of steps.", G);
        f.String("decay_shape", d.DecayShape, "warmup-stable-decay decay shape: " + string.Join("|", DecayShapes.Keys) + ".", G);
        f.Int("patience", d.Patience, "ReduceLROnPlateau patience.", G);
        f.Double("threshold", d.Threshold, "ReduceLROnPlateau threshold (relative).", G);
        f.Int("cooldown", d.Cooldown, "ReduceLROnPlateau cooldown.", G);
        f.Double("constant_factor", d.ConstantFactor, "ConstantLR factor (constant).", G);
        f.Int("constant_iters", d.ConstantIters, "ConstantLR total_iters (constant).", G);
    }

    public static SchedulerFlagValues Read(FlagValues v)
    {
        string kind = v.GetString("lr_scheduler");
        if (kind == "inverse-square-root") kind = "inverse-sqrt"; // InfiniTrain's --lr_decay_style spelling
        if (!Kinds.Contains(kind)) throw new UsageException($"--lr_scheduler: '{kind}' is not one of {string.Join("|", Kinds)}");
        string json = v.GetString("lr_schedule");
        return new SchedulerFlagValues
        {
            Scheduler = kind,
            ScheduleJson = json.Length == 0 ? null : json,
            WarmupSteps = v.GetInt32("warmup_steps", -1),
            WarmupStartFactor = v.GetDouble("warmup_start_factor", 0.0, 1.0),
            WarmupInitLr = v.GetDouble("lr_warmup_init", 0.0),
            TotalSteps = v.GetInt32("total_steps", 0),
            StepSize = v.GetInt32("step_size", 0),
            Gamma = v.GetDouble("gamma"),
            Milestones = v.GetIntList("milestones"),
            MinLr = v.GetDouble("min_lr", 0.0),
            Power = v.GetDouble("power"),
            T0 = v.GetInt32("t0", 0),
            TMult = v.GetInt32("t_mult", 1),
            StepSizeUp = v.GetInt32("step_size_up", 0),
            CyclicMode = v.GetChoice("cyclic_mode", "triangular", "triangular2", "exp_range"),
            CycleMomentum = v.GetBool("cycle_momentum"),
            PctStart = v.GetDouble("pct_start", 0.0, 1.0),
            DivFactor = v.GetDouble("div_factor"),
            FinalDivFactor = v.GetDouble("final_div_factor"),
            DecaySteps = v.GetInt32("decay_steps", 0),
            DecayShape = v.GetChoice("decay_shape", DecayShapes.Keys.ToArray()),
            Patience = v.GetInt32("patience", 0),
            Threshold = v.GetDouble("threshold"),
            Cooldown = v.GetInt32("cooldown", 0),
            ConstantFactor = v.GetDouble("constant_factor", 0.0, 1.0),
            ConstantIters = v.GetInt32("constant_iters", 0),
        };
    }

    /// <summary>Reads the --lr-schedule argument: inline JSON, <c>@file</c>, or a path to an existing file.</summary>
    public static string ResolveJson(string arg)
    {
        string t = arg.Trim();
        string? path = t.StartsWith('@') ? t[1..] : (!t.StartsWith('{') && File.Exists(t) ? t : null);
        if (path is null)
        {
            if (!t.StartsWith('{') && Directory.Exists(t)) throw new UsageException($"--lr_schedule: '{t}' is a directory, not a JSON file");
            if (!t.StartsWith('{')) throw new UsageException($"--lr_schedule: '{Short(arg)}' is neither JSON (starting with '{{'), @FILE, nor an existing file");
            return t;
        }
        if (Directory.Exists(path)) throw new UsageException($"--lr_schedule: '{path}' is a directory, not a JSON file");
        if (!File.Exists(path)) throw new UsageException($"--lr_schedule: file '{path}' does not exist");
        return File.ReadAllText(path);
    }

    static string Short(string s) => s.Length <= 60 ? s : s[..60] + "...";

    /// <summary>
    /// The schedule the flags describe for a run of <paramref name="numIterations"/> steps at peak LR
    /// <paramref name="learningRate"/>; null for <c>none</c>. Throws <see cref="UsageException"/> naming the flag
    /// for inconsistent flags, and the library's <see cref="InvalidScheduleException"/> for invalid arguments.
    /// </summary>
    public static Schedule? FromFlags(SchedulerFlagValues f, double learningRate, int numIterations)
    {
        f = f with { PeakLr = learningRate };
        if (f.ScheduleJson is { } jsonArg)
        {
            var parsed = Schedules.Core.ScheduleJson.Parse(ResolveJson(jsonArg));
            return f.WarmupSteps > 0 ? WithWarmup(parsed, f.WarmupSteps, f) : parsed;
        }
        int total = f.TotalSteps > 0 ? f.TotalSteps : numIterations;
        int warmup = f.WarmupSteps >= 0 ? f.WarmupSteps : (f.Scheduler is "cosine" or "warmup-stable-decay" ? total / AutoWarmupDivisor : 0);
        if (f.Scheduler == "none")
        {
            if (f.WarmupSteps > 0) throw new UsageException("--warmup_steps needs a schedule; --lr_scheduler=none has none (use --lr_scheduler=constant)");
            return null;
        }
        // The inverse-sqrt lambda has its own warmup (its timescale): lr*k/W, then lr*sqrt(W/k).
        if (f.Scheduler == "inverse-sqrt") return Recipes.InverseSqrt(warmup > 0 ? warmup : Math.Max(1, total / AutoWarmupDivisor));
        if (warmup >= total && f.Scheduler is not ("constant" or "exponential" or "steplr" or "multisteplr" or "plateau" or "cosine-restarts" or "cyclic"))
            throw new UsageException($"--warmup_steps={warmup} leaves no steps for the {f.Scheduler} schedule (--total_steps/--num_iteration = {total})");
        if (warmup > 0 && f.Scheduler == "plateau")
            throw new UsageException("--warmup_steps cannot be combined with --lr_scheduler=plateau (ReduceLROnPlateau cannot be sequenced, as in PyTorch)");
        int steps = Math.Max(1, total - warmup);
        double gamma = double.IsNaN(f.Gamma) ? DefaultGamma(f.Scheduler, f.CyclicMode) : f.Gamma;
        double? start = warmup > 0 ? WarmupStart(warmup, f) : null;

        Schedule main;
        switch (f.Scheduler)
        {
            case "cosine": return Recipes.WarmupCosine(warmup, total, f.MinLr, WarmupShape.Linear, start);
            case "warmup-stable-decay":
            {
                int decay = f.DecaySteps > 0 ? f.DecaySteps : Math.Max(1, steps / AutoDecayDivisor);
                if (decay > steps) throw new UsageException($"--decay_steps={decay} is longer than the {steps} steps after warmup");
                return Recipes.WarmupStableDecay(warmup, steps - decay, decay, DecayShapes[f.DecayShape],
                    EndFactor(f.MinLr, learningRate, "warmup-stable-decay"), WarmupShape.Linear, start);
            }
            case "constant": main = new ConstantLR(f.ConstantFactor, f.ConstantIters); break;
            case "steplr": main = new StepLR(f.StepSize > 0 ? f.StepSize : Math.Max(1, steps / 3), gamma); break;
            case "multisteplr": main = new MultiStepLR(f.Milestones.Length > 0 ? f.Milestones : [Math.Max(1, steps / 2), Math.Max(1, steps * 3 / 4)], gamma); break;
            case "linear": main = new LinearLR(1.0, EndFactor(f.MinLr, learningRate, "linear"), steps); break;
            case "exponential": main = new ExponentialLR(gamma); break;
            case "polynomial": main = new PolynomialLR(steps, f.Power); break;
            case "cosine-restarts": main = new CosineAnnealingWarmRestarts(f.T0 > 0 ? f.T0 : Math.Max(1, steps / 2), f.TMult, f.MinLr); break;
            case "cyclic":
                main = new CyclicLR(f.MinLr > 0 ? f.MinLr : learningRate / 10, learningRate,
                    f.StepSizeUp > 0 ? f.StepSizeUp : Math.Max(1, steps / 4), null,
                    f.CyclicMode switch { "triangular2" => Schedules.Core.CyclicMode.Triangular2, "exp_range" => Schedules.Core.CyclicMode.ExpRange, _ => Schedules.Core.CyclicMode.Triangular },
                    gamma, f.CycleMomentum);
                break;
            case "onecycle":
                main = new OneCycleLR(learningRate, steps, pctStart: f.PctStart, cycleMomentum: f.CycleMomentum,
                    divFactor: f.DivFactor, finalDivFactor: f.FinalDivFactor);
                break;
            case "plateau": main = new ReduceLROnPlateau(PlateauMode.Min, gamma, f.Patience, f.Threshold, ThresholdMode.Rel, f.Cooldown, f.MinLr); break;
            default: throw new UsageException($"--lr_scheduler: '{f.Scheduler}' is not one of {string.Join("|", Kinds)}");
        }
        return warmup > 0 ? Recipes.WithWarmup(main, warmup, WarmupShape.Linear, start) : main;
    }

    static double EndFactor(double minLr, double lr, string kind)
    {
        if (minLr > lr) throw new UsageException($"--min_lr={minLr.ToString(CultureInfo.InvariantCulture)} is above --learning_rate={lr.ToString(CultureInfo.InvariantCulture)} ({kind} decays towards it)");
        return lr > 0 ? minLr / lr : 0.0;
    }

    /// <summary>The warmup's LinearLR start factor: --warmup_start_factor, else --lr_warmup_init / --learning_rate, else
    /// the recipes' default 1/(W+1).</summary>
    static double WarmupStart(int warmup, SchedulerFlagValues f)
    {
        double start = f.WarmupStartFactor > 0 ? f.WarmupStartFactor
            : f.WarmupInitLr > 0 && f.PeakLr > 0 ? f.WarmupInitLr / f.PeakLr
            : Recipes.DefaultWarmupStart(warmup);
        if (!(start > 0 && start <= 1))
            throw new UsageException($"--lr_warmup_init={f.WarmupInitLr.ToString(CultureInfo.InvariantCulture)} must be in (0, --learning_rate] (LinearLR start_factor {start.ToString(CultureInfo.InvariantCulture)})");
        return start;
    }

    /// <summary>
    /// --warmup_steps before a --lr_schedule: <see cref="Recipes.WithWarmup"/> (a leaf or SequentialLR is delayed by the
    /// warmup; a ChainedScheduler of rate-multiplying members gets it as one more member); what PyTorch cannot run after a
    /// warmup is a usage error that says what to write instead.
    /// </summary>
    public static Schedule WithWarmup(Schedule schedule, int warmup, SchedulerFlagValues f)
    {
        double start = WarmupStart(warmup, f);
        if (Recipes.WarmupRefusal(schedule) is { } why)
            throw new UsageException($"--warmup_steps={warmup} cannot precede this --lr_schedule: {why}. Write the warmup into the schedule " +
                $"instead and drop --warmup_steps: e.g. a SequentialLR whose first child is " +
                $"{{\"type\":\"LinearLR\",\"start_factor\":{Fmt.Num(start)},\"end_factor\":1.0,\"total_iters\":{warmup}}} with milestones [{warmup}, ...]" +
                (schedule is ChainedScheduler ? ", or that LinearLR as a member of the ChainedScheduler" : ""));
        return Recipes.WithWarmup(schedule, warmup, WarmupShape.Linear, start);
    }
}
