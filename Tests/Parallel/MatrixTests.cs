using Expecto;
using Tests.Harness;

namespace Tests.Parallel;

/// <summary>
/// The scenario matrix (reference/matrix.sh) as CI runs it: every scenario of reference/matrix_cases.txt for the
/// model × dtype × schedule groups below, each scenario against the single-device run of the same global batch.
/// The full matrix (both models × float32/bfloat16 × two schedules) runs with `reference/matrix.sh`.
/// </summary>
public static class MatrixTests
{
    /// <summary>The groups CI runs: both models in float32 with warmup+cosine, GPT-2 in bfloat16 with Chained(StepLR, LinearLR).</summary>
    static readonly (string Model, string Dtype, string Schedule)[] CiGroups =
    {
        ("gpt2", "float32", "warmup-cosine"),
        ("llama3", "float32", "warmup-cosine"),
        ("gpt2", "bfloat16", "chained"),
    };

    static int ScenarioCount() =>
        File.ReadLines(Path.Combine(Scripts.RepoRoot(), "reference", "matrix_cases.txt"))
            .Select(l => l.Trim())
            .Count(l => l.Length > 0 && !l.StartsWith('#') && !l.StartsWith("COMMON") && !l.StartsWith("BASELINE"));

    static void RunGroup(string model, string dtype, string schedule)
    {
        var outDir = Path.Combine(Path.GetTempPath(), $"lrs-matrix-{Environment.ProcessId}");
        var (code, output) = Scripts.Run("matrix.sh", new[] { "-o", outDir, "-m", model, "-d", dtype, "-s", schedule }, TimeSpan.FromMinutes(20));
        int n = ScenarioCount();
        Must.True(n >= 11, $"matrix_cases.txt lists {n} scenarios; the basic and zero rows are 11");
        Must.True(code == 0 && output.Contains($"matrix: {n} passed, 0 failed"),
            $"matrix.sh -m {model} -d {dtype} -s {schedule} exited {code}, expected `matrix: {n} passed, 0 failed`\n{Scripts.Tail(output)}");
        try { Directory.Delete(outDir, recursive: true); } catch (IOException) { }
    }

    [Tests]
    public static Test Matrix => Spec.Sequenced(Spec.List("parallel.matrix",
        CiGroups.Select(g => Spec.Case($"{g.Model} {g.Dtype} {g.Schedule}: every scenario matches the single-device run", () => RunGroup(g.Model, g.Dtype, g.Schedule)))));
}
