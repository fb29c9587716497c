using Expecto;
using Schedules.Core;
using Tests.Harness;
using Trainer.Cli;

namespace Tests.Training;

/// <summary>The command line: gflags conventions, SchedulerFlags, bad input (message, exit code, nothing written), real tiny runs.</summary>
public static class CliTests
{
    /// <summary>An llm.c token file: 1024-byte header (magic, version 1, count), then uint16 (GPT-2) or uint32 (LLaMA-3) ids.</summary>
    internal static void WriteTokens(string path, int[] tokens, int magic = 20240520, int? declared = null)
    {
        using var w = new BinaryWriter(File.Create(path));
        var header = new int[256];
        header[0] = magic; header[1] = 1; header[2] = declared ?? tokens.Length;
        foreach (var h in header) w.Write(h);
        foreach (var t in tokens) { if (magic == 20240520) w.Write((ushort)t); else w.Write(t); }
    }

    static int[] Pattern(int n) => TinyLm.Tokens(n, 300).Select(t => t + 100).ToArray();

    static (int Code, string Out, string Err) Train(params string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        int code = TrainCommand.Run(args, o, e);
        return (code, o.ToString(), e.ToString());
    }

    static void ExpectFail(int code, string[] contains, params string[] args)
    {
        var (c, _, err) = Train(args);
        if (c != code) throw new Exception($"exit {c}, expected {code}; stderr: {err}");
        foreach (var s in contains)
            if (!err.Contains(s)) throw new Exception($"stderr lacks '{s}': {err}");
    }

    static void WithDir(Action<string> body)
    {
        var d = ResumeTests.TempDir("cli");
        try { body(d); } finally { Directory.Delete(d, true); }
    }

    static FlagSet Demo() => new FlagSet("demo", "demo")
        .Int("batch_size", 4, "b").Bool("overfit", true, "o").String("lr_scheduler", "cosine", "s").Double("learning_rate", 1e-4, "lr");

    static SchedulerFlagValues S(string kind, int warmup = 0) => new() { Scheduler = kind, WarmupSteps = warmup };

    [Tests]
    public static Test Parser => Spec.List("cli.gflags",
        Spec.Case("--flag=value, --flag value, dashes and underscores alike", () =>
        {
            var v = Demo().Parse(new[] { "--batch-size=8", "--lr_scheduler", "steplr", "-learning-rate", "0.5" });
            if (v.GetInt("batch_size") != 8 || v.GetString("lr-scheduler") != "steplr" || v.GetDouble("learning_rate") != 0.5) throw new Exception("values");
        }),
        Spec.Case("booleans: --flag, --noflag, --flag=false", () =>
        {
            if (!Demo().Parse(new[] { "--overfit" }).GetBool("overfit")) throw new Exception("--flag");
            if (Demo().Parse(new[] { "--nooverfit" }).GetBool("overfit")) throw new Exception("--noflag");
            if (Demo().Parse(new[] { "--overfit=false" }).GetBool("overfit")) throw new Exception("--flag=false");
            if (!Demo().Parse(Array.Empty<string>()).GetBool("overfit")) throw new Exception("default");
        }),
        Spec.Case("unknown flag and bad value name the flag and the value", () =>
        {
            try { Demo().Parse(new[] { "--batch_sise=3" }); throw new Exception("accepted"); }
            catch (UsageException e) when (e.Message.Contains("--batch_sise") && e.Message.Contains("--batch_size")) { }
            try { Demo().Parse(new[] { "--batch_size=abc" }); throw new Exception("accepted"); }
            catch (UsageException e) when (e.Message.Contains("--batch_size") && e.Message.Contains("'abc'")) { }
            try { Demo().Parse(new[] { "--overfit=maybe" }); throw new Exception("accepted"); }
            catch (UsageException e) when (e.Message.Contains("--overfit") && e.Message.Contains("'maybe'")) { }
            try { Demo().Parse(new[] { "--batch_size" }); throw new Exception("accepted"); }
            catch (UsageException e) when (e.Message.Contains("needs a value")) { }
        }),
        Spec.Case("--help lists every train flag with its default", () =>
        {
            var (code, output, _) = Train("--help");
            if (code != 0) throw new Exception("exit " + code);
            foreach (var d in TrainCommand.Flags().Definitions)
                if (!output.Contains("--" + d.Name + " ") && !output.Contains("--" + d.Name + ",")) throw new Exception($"--help lacks --{d.Name}");
            foreach (var s in new[] { "default: 0.01", "default: gpt2-tiny", "warmup-stable-decay", "--dp", "--lr_decay_iters" })
                if (!output.Contains(s, StringComparison.OrdinalIgnoreCase)) throw new Exception($"--help lacks '{s}'");
        }));

    [Tests]
    public static Test Schedules => Spec.List("cli.scheduler-flags",
        Spec.Case("--warmup-steps wraps any schedule in SequentialLR(LinearLR -> schedule)", () =>
        {
            var s = SchedulerFlags.FromFlags(S("cosine", 2), 1.0, 10)!;
            if (s is not SequentialLR seq || seq.Schedulers[0] is not LinearLR || seq.Schedulers[1] is not CosineAnnealingLR c || c.TMax != 8)
                throw new Exception("shape: " + s.ToJson());
            double[] want = { 1.0 / 3, 2.0 / 3, 1.0 };
            for (int k = 0; k < 3; k++)
                if (Math.Abs(s.Lr(k, 1.0) - want[k]) > 1e-12) throw new Exception($"lr({k}) = {s.Lr(k, 1.0)}");
            if (Math.Abs(s.Lr(10, 1.0)) > 1e-12) throw new Exception("cosine should reach eta_min at the end: " + s.Lr(10, 1.0));
            var st = SchedulerFlags.FromFlags(S("steplr", 3) with { StepSize = 2, Gamma = 0.5 }, 1.0, 10)!;
            if (st is not SequentialLR { Schedulers: [LinearLR, StepLR { StepSize: 2, Gamma: 0.5 }] }) throw new Exception(st.ToJson());
        }),
        Spec.Case("defaults: cosine with auto warmup (10%), none = no scheduler", () =>
        {
            var d = SchedulerFlags.FromFlags(new SchedulerFlagValues(), 6e-4, 20)!;
            if (d is not SequentialLR { Milestones: [2] }) throw new Exception(d.ToJson());
            if (SchedulerFlags.FromFlags(S("none"), 6e-4, 20) is not null) throw new Exception("none");
            if (SchedulerFlags.FromFlags(S("steplr"), 6e-4, 30) is not StepLR { StepSize: 10, Gamma: 0.1 }) throw new Exception("steplr default");
        }),
        Spec.Case("every --lr-scheduler kind builds a valid schedule", () =>
        {
            foreach (var k in SchedulerFlags.Kinds.Where(k => k != "none"))
            {
                var s = SchedulerFlags.FromFlags(S(k), 1e-3, 50) ?? throw new Exception(k + " gave null");
                var back = ScheduleJson.Parse(ScheduleJson.Write(s));
                if (ScheduleJson.Write(back) != ScheduleJson.Write(s)) throw new Exception($"{k}: JSON round trip changed it");
                if (!s.IsMetricDriven) s.Trace(new[] { 1e-3 }, 50, new[] { 0.9 });
            }
        }),
        Spec.Case("--lr-schedule takes inline JSON, @file and a path; bad JSON is a usage error", () => WithDir(dir =>
        {
            const string json = "{\"type\":\"ChainedScheduler\",\"schedulers\":[{\"type\":\"StepLR\",\"step_size\":5,\"gamma\":0.5},{\"type\":\"LinearLR\",\"start_factor\":0.1,\"total_iters\":10}]}";
            var f = Path.Combine(dir, "s.json");
            File.WriteAllText(f, json);
            foreach (var arg in new[] { json, "@" + f, f })
                if (SchedulerFlags.FromFlags(new SchedulerFlagValues { ScheduleJson = arg }, 1.0, 10) is not ChainedScheduler) throw new Exception(arg);
            var (code, _, err) = Train("--lr_schedule={\"type\":\"StepLR\",\"step_size\":0}");
            if (code != 2 || !err.Contains("--lr_schedule") || !err.Contains("step_size")) throw new Exception($"exit {code}: {err}");
            var (code2, _, err2) = Train("--lr_schedule={\"type\":\"Nope\"}");
            if (code2 != 2 || !err2.Contains("Nope")) throw new Exception($"exit {code2}: {err2}");
        })),
        Spec.Case("inconsistent schedule flags are usage errors", () =>
        {
            ExpectFail(2, new[] { "--warmup_steps", "plateau" }, "--lr_scheduler=plateau", "--warmup_steps=2");
            ExpectFail(2, new[] { "--lr_scheduler", "'cosin'" }, "--lr_scheduler=cosin");
            ExpectFail(2, new[] { "--warmup_steps=10" }, "--warmup_steps=10", "--num_iteration=10");
        }));

    [Tests]
    public static Test BadInput => Spec.Sequenced(Spec.List("cli.bad-input",
        Spec.Case("unknown flag / bad value / inconsistent flags: exit 2, flag and value named, nothing written", () => WithDir(dir =>
        {
            var log = Path.Combine(dir, "log.jsonl");
            var save = Path.Combine(dir, "ck");
            string[] common = { "--log_json", log, "--save", save, "--save_interval", "1" };
            ExpectFail(2, new[] { "--bogus" }, common.Append("--bogus=1").ToArray());
            ExpectFail(2, new[] { "--batch_size", "'x'" }, common.Append("--batch_size=x").ToArray());
            ExpectFail(2, new[] { "--batch_size", "'0'" }, common.Append("--batch_size=0").ToArray());
            ExpectFail(2, new[] { "--learning_rate", "'-1'" }, common.Append("--learning_rate=-1").ToArray());
            ExpectFail(2, new[] { "--optimizer", "'lion'" }, common.Append("--optimizer=lion").ToArray());
            ExpectFail(2, new[] { "--dtype", "'fp8'" }, common.Append("--dtype=fp8").ToArray());
            ExpectFail(2, new[] { "--model", "'gpt5'" }, common.Append("--model=gpt5").ToArray());
            ExpectFail(2, new[] { "--total_batch_size=100", "divisible" }, common.Append("--total_batch_size=100").ToArray());
            ExpectFail(2, new[] { "--save", "--save_interval" }, "--save", save);
            ExpectFail(2, new[] { "--sequence_length=128", "block size" }, common.Append("--sequence_length=128").Append("--total_batch_size=512").ToArray());
            if (File.Exists(log) || Directory.Exists(save)) throw new Exception("something was written");
        })),
        Spec.Case("missing / truncated / wrong-magic token files, missing weight file: exit 1, file named, nothing written", () => WithDir(dir =>
        {
            var log = Path.Combine(dir, "log.jsonl");
            var missing = Path.Combine(dir, "nope.bin");
            ExpectFail(1, new[] { "--input_bin", missing }, "--input_bin", missing, "--log_json", log);
            var trunc = Path.Combine(dir, "trunc.bin");
            WriteTokens(trunc, Pattern(1000), declared: 5000);
            ExpectFail(1, new[] { "truncated", trunc }, "--input_bin", trunc, "--log_json", log);
            var magic = Path.Combine(dir, "magic.bin");
            WriteTokens(magic, Pattern(1000), magic: 12345);
            ExpectFail(1, new[] { "magic", "12345" }, "--input_bin", magic, "--log_json", log);
            var tiny = Path.Combine(dir, "tiny.bin");
            File.WriteAllBytes(tiny, new byte[100]);
            ExpectFail(1, new[] { tiny }, "--input_bin", tiny, "--log_json", log);
            var w = Path.Combine(dir, "nope-weights.bin");
            ExpectFail(1, new[] { "--llmc_filepath", w }, "--llmc_filepath", w, "--log_json", log);
            if (File.Exists(log)) throw new Exception("log written");
        })),
        Spec.Case("incompatible checkpoint: exit 1, mismatch named, nothing written", () => WithDir(dir =>
        {
            var data = Path.Combine(dir, "train.bin");
            WriteTokens(data, Pattern(3000));
            var save = Path.Combine(dir, "ck");
            string[] run = { "--input_bin", data, "--batch_size=1", "--sequence_length=16", "--total_batch_size=16", "--num_iteration=2", "--noprogress" };
            var (c, _, e) = Train(run.Concat(new[] { "--save", save, "--save_interval=1" }).ToArray());
            if (c != 0) throw new Exception("setup run failed: " + e);
            var log = Path.Combine(dir, "log.jsonl");
            ExpectFail(1, new[] { "lr schedule differs" }, run.Concat(new[] { "--load", save, "--lr_scheduler=steplr", "--log_json", log }).ToArray());
            var data32 = Path.Combine(dir, "train32.bin"); // a LLaMA-3 model reads uint32 token files
            WriteTokens(data32, Pattern(3000), magic: 20240801);
            ExpectFail(1, new[] { "model configuration differs" }, run.Select(a => a == data ? data32 : a).Concat(new[] { "--load", save, "--model=llama3-tiny", "--log_json", log }).ToArray());
            ExpectFail(1, new[] { "optimizer differs" }, run.Concat(new[] { "--load", save, "--optimizer=sgd", "--log_json", log }).ToArray());
            ExpectFail(1, new[] { "does not exist" }, run.Concat(new[] { "--load", Path.Combine(dir, "none"), "--log_json", log }).ToArray());
            if (File.Exists(log)) throw new Exception("log written");
        }))));

    [Tests]
    public static Test Runs => Spec.Sequenced(Spec.List("cli.runs",
        Spec.Case("gpt2-tiny and llama3-tiny train from the command line: InfiniTrain log lines, JSON log, falling loss", () => WithDir(dir =>
        {
            foreach (var model in new[] { "gpt2-tiny", "llama3-tiny" })
            {
                var data = Path.Combine(dir, model + ".bin"); // GPT-2 reads uint16 token files, LLaMA-3 uint32
                WriteTokens(data, Pattern(6000), magic: model == "gpt2-tiny" ? 20240520 : 20240801);
                var log = Path.Combine(dir, model + ".jsonl");
                var (c, output, e) = Train("--model", model, "--input_bin", data, "--batch_size=2", "--sequence_length=32", "--total_batch_size=128",
                    "--num_iteration=6", "--learning_rate=3e-3", "--log_json", log, "--noprogress");
                if (c != 0) throw new Exception($"{model}: exit {c}: {e}");
                var lines = output.Split('\n').Where(l => l.StartsWith("step ")).ToArray();
                if (lines.Length != 6) throw new Exception($"{model}: {lines.Length} step lines:\n{output}");
                if (!System.Text.RegularExpressions.Regex.IsMatch(lines[0], @"^step    1/6 \| train loss \d+\.\d{6} \| lr \d\.\d\de-\d\d \| \(\d+\.\d\d ms \| \d+ tok/s, DP=1\)$"))
                    throw new Exception($"{model}: line format: {lines[0]}");
                var json = File.ReadAllLines(log);
                if (json.Length != 6 || !json[0].StartsWith("{\"step\":1,\"loss\":")) throw new Exception($"{model}: json: {json.FirstOrDefault()}");
                var losses = json.Select(j => System.Text.Json.JsonDocument.Parse(j).RootElement.GetProperty("loss").GetDouble()).ToArray();
                if (!(losses[^1] < losses[0])) throw new Exception($"{model}: loss did not fall: {string.Join(", ", losses)}");
            }
        })),
        Spec.Case("--llmc_filepath starts from the weight file; bfloat16 trains; embedded validation split", () => WithDir(dir =>
        {
            var weights = Path.Combine(dir, "w.bin");
            using (var m = Trainer.Models.ModelFactory.Create(Trainer.Models.ModelCatalog.Get("gpt2-tiny"), 7, TorchSharp.torch.CPU, TorchSharp.torch.ScalarType.Float32))
                Trainer.Data.LlmcWeights.Save(m, weights);
            string[] run = { "--batch_size=1", "--sequence_length=16", "--total_batch_size=16", "--num_iteration=2", "--noprogress" };
            string FirstLoss(string output) => output.Split('\n').First(l => l.StartsWith("step    1/2")).Split(" | ")[1];
            var fromFile = Train(run.Concat(new[] { "--llmc_filepath", weights }).ToArray());
            var seeded = Train(run.Concat(new[] { "--seed=7" }).ToArray());
            if (fromFile.Code != 0 || seeded.Code != 0) throw new Exception(fromFile.Err + seeded.Err);
            if (FirstLoss(fromFile.Out) != FirstLoss(seeded.Out)) throw new Exception($"{FirstLoss(fromFile.Out)} vs {FirstLoss(seeded.Out)}");
            var bf = Train(run.Concat(new[] { "--dtype=bfloat16", "--val_loss_every=1", "--val_max_steps=2" }).ToArray());
            if (bf.Code != 0 || !bf.Out.Contains("step    2/2 | train loss") || !bf.Out.Contains("step    2/2 | val loss")) throw new Exception(bf.Out + bf.Err);
            ExpectFail(1, new[] { "--device=cuda", "CUDA is not available" }, "--device=cuda");
        })),
        Spec.Case("llama3-tiny: --dp 4 reproduces --dp 1 with the same global batch (loss within 1e-5)", () => WithDir(dir =>
        {
            double[] Losses(string dp)
            {
                var log = Path.Combine(dir, dp + ".jsonl");
                var r = Train("--model=llama3-tiny", "--dp", dp, "--batch_size=1", "--sequence_length=16", "--total_batch_size=64", "--num_iteration=3", "--noprogress", "--log_json", log);
                if (r.Code != 0) throw new Exception(r.Err);
                return File.ReadAllLines(log).Select(j => System.Text.Json.JsonDocument.Parse(j).RootElement.GetProperty("loss").GetDouble()).ToArray();
            }
            var one = Losses("1");
            var four = Losses("4");
            for (int i = 0; i < one.Length; i++)
                if (Math.Abs(one[i] - four[i]) > 1e-5) throw new Exception($"step {i + 1}: DP=1 {one[i]:R} vs DP=4 {four[i]:R}");
        })),
        Spec.Case("--dp 2 and --load through the command line reproduce the uninterrupted run", () => WithDir(dir =>
        {
            var data = Path.Combine(dir, "train.bin");
            WriteTokens(data, Pattern(6000));
            var save = Path.Combine(dir, "ck");
            string[] run = { "--input_bin", data, "--batch_size=1", "--sequence_length=16", "--total_batch_size=32", "--num_iteration=4", "--dp", "2",
                "--lr_scheduler=cosine", "--warmup_steps=1", "--learning_rate=1e-2", "--noprogress" };
            var full = Train(run.Concat(new[] { "--save", save, "--save_interval=2", "--log_json", Path.Combine(dir, "a.jsonl") }).ToArray());
            if (full.Code != 0) throw new Exception(full.Err);
            var res = Train(run.Concat(new[] { "--load", Path.Combine(save, "checkpoint_step_000002"), "--log_json", Path.Combine(dir, "b.jsonl") }).ToArray());
            if (res.Code != 0) throw new Exception(res.Err);
            var a = File.ReadAllLines(Path.Combine(dir, "a.jsonl")).Skip(2).Select(l => l[..l.IndexOf(",\"ms\"")]).ToArray();
            var b = File.ReadAllLines(Path.Combine(dir, "b.jsonl")).Select(l => l[..l.IndexOf(",\"ms\"")]).ToArray();
            if (!a.SequenceEqual(b)) throw new Exception($"resumed:\n{string.Join("\n", b)}\nuninterrupted:\n{string.Join("\n", a)}");
        }))));
}
