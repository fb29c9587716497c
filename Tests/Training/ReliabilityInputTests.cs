using System.Text.Json;
using Expecto;
using Tests.Harness;
using Trainer.Cli;
using Trainer.LrTools;

namespace Tests.Training;

/// <summary>
/// Issue 11, hostile input to <c>train</c>: token files (ids ≥ 2^31, no tokens, the other family's width, a short
/// validation file), optimizer values that pass the flag checks but not libtorch (beta = 1, an LR beyond float32),
/// schedules with negative LRs, machine bounds (threads, a global batch larger than the data) and a NaN loss.
/// Each is refused with a message naming the flag or file, before anything is written.
/// </summary>
public static class ReliabilityInputTests
{
    const int Gpt2Magic = 20240520, Llama3Magic = 20240801;
    static readonly string[] Tiny = { "--batch_size=1", "--sequence_length=16", "--total_batch_size=16", "--num_iteration=2", "--noprogress" };

    static (int Code, string Out, string Err) Train(params string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        int code = TrainCommand.Run(args, o, e);
        return (code, o.ToString(), e.ToString());
    }

    /// <summary>Runs a tiny training with <paramref name="args"/> plus --log_json and --save in a temp folder; expects
    /// exit <paramref name="code"/>, every <paramref name="contains"/> in stderr, and neither output written.</summary>
    static void Refused(int code, string[] contains, params string[] args) => WithDir(dir =>
    {
        var log = Path.Combine(dir, "log.jsonl");
        var save = Path.Combine(dir, "ck");
        var (c, _, err) = Train(Tiny.Concat(args).Concat(new[] { "--log_json", log, "--save", save, "--save_interval=1" }).ToArray());
        if (c != code) throw new AssertException($"{string.Join(" ", args)}: exit {c}, expected {code}; stderr: {err}");
        foreach (var s in contains) Must.Contains(err, s, string.Join(" ", args));
        Must.True(!File.Exists(log) && !Directory.Exists(save), $"{string.Join(" ", args)}: something was written before the refusal");
    });

    static void WithDir(Action<string> body)
    {
        var d = ResumeTests.TempDir("reliability");
        try { body(d); } finally { Directory.Delete(d, true); }
    }

    static int[] Pattern(int n) => TinyLm.Tokens(n, 300).Select(t => t + 100).ToArray();

    [Tests]
    public static Test TokenFiles => Spec.Sequenced(Spec.List("reliability.inputs",
        Spec.Case("a LLaMA-3 token id >= 2^31 (0xFFFFFFFF) is out of vocabulary: exit 1, file and id named, nothing written", () => WithDir(dir =>
        {
            var f = Path.Combine(dir, "big-id.bin");
            var tokens = Pattern(2000);
            tokens[777] = unchecked((int)0xFFFFFFFFu);
            CliTests.WriteTokens(f, tokens, Llama3Magic);
            Refused(1, new[] { "--input_bin", f, "4294967295", "vocabulary" }, "--model=llama3-tiny", "--input_bin", f);
            var v = Path.Combine(dir, "ok.bin");
            CliTests.WriteTokens(v, Pattern(2000), Llama3Magic);
            Refused(1, new[] { "--input_val_bin", f, "4294967295" }, "--model=llama3-tiny", "--input_bin", v, "--input_val_bin", f, "--val_loss_every=1");
        })),
        Spec.Case("a token file with no tokens: exit 1, file named with the tokens one batch needs", () => WithDir(dir =>
        {
            var f = Path.Combine(dir, "empty.bin");
            CliTests.WriteTokens(f, Array.Empty<int>());
            Refused(1, new[] { "--input_bin", f, "0 tokens", "needs 32" }, "--input_bin", f);
        })),
        Spec.Case("the other family's token width (uint32 for GPT-2, uint16 for LLaMA-3): exit 1, file and formats named", () => WithDir(dir =>
        {
            var u32 = Path.Combine(dir, "u32.bin");
            CliTests.WriteTokens(u32, Pattern(2000), Llama3Magic);
            Refused(1, new[] { "--input_bin", u32, "uint32", "uint16", "gpt2-tiny" }, "--model=gpt2-tiny", "--input_bin", u32);
            var u16 = Path.Combine(dir, "u16.bin");
            CliTests.WriteTokens(u16, Pattern(2000), Gpt2Magic);
            Refused(1, new[] { "--input_bin", u16, "uint16", "uint32", "llama3-tiny" }, "--model=llama3-tiny", "--input_bin", u16);
            Refused(1, new[] { "--input_val_bin", u32, "uint32" }, "--model=gpt2-tiny", "--input_bin", u16, "--input_val_bin", u32, "--val_loss_every=1");
        })),
        Spec.Case("a --input_val_bin too short for one evaluation batch is refused before the first step", () => WithDir(dir =>
        {
            var train = Path.Combine(dir, "train.bin");
            CliTests.WriteTokens(train, Pattern(3000));
            var val = Path.Combine(dir, "val.bin");
            CliTests.WriteTokens(val, Pattern(40));
            // B=1 x DP=2 sequences of 16+1 tokens need 48 tokens; 40 is too few.
            Refused(1, new[] { "--input_val_bin", val, "40 tokens", "needs 48" },
                "--input_bin", train, "--input_val_bin", val, "--val_loss_every=1", "--dp=2", "--total_batch_size=32");
        })),
        Spec.Case("--total_batch_size needing more tokens per optimizer step than the data holds: exit 2, numbers named", () => WithDir(dir =>
        {
            var f = Path.Combine(dir, "train.bin");
            CliTests.WriteTokens(f, Pattern(1000)); // 1000 / 16 - 1 = 61 samples of 16 tokens
            Refused(2, new[] { "--total_batch_size=1024", "64 global batches", "only 61", "976", f }, "--input_bin", f, "--total_batch_size=1024");
            // Exactly one epoch per step is allowed.
            var (c, _, e) = Train("--input_bin", f, "--batch_size=1", "--sequence_length=16", "--total_batch_size=976", "--num_iteration=1", "--noprogress");
            Must.True(c == 0, "one epoch per step must train: " + e);
            // The issue's case: 2147483392 tokens per step = 8,388,607 accumulation steps over the 163k-token embedded data.
            Refused(2, new[] { "--total_batch_size=2147483392", "embedded" }, "--batch_size=4", "--sequence_length=64", "--total_batch_size=2147483392");
        })),
        Spec.Case("--num_threads and --nthread_per_process beyond what the machine can run: exit 2, bound named", () =>
        {
            int cores = Environment.ProcessorCount;
            Refused(2, new[] { "--num_threads", "'100000'", (4 * cores).ToString() }, "--num_threads=100000");
            int dpMax = Math.Max(8, 4 * cores);
            Refused(2, new[] { "--nthread_per_process", dpMax.ToString() }, "--nthread_per_process", (dpMax + 1).ToString(), "--total_batch_size=" + 16 * (dpMax + 1));
        })));

    [Tests]
    public static Test OptimizerValues => Spec.Sequenced(Spec.List("reliability.optimizer-values",
        Spec.Case("--beta1=1 and --beta2=1 are refused up front (PyTorch needs 0 <= beta < 1)", () =>
        {
            Refused(2, new[] { "--beta1", "'1'", "< 1" }, "--beta1=1");
            Refused(2, new[] { "--beta2", "'1'", "< 1" }, "--beta2=1", "--optimizer=adam");
        }),
        Spec.Case("an LR that overflows float32 in the optimizer step is refused up front, naming the flag or the schedule step", () =>
        {
            Refused(2, new[] { "--learning_rate", "float32" }, "--learning_rate=1e300");
            // AdamW's first step scales the LR by 1 / (1 - beta1) = 10: 1e38 overflows where SGD's 1e38 does not.
            Refused(2, new[] { "--learning_rate", "1 - beta1" }, "--learning_rate=1e38", "--lr_scheduler=none");
            Refused(2, new[] { "--lr_schedule", "step 2", "float32" }, "--lr_schedule={\"type\":\"LambdaLR\",\"lr_lambda\":{\"fn\":\"pow\",\"base\":1e38}}", "--learning_rate=1");
            Refused(2, new[] { "--weight_decay", "float32" }, "--weight_decay=1e39", "--optimizer=adam");
        }),
        Spec.Case("schedules that give a negative LR are refused like --learning_rate=-1, naming the step", () =>
        {
            Refused(2, new[] { "--lr_scheduler=steplr", "negative", "step 2" }, "--lr_scheduler=steplr", "--step_size=1", "--gamma=-1");
            Refused(2, new[] { "--lr_scheduler=exponential", "negative" }, "--lr_scheduler=exponential", "--gamma=-1");
            Refused(2, new[] { "--lr_scheduler=cyclic", "negative" }, "--lr_scheduler=cyclic", "--cyclic_mode=exp_range", "--gamma=-0.5", "--optimizer=sgd", "--momentum=0.9", "--num_iteration=4");
            Refused(2, new[] { "--lr_schedule", "negative" }, "--lr_schedule={\"type\":\"LambdaLR\",\"lr_lambda\":{\"fn\":\"const\",\"c\":-1}}");
            Refused(2, new[] { "--lr_schedule", "min_lr", "negative" }, "--lr_schedule={\"type\":\"ReduceLROnPlateau\",\"min_lr\":-1}");
            // A schedule that ends at 0 is fine.
            var (c, _, e) = Train(Tiny.Concat(new[] { "--lr_scheduler=cosine", "--warmup_steps=0" }).ToArray());
            Must.True(c == 0, "cosine to 0 must train: " + e);
        })));

    [Tests]
    public static Test NonFiniteLoss => Spec.Sequenced(Spec.List("reliability.log-json",
        Spec.Case("a step record with a NaN or infinite loss is valid JSON: loss null and the value named", () =>
        {
            foreach (var (loss, name) in new[] { (float.NaN, "NaN"), (float.PositiveInfinity, "Infinity"), (float.NegativeInfinity, "-Infinity") })
            {
                var j = Trainer.Training.StepLog.FormatJson(new Trainer.Training.StepRecord(3, 5, loss, new[] { 0.1 }, 0, double.PositiveInfinity, 1));
                var e = JsonDocument.Parse(j).RootElement;
                Must.True(e.GetProperty("loss").ValueKind == JsonValueKind.Null, "loss null: " + j);
                Must.Equal(e.GetProperty("loss_nonfinite").GetString(), name, "loss_nonfinite: " + j);
                Must.True(e.GetProperty("tok_per_s").ValueKind == JsonValueKind.Null, "tok_per_s null: " + j);
            }
            var ok = JsonDocument.Parse(Trainer.Training.StepLog.FormatJson(new Trainer.Training.StepRecord(1, 2, 1.5f, new[] { 0.1 }, 2, 3, 1))).RootElement;
            Must.True(ok.GetProperty("loss").GetDouble() == 1.5 && !ok.TryGetProperty("loss_nonfinite", out _), "a finite loss stays a number");
        }),
        Spec.Case("a NaN loss stops the run: exit 1 naming the step, the step logged as null, no optimizer step, no checkpoint of it; plot-logs reads the log", () => WithDir(dir =>
        {
            var log = Path.Combine(dir, "log.jsonl");
            var save = Path.Combine(dir, "ck");
            // LR 1e37 fits float32 (AdamW's first step applies 1e38) but blows the weights up: step 2's loss is NaN.
            var (c, output, err) = Train("--batch_size=1", "--sequence_length=16", "--total_batch_size=16", "--num_iteration=4", "--noprogress",
                "--learning_rate=1e37", "--lr_scheduler=none", "--log_json", log, "--save", save, "--save_interval=1");
            Must.True(c == 1, $"exit {c}; stderr: {err}");
            Must.Contains(err, "step 2", "stderr");
            Must.Contains(err, "NaN", "stderr");
            Must.True(output.Contains("step    2/4 | train loss NaN"), "the NaN step is printed: " + output);
            var lines = File.ReadAllLines(log);
            Must.Equal(lines.Length, 2, "JSON lines");
            foreach (var l in lines) JsonDocument.Parse(l).Dispose(); // strict JSON: a bare NaN throws
            var last = JsonDocument.Parse(lines[1]).RootElement;
            Must.True(last.GetProperty("loss").ValueKind == JsonValueKind.Null && last.GetProperty("loss_nonfinite").GetString() == "NaN", lines[1]);
            Must.Equal(JsonDocument.Parse(lines[0]).RootElement.GetProperty("loss").ValueKind, JsonValueKind.Number, "step 1 loss");
            var saved = Directory.GetDirectories(save).Select(Path.GetFileName).Order().ToArray();
            Must.True(saved.SequenceEqual(new[] { "checkpoint_step_000001" }), "checkpoints: " + string.Join(", ", saved));
            var png = Path.Combine(dir, "plot.png");
            var po = new StringWriter();
            var pe = new StringWriter();
            Must.Equal(PlotLogsCommand.Run(new[] { log, "--output=" + png }, po, pe), 0, "plot-logs exit; " + pe);
            Must.True(new FileInfo(png).Length > 0, "plot written");
        }))));
}
