using Trainer.Cli;

// Trainer [train] [flags]      train GPT-2 / LLaMA-3 (the default command when the first argument is a flag or absent)
// Trainer lr replay|preview    learning-rate tools (Trainer/LrTools)
// Trainer prepare-data         tokenize text into llm.c token files (Trainer/Data)
return Trainer.EntryPoint.Main(args);

namespace Trainer
{
    public static class EntryPoint
    {
        public const string Usage =
            "usage: Trainer [train] [--flag=value ...]   train a model (default command; --help lists every flag)\n" +
            "       Trainer lr replay|preview ...        learning-rate schedule tools\n" +
            "       Trainer prepare-data ...             tokenize text into llm.c token files\n";

        public static int Main(string[] args)
        {
            if (args.Length == 0 || args[0].StartsWith('-'))
            {
                if (args.Length == 1 && args[0] is "--version") { Console.WriteLine("Trainer 0.1"); return 0; }
                return TrainCommand.Run(args, Console.Out, Console.Error);
            }
            var rest = args[1..];
            switch (args[0])
            {
                case "train": return TrainCommand.Run(rest, Console.Out, Console.Error);
                case "lr": return Trainer.LrTools.LrCommand.Run(rest);
                case "prepare-data": return Trainer.Data.PrepareDataCommand.Run(rest);
                case "help": Console.Write(Usage); return 0;
                default:
                    Console.Error.WriteLine($"error: unknown command '{args[0]}'\n{Usage}");
                    return 2;
            }
        }
    }
}
