using System.Text.Json.Nodes;
using Expecto;
using Schedules.Torch.Golden;
using Tests.Harness;

namespace Tests.Properties;

/// <summary>Every case of the PyTorch 2.11 golden corpus passes <see cref="GoldenReplay.Check"/>: 2,516 cases, none skipped.</summary>
public static class GoldenCorpusTests
{
    public const string RelativePath = "Data/golden/pytorch-2.11/lr_traces.jsonl.gz";
    public const int ExpectedCases = 2516;

    /// <summary>The corpus copied beside the test binary, else found by walking up to the repository's Tests folder.</summary>
    public static string CorpusPath
    {
        get
        {
            var beside = TestData.GoldenCorpus; // Tests/Data is copied beside the test binary
            if (File.Exists(beside)) return beside;
            for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
            {
                var p = Path.Combine(d.FullName, "Tests", RelativePath);
                if (File.Exists(p)) return p;
            }
            throw new FileNotFoundException($"golden corpus {RelativePath} not found beside {AppContext.BaseDirectory} nor in a Tests folder above it");
        }
    }

    public static IEnumerable<JsonObject> ReadCorpus() => GoldenReplay.ReadCorpus(CorpusPath);

    [Tests]
    public static Test All => Spec.List("golden", Spec.Case("every PyTorch 2.11 case replays", () =>
    {
        var cases = ReadCorpus().ToList();
        var failures = cases.Select(c => GoldenReplay.Check(c)).Where(o => !o.Passed).ToList();
        var ids = cases.Select(c => (string?)c["id"]).ToList();
        if (ids.Distinct().Count() != ids.Count) throw new Exception("the corpus has duplicate case ids");
        if (cases.Count != ExpectedCases)
            throw new Exception($"expected {ExpectedCases} golden cases, read {cases.Count} from {CorpusPath}");
        Say.Line($"golden: {cases.Count - failures.Count}/{cases.Count} cases pass");
        if (failures.Count > 0)
            throw new Exception($"{failures.Count} of {cases.Count} golden cases fail:\n" +
                                string.Join("\n", failures.Take(50).Select(f => $"  {f.Id}: {f.Failure}")) +
                                (failures.Count > 50 ? $"\n  ... and {failures.Count - 50} more" : ""));
    }));
}
