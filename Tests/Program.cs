using System.Reflection;
using Expecto;
using Expecto.CSharp;
using Tests.Harness;

// Worker mode for the MPI tests: mpirun starts this assembly as each rank of a small program (Tests/Parallel/MpiTests.cs).
if (args.Length > 0 && args[0] == "mpi-worker") return Tests.Parallel.MpiTests.WorkerMain(args[1..]);

// Runs every [Tests] value in this assembly; Expecto's CLI arguments pass through (e.g. --filter-test-list).
// The last line is the plain `N passed, N failed` that CI reads.
var counter = new CountingPrinter();
var config = Runner.AddPrinter(Impl.ExpectoConfig.defaultConfig, counter);
var all = Impl.testFromAssembly.Invoke(Assembly.GetExecutingAssembly()).Value;
int exit = Expecto.Tests.runTestsWithCLIArgs(new[] { Expecto.Tests.CLIArguments.NewPrinter(config.printer) }, args, all);
// Expecto leaves a colour reset without a newline: start a fresh line so the summary stands alone.
Console.WriteLine();
Console.WriteLine($"{counter.PassedCount} passed, {counter.FailedCount} failed" + (counter.IgnoredCount > 0 ? $", {counter.IgnoredCount} skipped" : ""));
return exit;
