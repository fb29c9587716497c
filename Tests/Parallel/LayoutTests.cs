using Expecto;
using FsCheck;
using FsCheck.Fluent;
using Microsoft.FSharp.Core;
using Tests.Harness;
using TorchSharp;
using Trainer.Models;
using Trainer.Parallel;
using static TorchSharp.torch;

namespace Tests.Parallel;

/// <summary>ParallelLayout (TP-DP-PP order, groups, validation) and ProcessGroups over the thread backend.</summary>
public static class LayoutTests
{
    [Tests]
    public static Test All => Spec.List("parallel.layout",
        Spec.Case("Coord and RankOf are inverse, TP varies fastest, then DP, then PP (property)", CoordsRoundTrip),
        Spec.Case("the design doc's example: DP=2, TP=4 -> DP groups [0,4],[1,5],[2,6],[3,7], TP groups [0..3],[4..7]", DesignDocExample),
        Spec.Case("a 3-D example: world 16, TP 2, PP 2 -> DP 4; groups of rank 5", ThreeDExample),
        Spec.Case("each axis' groups partition the world and a rank sits at its coordinate (property)", GroupsPartitionTheWorld),
        Spec.Case("ProcessGroups splits the thread world into the layout's groups; reductions stay inside them", ProcessGroupsOverThreads),
        Spec.Case("valid flags with real models give no problems", ValidConfigurations),
        Spec.Case("every validation problem names its flags and numbers", EveryProblemNamed),
        Spec.Case("several problems are all listed; the constructor refuses an impossible layout", AllProblemsListed));

    static ulong Seed => ulong.TryParse(Environment.GetEnvironmentVariable("LR_PROPERTY_SEED"), out var s) ? s : 20_261_128;

    static void Check<T>(string name, int tests, Gen<T> gen, Action<T> property) =>
        FsCheck.Check.One(FsCheck.Config.QuickThrowOnFailure.WithMaxTest(tests).WithQuietOnSuccess(true).WithName(name)
            .WithReplay(FSharpOption<Replay>.Some(new Replay(new Rnd(Seed), FSharpOption<int>.None))), Prop.ForAll(Arb.From(gen), property));

    static Gen<ParallelLayout> Layouts =>
        from tp in Gen.Choose(1, 5)
        from dp in Gen.Choose(1, 5)
        from pp in Gen.Choose(1, 4)
        select new ParallelLayout(tp * dp * pp, tp, pp);

    static string Show(IEnumerable<int> xs) => "[" + string.Join(",", xs) + "]";

    static void Expect(IReadOnlyList<int> got, IEnumerable<int> want, string what)
    {
        if (!got.SequenceEqual(want)) throw new Exception($"{what}: {Show(got)}, expected {Show(want)}");
    }

    static void CoordsRoundTrip() => Check("layout coords", 200, Layouts, l =>
    {
        if (l.Dp != l.World / (l.Tp * l.Pp)) throw new Exception($"{l}: dp");
        for (int r = 0; r < l.World; r++)
        {
            var (t, d, p) = l.Coord(r);
            if (l.RankOf(t, d, p) != r) throw new Exception($"{l}: rank {r} -> ({t},{d},{p}) -> {l.RankOf(t, d, p)}");
            if (r != t + l.Tp * (d + l.Dp * p)) throw new Exception($"{l}: rank {r} is not tp + TP*(dp + DP*pp)");
            if (t + 1 < l.Tp && l.Coord(r + 1) != (t + 1, d, p)) throw new Exception($"{l}: TP is not fastest at rank {r}");
        }
    });

    static void DesignDocExample()
    {
        var l = new ParallelLayout(8, tp: 4);
        if (l.Dp != 2) throw new Exception($"DP {l.Dp}");
        for (int r = 0; r < 8; r++)
        {
            Expect(l.DpGroup(r), new[] { r % 4, r % 4 + 4 }, $"DP group of rank {r}");
            Expect(l.TpGroup(r), Enumerable.Range(r / 4 * 4, 4), $"TP group of rank {r}");
            Expect(l.PpGroup(r), new[] { r }, $"PP group of rank {r}");
            Expect(l.ModelParallelGroup(r), Enumerable.Range(r / 4 * 4, 4), $"model-parallel group of rank {r}");
        }
    }

    static void ThreeDExample()
    {
        var l = new ParallelLayout(16, tp: 2, pp: 2);
        if (l.Dp != 4) throw new Exception($"DP {l.Dp}");
        if (l.Coord(5) != (1, 2, 0)) throw new Exception($"coord of 5: {l.Coord(5)}");
        if (l.Coord(13) != (1, 2, 1)) throw new Exception($"coord of 13: {l.Coord(13)}");
        Expect(l.DpGroup(5), new[] { 1, 3, 5, 7 }, "DP group of 5");
        Expect(l.TpGroup(5), new[] { 4, 5 }, "TP group of 5");
        Expect(l.PpGroup(5), new[] { 5, 13 }, "PP group of 5");
        Expect(l.ModelParallelGroup(5), new[] { 4, 5, 12, 13 }, "model-parallel group of 5");
    }

    static void GroupsPartitionTheWorld() => Check("layout groups", 100, Layouts, l =>
    {
        var axes = new (string Name, Func<int, IReadOnlyList<int>> Group, Func<int, int> Index, int Size)[]
        {
            ("DP", l.DpGroup, r => l.Coord(r).Dp, l.Dp),
            ("TP", l.TpGroup, r => l.Coord(r).Tp, l.Tp),
            ("PP", l.PpGroup, r => l.Coord(r).Pp, l.Pp),
            ("MP", l.ModelParallelGroup, r => l.Coord(r).Tp + l.Tp * l.Coord(r).Pp, l.Tp * l.Pp),
        };
        foreach (var a in axes)
        {
            var distinct = Enumerable.Range(0, l.World).Select(r => Show(a.Group(r))).Distinct().ToArray();
            if (distinct.Length * a.Size != l.World) throw new Exception($"{l}: {distinct.Length} {a.Name} groups of {a.Size}");
            for (int r = 0; r < l.World; r++)
            {
                var g = a.Group(r);
                if (g.Count != a.Size || g[a.Index(r)] != r) throw new Exception($"{l}: rank {r} not at its coordinate in {a.Name} group {Show(g)}");
                foreach (var m in g) if (Show(a.Group(m)) != Show(g)) throw new Exception($"{l}: {a.Name} groups of {r} and {m} differ");
            }
        }
    });

    static void ProcessGroupsOverThreads()
    {
        var layout = new ParallelLayout(8, tp: 2, pp: 2);    // DP 2
        var got = ThreadCommunicator.Run(8, world =>
        {
            using var g = ProcessGroups.Create(world, layout);
            var t = torch.tensor(new double[] { 1 << world.Rank });
            g.Dp.AllReduce(t, ReduceOp.Sum);
            return (g.Dp.WorldRanks.ToArray(), g.Dp.Rank, g.Tp.WorldRanks.ToArray(), g.Tp.Rank, g.Pp.WorldRanks.ToArray(), g.Pp.Rank,
                g.ModelParallel.WorldRanks.ToArray(), g.ModelParallel.Rank, t.item<double>());
        }, TimeSpan.FromSeconds(20));
        for (int r = 0; r < 8; r++)
        {
            var (dp, dpRank, tp, tpRank, pp, ppRank, mp, mpRank, sum) = got[r];
            var c = layout.Coord(r);
            Expect(dp, layout.DpGroup(r), $"rank {r} DP");
            Expect(tp, layout.TpGroup(r), $"rank {r} TP");
            Expect(pp, layout.PpGroup(r), $"rank {r} PP");
            Expect(mp, layout.ModelParallelGroup(r), $"rank {r} MP");
            if (dpRank != c.Dp || tpRank != c.Tp || ppRank != c.Pp || mpRank != c.Tp + 2 * c.Pp) throw new Exception($"rank {r}: group ranks");
            double want = layout.DpGroup(r).Sum(m => (double)(1 << m));
            if (sum != want) throw new Exception($"rank {r}: DP all-reduce {sum}, expected {want}");
        }
        var wrong = Throws<ArgumentException>(() => ThreadCommunicator.Run(2, w => ProcessGroups.Create(w, layout), TimeSpan.FromSeconds(20)));
        Contains(wrong.Message, "world of 8 ranks", "has 2");
    }

    static IReadOnlyList<string> V(int world, ParallelFlags f, ModelDims? m = null, BatchDims? b = null) => ParallelLayout.Validate(world, f, m, b);

    static void ValidConfigurations()
    {
        var gpt2 = ModelDims.Of(ModelCatalog.Get("gpt2"));
        if (gpt2.VocabRows != 50304) throw new Exception($"GPT-2 TP vocabulary {gpt2.VocabRows}, expected the padded 50304");
        foreach (var (world, f, m, b) in new (int, ParallelFlags, ModelDims, BatchDims)[]
        {
            (1, new(), gpt2, new(4, 64, 256)),
            (8, new(TensorParallel: 4, SequenceParallel: true, ZeroStage: 2), gpt2, new(4, 64, 4 * 64 * 2)),
            (8, new(TensorParallel: 2, PipelineParallel: 2, VirtualPipelineParallel: 2, ZeroStage: 1), gpt2, new(2, 32, 2 * 32 * 2 * 3)),
            (4, new(TensorParallel: 2), ModelDims.Of(ModelCatalog.Get("llama3")), new(1, 128, 256)),
        })
        {
            var problems = V(world, f, m, b);
            if (problems.Count > 0) throw new Exception($"{f} on {world}: {string.Join("; ", problems)}");
        }
    }

    static readonly ModelDims Toy = new("toy", Heads: 6, KvHeads: 2, Hidden: 96, VocabRows: 101, FfnHidden: 250, Layers: 4);

    static void EveryProblemNamed()
    {
        void Problem(int world, ParallelFlags f, ModelDims? m, BatchDims? b, params string[] parts)
        {
            var problems = V(world, f, m, b);
            var hit = problems.FirstOrDefault(p => parts.All(x => p.Contains(x, StringComparison.Ordinal)));
            if (hit is null) throw new Exception($"{f} world {world}: no problem with [{string.Join(" | ", parts)}] in: {string.Join("; ", problems)}");
        }
        var b = new BatchDims(2, 12, 2 * 12 * 4);
        Problem(8, new(TensorParallel: 4), Toy, b, "n_head 6", "'toy'", "--tensor_parallel=4");
        Problem(8, new(TensorParallel: 4), Toy, b, "n_kv_head 2", "--tensor_parallel=4");
        Problem(10, new(TensorParallel: 5), Toy, new(2, 10, 20 * 2), "n_embd (hidden size) 96", "--tensor_parallel=5");
        Problem(6, new(TensorParallel: 3), Toy with { Heads = 6, KvHeads = 3 }, new(2, 12, 2 * 12 * 2), "vocabulary 101", "--tensor_parallel=3");
        Problem(4, new(TensorParallel: 4), Toy with { Heads = 8, KvHeads = 4 }, b, "FFN hidden size 250", "--tensor_parallel=4");
        Problem(8, new(TensorParallel: 2, SequenceParallel: true), Toy, new(2, 13, 2 * 13 * 4), "--sequence_parallel", "--sequence_length=13", "--tensor_parallel=2");
        Problem(4, new(SequenceParallel: true), null, null, "--sequence_parallel needs --tensor_parallel > 1", "--tensor_parallel=1");
        Problem(6, new(TensorParallel: 4), null, null, "world size 6", "--nthread_per_process", "--tensor_parallel=4 x --pipeline_parallel=1 = 4");
        Problem(8, new(TensorParallel: 2, PipelineParallel: 3), null, null, "world size 8", "--pipeline_parallel=3", "= 6");
        Problem(2, new(ZeroStage: 3), null, null, "--zero_stage=3", "ZeRO-3", "not supported");
        Problem(2, new(ZeroStage: -1), null, null, "--zero_stage=-1 must be 0, 1 or 2");
        Problem(8, new(PipelineParallel: 4, VirtualPipelineParallel: 2), Toy, null, "--pipeline_parallel=4 x --virtual_pipeline_parallel=2 = 8", "n_layer 4");
        Problem(2, new(VirtualPipelineParallel: 2), null, null, "--virtual_pipeline_parallel=2 needs --pipeline_parallel > 1");
        Problem(4, new(TensorParallel: 2), null, new(2, 12, 100), "--total_batch_size=100", "--batch_size x --sequence_length x DP = 2 x 12 x 2 = 48");
        Problem(4, new(TensorParallel: 0), null, null, "--tensor_parallel=0 must be at least 1");
        Problem(0, new(), null, null, "--nthread_per_process=0");
        // LLaMA-3's tiny preset keeps GPT-2's odd vocabulary: TP 2 cannot split it, and says so.
        Problem(2, new(TensorParallel: 2), ModelDims.Of(ModelCatalog.Get("llama3-tiny")), null, "vocabulary 50257", "'llama3-tiny'", "--tensor_parallel=2");
    }

    static void AllProblemsListed()
    {
        var problems = V(6, new(TensorParallel: 4, SequenceParallel: true, ZeroStage: 3), Toy, new(2, 13, 7));
        foreach (var part in new[] { "world size 6", "ZeRO-3", "n_head 6", "n_kv_head 2", "vocabulary 101", "FFN hidden size 250", "--sequence_length=13" })
            if (!problems.Any(p => p.Contains(part, StringComparison.Ordinal))) throw new Exception($"'{part}' not listed in: {string.Join("; ", problems)}");
        var e = Throws<ArgumentException>(() => new ParallelLayout(6, tp: 4));
        Contains(e.Message, "world size 6", "--tensor_parallel=4");
        e = Throws<ArgumentException>(() => new ParallelLayout(4, tp: 2, zeroStage: 3));
        Contains(e.Message, "not supported");
    }

    static T Throws<T>(Action a) where T : Exception => Must.Throws<T>(a, "the call");

    static void Contains(string message, params string[] parts)
    {
        foreach (var p in parts) Must.Contains(message, p, "the message");
    }
}
