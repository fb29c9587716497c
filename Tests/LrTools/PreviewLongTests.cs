using System.Diagnostics;
using System.Globalization;
using Expecto;
using Schedules.Core;
using Tests.Harness;
using Trainer.LrTools;
using static Tests.LrTools.Kit;

namespace Tests.LrTools;

/// <summary><c>lr preview</c> past the 2,000,000 steps it runs: closed-form schedules are sampled, the others refused.</summary>
public static class PreviewLongTests
{
    static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    // Warmup over 2,000 steps, then cosine to 1e-5 over the rest of 10^9 steps (Recipes.WarmupCosine's form).
    const string BillionWarmupCosine =
        """{"type":"SequentialLR","schedulers":[{"type":"LinearLR","start_factor":0.0005,"end_factor":1.0,"total_iters":2000},{"type":"CosineAnnealingLR","T_max":999998000,"eta_min":1e-5}],"milestones":[2000]}""";

    // Not a speed test (speed is measured by the benchmarks, docs/BENCHMARKS.md: well under a second here): a bound that
    // only a step-by-step run of 10^9 steps (minutes) could break, whatever else the machine is doing.
    const double ReplayWouldTake = 30;

    [Tests]
    public static Test All => Spec.List("lr preview long",
        Spec.Case("a 10^9-step warmup-cosine as CSV at 1,001 rows, sampled, not run", () =>
        {
            Run("--lr-schedule=" + BillionWarmupCosine, "--format=csv", "--steps=1000", "--lr=6e-4"); // JIT warm-up
            var sw = Stopwatch.StartNew();
            var r = Run("--lr-schedule=" + BillionWarmupCosine, "--format=csv", "--steps=1000000000", "--every=1000000", "--lr=6e-4");
            sw.Stop();
            Equal(0, r.Exit, "exit (" + r.Err + ")");
            True(sw.Elapsed.TotalSeconds < ReplayWouldTake, $"took {sw.Elapsed.TotalMilliseconds:0} ms: the steps were run, not sampled");
            var lines = r.Out.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Equal(1002, lines.Length, "header + 1,001 rows");
            var s = ScheduleJson.Parse(System.Text.Json.Nodes.JsonNode.Parse(BillionWarmupCosine));
            foreach (var line in lines.Skip(1))
            {
                var cells = line.Split(',');
                int k = int.Parse(cells[0], Inv);
                double v = double.Parse(cells[1], NumberStyles.Float, Inv);
                Equal(BitConverter.DoubleToInt64Bits(s.Lr(k, 6e-4)), BitConverter.DoubleToInt64Bits(v), $"step {k}");
            }
            Equal("1000000000", lines[^1].Split(',')[0], "the last step");
            Must.Close(double.Parse(lines[^1].Split(',')[1], Inv), 1e-5 + (6e-4 - 1e-5) * (1 + Math.Cos(Math.PI * (1e9 - 2000) / 999998000)) / 2, 1e-12, "the cosine's end");
            Must.Close(double.Parse(lines[501].Split(',')[1], Inv), 1e-5 + (6e-4 - 1e-5) * (1 + Math.Cos(Math.PI * (5e8 - 2000) / 999998000)) / 2, 1e-12, "half way");
        }),
        Spec.Case("a 10^9-step table and ascii chart are sampled too", () =>
        {
            var sw = Stopwatch.StartNew();
            var t = Run("--lr-schedule=" + BillionWarmupCosine, "--steps=1000000000", "--every=1000000");
            var a = Run("--lr-schedule=" + BillionWarmupCosine, "--format=ascii", "--steps=1000000000");
            sw.Stop();
            Equal(0, t.Exit, "table exit (" + t.Err + ")");
            Equal(0, a.Exit, "ascii exit (" + a.Err + ")");
            Contains(a.Out, "1000000000 steps", "the chart's title names the step count");
            True(sw.Elapsed.TotalSeconds < ReplayWouldTake, $"took {sw.Elapsed.TotalMilliseconds:0} ms: the steps were run, not sampled");
        }),
        Spec.Case("a 10^9-step warmup-cosine PNG (2,001 sampled steps)", () => InTempDir(dir =>
        {
            string png = Path.Combine(dir, "wc.png");
            Run("--lr-scheduler=cosine", "--warmup_steps=2000", "--steps=3000", "--format=png", "--output=" + png); // warm-up
            var sw = Stopwatch.StartNew();
            var r = Run("--lr-scheduler=cosine", "--warmup_steps=2000", "--steps=1000000000", "--lr=6e-4", "--format=png", "--output=" + png);
            sw.Stop();
            Equal(0, r.Exit, "exit (" + r.Err + ")");
            True(new FileInfo(png).Length > 1000, "a PNG was written");
            True(sw.Elapsed.TotalSeconds < ReplayWouldTake, $"took {sw.Elapsed.TotalMilliseconds:0} ms: the steps were run, not sampled");
        })),
        Spec.Case("no closed form: the run's cap, with the reason", () =>
        {
            var r = Run("--lr-schedule={\"type\":\"ChainedScheduler\",\"schedulers\":[{\"type\":\"CosineAnnealingLR\",\"T_max\":100,\"eta_min\":0.01},{\"type\":\"ExponentialLR\",\"gamma\":0.99}]}",
                "--format=csv", "--steps=3000000", "--every=1000");
            Equal(2, r.Exit, "exit");
            Contains(r.Err, "has no closed form", "reason");
            Contains(r.Err, "capped at 2,000,000 steps", "the cap");
            var m = Run("--lr-schedule={\"type\":\"MultiplicativeLR\",\"lr_lambda\":{\"fn\":\"const\",\"c\":0.99}}", "--format=csv", "--steps=2000001", "--every=1000");
            Contains(m.Err, "MultiplicativeLR has no closed form", "MultiplicativeLR");
        }),
        Spec.Case("too many rows without --every is refused before work", () =>
        {
            var r = Run("--lr-schedule=" + BillionWarmupCosine, "--format=csv", "--steps=1000000000");
            Equal(2, r.Exit, "exit");
            Contains(r.Err, "give a larger --every", "message");
        }));
}
