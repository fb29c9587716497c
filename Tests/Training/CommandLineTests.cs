using Expecto;
using Tests.Harness;
using Trainer.Cli;

namespace Tests.Training;

/// <summary>Every subcommand runs on the one gflags parser: --help lists its flags (exit 0), an unknown flag is a usage
/// error naming it (exit 2).</summary>
public static class CommandLineTests
{
    /// <summary>A subcommand as the entry point runs it, and the flags its --help must list.</summary>
    sealed record Command(string Name, string[] Verb, FlagSet? Flags);

    static readonly Command[] Commands =
    [
        new("train", ["train"], TrainCommand.Flags()),
        new("prepare-data", ["prepare-data"], Trainer.Data.PrepareDataCommand.Flags()),
        new("lora-merge", ["lora-merge"], LoraMergeCommand.Flags()),
        new("lr replay", ["lr", "replay"], Trainer.LrTools.LrCommand.ReplayFlags()),
        new("lr preview", ["lr", "preview"], Trainer.LrTools.PreviewArgs.Flags()),
        new("lr plot-logs", ["lr", "plot-logs"], Trainer.LrTools.PlotLogsCommand.Flags()),
        new("(top level)", [], TrainCommand.Flags()),
    ];

    static (int Exit, string Out, string Err) Main(params string[] args) => TestData.Capture(() => Trainer.EntryPoint.Main(args));

    [Tests]
    public static Test All => Spec.Sequenced(Spec.List("cli.commands",
        Spec.Case("every subcommand answers --help (and -h) with exit 0 and lists each of its flags", () =>
        {
            foreach (var c in Commands)
                foreach (var help in new[] { "--help", "-h" })
                {
                    var (exit, output, err) = Main([.. c.Verb, help]);
                    Must.Equal(exit, 0, $"{c.Name} {help}: exit code (stderr: {err})");
                    foreach (var d in c.Flags!.Definitions)
                        Must.True(output.Contains("--" + d.Name + " ") || output.Contains("--" + d.Name + ","), $"{c.Name} {help} lacks --{d.Name}");
                    Must.Contains(output, "usage:", $"{c.Name} {help}");
                }
            var top = Main("--help").Out;
            foreach (var cmd in new[] { "lr replay|preview|plot-logs", "prepare-data", "lora-merge" }) Must.Contains(top, cmd, "top-level --help names the commands");
            foreach (var args in new[] { new[] { "help" }, new[] { "lr", "--help" } }) Must.Equal(Main(args).Exit, 0, string.Join(" ", args));
        }),
        Spec.Case("an unknown flag is a usage error naming it, exit 2, for every subcommand", () =>
        {
            foreach (var c in Commands)
            {
                var (exit, _, err) = Main([.. c.Verb, "--no-such-flag=1"]);
                Must.Equal(exit, 2, $"{c.Name}: exit code");
                Must.Contains(err, "--no-such-flag", $"{c.Name}: the flag is named");
            }
            Must.Equal(Main("frobnicate").Exit, 2, "an unknown command");
            Must.Equal(Main("lr", "frobnicate").Exit, 2, "an unknown lr subcommand");
        }),
        Spec.Case("gflags conventions hold in every subcommand: --flag value, -flag=value, --noflag, dashes for underscores", () =>
        {
            var replay = Trainer.LrTools.LrCommand.ReplayFlags().Parse(["-rtol", "0", "--noverbose", "a.jsonl"]);
            Must.True(replay.GetDouble("rtol") == 0 && !replay.GetBool("verbose") && replay.Positional.SequenceEqual(["a.jsonl"]), "lr replay");
            var plot = Trainer.LrTools.PlotLogsCommand.Flags().Parse(["a.jsonl", "--output", "x.png", "-width=300"]);
            Must.True(plot.GetString("output") == "x.png" && plot.GetInt("width") == 300, "lr plot-logs");
            var (exit, _, err) = Main("lr", "replay", "--rtol=-1", "x.jsonl");
            Must.Equal(exit, 2, "a negative --rtol: exit code");
            Must.Contains(err, "--rtol", "a negative --rtol is named");
            var (exit2, _, err2) = Main("lr", "plot-logs", "a.jsonl", "--output=x.png", "--width=10");
            Must.Equal(exit2, 2, "--width below the minimum: exit code (it was ignored before)");
            Must.Contains(err2, "--width", "--width is named");
        })));
}
