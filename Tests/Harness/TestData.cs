namespace Tests.Harness;

/// <summary>Files under Tests/Data, copied next to the test assembly.</summary>
public static class TestData
{
    public static string Path(params string[] parts) =>
        System.IO.Path.Combine([AppContext.BaseDirectory, "Data", .. parts]);

    public static string GoldenCorpus => Path("golden", "pytorch-2.11", "lr_traces.jsonl.gz");

    /// <summary>Runs an action with stdout and stderr captured (the CLI's own output), returning both.</summary>
    public static (int Exit, string Out, string Err) Capture(Func<int> run)
    {
        lock (ConsoleLock)
        {
            var (o, e) = (Console.Out, Console.Error);
            var (ow, ew) = (new StringWriter(), new StringWriter());
            Console.SetOut(ow); Console.SetError(ew);
            try { return (run(), ow.ToString(), ew.ToString()); }
            finally { Console.SetOut(o); Console.SetError(e); }
        }
    }

    public static readonly object ConsoleLock = new();
}
