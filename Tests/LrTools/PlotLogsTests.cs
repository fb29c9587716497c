using Expecto;
using ScottPlot;
using Tests.Harness;
using Trainer.LrTools;
using static Tests.LrTools.Kit;

namespace Tests.LrTools;

/// <summary>`lr plot-logs`'s panels, read back from the PNG at the pixels where ScottPlot placed the data.</summary>
public static class PlotLogsTests
{
    static PlotLogsCommand.LogRow Row(int step, double loss, double lr) => new(step, loss, lr);

    // Two 20-step logs: StepLR-like rates (halved after steps 6 and 12), losses that differ by 1e-6 × step.
    static readonly IReadOnlyList<PlotLogsCommand.LogRow> A =
        Enumerable.Range(1, 20).Select(k => Row(k, 10 - 0.1 * k, k <= 6 ? 1e-3 : k <= 12 ? 5e-4 : 2.5e-4)).ToArray();
    static readonly IReadOnlyList<PlotLogsCommand.LogRow> B = A.Select(r => r with { Loss = r.Loss + 1e-6 * r.Step }).ToArray();

    [Tests]
    public static Test PlotLogs => Spec.List("lr plot-logs",
        Spec.Case("LR stairs, both losses and the |loss difference| panel, each where the data say", () => InTempDir(dir =>
        {
            const int w = 700, h = 300;
            var panels = PlotLogsCommand.Panels([("C#", A), ("PyTorch", B)], "t");
            Equal(3, panels.Count, "panels");
            var plots = panels.Select(Plots.Build).ToArray();
            var p = ReadPng(PlotLogsCommand.Render([("C#", A), ("PyTorch", B)], "t", w, h));
            Equal((w, 3 * h), (p.Width, p.Height), "three panels of 700x300");
            var again = Plots.Stacked(plots, w, h); // places each plot's pixels; same bytes as the command's
            True(again.AsSpan().SequenceEqual(PlotLogsCommand.Render([("C#", A), ("PyTorch", B)], "t", w, h)), "deterministic");

            bool At(int panel, double x, double y, Color c, int radius = 1)
            {
                var px = plots[panel].GetPixel(new Coordinates(x, y));
                return Near(p, px.X, px.Y + panel * h, c, radius);
            }
            var orange = Plots.ColorOf(1); // PyTorch, drawn over C#'s identical LR
            // LR panel: the rate of step 6 holds until x = 7, then the line falls straight down.
            foreach (double x in new[] { 2.5, 5.5, 6.5 }) True(At(0, x, 1e-3, orange), $"lr 1e-3 at x={x}");
            foreach (double x in new[] { 7.5, 12.5 }) True(At(0, x, 5e-4, orange) && !At(0, x, 1e-3, orange, 2), $"lr 5e-4 at x={x}");
            foreach (double y in new[] { 6e-4, 7.5e-4, 9e-4 }) True(At(0, 7, y, orange), $"vertical drop at x=7, lr={y}");
            True(!At(0, 6.5, 7.5e-4, orange, 2), "no diagonal between the levels");
            // Loss panel: both logs (they differ by 2e-5 at most: one line).
            True(At(1, 10, 9.0, orange), "loss at step 10");
            // Difference panel: |A - B| = 1e-6 × step, in the first series colour.
            foreach (int k in new[] { 2, 10, 19 }) True(At(2, k, 1e-6 * k, Plots.ColorOf(0)), $"|d loss| at step {k}");
            True(!At(2, 10, 1.5e-5, Plots.ColorOf(0), 2), "nothing above the difference at step 10");
            Contains(panels[2].Title!, "max 2.00e-05", "the difference panel's title gives the maximum");

            Equal(2, PlotLogsCommand.Panels([("C#", A)], null).Count, "one log: no difference panel");
        })));
}
