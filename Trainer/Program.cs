using Trainer.Cli;

// Trainer [train] [flags]      train GPT-2 / LLaMA-3 (the default command when the first argument is a flag or absent)
// Trainer lr replay|preview    learning-rate tools (Trainer/LrTools)
// Trainer prepare-data         tokenize text into llm.c token files (Trainer/Data)
// Trainer lora-merge           merge LoRA adapters into the base weights (Trainer/Cli/LoraMergeCommand.cs)
if (args.Length == 0 || args[0].StartsWith('-') || args[0] == "train")
    Trainer.Training.NativeHeap.ReexecWithTunables();   // training: glibc settings that only the start-up environment can make (returns only where it did not exec)
Trainer.Training.OpenMpSpin.Bound();   // before libtorch (and its libgomp) loads
Trainer.EntryPoint.UsePlainTerminalWriters();
return Trainer.EntryPoint.Main(args);

namespace Trainer
{
    public static class EntryPoint
    {
        public const string Usage =
            "usage: Trainer [train] [--flag=value ...]   train a model (default command; --help lists every flag)\n" +
            "       Trainer lr replay|preview|plot-logs  learning-rate schedule tools\n" +
            "       Trainer prepare-data ...             tokenize text into llm.c token files\n" +
            "       Trainer lora-merge ...               merge LoRA adapters into the base weights (llm.c file)\n" +
            "       Trainer help | --help | --version\n" +
            "Every command lists its flags with --help (Trainer train --help, Trainer lr replay --help, ...).\n";

        /// <summary>
        /// On Unix, .NET's Console initialises the terminal on the first write to a console stream and sends terminfo's
        /// keypad_xmit (<c>ESC[?1h ESC=</c>: application cursor keys), which it never undoes (dotnet/runtime's console,
        /// known since .NET Core 2), so the shell's arrow keys misbehave after the run. The trainer only writes text, so
        /// stdout and stderr, where they are terminals, get plain writers on file descriptors 1 and 2 that never
        /// initialise the console. Redirected streams keep .NET's writers (nothing is sent there).
        /// </summary>
        public static void UsePlainTerminalWriters()
        {
            if (OperatingSystem.IsWindows()) return;
            if (!Console.IsOutputRedirected) Console.SetOut(FdWriter(1));
            if (!Console.IsErrorRedirected) Console.SetError(FdWriter(2));
        }

        static TextWriter FdWriter(int fd) =>
            new StreamWriter(new FileStream(new Microsoft.Win32.SafeHandles.SafeFileHandle(fd, ownsHandle: false), FileAccess.Write, bufferSize: 0),
                new System.Text.UTF8Encoding(false)) { AutoFlush = true };

        /// <summary>
        /// <c>train</c>; under mpirun only process 0 (world rank 0) writes to stdout, errors are prefixed with the
        /// rank, and the job ends with MPI_Finalize (success) or MPI_Abort (a failure: mpirun then stops every rank).
        /// </summary>
        static int Train(string[] args)
        {
            if (!Trainer.Parallel.Mpi.MpiRuntime.IsLaunched) return TrainCommand.Run(args, Console.Out, Console.Error);
            int rank = Trainer.Parallel.Mpi.MpiRuntime.LaunchedRank;
            var errors = new StringWriter();
            int rc = TrainCommand.Run(args, rank == 0 ? Console.Out : TextWriter.Null, errors);
            foreach (var line in errors.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries))
                Console.Error.WriteLine($"[rank {rank}] {line}");
            Trainer.Parallel.Mpi.MpiRuntime.End(rc);
            return rc;
        }

        public static int Main(string[] args)
        {
            if (args.Length == 0 || args[0].StartsWith('-'))
            {
                if (args.Length == 1 && args[0] is "--version") { Console.WriteLine("Trainer 0.1"); return 0; }
                // Top-level --help: the commands, then the flags of the default command (train).
                if (args.Length == 1 && args[0] is "--help" or "-h" or "-help" or "--helpfull") { Console.Write(Usage + "\n"); return Train(args); }
                return Train(args);
            }
            var rest = args[1..];
            switch (args[0])
            {
                case "train": return Train(rest);
                case "lr": return Trainer.LrTools.LrCommand.Run(rest);
                case "prepare-data": return Trainer.Data.PrepareDataCommand.Run(rest);
                case "lora-merge": return LoraMergeCommand.Run(rest, Console.Out, Console.Error);
                case "help": Console.Write(Usage); return 0;
                default:
                    Console.Error.WriteLine($"error: unknown command '{args[0]}'\n{Usage}");
                    return 2;
            }
        }
    }
}
