using System.Globalization;
using Expecto;
using Schedules.Core;
using Tests.Harness;
using Trainer.LrTools;
using Trainer.LrTools.Charts;
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
            var f = chart.AsciiFrame(60, 15);
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

    static Kit.Png RenderStepPng(string dir, int w, int h, params string[] extra)
    {
        string file = Path.Combine(dir, "c.png");
        var r = Run(["--lr-schedule=" + StepJson, "--steps=100", "--format=png", "--output=" + file, $"--width={w}", $"--height={h}", .. extra]);
        Equal(0, r.Exit, "exit " + r.Err);
        return ReadPng(File.ReadAllBytes(file));
    }

    static bool IsColor(Kit.Png p, int x, int y, Rgb c)
    {
        var (r, g, b) = p.At(x, y);
        return r == c.R && g == c.G && b == c.B;
    }

    [Tests]
    public static Test Png => Spec.List("lr preview png",
        Spec.Case("valid PNG: signature, IHDR, chunk CRCs, IDAT size", () => InTempDir(dir =>
        {
            var p = RenderStepPng(dir, 640, 400);
            Equal(640, p.Width, "IHDR width"); Equal(400, p.Height, "IHDR height");
            True(p.Chunks.SequenceEqual(["IHDR", "IDAT", "IEND"]), "chunks " + string.Join(",", p.Chunks));
        })),
        Spec.Case("a StepLR drop is a vertical step of the series colour", () => InTempDir(dir =>
        {
            var p = RenderStepPng(dir, 800, 480);
            var s = ScheduleJson.Parse(StepJson);
            var f = PreviewCommand.Chart(s, s.Trace([1.0], 100), new PreviewOptions()).PngFrame(800, 480);
            var blue = LineChart.ColorOf(0);
            int hi = f.Row(1.0), lo = f.Row(0.1), drop = f.Column(50);
            True(hi < lo - 50, "the drop spans many pixels");
            foreach (int step in new[] { 2, 10, 25, 40, 48 })
            {
                True(IsColor(p, f.Column(step), hi, blue), $"high line at step {step}");
                True(!IsColor(p, f.Column(step), lo, blue), $"no low line at step {step}");
            }
            foreach (int step in new[] { 52, 60, 75, 90, 99 })
            {
                True(IsColor(p, f.Column(step), lo, blue), $"low line at step {step}");
                True(!IsColor(p, f.Column(step), hi, blue), $"no high line at step {step}");
            }
            for (int y = hi; y <= lo; y++) True(IsColor(p, drop, y, blue), $"vertical step at x={drop}, y={y}");
            True(!IsColor(p, f.Column(25), (hi + lo) / 2, blue), "nothing between the levels away from the drop");
        })),
        Spec.Case("--log-y puts the decades evenly apart", () => InTempDir(dir =>
        {
            var p = RenderStepPng(dir, 800, 480, "--log-y", "--title=log");
            var s = ScheduleJson.Parse(StepJson);
            var f = PreviewCommand.Chart(s, s.Trace([1.0], 100), new PreviewOptions { LogY = true, Title = "log" }).PngFrame(800, 480);
            int r1 = f.Row(1.0), r01 = f.Row(0.1), r001 = f.Row(0.01);
            True(Math.Abs((r01 - r1) - (r001 - r01)) <= 1, $"decades {r1},{r01},{r001}");
            True(IsColor(p, f.Column(75), r01, LineChart.ColorOf(0)), "0.1 on the log axis");
            True(IsColor(p, f.Column(125 / 2), r01, LineChart.ColorOf(0)), "0.1 at step 62");
        })),
        Spec.Case("two groups in distinct colours", () => InTempDir(dir =>
        {
            var p = RenderStepPng(dir, 800, 480, "--lrs=1,0.5");
            var s = ScheduleJson.Parse(StepJson);
            var f = PreviewCommand.Chart(s, s.Trace([1.0, 0.5], 100), new PreviewOptions { Lrs = [1.0, 0.5], LrsGiven = true }).PngFrame(800, 480);
            True(IsColor(p, f.Column(10), f.Row(1.0), LineChart.ColorOf(0)), "group 0");
            True(IsColor(p, f.Column(10), f.Row(0.5), LineChart.ColorOf(1)), "group 1");
            True(LineChart.ColorOf(0) != LineChart.ColorOf(1), "distinct");
        })));

    [Tests]
    public static Test Chart => Spec.List("LineChart",
        Spec.Case("series with different x ranges, title and legend", () =>
        {
            var ours = ChartSeries.From("ours", Enumerable.Range(0, 300).Select(i => ((double)i, 4.0 * Math.Exp(-i / 80.0) + 1)));
            var torch = ChartSeries.From("PyTorch", Enumerable.Range(0, 100).Select(i => (i * 2.0 + 50, 4.0 * Math.Exp(-(i * 2.0 + 50) / 80.0) + 1.1)));
            var chart = new LineChart([ours, torch]) { Title = "training loss", XLabel = "step", YLabel = "loss" };
            var png = ReadPng(chart.ToPng(900, 500));
            Equal(900, png.Width, "width");
            var f = chart.PngFrame(900, 500);
            Equal(0.0, f.X.Min, "x from the earliest series start");
            Equal(299.0, f.X.Max, "x to the latest series end");
            True(IsColor(png, f.Column(10), f.Row(4.0 * Math.Exp(-10 / 80.0) + 1), LineChart.ColorOf(0)), "ours at x=10");
            True(IsColor(png, f.Column(150), f.Row(4.0 * Math.Exp(-150 / 80.0) + 1.1), LineChart.ColorOf(1)), "PyTorch at x=150");
            int pytorchPixels = 0;
            for (int y = f.Row(2.0); y < png.Height; y++) // below the legend (top right)
                for (int x = f.Column(250) + 2; x < png.Width; x++)
                    if (IsColor(png, x, y, LineChart.ColorOf(1))) pytorchPixels++;
            Equal(0, pytorchPixels, "PyTorch's series stops at x=248");
            if (Environment.GetEnvironmentVariable("LR_PREVIEW_TEST_PNG") is { Length: > 0 } keep) File.WriteAllBytes(keep, chart.ToPng(900, 500));
            var ascii = chart.ToAscii(70, 16).Split('\n')[..^1];
            Equal(16, ascii.Length, "ascii lines");
            Contains(ascii[^1], "* ours", "ascii legend");
            Contains(ascii[^1], "+ PyTorch", "ascii legend");
        }),
        Spec.Case("non-finite points break the line; nothing plottable is refused", () =>
        {
            var s = new ChartSeries("x", [new(0, 1), new(1, double.NaN), new(2, 3)]);
            _ = new LineChart([s]).ToPng(200, 150);
            bool threw = false;
            try { new LineChart([new ChartSeries("z", [new(0, 0), new(1, -1)])]) { LogY = true }.ToPng(); }
            catch (ArgumentException) { threw = true; }
            True(threw, "log axis without positive values");
        }),
        Spec.Case("smallest PNG, long title, one point", () =>
        {
            var chart = new LineChart([new ChartSeries("only", [new(5, 0.25)])]) { Title = new string('T', 200) };
            var p = ReadPng(chart.ToPng(160, 120));
            Equal(160, p.Width, "width"); Equal(120, p.Height, "height");
            var f = chart.PngFrame(160, 120);
            True(IsColor(p, f.Column(5), f.Row(0.25), LineChart.ColorOf(0)), "the point is drawn");
            Equal(7, chart.ToAscii(30, 7).Split("\n").Length - 1, "ascii lines");
        }),
        Spec.Case("PNG encoder CRC matches a bitwise CRC-32", () =>
        {
            var data = System.Text.Encoding.ASCII.GetBytes("123456789");
            Equal(0xCBF43926u, Crc32.Compute(data), "CRC-32 check value");
            Equal(Crc(data), Crc32.Compute(data), "bitwise");
        }),
        Spec.Case("RGBA encode round-trips", () =>
        {
            var px = new byte[3 * 2 * 4];
            for (int i = 0; i < px.Length; i++) px[i] = (byte)(i * 7);
            var p = ReadPng(PngEncoder.Encode(3, 2, 4, px));
            Equal(4, p.Channels, "channels");
            True(p.Pixels.SequenceEqual(px), "pixels");
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
