using System.Diagnostics;
using Expecto;
using FsCheck;
using FsCheck.Fluent;
using Microsoft.FSharp.Core;
using Tests.Harness;
using TorchSharp;
using Trainer.Parallel;
using static TorchSharp.torch;

namespace Tests.Parallel;

/// <summary>
/// ThreadCommunicator against references computed on one thread in rank order with scalar .NET arithmetic (float for
/// float32 and bfloat16, double for float64), compared bit for bit.
/// </summary>
public static class CommunicatorTests
{
    static readonly TimeSpan Quick = TimeSpan.FromSeconds(20);
    static readonly ScalarType[] FloatTypes = [ScalarType.Float32, ScalarType.Float64, ScalarType.BFloat16];
    static readonly ReduceOp[] Ops = [ReduceOp.Sum, ReduceOp.Avg, ReduceOp.Max];

    [Tests]
    public static Test All => Spec.List("parallel.communicator",
        Spec.Case("AllReduce Sum/Avg/Max equals the rank-order reference bit for bit (float32, float64, bfloat16; worlds 1-5)", AllReduceMatchesReference),
        Spec.Case("the test data tells rank order from reverse order, and float32 from bfloat16 accumulation", ReferenceIsOrderSensitive),
        Spec.Case("AllReduce of int64 Sum and Max is exact; Avg of an integer tensor is refused", Int64Reduce),
        Spec.Case("ReduceScatter chunk r equals chunk r of the AllReduce bit for bit (property: worlds 2,3,4,8)", ReduceScatterIsAllReduceChunk),
        Spec.Case("ReduceScatter equals the reference chunk; output may alias its input chunk", ReduceScatterMatchesReference),
        Spec.Case("AllGather concatenates inputs in rank order (also into a non-contiguous output and with aliased input)", AllGatherMatchesReference),
        Spec.Case("Broadcast from every root copies the root's bits", BroadcastFromEveryRoot),
        Spec.Case("a random program of collectives gives identical bits on 20 runs with random thread timing", RepeatedRunsIdentical),
        Spec.Case("Split: members with one color form a group ordered by (key, rank); groups reduce independently", SplitGroups),
        Spec.Case("Send/Recv: FIFO per pair, the sender may reuse its tensor, groups do not mix messages", SendRecvOrdering),
        Spec.Case("a rank that throws makes the others' collectives throw CommunicatorAbortedException naming it, quickly", FailingRankAborts),
        Spec.Case("a rank that never arrives makes the others time out (no hang), naming the missing rank", MissingRankTimesOut),
        Spec.Case("mismatched shapes, dtypes, ops, collectives, roots and messages are reported naming op and ranks", MismatchesReported),
        Spec.Case("a leaf that requires grad is reduced in place (collectives run under no_grad)", RequiresGradLeaf));

    // ------------------------------------------------------------------ references

    /// <summary>Exact values of a float tensor (float32/bfloat16 widen to double exactly).</summary>
    static double[] Values(Tensor t) => t.detach().cpu().to(ScalarType.Float64).contiguous().data<double>().ToArray();

    static long[] Bits(Tensor t) => Values(t).Select(BitConverter.DoubleToInt64Bits).ToArray();

    /// <summary>float -> bfloat16 round to nearest even (no NaN in test data), returned widened.</summary>
    static double RoundToBf16(float f)
    {
        int bits = BitConverter.SingleToInt32Bits(f);
        bits = (int)((bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000u);
        return BitConverter.Int32BitsToSingle(bits);
    }

    /// <summary>inputs[0] op inputs[1] op ... elementwise, in the dtype's accumulation arithmetic.</summary>
    static double[] Reference(IReadOnlyList<double[]> xs, ReduceOp op, ScalarType dt, bool reversed = false, bool roundEachStep = false)
    {
        int n = xs.Count;
        var order = Enumerable.Range(0, n).ToArray();
        if (reversed) Array.Reverse(order);
        var r = new double[xs[0].Length];
        for (int i = 0; i < r.Length; i++)
        {
            if (dt == ScalarType.Float64)
            {
                double acc = xs[order[0]][i];
                for (int k = 1; k < n; k++) acc = op == ReduceOp.Max ? Math.Max(acc, xs[order[k]][i]) : acc + xs[order[k]][i];
                if (op == ReduceOp.Avg) acc /= n;
                r[i] = acc;
            }
            else
            {
                float acc = (float)xs[order[0]][i];
                for (int k = 1; k < n; k++)
                {
                    acc = op == ReduceOp.Max ? MathF.Max(acc, (float)xs[order[k]][i]) : acc + (float)xs[order[k]][i];
                    if (roundEachStep) acc = (float)RoundToBf16(acc);
                }
                if (op == ReduceOp.Avg) acc /= n;
                r[i] = dt == ScalarType.BFloat16 ? RoundToBf16(acc) : acc;
            }
        }
        return r;
    }

    /// <summary>Per-rank tensors whose magnitudes span many binades, so the order of additions shows in the bits.</summary>
    static Tensor[] RankData(int world, long[] shape, ScalarType dt, long seed)
    {
        var g = new Generator((ulong)seed);
        return Enumerable.Range(0, world).Select(_ =>
            (torch.randn(shape, ScalarType.Float64, generator: g) * torch.exp(4 * torch.randn(shape, ScalarType.Float64, generator: g))).to(dt)).ToArray();
    }

    static void SameBits(long[] expected, long[] actual, string what)
    {
        if (expected.Length != actual.Length) throw new Exception($"{what}: {actual.Length} elements, expected {expected.Length}");
        for (int i = 0; i < expected.Length; i++)
            if (expected[i] != actual[i])
                throw new Exception($"{what}: element {i} is {BitConverter.Int64BitsToDouble(actual[i]):R}, expected {BitConverter.Int64BitsToDouble(expected[i]):R}");
    }

    static long[] BitsOf(double[] v) => v.Select(BitConverter.DoubleToInt64Bits).ToArray();

    // ------------------------------------------------------------------ FsCheck

    static ulong Seed => ulong.TryParse(Environment.GetEnvironmentVariable("LR_PROPERTY_SEED"), out var s) ? s : 20_261_128;

    static void Check<T>(string name, int tests, Gen<T> gen, Action<T> property) =>
        FsCheck.Check.One(FsCheck.Config.QuickThrowOnFailure.WithMaxTest(tests).WithQuietOnSuccess(true).WithName(name)
            .WithReplay(FSharpOption<Replay>.Some(new Replay(new Rnd(Seed), FSharpOption<int>.None))), Prop.ForAll(Arb.From(gen), property));

    // ------------------------------------------------------------------ tests

    static void AllReduceMatchesReference()
    {
        foreach (int world in new[] { 1, 2, 3, 5 })
            foreach (var dt in FloatTypes)
                foreach (var op in Ops)
                {
                    var data = RankData(world, [3, 7], dt, seed: world * 100 + (int)op);
                    var expected = BitsOf(Reference(data.Select(Values).ToArray(), op, dt));
                    var results = ThreadCommunicator.Run(world, c =>
                    {
                        var t = data[c.Rank].clone();
                        c.AllReduce(t, op);
                        return t;
                    }, Quick);
                    for (int r = 0; r < world; r++)
                    {
                        if (results[r].dtype != dt || !results[r].shape.SequenceEqual(new long[] { 3, 7 })) throw new Exception("shape or dtype changed");
                        SameBits(expected, Bits(results[r]), $"AllReduce {op} {dt} world {world} rank {r}");
                    }
                }
    }

    static void ReferenceIsOrderSensitive()
    {
        // Would the AllReduce test notice a communicator that added in another order than 0..n-1, or reduced bfloat16
        // in bfloat16? Only if those give other bits on its data: they must.
        foreach (var dt in new[] { ScalarType.Float32, ScalarType.Float64 })
        {
            var xs = RankData(5, [3, 7], dt, seed: 5 * 100).Select(Values).ToArray();
            if (Reference(xs, ReduceOp.Sum, dt).SequenceEqual(Reference(xs, ReduceOp.Sum, dt, reversed: true)))
                throw new Exception($"{dt}: summation order does not show in the data");
        }
        var bf = RankData(5, [3, 7], ScalarType.BFloat16, seed: 5 * 100).Select(Values).ToArray();
        if (Reference(bf, ReduceOp.Sum, ScalarType.BFloat16).SequenceEqual(Reference(bf, ReduceOp.Sum, ScalarType.BFloat16, roundEachStep: true)))
            throw new Exception("bfloat16: reducing in float32 and in bfloat16 give the same bits on the data");
    }

    static void Int64Reduce()
    {
        var g = new Generator(7);
        var data = Enumerable.Range(0, 3).Select(_ => torch.randint(-1_000_000_000_000L, 1_000_000_000_000L, [11], ScalarType.Int64, generator: g)).ToArray();
        var values = data.Select(t => t.data<long>().ToArray()).ToArray();
        foreach (var op in new[] { ReduceOp.Sum, ReduceOp.Max })
        {
            var got = ThreadCommunicator.Run(3, c => { var t = data[c.Rank].clone(); c.AllReduce(t, op); return t.data<long>().ToArray(); }, Quick);
            for (int i = 0; i < 11; i++)
            {
                long e = op == ReduceOp.Sum ? values[0][i] + values[1][i] + values[2][i] : Math.Max(values[0][i], Math.Max(values[1][i], values[2][i]));
                for (int r = 0; r < 3; r++) if (got[r][i] != e) throw new Exception($"int64 {op}: rank {r} element {i} = {got[r][i]}, expected {e}");
            }
        }
        var ex = Throws<CommunicatorMismatchException>(() =>
            ThreadCommunicator.Run(2, c => c.AllReduce(torch.ones(3, ScalarType.Int64), ReduceOp.Avg), Quick));
        Contains(ex.Message, "AllReduce", "Avg", "Int64");
    }

    static Gen<(int World, int Chunk, int Dtype, int Op, int Seed)> ScatterCases =>
        from world in Gen.Elements(2, 3, 4, 8)
        from chunk in Gen.Choose(1, 40)
        from dtype in Gen.Choose(0, 2)
        from op in Gen.Choose(0, 2)
        from seed in Gen.Choose(0, 1_000_000)
        select (world, chunk, dtype, op, seed);

    static void ReduceScatterIsAllReduceChunk()
    {
        Check("reduce-scatter chunk = all-reduce chunk", 24, ScatterCases, c =>
        {
            var dt = FloatTypes[c.Dtype];
            var op = Ops[c.Op];
            var data = RankData(c.World, [c.World * c.Chunk], dt, c.Seed);
            var got = ThreadCommunicator.Run(c.World, comm =>
            {
                var full = data[comm.Rank].clone();
                comm.AllReduce(full, op);
                var mine = torch.empty(c.Chunk, dt);
                comm.ReduceScatter(mine, data[comm.Rank], op);
                return (Full: Bits(full), Chunk: Bits(mine));
            }, Quick);
            for (int r = 0; r < c.World; r++)
            {
                SameBits(got[0].Full, got[r].Full, $"AllReduce world {c.World} {dt} {op}: rank {r} vs rank 0");
                SameBits(got[0].Full.Skip(r * c.Chunk).Take(c.Chunk).ToArray(), got[r].Chunk, $"ReduceScatter world {c.World} {dt} {op} chunk {r}");
            }
        });
    }

    static void ReduceScatterMatchesReference()
    {
        const int world = 4;
        foreach (var dt in FloatTypes)
            foreach (var op in Ops)
            {
                var data = RankData(world, [world * 2, 3], dt, seed: 31 + (int)op);
                var expected = Reference(data.Select(Values).ToArray(), op, dt);
                var got = ThreadCommunicator.Run(world, c =>
                {
                    var output = torch.empty([2, 3], dt);
                    c.ReduceScatter(output, data[c.Rank], op);
                    // in place: the output is this rank's chunk of the input (as ZeRO-2 does with its grad buffer)
                    var buffer = data[c.Rank].clone();
                    var chunk = buffer.narrow(0, c.Rank * 2, 2);
                    c.ReduceScatter(chunk, buffer, op);
                    return (Bits(output), Bits(chunk));
                }, Quick);
                for (int r = 0; r < world; r++)
                {
                    var want = BitsOf(expected.Skip(r * 6).Take(6).ToArray());
                    SameBits(want, got[r].Item1, $"ReduceScatter {dt} {op} rank {r}");
                    SameBits(want, got[r].Item2, $"ReduceScatter in place {dt} {op} rank {r}");
                }
            }
    }

    static void AllGatherMatchesReference()
    {
        const int world = 3;
        foreach (var dt in FloatTypes)
        {
            var data = RankData(world, [2, 4], dt, seed: 77);
            var expected = data.SelectMany(Bits).ToArray();
            var got = ThreadCommunicator.Run(world, c =>
            {
                var output = torch.zeros([world * 2, 4], dt);
                c.AllGather(output, data[c.Rank]);
                // non-contiguous output: a transposed view; the gather fills it as if it were [world*2, 4] row-major.
                var backing = torch.zeros([4, world * 2], dt);
                var strided = backing.t();
                c.AllGather(strided, data[c.Rank]);
                // aliased: input is this rank's slice of the output (ZeRO's parameter all-gather)
                var buffer = torch.zeros([world * 2, 4], dt);
                buffer.narrow(0, c.Rank * 2, 2).copy_(data[c.Rank]);
                c.AllGather(buffer, buffer.narrow(0, c.Rank * 2, 2));
                return (Bits(output), Bits(strided), Bits(buffer));
            }, Quick);
            for (int r = 0; r < world; r++)
            {
                SameBits(expected, got[r].Item1, $"AllGather {dt} rank {r}");
                SameBits(expected, got[r].Item2, $"AllGather into a strided output {dt} rank {r}");
                SameBits(expected, got[r].Item3, $"AllGather with aliased input {dt} rank {r}");
            }
        }
    }

    static void BroadcastFromEveryRoot()
    {
        const int world = 4;
        foreach (var dt in FloatTypes)
        {
            var data = RankData(world, [5], dt, seed: 3);
            for (int root = 0; root < world; root++)
            {
                int rt = root;
                var got = ThreadCommunicator.Run(world, c => { var t = data[c.Rank].clone(); c.Broadcast(t, rt); return Bits(t); }, Quick);
                for (int r = 0; r < world; r++) SameBits(Bits(data[rt]), got[r], $"Broadcast {dt} root {rt} rank {r}");
            }
        }
    }

    /// <summary>A fixed random program: all-reduces, reduce-scatters, all-gathers, broadcasts and a split, with
    /// random sleeps per rank. Returns per-rank digests of every result.</summary>
    static long[][] Program(int world, int timingSeed)
    {
        var data = RankData(world, [world * 6], ScalarType.Float32, seed: 12345);
        var bf = RankData(world, [world * 6], ScalarType.BFloat16, seed: 54321);
        return ThreadCommunicator.Run(world, c =>
        {
            var jitter = new Random(timingSeed * 97 + c.Rank);
            void Wobble() { int w = jitter.Next(4); if (w == 0) Thread.Sleep(jitter.Next(3)); else if (w == 1) Thread.Yield(); }
            var digest = new List<long>();
            var x = data[c.Rank].clone();
            var y = bf[c.Rank].clone();
            var half = c.Split(c.Rank % 2, -c.Rank);
            for (int i = 0; i < 6; i++)
            {
                Wobble(); c.AllReduce(x, ReduceOp.Avg);
                Wobble(); c.AllReduce(y, ReduceOp.Sum);
                var chunk = torch.empty(6, ScalarType.Float32);
                Wobble(); c.ReduceScatter(chunk, x * (i + 1.5), ReduceOp.Sum);
                Wobble(); c.AllGather(x, chunk.sin());
                Wobble(); half.AllReduce(y, ReduceOp.Avg);
                Wobble(); c.Broadcast(y, i % world);
                digest.AddRange(Bits(x));
                digest.AddRange(Bits(y));
            }
            return digest.ToArray();
        }, Quick);
    }

    static void RepeatedRunsIdentical()
    {
        const int world = 4;
        var first = Program(world, 0);
        for (int r = 1; r < world; r++) SameBits(first[0], first[r], $"run 0: rank {r} vs rank 0");
        for (int run = 1; run < 20; run++)
        {
            var again = Program(world, run);
            for (int r = 0; r < world; r++) SameBits(first[r], again[r], $"run {run} rank {r} vs run 0");
        }
    }

    static void SplitGroups()
    {
        // The design doc's TP-DP-PP example, by hand: world 8, TP=4 (fastest), DP=2.
        var got = ThreadCommunicator.Run(8, c =>
        {
            int tp = c.Rank % 4, dp = c.Rank / 4;
            var dpGroup = c.Split(color: tp, key: dp);
            var tpGroup = c.Split(color: dp, key: tp);
            var reversed = c.Split(color: 0, key: -c.Rank);
            var t = torch.tensor(new double[] { c.Rank });
            dpGroup.AllReduce(t, ReduceOp.Sum);
            var u = torch.tensor(new double[] { 1 << c.Rank });
            tpGroup.AllReduce(u, ReduceOp.Sum);
            return (Dp: dpGroup.WorldRanks.ToArray(), DpRank: dpGroup.Rank, Tp: tpGroup.WorldRanks.ToArray(), TpRank: tpGroup.Rank,
                    Rev: reversed.WorldRanks.ToArray(), RevRank: reversed.Rank, DpSum: t.item<double>(), TpSum: u.item<double>());
        }, Quick);
        for (int r = 0; r < 8; r++)
        {
            int tp = r % 4, dp = r / 4;
            var g = got[r];
            if (!g.Dp.SequenceEqual(new[] { tp, tp + 4 })) throw new Exception($"rank {r}: DP group [{string.Join(",", g.Dp)}], expected [{tp},{tp + 4}]");
            if (!g.Tp.SequenceEqual(Enumerable.Range(dp * 4, 4))) throw new Exception($"rank {r}: TP group [{string.Join(",", g.Tp)}]");
            if (g.DpRank != dp || g.TpRank != tp) throw new Exception($"rank {r}: group ranks dp {g.DpRank} tp {g.TpRank}");
            if (!g.Rev.SequenceEqual(Enumerable.Range(0, 8).Reverse()) || g.RevRank != 7 - r) throw new Exception($"rank {r}: key order not respected");
            if (g.DpSum != tp + tp + 4) throw new Exception($"rank {r}: DP all-reduce {g.DpSum}, expected {2 * tp + 4}");
            double tpSum = Enumerable.Range(dp * 4, 4).Sum(k => (double)(1 << k));
            if (g.TpSum != tpSum) throw new Exception($"rank {r}: TP all-reduce {g.TpSum}, expected {tpSum}");
        }
    }

    static void SendRecvOrdering()
    {
        var got = ThreadCommunicator.Run(3, c =>
        {
            var sub = c.Split(0, c.Rank);                 // same members, a separate message space
            var received = new List<double>();
            if (c.Rank == 0)
            {
                var t = torch.zeros(2);
                for (int i = 0; i < 5; i++) { t.fill_(i); c.Send(t, 2); }   // t is reused after each Send
                t.fill_(100); sub.Send(t, 2);
                t.fill_(-1);
            }
            else if (c.Rank == 1)
            {
                for (int i = 0; i < 3; i++) c.Send(torch.full(2, 10.0 + i), 2);
            }
            else
            {
                var t = torch.zeros(2);
                sub.Recv(t, 0); received.Add(t[0].item<float>());        // the sub-group message, though sent last
                for (int i = 0; i < 3; i++) { c.Recv(t, 1); received.Add(t[1].item<float>()); }
                for (int i = 0; i < 5; i++) { c.Recv(t, 0); received.Add(t[0].item<float>()); }
            }
            c.Barrier();
            return received.ToArray();
        }, Quick);
        var expected = new double[] { 100, 10, 11, 12, 0, 1, 2, 3, 4 };
        if (!got[2].SequenceEqual(expected)) throw new Exception($"received [{string.Join(",", got[2])}], expected [{string.Join(",", expected)}]");
    }

    sealed class RankFailure(string m) : Exception(m);

    static void FailingRankAborts()
    {
        var errors = new Exception?[4];
        var clock = Stopwatch.StartNew();
        var root = Throws<RankFailure>(() => ThreadCommunicator.Run(4, c =>
        {
            try
            {
                var t = torch.ones(3);
                c.AllReduce(t, ReduceOp.Sum);
                if (c.Rank == 2) throw new RankFailure("rank 2 broke");
                var sub = c.Split(c.Rank % 2, 0);           // rank 0 waits here in the world, rank 1 and 3 too
                sub.AllReduce(t, ReduceOp.Sum);
            }
            catch (Exception e) { errors[c.Rank] = e; throw; }
        }, TimeSpan.FromSeconds(60)));
        if (clock.Elapsed > TimeSpan.FromSeconds(10)) throw new Exception($"took {clock.Elapsed}: the others waited for the timeout");
        Contains(root.Message, "rank 2 broke");
        foreach (int r in new[] { 0, 1, 3 })
        {
            if (errors[r] is not CommunicatorAbortedException a) throw new Exception($"rank {r}: {errors[r]?.GetType().Name ?? "no exception"}");
            if (a.FailedRank != 2) throw new Exception($"rank {r}: FailedRank {a.FailedRank}");
            Contains(a.Message, "world rank 2", "rank 2 broke", "Split");
        }
        // after an abort, any later call fails at once
        var comms = ThreadCommunicator.CreateWorld(2, TimeSpan.FromSeconds(60));
        ((ThreadCommunicator)comms[1]).Abort(new RankFailure("gone"));
        var later = Throws<CommunicatorAbortedException>(() => comms[0].Barrier());
        if (later.FailedRank != 1) throw new Exception("FailedRank after Abort");
    }

    static void MissingRankTimesOut()
    {
        var errors = new Exception?[3];
        var clock = Stopwatch.StartNew();
        var root = Throws<CommunicatorTimeoutException>(() => ThreadCommunicator.Run(3, c =>
        {
            try
            {
                if (c.Rank == 1) return;                    // never calls the collective
                var t = torch.ones(2);
                c.AllReduce(t, ReduceOp.Sum);
            }
            catch (Exception e) { errors[c.Rank] = e; throw; }
        }, TimeSpan.FromSeconds(1)));
        if (clock.Elapsed > TimeSpan.FromSeconds(8)) throw new Exception($"took {clock.Elapsed}");
        Contains(root.Message, "AllReduce", "timed out", "world rank(s) 1");
        // one of ranks 0 and 2 timed out first and aborted the world; the other times out or is aborted, never hangs
        foreach (int r in new[] { 0, 2 })
            if (errors[r] is not (CommunicatorTimeoutException or CommunicatorAbortedException)) throw new Exception($"rank {r}: {errors[r]}");
        // a Recv with no sender times out too
        var recv = Throws<CommunicatorTimeoutException>(() => ThreadCommunicator.Run(2, c => { if (c.Rank == 0) c.Recv(torch.zeros(1), 1); }, TimeSpan.FromSeconds(1)));
        Contains(recv.Message, "Recv from rank 1", "a message");
    }

    static void MismatchesReported()
    {
        var e = Throws<CommunicatorMismatchException>(() => ThreadCommunicator.Run(3, c => c.AllReduce(torch.ones(c.Rank == 1 ? 3 : 4), ReduceOp.Sum), Quick));
        Contains(e.Message, "AllReduce", "rank 0 [4] Float32", "rank 1 [3] Float32");
        e = Throws<CommunicatorMismatchException>(() => ThreadCommunicator.Run(2, c => c.AllReduce(torch.ones(4, c.Rank == 0 ? ScalarType.Float32 : ScalarType.Float64), ReduceOp.Sum), Quick));
        Contains(e.Message, "AllReduce", "rank 1 [4] Float64");
        e = Throws<CommunicatorMismatchException>(() => ThreadCommunicator.Run(2, c => c.AllReduce(torch.ones(4), c.Rank == 0 ? ReduceOp.Sum : ReduceOp.Max), Quick));
        Contains(e.Message, "reduce op", "rank 1 Max");
        e = Throws<CommunicatorMismatchException>(() => ThreadCommunicator.Run(2, c => { if (c.Rank == 0) c.Barrier(); else c.Broadcast(torch.ones(1), 0); }, Quick));
        Contains(e.Message, "rank 0 Barrier", "rank 1 Broadcast");
        e = Throws<CommunicatorMismatchException>(() => ThreadCommunicator.Run(2, c => c.Broadcast(torch.ones(1), c.Rank), Quick));
        Contains(e.Message, "Broadcast", "roots");
        e = Throws<CommunicatorMismatchException>(() => ThreadCommunicator.Run(2, c => c.ReduceScatter(torch.ones(3), torch.ones(4), ReduceOp.Sum), Quick));
        Contains(e.Message, "ReduceScatter", "must hold 2 x output [3]");
        e = Throws<CommunicatorMismatchException>(() => ThreadCommunicator.Run(2, c => c.AllGather(torch.ones(5), torch.ones(2)), Quick));
        Contains(e.Message, "AllGather", "output [5] Float32 must hold 2 x input [2] Float32");
        e = Throws<CommunicatorMismatchException>(() => ThreadCommunicator.Run(2, c =>
        {
            if (c.Rank == 0) c.Send(torch.ones(3), 1); else c.Recv(torch.ones(4), 0);
        }, Quick));
        Contains(e.Message, "Recv from rank 0", "[3] Float32", "[4] Float32");
        // inside a sub-group, ranks are named with their world rank
        e = Throws<CommunicatorMismatchException>(() => ThreadCommunicator.Run(4, c =>
        {
            var odd = c.Split(c.Rank % 2, 0);
            odd.AllReduce(torch.ones(c.Rank == 3 ? 2 : 1), ReduceOp.Sum);
        }, Quick));
        Contains(e.Message, "group [1,3]", "rank 1 (world rank 3) [2] Float32");
    }

    static void RequiresGradLeaf()
    {
        var got = ThreadCommunicator.Run(2, c =>
        {
            var w = torch.full(3, c.Rank + 1.0, requires_grad: true);
            c.AllReduce(w, ReduceOp.Sum);
            if (!w.requires_grad) throw new Exception("requires_grad lost");
            return w.detach().data<float>().ToArray();
        }, Quick);
        if (got.Any(v => v.Any(x => x != 3f))) throw new Exception("sum of 1 and 2 is not 3");
    }

    // ------------------------------------------------------------------ helpers

    static T Throws<T>(Action a) where T : Exception => Must.Throws<T>(a, "the call");

    static void Contains(string message, params string[] parts)
    {
        foreach (var p in parts) Must.Contains(message, p, "the message");
    }
}
