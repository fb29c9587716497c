// Entry point: `Trainer lr ...` tools (the training command lands with the trainer).
if (args.Length > 0 && args[0] == "lr") return Trainer.LrTools.LrCommand.Run(args[1..]);
Console.Error.WriteLine("usage: Trainer lr replay FILE.jsonl[.gz]");
return 2;
