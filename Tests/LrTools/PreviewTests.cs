using System.Globalization;
using Expecto;
using Schedules.Core;
using Tests.Harness;
using Trainer.LrTools;
using ScottPlot;
using SkiaSharp;
using static Tests.LrTools.Kit;

namespace Tests.LrTools;

public static class PreviewTests
{
    static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    static double[][] ParseCsv(string csv, out string[] header)
    {
        var lines = csv.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        header = lines[0].Split(',');
        return lines.Skip(1).Select(l => l.Split(',').Skip(1).Select(v => double.Parse(v, NumberStyles.Float, Inv)).ToArray()).ToArray();
    }

    static int[] CsvSteps(string csv) =>
        csv.Split('\n', StringSplitOptions.RemoveEmptyEntries).Skip(1).Select(l => int.Parse(l.Split(',')[0], Inv)).ToArray();

    static Test CsvEqualsTrace(string name, string json, double[] lrs, int steps) => Spec.Case(name, () =>
    {
        var r = Run("--lr-schedule=" + json, "--format=csv", "--steps=" + steps, "--lrs=" + string.Join(",", lrs.Select(x => x.ToString("R", Inv))));
        Equal(0, r.Exit, "exit code (" + r.Err + ")");
        Equal("", r.Err, "stderr");
        var rows = ParseCsv(r.Out, out var header);
        var expected = ScheduleJson.Parse(json).Trace(lrs, steps);
        Equal(steps + 1, rows.Length, "rows");
        Equal(lrs.Length + 1, header.Length, "columns");
        for (int k = 0; k <= steps; k++)
            for (int g = 0; g < lrs.Length; g++)
                if (BitConverter.DoubleToInt64Bits(rows[k][g]) != BitConverter.DoubleToInt64Bits(expected[k][g]))
                    throw new Exception($"step {k} group {g}: csv {rows[k][g]:R} != trace {expected[k][g]:R}");
    });

    [Tests]
    public static Test Csv => Spec.List("lr preview csv",
        CsvEqualsTrace("StepLR equals Trace bit for bit", StepJson, [0.1], 120),
        CsvEqualsTrace("warmup+cosine, two groups", WarmupCosineJson, [6e-4, 3e-4], 200),
        CsvEqualsTrace("OneCycleLR", """{"type":"OneCycleLR","max_lr":[0.01,0.02],"total_steps":100}""", [0.001, 0.002], 99),
        CsvEqualsTrace("CosineAnnealingWarmRestarts", """{"type":"CosineAnnealingWarmRestarts","T_0":10,"T_mult":2,"eta_min":1e-6}""", [0.3], 70),
        CsvEqualsTrace("ChainedScheduler", """{"type":"ChainedScheduler","schedulers":[{"type":"ExponentialLR","gamma":0.97},{"type":"StepLR","step_size":7,"gamma":0.5}]}""", [1.0 / 3], 50),
        Spec.Case("header names the groups", () =>
        {
            Equal("step,lr", Run("--lr-schedule=" + StepJson, "--format=csv", "--steps=3").Out.Split('\n')[0], "one group");
            Equal("step,lr_0,lr_1", Run("--lr-schedule=" + StepJson, "--format=csv", "--steps=3", "--lrs=1,2").Out.Split('\n')[0], "two groups");
        }),
        Spec.Case("--every keeps every K-th step and the last", () =>
        {
            var r = Run("--lr-schedule=" + StepJson, "--format=csv", "--steps=25", "--every=10");
            Equal("0,10,20,25", string.Join(",", CsvSteps(r.Out)), "steps");
        }),
        Spec.Case("default steps: the schedule's horizon", () =>
        {
            Equal(200, CsvSteps(Run("--lr-schedule=" + WarmupCosineJson, "--format=csv").Out)[^1], "SequentialLR: milestone + T_max");
            Equal(100, CsvSteps(Run("--lr-schedule=" + StepJson, "--format=csv").Out)[^1], "StepLR has none: 100");
            Equal(99, CsvSteps(Run("--lr-schedule={\"type\":\"OneCycleLR\",\"max_lr\":0.1,\"total_steps\":100}", "--format=csv").Out)[^1], "OneCycleLR: total_steps - 1");
            Equal(55, CsvSteps(Run("--lr-schedule={\"type\":\"MultiStepLR\",\"milestones\":[30,50]}", "--format=csv").Out)[^1], "MultiStepLR: last milestone + 10%");
        }));

    static Test FlagsEqualMapping(string name, double lr, int steps, params string[] flags) => Spec.Case(name, () =>
    {
        var r = Run([.. flags, "--format=csv", $"--steps={steps}", "--lr=" + lr.ToString("R", Inv)]);
        Equal(0, r.Exit, "exit code (" + r.Err + ")");
        var v = PreviewArgs.Flags().Parse(flags);
        var schedule = Trainer.Cli.SchedulerFlags.FromFlags(Trainer.Cli.SchedulerFlags.Read(v), lr, steps)!;
        var expected = schedule.Trace([lr], steps);
        var rows = ParseCsv(r.Out, out _);
        Equal(steps + 1, rows.Length, "rows");
        for (int k = 0; k <= steps; k++)
            if (BitConverter.DoubleToInt64Bits(rows[k][0]) != BitConverter.DoubleToInt64Bits(expected[k][0]))
                throw new Expecto.AssertException($"step {k}: csv {rows[k][0]:R} != trace {expected[k][0]:R}");
    });

    [Tests]
    public static Test SchedulerFlagInput => Spec.List("lr preview scheduler flags",
        FlagsEqualMapping("steplr", 0.1, 100, "--lr-scheduler=steplr", "--step-size=30", "--gamma=0.5"),
        FlagsEqualMapping("cosine with warmup (underscores)", 6e-4, 300, "--lr_scheduler=cosine", "--warmup_steps=30", "--min_lr=6e-5"),
        FlagsEqualMapping("onecycle", 0.01, 99, "--lr-scheduler=onecycle", "--total-steps=100"),
        FlagsEqualMapping("warmup-stable-decay", 1e-3, 200, "--lr-scheduler", "warmup-stable-decay", "--warmup-steps", "20", "--decay-shape=1-sqrt"),
        FlagsEqualMapping("JSON with a warmup spliced in", 1.0, 150, "--lr-schedule=" + WarmupCosineJson, "--warmup-steps=10"),
        Spec.Case("trainer spellings: --learning_rate, --num_iteration", () =>
            Equal(Run("--lr-scheduler=cosine", "--lr=0.5", "--steps=40", "--format=csv").Out,
                  Run("--lr_scheduler=cosine", "--learning_rate=0.5", "--num_iteration=40", "--format=csv").Out, "same output")),
        Spec.Case("the cosine horizon is --total-steps", () =>
            Equal(500, CsvSteps(Run("--lr-scheduler=cosine", "--total-steps=500", "--format=csv").Out)[^1], "last step")),
        Spec.Case("--lr-scheduler=none keeps the LR", () =>
        {
            var r = Run("--lr-scheduler=none", "--lr=0.3", "--steps=4", "--format=csv");
            Equal("step,lr\n0,0.3\n1,0.3\n2,0.3\n3,0.3\n4,0.3\n", r.Out, "csv");
        }),
        Spec.Case("--lr-scheduler=plateau with --metrics", () => InTempDir(dir =>
        {
            string m = Path.Combine(dir, "m.txt");
            File.WriteAllText(m, "3\n3\n3\n3\n");
            var r = Run("--lr-scheduler=plateau", "--patience=1", "--metrics=" + m, "--lr=1", "--format=csv");
            Equal(0, r.Exit, "exit " + r.Err);
            Equal("step,metric,lr\n0,,1\n1,3,1\n2,3,1\n3,3,0.1\n4,3,0.1\n", r.Out, "csv");
        })));

    [Tests]
    public static Test Table => Spec.List("lr preview table",
        Spec.Case("aligned columns, shortest round-trip values", () =>
        {
            var r = Run("--lr-schedule=" + StepJson, "--steps=100", "--every=50", "--lrs=0.1,0.3");
            Equal(0, r.Exit, "exit");
            var lines = r.Out.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Equal(4, lines.Length, "header + 3 rows");
            Equal(1, lines.Select(l => l.Length).Distinct().Count(), "all lines equally wide (right-aligned)");
            var t = ScheduleJson.Parse(StepJson).Trace([0.1, 0.3], 100);
            var cells = lines[2].Split(' ', StringSplitOptions.RemoveEmptyEntries);
            Equal("50", cells[0], "step");
            Equal(t[50][0], double.Parse(cells[1], Inv), "lr[0] at 50");
            Equal(t[50][1], double.Parse(cells[2], Inv), "lr[1] at 50");
            Contains(lines[0], "lr[1]", "header");
        }),
        Spec.Case("stdout by default, file with --output (atomically, no temp left)", () => InTempDir(dir =>
        {
            string file = Path.Combine(dir, "lr.txt");
            File.WriteAllText(file, "old");
            var r = Run("--lr-schedule=" + StepJson, "--steps=5", "--output=" + file);
            Equal(0, r.Exit, "exit");
            Equal("", r.Out, "nothing on stdout");
            Equal(Run("--lr-schedule=" + StepJson, "--steps=5").Out, File.ReadAllText(file), "file = stdout form");
            Equal(1, Directory.GetFiles(dir).Length, "no temporary file left");
            var r2 = Run("--lr-schedule=" + StepJson, "--steps=6", "--output=" + file);
            Equal(0, r2.Exit, "exit (replace)");
            Equal(Run("--lr-schedule=" + StepJson, "--steps=6").Out, File.ReadAllText(file), "replaced");
            Equal(1, Directory.GetFiles(dir).Length, "still one file");
        })),
        Spec.Case("JSON from @file and from a .json path", () => InTempDir(dir =>
        {
            string f = Path.Combine(dir, "s.json");
            File.WriteAllText(f, WarmupCosineJson);
            string inline = Run("--lr-schedule=" + WarmupCosineJson).Out;
            Equal(inline, Run("--lr-schedule=@" + f).Out, "@file");
            Equal(inline, Run("--lr-schedule", f).Out, "path, value as next argument");
        })),
        Spec.Case("ReduceLROnPlateau steps on --metrics", () => InTempDir(dir =>
        {
            string m = Path.Combine(dir, "m.txt");
            var metrics = new[] { 5.0, 4.0, 4.0, 4.0, 4.0, 4.0, 3.0, 3.0, 3.0, 3.0 };
            File.WriteAllLines(m, metrics.Select(x => x.ToString(Inv)).Prepend("").Append(""));
            string json = """{"type":"ReduceLROnPlateau","factor":0.5,"patience":2}""";
            var r = Run("--lr-schedule=" + json, "--metrics=" + m, "--format=csv", "--lr=0.1");
            Equal(0, r.Exit, "exit " + r.Err);
            var lines = r.Out.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Equal("step,metric,lr", lines[0], "header");
            Equal(metrics.Length + 1, lines.Length - 1, "one row per metric + step 0");
            var run = ScheduleJson.Parse(json).Start([0.1]);
            for (int k = 1; k <= metrics.Length; k++)
            {
                run.Step(metrics[k - 1]);
                Equal(run.Lrs[0], double.Parse(lines[k + 1].Split(',')[2], Inv), $"lr at step {k}");
            }
            True(run.Lrs[0] < 0.1, "the plateau reduced the LR");
        })));

    [Tests]
    public static Test Ascii => Spec.List("lr preview ascii",
        Spec.Case("exact size, and a StepLR drop is a vertical run", () =>
        {
            var r = Run("--lr-schedule=" + StepJson, "--steps=99", "--format=ascii", "--width=60", "--height=15", "--title=drop");
            Equal(0, r.Exit, "exit " + r.Err);
            var lines = r.Out.Split('\n');
            Equal("", lines[^1], "ends with a newline");
            lines = lines[..^1];
            Equal(15, lines.Length, "lines");
            True(lines.All(l => l.Length <= 60), "no line over 60 characters");
            Equal("drop", lines[0].Trim(), "title");

            var chart = PreviewCommand.Chart(ScheduleJson.Parse(StepJson), ScheduleJson.Parse(StepJson).Trace([1.0], 99), new PreviewOptions { Title = "drop" });
            var f = AsciiChart.Frame(chart, 60, 15);
            char At(int row, int col) => col < lines[row].Length ? lines[row][col] : ' ';
            int top = f.Row(1.0), bottom = f.Row(0.1), drop = f.Column(50);
            Equal(f.Top, top, "max on the top plot row");
            Equal(f.Top + f.Height - 1, bottom, "min on the bottom plot row");
            for (int c = f.Left; c < drop; c++) { Equal('*', At(top, c), $"high before the drop, col {c}"); Equal(' ', At(bottom, c), $"nothing low before the drop, col {c}"); }
            for (int c = drop + 1; c < f.Left + f.Width; c++) { Equal('*', At(bottom, c), $"low after the drop, col {c}"); Equal(' ', At(top, c), $"nothing high after the drop, col {c}"); }
            for (int row = top; row <= bottom; row++) Equal('*', At(row, drop), $"vertical run at the drop, row {row}");
            Contains(lines[top], "1", "max label");
            Contains(lines[bottom], "0.1", "min label");
            Contains(lines[^2], "99", "x range end");
            Contains(lines[^1], "* lr", "legend");
        }),
        Spec.Case("default 80x20", () =>
        {
            var lines = Run("--lr-schedule=" + WarmupCosineJson, "--format=ascii").Out.Split('\n')[..^1];
            Equal(20, lines.Length, "lines");
            True(lines.All(l => l.Length <= 80), "width");
        }),
        Spec.Case("--output writes the same chart to a file", () => InTempDir(dir =>
        {
            string file = Path.Combine(dir, "chart.txt");
            Equal(0, Run("--lr-schedule=" + StepJson, "--format=ascii", "--output=" + file).Exit, "exit");
            Equal(Run("--lr-schedule=" + StepJson, "--format=ascii").Out, File.ReadAllText(file), "same text");
        })),
        Spec.Case("one glyph per group", () =>
        {
            var o = Run("--lr-schedule=" + StepJson, "--format=ascii", "--lrs=1,0.5").Out;
            Contains(o, "+", "second glyph");
            Contains(o, "* group 0 (lr=1)", "legend 0");
            Contains(o, "+ group 1 (lr=0.5)", "legend 1");
        }));

    /// <summary>`lr preview --format=png` of StepLR(50, 0.1) over 100 steps; the bytes must be those of the chart it describes.</summary>
    static (Kit.Png Png, ChartSpec Spec, Plot Plot) RenderStepPng(string dir, int w, int h, PreviewOptions o, params string[] extra)
    {
        string file = Path.Combine(dir, "c.png");
        var r = Run(["--lr-schedule=" + StepJson, "--steps=100", "--format=png", "--output=" + file, $"--width={w}", $"--height={h}", .. extra]);
        Equal(0, r.Exit, "exit " + r.Err);
        var s = ScheduleJson.Parse(StepJson);
        var spec = PreviewCommand.Chart(s, s.Trace(o.Lrs, 100), o);
        var plot = Plots.Build(spec);
        byte[] bytes = File.ReadAllBytes(file);
        True(bytes.AsSpan().SequenceEqual(Plots.Png(plot, w, h)), "the file is the chart of PreviewCommand.Chart (which placed `plot`'s pixels)");
        return (ReadPng(bytes), spec, plot);
    }

    /// <summary>Where a data point lies in the image (after the plot was rendered; log10 of y on a log chart).</summary>
    static Pixel At(Plot plot, ChartSpec spec, double x, double y) => plot.GetPixel(new Coordinates(x, Plots.PlotY(spec, y)));

    static void LineAt(Kit.Png p, Plot plot, ChartSpec spec, double x, double y, ScottPlot.Color c, string what, int dy = 0)
    {
        var px = At(plot, spec, x, y);
        True(Near(p, px.X, px.Y + dy, c), $"{what}: no {c} pixel near ({px.X:F1}, {px.Y + dy:F1})");
    }

    static void NoLineAt(Kit.Png p, Plot plot, ChartSpec spec, double x, double y, ScottPlot.Color c, string what, int dy = 0)
    {
        var px = At(plot, spec, x, y);
        True(!Near(p, px.X, px.Y + dy, c, 2), $"{what}: a {c} pixel near ({px.X:F1}, {px.Y + dy:F1})");
    }

    /// <summary>Dark (text) pixels in the band of rows [y0, y1): the title and axis names were drawn with a font.</summary>
    static int DarkPixels(Kit.Png p, int y0, int y1)
    {
        int n = 0;
        for (int y = Math.Max(0, y0); y < Math.Min(p.Height, y1); y++)
            for (int x = 0; x < p.Width; x++)
            {
                var c = p.At(x, y);
                if (c.Red < 100 && c.Green < 100 && c.Blue < 100) n++;
            }
        return n;
    }

    [Tests]
    public static Test Png => Spec.List("lr preview png",
        Spec.Case("a PNG of the requested size, with a title drawn in a font", () => InTempDir(dir =>
        {
            var (p, _, plot) = RenderStepPng(dir, 640, 400, new PreviewOptions { Title = "drop" }, "--title=drop");
            Equal(640, p.Width, "IHDR width"); Equal(400, p.Height, "IHDR height");
            var data = plot.RenderManager.LastRender.DataRect;
            True(data.Width > 400 && data.Height > 250, $"the data area fills most of the image ({data})");
            True(DarkPixels(p, 0, (int)data.Top) > 50, "title text above the data area");
            True(DarkPixels(p, (int)data.Bottom + 2, p.Height) > 100, "tick labels and axis name below it");
        })),
        Spec.Case("a StepLR drop is a vertical step of the series colour: stairs, not a diagonal", () => InTempDir(dir =>
        {
            var (p, spec, plot) = RenderStepPng(dir, 800, 480, new PreviewOptions());
            var blue = Plots.ColorOf(0);
            double hi = At(plot, spec, 0, 1.0).Y, lo = At(plot, spec, 0, 0.1).Y;
            True(hi < lo - 50, "the drop spans many pixels");
            foreach (int step in new[] { 2, 10, 25, 40, 48 })
            {
                LineAt(p, plot, spec, step + 0.5, 1.0, blue, $"high line over step {step}");
                NoLineAt(p, plot, spec, step + 0.5, 0.1, blue, $"low line over step {step}");
            }
            foreach (int step in new[] { 52, 60, 75, 90, 98 })
            {
                LineAt(p, plot, spec, step + 0.5, 0.1, blue, $"low line over step {step}");
                NoLineAt(p, plot, spec, step + 0.5, 1.0, blue, $"high line over step {step}");
            }
            // The rate of step 49 holds until x = 50, where the line falls straight down.
            for (double y = 0.15; y < 0.99; y += 0.05) LineAt(p, plot, spec, 50, y, blue, $"vertical step at x=50, y={y:F2}");
            foreach (double x in new[] { 25.0, 49.3, 50.7, 75.0 }) NoLineAt(p, plot, spec, x, 0.55, blue, $"nothing between the levels at x={x}");
        })),
        Spec.Case("--log-y puts the decades evenly apart and the line at its value", () => InTempDir(dir =>
        {
            var o = new PreviewOptions { LogY = true, Title = "log" };
            var (p, spec, plot) = RenderStepPng(dir, 800, 480, o, "--log-y", "--title=log");
            double r1 = At(plot, spec, 0, 1.0).Y, r01 = At(plot, spec, 0, 0.1).Y, r001 = At(plot, spec, 0, 0.01).Y;
            True(r01 - r1 > 50 && Math.Abs((r01 - r1) - (r001 - r01)) <= 1, $"decades {r1},{r01},{r001}");
            LineAt(p, plot, spec, 75, 0.1, Plots.ColorOf(0), "0.1 at step 75");
            LineAt(p, plot, spec, 25, 1.0, Plots.ColorOf(0), "1 at step 25");
            NoLineAt(p, plot, spec, 25, Math.Sqrt(0.1), Plots.ColorOf(0), "nothing half a decade down at step 25");
        })),
        Spec.Case("two groups in distinct colours, with a legend", () => InTempDir(dir =>
        {
            var o = new PreviewOptions { Lrs = [1.0, 0.5], LrsGiven = true };
            var (p, spec, plot) = RenderStepPng(dir, 800, 480, o, "--lrs=1,0.5");
            LineAt(p, plot, spec, 10, 1.0, Plots.ColorOf(0), "group 0");
            LineAt(p, plot, spec, 10, 0.5, Plots.ColorOf(1), "group 1");
            NoLineAt(p, plot, spec, 10, 0.5, Plots.ColorOf(0), "group 0 is not at 0.5");
            True(!IsColor(new SKColor(Plots.ColorOf(0).R, Plots.ColorOf(0).G, Plots.ColorOf(0).B), Plots.ColorOf(1)), "distinct colours");
            True(plot.Legend.IsVisible, "legend shown");
            Equal("group 1 (lr=0.5)", spec.Series[1].Name, "legend text of group 1");
        })));

    [Tests]
    public static Test Chart => Spec.List("lr charts",
        Spec.Case("series with different x ranges, title and legend", () =>
        {
            var ours = new ChartSeries("ours", Enumerable.Range(0, 300).Select(i => ((double)i, 4.0 * Math.Exp(-i / 80.0) + 1)).ToArray());
            var torch = new ChartSeries("PyTorch", Enumerable.Range(0, 100).Select(i => (i * 2.0 + 50, 4.0 * Math.Exp(-(i * 2.0 + 50) / 80.0) + 1.1)).ToArray());
            var spec = new ChartSpec([ours, torch], "training loss", "step", "loss");
            var plot = Plots.Build(spec);
            var p = ReadPng(Plots.Png(plot, 900, 500));
            Equal((900, 500), (p.Width, p.Height), "size");
            var lim = plot.Axes.GetLimits();
            Equal((0.0, 299.0), (lim.Left, lim.Right), "x from the earliest series start to the latest series end");
            LineAt(p, plot, spec, 10, 4.0 * Math.Exp(-10 / 80.0) + 1, Plots.ColorOf(0), "ours at x=10");
            LineAt(p, plot, spec, 150, 4.0 * Math.Exp(-150 / 80.0) + 1.1, Plots.ColorOf(1), "PyTorch at x=150");
            var data = plot.RenderManager.LastRender.DataRect;
            int pytorchPixels = 0;
            for (int y = (int)At(plot, spec, 0, 2.0).Y; y < (int)data.Bottom; y++) // below the legend (top right)
                for (int x = (int)At(plot, spec, 250, 1).X + 3; x < (int)data.Right; x++)
                    if (IsColor(p.At(x, y), Plots.ColorOf(1), 16)) pytorchPixels++;
            Equal(0, pytorchPixels, "PyTorch's series stops at x=248");
            if (Environment.GetEnvironmentVariable("LR_PREVIEW_TEST_PNG") is { Length: > 0 } keep) File.WriteAllBytes(keep, Plots.Png(plot, 900, 500));
            var ascii = AsciiChart.Render(spec, 70, 16).Split('\n')[..^1];
            Equal(16, ascii.Length, "ascii lines");
            Contains(ascii[^1], "* ours", "ascii legend");
            Contains(ascii[^1], "+ PyTorch", "ascii legend");
        }),
        Spec.Case("non-finite points break the line; nothing plottable is refused", () =>
        {
            var spec = new ChartSpec([new ChartSeries("x", [(0, 1), (1, double.NaN), (2, 3), (3, 3)])]);
            var plot = Plots.Build(spec);
            var p = ReadPng(Plots.Png(plot, 400, 300));
            if (Environment.GetEnvironmentVariable("LR_CHART_DEBUG") is { Length: > 0 } dbg) File.WriteAllBytes(dbg, Plots.Png(plot, 400, 300));
            LineAt(p, plot, spec, 2.15, 3, Plots.ColorOf(0), "the segment after the gap (left of the legend)");
            NoLineAt(p, plot, spec, 1, 2, Plots.ColorOf(0), "no segment across the gap");
            bool threw = false;
            try { Plots.Build(new ChartSpec([new ChartSeries("z", [(0, 0), (1, -1)])], LogY: true)); }
            catch (ArgumentException e) { threw = e.Message.StartsWith("nothing to plot"); }
            True(threw, "log axis without positive values");
        }),
        Spec.Case("smallest PNG, long title, one point", () =>
        {
            var spec = new ChartSpec([new ChartSeries("only", [(5, 0.25)])], new string('T', 200));
            var plot = Plots.Build(spec);
            var p = ReadPng(Plots.Png(plot, Plots.MinWidth, Plots.MinHeight));
            Equal((160, 120), (p.Width, p.Height), "size");
            LineAt(p, plot, spec, 5, 0.25, Plots.ColorOf(0), "the point is drawn");
            Equal(7, AsciiChart.Render(spec, 30, 7).Split("\n").Length - 1, "ascii lines");
            bool threw = false;
            try { Plots.Png(plot, 159, 120); } catch (ArgumentOutOfRangeException e) { threw = e.Message.Contains("at least 160x120"); }
            True(threw, "smaller is refused");
        }));

    static Test Refused(string name, string message, params string[] args) => RefusedWith(name, message, _ => { }, args);

    /// <summary>Exit 2, the message on stderr, nothing on stdout and nothing new in the directory ({dir} in args).</summary>
    static Test RefusedWith(string name, string message, Action<string> setup, params string[] args) => Spec.Case(name, () => InTempDir(dir =>
    {
        setup(dir);
        string Snapshot() => string.Join("|", Directory.GetFileSystemEntries(dir).Order().Select(f => f + "=" + (File.Exists(f) ? File.ReadAllText(f) : "dir")));
        string before = Snapshot();
        var r = Run(args.Select(a => a.Replace("{dir}", dir)).ToArray());
        Equal(2, r.Exit, "exit code");
        Equal("", r.Out, "nothing on stdout");
        Contains(r.Err, message, "message");
        True(r.Err.StartsWith("lr preview: "), "prefixed: " + r.Err);
        Equal(before, Snapshot(), "nothing written");
    }));

    [Tests]
    public static Test Errors => Spec.List("lr preview errors",
        Refused("bad JSON syntax", "not valid JSON", "--lr-schedule={\"type\":", "--output={dir}/o.txt"),
        Refused("library problems with their JSON path", "$.schedulers[1]: T_max",
            "--lr-schedule={\"type\":\"SequentialLR\",\"schedulers\":[{\"type\":\"LinearLR\"},{\"type\":\"CosineAnnealingLR\",\"T_max\":\"x\"}],\"milestones\":[5]}", "--output={dir}/o.txt"),
        Refused("unknown scheduler type", "unknown scheduler type", "--lr-schedule={\"type\":\"Nope\"}"),
        Refused("unknown flag", "unknown flag --colour", "--lr-schedule=" + StepJson, "--colour=red"),
        Refused("bad number", "--steps: 'ten' is not an integer", "--lr-schedule=" + StepJson, "--steps=ten"),
        Refused("bad lr list", "--lrs: 'x' is not a finite number", "--lr-schedule=" + StepJson, "--lrs=0.1,x"),
        Refused("non-positive steps", "--steps: '0' is out of range", "--lr-schedule=" + StepJson, "--steps=0"),
        Refused("missing schedule file", "no such file '", "--lr-schedule={dir}/none.json"),
        Refused("missing @file", "/none'", "--lr-schedule=@{dir}/none"),
        Refused("png needs --output", "--format=png needs --output", "--lr-schedule=" + StepJson, "--format=png"),
        Refused("bad format", "--format: 'svg' is not one of", "--lr-schedule=" + StepJson, "--format=svg"),
        Refused("missing output directory", "does not exist", "--lr-schedule=" + StepJson, "--format=png", "--output={dir}/no/such/dir/c.png"),
        Refused("plateau without metrics", "give --metrics=FILE", "--lr-schedule={\"type\":\"ReduceLROnPlateau\"}", "--output={dir}/o.txt"),
        Refused("metrics for a step schedule", "--metrics is only for ReduceLROnPlateau", "--lr-schedule=" + StepJson, "--metrics={dir}/m.txt"),
        Refused("no schedule", "no schedule", "--steps=5"),
        Refused("positional argument", "unexpected argument 'schedule.json'", "schedule.json"),
        Refused("group count mismatch", "one value per param group", "--lr-schedule={\"type\":\"OneCycleLR\",\"max_lr\":[0.1,0.2],\"total_steps\":10}", "--lr=0.1"),
        Refused("stepping past OneCycleLR's end", "preview fewer --steps", "--lr-schedule={\"type\":\"OneCycleLR\",\"max_lr\":0.1,\"total_steps\":10}", "--steps=50", "--output={dir}/o.txt"),
        Refused("chart too small", "at least", "--lr-schedule=" + StepJson, "--format=png", "--width=20", "--output={dir}/c.png"),
        Refused("ascii chart too small", "at least", "--lr-schedule=" + StepJson, "--format=ascii", "--height=4"),
        RefusedWith("unreadable metric", "m.txt:2: 'abc' is not a number", dir => File.WriteAllText(Path.Combine(dir, "m.txt"), "1.5\nabc\n"),
            "--lr-schedule={\"type\":\"ReduceLROnPlateau\"}", "--metrics={dir}/m.txt", "--output={dir}/o.txt"),
        RefusedWith("existing output is kept on error", "not valid JSON", dir => File.WriteAllText(Path.Combine(dir, "o.png"), "old"),
            "--lr-schedule={", "--format=png", "--output={dir}/o.png"),
        Refused("log axis with only zeros", "nothing to plot", "--lr-schedule=" + StepJson, "--lr=0", "--format=ascii", "--log-y"),
        Refused("--every with a chart", "--every applies to", "--lr-schedule=" + StepJson, "--format=ascii", "--every=3"),
        Refused("unknown scheduler kind", "--lr_scheduler: 'steps' is not one of", "--lr-scheduler=steps"),
        Refused("schedule JSON and kind together", "not both", "--lr-scheduler=steplr", "--lr-schedule=" + StepJson),
        Refused("inconsistent scheduler flags", "--min_lr=2 is above", "--lr-scheduler=linear", "--min-lr=2", "--lr=1"),
        Refused("flag without its value", "needs a value", "--lr-schedule=" + StepJson, "--steps"),
        Spec.Case("--help prints usage, exit 0", () =>
        {
            var r = Run("--help");
            Equal(0, r.Exit, "exit");
            Contains(r.Out, "usage: Trainer lr preview", "usage");
        }));
}
