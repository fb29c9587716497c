using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using Expecto;
using Schedules.Core;
using Schedules.Torch.Golden;
using Tests.Harness;
using Tests.Oracle;
using Trainer.Cli;

namespace Tests.Training;

/// <summary>
/// The trainer's schedule flags are the library's recipes (Schedules.Core/Recipes.cs), the PyTorch reference
/// (reference/pytorch/schedules.py) builds the same tree from the same flags, and a warmup before a chain runs in PyTorch.
/// </summary>
public static class SchedulerRecipeTests
{
    /// <summary>The schedule the trainer's flag parser builds from <paramref name="args"/> (a run of 20 steps at lr 1e-3 unless given).</summary>
    internal static Schedule? FromArgs(params string[] args)
    {
        var f = new FlagSet("t", "");
        SchedulerFlags.Define(f);
        f.Double("learning_rate", 1e-3, "").Int("num_iteration", 20, "");
        var v = f.Parse(args);
        return SchedulerFlags.FromFlags(SchedulerFlags.Read(v), v.GetDouble("learning_rate"), v.GetInt32("num_iteration"));
    }

    static string Json(Schedule? s) => s is null ? "none" : ScheduleJson.Write(s);

    const string Chain = """{"type":"ChainedScheduler","schedulers":[{"type":"StepLR","step_size":4,"gamma":0.5},{"type":"ExponentialLR","gamma":0.97},{"type":"ConstantLR","factor":0.5,"total_iters":6}]}""";

    /// <summary>Flag combinations, each with the recipe the CLI must build for it (20 steps, lr 1e-3).</summary>
    static readonly (string[] Args, Func<Schedule> Recipe)[] Combinations =
    [
        ([], () => Recipes.WarmupCosine(2, 20, 0.0, WarmupShape.Linear, 1.0 / 3)),
        (["--lr_scheduler=cosine", "--warmup_steps=0", "--min_lr=1e-5"], () => Recipes.WarmupCosine(0, 20, 1e-5)),
        (["--lr_scheduler=cosine", "--warmup_steps=4", "--warmup_start_factor=0.1"], () => Recipes.WarmupCosine(4, 20, 0.0, WarmupShape.Linear, 0.1)),
        (["--lr_scheduler=cosine", "--warmup_steps=4", "--lr_warmup_init=2e-4"], () => Recipes.WarmupCosine(4, 20, 0.0, WarmupShape.Linear, 2e-4 / 1e-3)),
        (["--lr_scheduler=cosine", "--total_steps=30", "--warmup_steps=5"], () => Recipes.WarmupCosine(5, 30, 0.0, WarmupShape.Linear, 1.0 / 6)),
        (["--lr_scheduler=warmup-stable-decay", "--decay_steps=6", "--min_lr=1e-4"],
            () => Recipes.WarmupStableDecay(2, 12, 6, DecayShape.Linear, 1e-4 / 1e-3, WarmupShape.Linear, 1.0 / 3)),
        (["--lr_scheduler=warmup-stable-decay", "--warmup_steps=3", "--decay_shape=1-sqrt"],
            () => Recipes.WarmupStableDecay(3, 17 - 3, 3, DecayShape.OneMinusSqrt, 0.0, WarmupShape.Linear, 0.25)),
        (["--lr_scheduler=warmup-stable-decay", "--warmup_steps=0", "--decay_shape=cosine", "--decay_steps=20"],
            () => Recipes.WarmupStableDecay(0, 0, 20, DecayShape.Cosine)),
        (["--lr_scheduler=inverse-sqrt", "--warmup_steps=4"], () => Recipes.InverseSqrt(4)),
        (["--lr_scheduler=inverse-sqrt"], () => Recipes.InverseSqrt(2)),
        (["--lr_scheduler=steplr", "--warmup_steps=3"], () => Recipes.WithWarmup(new StepLR(17 / 3, TorchDefaults.StepGamma), 3, WarmupShape.Linear, 0.25)),
        (["--lr_scheduler=multisteplr", "--milestones=5,9", "--gamma=0.3"], () => new MultiStepLR([5, 9], 0.3)),
        (["--lr_scheduler=exponential", "--warmup_steps=2"], () => Recipes.WithWarmup(new ExponentialLR(SchedulerFlags.ExponentialGamma), 2, WarmupShape.Linear, 1.0 / 3)),
        (["--lr_scheduler=linear", "--warmup_steps=5", "--min_lr=1e-4"], () => Recipes.WithWarmup(new LinearLR(1.0, 1e-4 / 1e-3, 15), 5, WarmupShape.Linear, 1.0 / 6)),
        (["--lr_scheduler=polynomial", "--power=2", "--warmup_steps=1"], () => Recipes.WithWarmup(new PolynomialLR(19, 2.0), 1, WarmupShape.Linear, 0.5)),
        (["--lr_scheduler=constant", "--constant_factor=0.5", "--constant_iters=4", "--warmup_steps=2"],
            () => Recipes.WithWarmup(new ConstantLR(0.5, 4), 2, WarmupShape.Linear, 1.0 / 3)),
        (["--lr_scheduler=cosine-restarts", "--t0=4", "--t_mult=2", "--warmup_steps=2"],
            () => Recipes.WithWarmup(new CosineAnnealingWarmRestarts(4, 2, 0.0), 2, WarmupShape.Linear, 1.0 / 3)),
        (["--lr_scheduler=cyclic", "--cyclic_mode=exp_range", "--step_size_up=3", "--warmup_steps=2"],
            () => Recipes.WithWarmup(new CyclicLR(1e-3 / 10, 1e-3, 3, null, CyclicMode.ExpRange, SchedulerFlags.ExpRangeGamma, false), 2, WarmupShape.Linear, 1.0 / 3)),
        (["--lr_scheduler=onecycle", "--warmup_steps=2"], () => Recipes.WithWarmup(new OneCycleLR(1e-3, 18, cycleMomentum: false), 2, WarmupShape.Linear, 1.0 / 3)),
        (["--lr_scheduler=plateau", "--patience=2"], () => new ReduceLROnPlateau(PlateauMode.Min, TorchDefaults.PlateauFactor, 2, TorchDefaults.PlateauThreshold, ThresholdMode.Rel, 0, 0.0)),
        (["--lr_schedule=" + Chain, "--warmup_steps=3"], () => Recipes.WithWarmup(ScheduleJson.Parse(Chain), 3, WarmupShape.Linear, 0.25)),
        (["--lr_schedule={\"type\":\"SequentialLR\",\"schedulers\":[{\"type\":\"ConstantLR\",\"factor\":0.5,\"total_iters\":2},{\"type\":\"StepLR\",\"step_size\":3}],\"milestones\":[5]}", "--warmup_steps=2"],
            () => Recipes.WithWarmup(new SequentialLR([new ConstantLR(0.5, 2), new StepLR(3)], [5]), 2, WarmupShape.Linear, 1.0 / 3)),
    ];

    /// <summary>Flag lists the PyTorch reference must turn into the same JSON tree (or refuse) as the trainer.</summary>
    static readonly string[][] ReferenceCases =
    [
        .. Combinations.Select(c => c.Args),
        ["--lr_scheduler=none"],
        ["--lr_scheduler=cosine", "--warmup_steps=7", "--num_iteration=50", "--min_lr=1e-5"],
        ["--lr_scheduler=warmup-stable-decay", "--warmup_steps=3", "--decay_shape=cosine", "--decay_steps=8", "--min_lr=1e-5"],
        ["--lr_scheduler=cyclic", "--cyclic_mode=triangular2", "--step_size_up=3", "--min_lr=1e-4"],
        ["--lr_schedule={\"type\":\"ChainedScheduler\",\"schedulers\":[{\"type\":\"StepLR\",\"step_size\":4},{\"type\":\"LambdaLR\",\"lr_lambda\":{\"fn\":\"const\",\"c\":0.5}}]}", "--warmup_steps=2"],
    ];

    [Tests]
    public static Test Recipes_ => Spec.List("cli.scheduler-recipes",
        Spec.Case("every flag combination builds exactly the recipe's schedule", () =>
        {
            foreach (var (args, recipe) in Combinations)
                Must.Equal(Json(FromArgs(args)), Json(recipe()), string.Join(" ", args));
        }),
        Spec.Case("the warmup ramps as lr (k+1)/(W+1) and reaches lr at W", () =>
        {
            foreach (int w in new[] { 1, 3, 8 })
            {
                var s = FromArgs("--lr_scheduler=steplr", "--step_size=100", $"--warmup_steps={w}", "--learning_rate=0.5")!;
                for (int k = 0; k <= w; k++) Must.Close(s.Lr(k, 0.5), 0.5 * (k + 1) / (w + 1), 1e-12, $"W={w}, step {k}");
            }
        }),
        Spec.Case("--warmup_steps before a chain of multiplying members: the chain times a factor rising to 1", () =>
        {
            var warm = FromArgs("--lr_schedule=" + Chain, "--warmup_steps=3")!;
            var plain = FromArgs("--lr_schedule=" + Chain)!;
            Must.True(warm is ChainedScheduler { Schedulers: [LinearLR { StartFactor: 0.25, EndFactor: 1.0, TotalIters: 3 }, ..] }, warm.ToJson());
            for (int k = 0; k <= 20; k++) Must.Close(warm.Lr(k, 1e-3), plain.Lr(k, 1e-3) * Math.Min(1.0, (k + 1) / 4.0), 1e-12, $"step {k}");
        }),
        Spec.Case("--warmup_steps before what PyTorch cannot run after a warmup: usage error naming the flag and the fix", () =>
        {
            foreach (var json in new[]
            {
                """{"type":"ChainedScheduler","schedulers":[{"type":"StepLR","step_size":4},{"type":"CyclicLR","base_lr":0.1,"max_lr":1.0,"step_size_up":2}]}""",
                """{"type":"SequentialLR","schedulers":[""" + Chain + """,{"type":"StepLR","step_size":3}],"milestones":[5]}""",
            })
            {
                var e = Must.Throws<UsageException>(() => FromArgs("--lr_schedule=" + json, "--warmup_steps=3"), json);
                foreach (var s in new[] { "--warmup_steps=3", "drop --warmup_steps", "\"type\":\"LinearLR\"", "\"total_iters\":3" })
                    Must.True(e.Message.Contains(s), $"message lacks '{s}': {e.Message}");
            }
        }));

    /// <summary>Runs reference/pytorch's flag parser and flags_to_json on each flag list (one Python process).</summary>
    static JsonObject[] ReferenceJson(IEnumerable<string[]> argLists)
    {
        var dir = Path.Combine(Scripts.RepoRoot(), "reference", "pytorch");
        const string script = """
            import json, sys
            sys.path.insert(0, sys.argv[1])
            import schedules, trainer
            for line in sys.stdin:
                argv = json.loads(line)
                try:
                    print(json.dumps({"spec": schedules.flags_to_json(trainer.parse_flags(argv, "gpt2-tiny"))}), flush=True)
                except SystemExit as e:
                    print(json.dumps({"error": str(e)}), flush=True)
            """;
        var psi = new ProcessStartInfo(TorchOracle.DefaultPython)
        {
            RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        foreach (var a in new[] { "-c", script, dir }) psi.ArgumentList.Add(a);
        psi.Environment["OMP_NUM_THREADS"] = "1";
        using var p = Process.Start(psi)!;
        var errTask = p.StandardError.ReadToEndAsync();
        // FromArgs' run: 20 steps at lr 1e-3 unless the case says otherwise (later flags win in both parsers).
        foreach (var args in argLists) p.StandardInput.WriteLine(JsonSerializer.Serialize(args.Prepend("--learning_rate=1e-3").Prepend("--num_iteration=20")));
        p.StandardInput.Close();
        var lines = p.StandardOutput.ReadToEnd().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Must.True(p.WaitForExit(60_000), "the reference answers within a minute");
        Must.Equal(p.ExitCode, 0, "reference exit code; stderr: " + errTask.Result);
        return lines.Select(l => JsonNode.Parse(l)!.AsObject()).ToArray();
    }

    [Tests]
    public static Test Reference => Spec.Sequenced(Spec.List("cli.scheduler-reference",
        Spec.Case("the PyTorch reference builds the trainer's schedule from the same flags (or refuses the same ones)", () =>
        {
            var answers = ReferenceJson(ReferenceCases);
            Must.Equal(answers.Length, ReferenceCases.Length, "one answer per case");
            for (int i = 0; i < ReferenceCases.Length; i++)
            {
                string what = string.Join(" ", ReferenceCases[i]);
                Schedule? ours;
                try { ours = FromArgs(ReferenceCases[i]); }
                catch (UsageException e)
                {
                    Must.True(answers[i]["error"] is not null, $"{what}: the trainer refuses ({e.Message}) but the reference builds {answers[i]["spec"]}");
                    continue;
                }
                Must.True(answers[i]["error"] is null, $"{what}: the reference refuses: {answers[i]["error"]}");
                var spec = answers[i]["spec"];
                Must.Equal(spec is null ? "none" : Json(ScheduleJson.Parse(spec)), Json(ours), what);
            }
        }),
        Spec.Case("warmup before a chain: PyTorch 1.13 runs it and the trainer's rates equal PyTorch's bit for bit", () =>
        {
            var warm = FromArgs("--lr_schedule=" + Chain, "--warmup_steps=3", "--learning_rate=0.1")!;
            using var oracle = TorchOracle.Start();
            var c = new JsonObject { ["id"] = "warmup-chain", ["lrs"] = new JsonArray(0.1, 0.02), ["steps"] = 30, ["scheduler"] = JsonNode.Parse(warm.ToJson()) };
            var answer = oracle.Ask(c);
            Must.True(answer["error"] is null && answer["error_at_step"] is null, $"PyTorch {oracle.TorchVersion} runs it: {answer}");
            foreach (var k in new[] { "torch", "trace", "last_lr" }) c[k] = answer[k]?.DeepClone();
            var outcome = GoldenReplay.Check(c, rtol: 0);
            Must.True(outcome.Passed, outcome.Failure ?? "");
            // The construction it replaces: PyTorch cannot switch into the chain at the warmup's milestone.
            var seq = new JsonObject
            {
                ["id"] = "warmup-then-chain", ["lrs"] = new JsonArray(0.1), ["steps"] = 6,
                ["scheduler"] = JsonNode.Parse($$"""{"type":"SequentialLR","schedulers":[{"type":"LinearLR","start_factor":0.25,"end_factor":1.0,"total_iters":3},{{Chain}}],"milestones":[3]}"""),
            };
            var refused = oracle.Ask(seq);
            Must.True(refused["error"] is not null || refused["error_at_step"] is not null, $"PyTorch {oracle.TorchVersion} refuses SequentialLR into a chain: {refused}");
        })));
}
