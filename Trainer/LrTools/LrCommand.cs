using Schedules.Torch.Golden;
using Trainer.Cli;

namespace Trainer.LrTools;

/// <summary>`Trainer lr replay|preview`: tools to check and look at schedules.</summary>
public static class LrCommand
{
    public static int Run(string[] args) => Run(args, Console.Out, Console.Error);

    public static int Run(string[] args, TextWriter stdout, TextWriter stderr)
    {
        if (args.Length == 0 || args[0] is "--help" or "-h" or "help")
        {
            (args.Length == 0 ? stderr : stdout).WriteLine(Usage);
            return args.Length == 0 ? 2 : 0;
        }
        return args[0] switch
        {
            "replay" => Replay(args[1..], stdout, stderr),
            "preview" => PreviewCommand.Run(args[1..], stdout, stderr),
            "plot-logs" => PlotLogsCommand.Run(args[1..], stdout, stderr),
            _ => Fail(stderr, $"unknown lr subcommand '{args[0]}'\n{Usage}"),
        };
    }

    const string Usage = """
        usage: Trainer lr replay FILE.jsonl[.gz]... [--rtol=1e-10] [--verbose]
               Replays golden PyTorch traces through the library; prints failures with case ids and
               ends with `replay: N passed, N failed` (exit code 1 if any failed). A case that cannot be checked in
               full (a trace shorter than its steps, a null row) fails; a file with no cases is an error (exit 1).
               Trainer lr preview --lr-schedule=JSON|@FILE [--steps=N] [--format=table|csv|ascii|png] ...
               Prints a schedule's LR per step as a table, CSV, terminal chart or PNG.
               Trainer lr plot-logs A.jsonl [B.jsonl ...] --output=FILE.png [--labels=A,B] [--title=TEXT]
               Draws the LR, loss and (two logs) |loss difference| per step of --log_json files as a PNG.
        Each subcommand lists its flags with --help.
        """;

    static int Fail(TextWriter stderr, string message)
    {
        stderr.WriteLine(message);
        return 2;
    }

    public static FlagSet ReplayFlags() => new FlagSet("Trainer lr replay",
            "Replays golden PyTorch traces (corpus files, .jsonl or .jsonl.gz) through the library; prints failures with case ids and\n" +
            "ends with `replay: N passed, N failed` (exit code 1 if any failed). A case that cannot be checked in full (a trace shorter\n" +
            "than its steps, a null row) fails; a file with no cases is an error (exit 1).",
            "FILE.jsonl[.gz]...", "lr replay")
        .Double("rtol", GoldenReplay.DefaultRelativeTolerance, "Relative tolerance of every rate and momentum (0 = bit for bit).")
        .Bool("verbose", false, "Also print `ok ID` for every case that passes.");

    static int Replay(string[] args, TextWriter stdout, TextWriter stderr)
    {
        var flags = ReplayFlags();
        if (flags.ParseOrReport(args, stdout, stderr, out var v) is { } exit) return exit;
        double rtol;
        try { rtol = v.GetDouble("rtol", 0.0); }
        catch (UsageException e) { return flags.UsageError(stderr, e.Message); }
        bool verbose = v.GetBool("verbose");
        var files = v.Positional;
        if (files.Count == 0) return flags.UsageError(stderr, "give at least one corpus file (.jsonl or .jsonl.gz)");
        int passed = 0, failed = 0;
        foreach (var f in files)
        {
            if (!File.Exists(f)) { stderr.WriteLine($"lr replay: no such file: {f}"); return 1; }
            int cases = 0;
            try
            {
                foreach (var c in GoldenReplay.ReadCorpus(f))
                {
                    cases++;
                    var o = GoldenReplay.Check(c, rtol);
                    if (o.Passed) { passed++; if (verbose) stdout.WriteLine($"ok   {o.Id}"); }
                    else { failed++; stdout.WriteLine($"FAIL {o.Id}: {o.Failure}"); }
                }
            }
            catch (InvalidDataException e) { stderr.WriteLine($"lr replay: {(e.Message.Contains(f) ? e.Message : $"{f}: {e.Message}")}"); return 1; }
            // A corpus that checks nothing must not read as a pass.
            if (cases == 0) { stderr.WriteLine($"lr replay: {f} holds no cases (an empty corpus checks nothing)"); return 1; }
        }
        stdout.WriteLine($"replay: {passed} passed, {failed} failed");
        return failed == 0 ? 0 : 1;
    }
}
