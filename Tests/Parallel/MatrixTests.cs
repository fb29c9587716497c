using Expecto;
using Tests.Harness;

namespace Tests.Parallel;

/// <summary>
/// The scenario matrix (reference/matrix.sh) as CI runs it: every scenario of reference/matrix_cases.txt for the
/// model × dtype × schedule groups below (less the <see cref="ScriptOnly"/> rows), each scenario against the
/// single-device run of the same global batch.
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

    /// <summary>Rows only `reference/matrix.sh` runs (their results are in docs/REPORT.md §3): the LoRA pipeline rows
    /// other than lora_8 (which CI runs: TP+SP × PP × VPP covers the others' code paths; Tests/Lora checks PP 2,
    /// PP 2 × VPP 2, ZeRO-1, resume under PP and from PP on one device) would add minutes to every group.</summary>
    static readonly HashSet<string> ScriptOnly = new() { "lora_6", "lora_7", "lora_8_distopt", "ckpt_lora_8", "ckpt_lora_8_to_1" };

    /// <summary>The scenario ids of matrix_cases.txt that CI runs.</summary>
    static string[] CiScenarios() =>
        File.ReadLines(Path.Combine(Scripts.RepoRoot(), "reference", "matrix_cases.txt"))
            .Select(l => l.Trim())
            .Where(l => l.Length > 0 && !l.StartsWith('#') && !l.StartsWith("COMMON") && !l.StartsWith("BASELINE"))
            .Select(l => l.Split(' ', 2)[0])
            .Where(id => !ScriptOnly.Contains(id))
            .ToArray();

    static void RunGroup(string model, string dtype, string schedule)
    {
        var outDir = Path.Combine(Path.GetTempPath(), $"lrs-matrix-{Environment.ProcessId}");
        var ids = CiScenarios();
        var (code, output) = Scripts.Run("matrix.sh", new[] { "-o", outDir, "-m", model, "-d", dtype, "-s", schedule }.Concat(ids).ToArray(), TimeSpan.FromMinutes(20));
        int n = ids.Length;
        Must.True(n >= 11, $"matrix_cases.txt lists {n} scenarios for CI; the basic and zero rows are 11");
        Must.True(code == 0 && output.Contains($"matrix: {n} passed, 0 failed"),
            $"matrix.sh -m {model} -d {dtype} -s {schedule} exited {code}, expected `matrix: {n} passed, 0 failed`\n{Scripts.Tail(output)}");
        try { Directory.Delete(outDir, recursive: true); } catch (IOException) { }
    }

    [Tests]
    public static Test Matrix => Spec.Sequenced(Spec.List("parallel.matrix",
        CiGroups.Select(g => Spec.Case($"{g.Model} {g.Dtype} {g.Schedule}: every scenario matches the single-device run", () => RunGroup(g.Model, g.Dtype, g.Schedule)))));
}
