using Schedules.Torch.Golden;

namespace Trainer.LrTools;

/// <summary>`Trainer lr replay|preview`: tools to check and look at schedules.</summary>
public static class LrCommand
{
    public static int Run(string[] args)
    {
        if (args.Length == 0 || args[0] is "--help" or "-h" or "help")
        {
            Console.WriteLine(Usage);
            return args.Length == 0 ? 2 : 0;
        }
        return args[0] switch
        {
            "replay" => Replay(args[1..]),
            "preview" => PreviewCommand.Run(args[1..], Console.Out, Console.Error),
            "plot-logs" => PlotLogsCommand.Run(args[1..], Console.Out, Console.Error),
            _ => Fail($"unknown lr subcommand '{args[0]}'\n{Usage}"),
        };
    }

    const string Usage = """
        usage: Trainer lr replay FILE.jsonl[.gz]... [--rtol=1e-10] [--verbose]
               Replays golden PyTorch traces through the library; prints failures with case ids and
               ends with `replay: N passed, N failed` (exit code 1 if any failed). A case that cannot be checked in
               full (a trace shorter than its steps, a null row) fails; a file with no cases is an error (exit 1).
               Trainer lr preview --lr-schedule=JSON|@FILE [--steps=N] [--format=table|csv|ascii|png] ...
               Prints a schedule's LR per step as a table, CSV, terminal chart or PNG (--help for all flags).
               Trainer lr plot-logs A.jsonl [B.jsonl ...] --output=FILE.png [--labels=A,B] [--title=TEXT]
               Draws the LR, loss and (two logs) |loss difference| per step of --log_json files as a PNG.
        """;

    static int Fail(string message)
    {
        Console.Error.WriteLine(message);
        return 2;
    }

    static int Replay(string[] args)
    {
        double rtol = GoldenReplay.DefaultRelativeTolerance;
        bool verbose = false;
        var files = new List<string>();
        foreach (var a in args)
        {
            if (a.StartsWith("--rtol="))
            {
                if (!double.TryParse(a["--rtol=".Length..], System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out rtol) || !(rtol >= 0))
                    return Fail($"--rtol: '{a["--rtol=".Length..]}' is not a non-negative number");
            }
            else if (a == "--verbose") verbose = true;
            else if (a.StartsWith("--")) return Fail($"unknown flag {a} for lr replay");
            else files.Add(a);
        }
        if (files.Count == 0) return Fail("lr replay: give at least one corpus file (.jsonl or .jsonl.gz)");
        int passed = 0, failed = 0;
        foreach (var f in files)
        {
            if (!File.Exists(f)) { Console.Error.WriteLine($"lr replay: no such file: {f}"); return 1; }
            int cases = 0;
            try
            {
                foreach (var c in GoldenReplay.ReadCorpus(f))
                {
                    cases++;
                    var o = GoldenReplay.Check(c, rtol);
                    if (o.Passed) { passed++; if (verbose) Console.WriteLine($"ok   {o.Id}"); }
                    else { failed++; Console.WriteLine($"FAIL {o.Id}: {o.Failure}"); }
                }
            }
            catch (InvalidDataException e) { Console.Error.WriteLine($"lr replay: {(e.Message.Contains(f) ? e.Message : $"{f}: {e.Message}")}"); return 1; }
            // A corpus that checks nothing must not read as a pass.
            if (cases == 0) { Console.Error.WriteLine($"lr replay: {f} holds no cases (an empty corpus checks nothing)"); return 1; }
        }
        Console.WriteLine($"replay: {passed} passed, {failed} failed");
        return failed == 0 ? 0 : 1;
    }
}
