// TEMPORARY STUB (trainer-loop): the lead replaces this file with the real `Trainer lr replay|preview`.
namespace Trainer.LrTools;

public static class LrCommand
{
    public static int Run(string[] args)
    {
        Console.Error.WriteLine("error: `Trainer lr` (replay|preview) is not in this build yet");
        return 1;
    }
}
