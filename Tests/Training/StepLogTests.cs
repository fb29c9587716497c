using Expecto;
using Tests.Harness;
using Trainer.Training;

namespace Tests.Training;

public static class StepLogTests
{
    [Tests]
    public static Test All => Spec.List("training.log",
        Spec.Case("the step line is InfiniTrain's", () =>
        {
            var line = StepLog.Format(new StepRecord(3, 10, 10.876543f, new[] { 6e-4 }, 12.34, 20743, 8));
            const string want = "step    3/10 | train loss 10.876543 | lr 6.00e-04 | (12.34 ms | 20743 tok/s, DP=8)";
            if (line != want) throw new Exception($"got  {line}\nwant {want}");
        }),
        Spec.Case("JSON lines keep every group's LR and the loss at full precision", () =>
        {
            var j = StepLog.FormatJson(new StepRecord(1, 2, 1.2345678f, new[] { 0.1 / 3, 1e-7 }, 1, 2, 1));
            var e = System.Text.Json.JsonDocument.Parse(j).RootElement;
            if (e.GetProperty("lr")[0].GetDouble() != 0.1 / 3 || e.GetProperty("lr")[1].GetDouble() != 1e-7) throw new Exception(j);
            if ((float)e.GetProperty("loss").GetDouble() != 1.2345678f) throw new Exception(j);
            if (e.TryGetProperty("momentum", out _)) throw new Exception("momentum without one: " + j);
        }),
        Spec.Case("JSON lines carry each group's momentum / beta1 at full precision when the optimizer has one", () =>
        {
            var j = StepLog.FormatJson(new StepRecord(1, 2, 1f, new[] { 1e-3, 2e-3 }, 1, 2, 1, "", new[] { 0.95 / 3, 0.9 }));
            var m = System.Text.Json.JsonDocument.Parse(j).RootElement.GetProperty("momentum");
            if (m.GetArrayLength() != 2 || m[0].GetDouble() != 0.95 / 3 || m[1].GetDouble() != 0.9) throw new Exception(j);
        }),
        Spec.Case("the progress bar is erased before each log line, so lines stay whole", () =>
        {
            var w = new StringWriter();
            using (var log = new StepLog(w, null, progressBar: true))
                for (int s = 1; s <= 3; s++) log.Step(new StepRecord(s, 3, 1f, new[] { 1e-3 }, 10, 100, 1), 256);
            var text = w.ToString();
            if (!text.Contains("[") || !text.Contains("tok/s | left")) throw new Exception("no bar: " + text);
            foreach (var line in text.Split('\n').Where(l => l.Length > 0))
            {
                var visible = line.Contains("\u001b[2K") ? line[(line.LastIndexOf("\u001b[2K") + 4)..] : line;
                if (!visible.StartsWith("step ")) throw new Exception("broken line: " + line.Replace("\u001b", "ESC").Replace("\r", "CR"));
            }
        }));
}
