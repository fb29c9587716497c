namespace Schedules.Core;

/// <summary>
/// The closed form of a schedule tree for one param group, where PyTorch's semantics reduce to one (docs/DESIGN.md,
/// "Closed form"). Every step of a run either <em>sets</em> the rate (a value of the counters alone) or <em>multiplies</em>
/// it by a factor of the counters alone; a node is compiled into a <see cref="Term"/> that answers, for any step t, the last
/// step at which it set the rate, the value it set, and the product of its factors over a range of steps. A chain then
/// reads: the last set (the latest step, and at that step the last child that set), times the factors the children after
/// it applied at that step, times every child's factors since. Each answer costs O(log) at most, so <c>Lr</c> at step 10^9
/// costs what it costs at step 10.
/// <see cref="Horizon"/> is the last step up to which the closed form is known to follow the run (int.MaxValue: every
/// step); past it <see cref="Schedule.Lr"/> runs (a cached run).
/// </summary>
internal sealed class ClosedForm
{
    readonly Term _root;
    readonly double? _initialLr; // initial_lr when the first scheduler constructed sets it (CyclicLR): else the base LR
    public int Horizon => _root.Horizon;

    ClosedForm(Term root, double? initialLr) { _root = root; _initialLr = initialLr; }

    public static ClosedForm Compile(Schedule s)
    {
        var first = FirstConstructed(s);
        bool composite = s is CompositeSchedule;
        Term root = composite && Any(s, x => x is OneCycleLR)
            ? Term.None // OneCycleLR rewrites initial_lr and the group's max/min for every scheduler after it
            : Compile(s, sole: true, top: true, first);
        return new ClosedForm(root, first is CyclicLR c ? c.BaseLr.For(0) : null);
    }

    /// <summary>The rate at <paramref name="t"/> (≤ <see cref="Horizon"/>), or null where the closed form leaves the finite
    /// numbers (an overflow or a division the run may answer differently, or refuse): then the caller runs.</summary>
    public double? Lr(int t, double baseLr)
    {
        double init = _initialLr ?? baseLr;
        try
        {
            int s = _root.LastSet(t);
            double v = s < 0 ? baseLr * _root.Product(0, t) : _root.SetValue(s, init) * (s < t ? _root.Product(s + 1, t) : 1.0);
            return double.IsFinite(v) ? v : null;
        }
        catch (ScheduleStepException) { return null; }
    }

    static LeafSchedule? FirstConstructed(Schedule s) => s switch
    {
        CompositeSchedule c => FirstConstructed(c.Schedulers[0]),
        LeafSchedule l => l,
        _ => null,
    };

    static bool Any(Schedule s, Func<Schedule, bool> p) => p(s) || s.Children.Any(c => Any(c, p));

    /// <summary>
    /// <paramref name="sole"/>: nothing else writes the rate while this node is active (the root, the only child of a sole
    /// chain, a child of a sole SequentialLR), so a cosine's affine recursion follows its closed form exactly in the reals.
    /// </summary>
    static Term Compile(Schedule s, bool sole, bool top, LeafSchedule? first) => s switch
    {
        ChainedScheduler c => new ChainTerm(c.Schedulers.Select(k => Compile(k, sole && c.Schedulers.Length == 1, false, first)).ToArray()),
        SequentialLR q => new SeqTerm(q, q.Schedulers.Select(k => k is CompositeSchedule ? Term.None : Compile(k, sole, false, first)).ToArray()),
        StepLR x => new Mul((a, b) =>
        {
            int n = b / x.StepSize - (Math.Max(a, 1) - 1) / x.StepSize;
            return n == 0 ? 1.0 : Math.Pow(x.Gamma, n);
        }),
        MultiStepLR x => new Mul((a, b) =>
        {
            int n = x.CountIn(a, b);
            return n == 0 ? 1.0 : Math.Pow(x.Gamma, n);
        }),
        ExponentialLR x => new Mul((a, b) =>
        {
            int n = b - Math.Max(a, 1) + 1;
            return n <= 0 ? 1.0 : Math.Pow(x.Gamma, n);
        }),
        ConstantLR x => new Mul((a, b) =>
        {
            double f = a == 0 ? x.Factor : 1.0;
            if (x.TotalIters != 0 && a <= x.TotalIters && x.TotalIters <= b) f *= 1.0 / x.Factor;
            return f;
        }, horizon: x.Factor == 0 && x.TotalIters > 0 ? x.TotalIters - 1 : int.MaxValue),
        LinearLR x => new Mul((a, b) =>
        {
            // The product of the chainable factors over epochs 0..e is F(e) = start + (end - start) min(e, T) / T.
            int T = x.TotalIters;
            double F(int e) => T == 0 ? x.StartFactor : x.StartFactor + (x.EndFactor - x.StartFactor) * Math.Min(e, T) / T;
            if (a == 0) return F(b);
            if (a - 1 >= T) return 1.0;
            return F(Math.Min(b, T)) / F(a - 1);
        }),
        PolynomialLR x => new Mul((a, b) =>
        {
            int T = x.TotalIters;
            double P(int e) => T == 0 ? 1.0 : Math.Pow(1.0 - (double)Math.Min(e, T) / T, x.Power);
            if (a == 0) return P(b);
            if (a - 1 >= T) return 1.0;
            return P(Math.Min(b, T)) / P(a - 1);
        }, horizon: x.Power < 0 && x.TotalIters > 0 ? x.TotalIters - 1 : int.MaxValue), // 0 ** negative raises at T
        CosineAnnealingLR x when sole => new Set((e, init) => x.ClosedForm(e, init)!.Value),
        // Chained with others, eta_min = 0 makes each step a ratio of (1 + cos) until the bottom at T_max; after it
        // PyTorch adds a term (the restart branch), so the closed form stops there.
        CosineAnnealingLR x when x.EtaMin == 0 => new Mul((a, b) =>
        {
            double C(int e) => 1 + Math.Cos(Math.PI * e / x.TMax);
            return a == 0 ? C(b) / 2 : C(b) / C(a - 1);
        }, horizon: x.TMax),
        CosineAnnealingWarmRestarts x => new Set((e, init) => x.ClosedForm(e, init)!.Value),
        LambdaLR x => new Set((e, init) => init * x.LrLambda.For(0).At(e)),
        // Its construction-time step uses base_lrs = initial_lr: its own base_lr only when it is the first one constructed.
        CyclicLR x when ReferenceEquals(x, first) => new Set((e, _) => x.ClosedForm(e, 0)!.Value),
        OneCycleLR x when top => new Set((e, _) => x.ClosedFormAt(e)), // past total_steps it raises: then the run raises
        _ => Term.None, // MultiplicativeLR (a product of lambdas), ReduceLROnPlateau (a metric), affine chains
    };

    /// <summary>How one node acts on the rate, step by step (steps count from its construction, 0).</summary>
    internal abstract class Term(int horizon)
    {
        public static readonly Term None = new NoTerm();
        public int Horizon { get; protected init; } = horizon;
        /// <summary>The last step ≤ t at which this node set the rate (what came in does not matter), or -1.</summary>
        public abstract int LastSet(int t);
        /// <summary>The rate this node leaves at step s, where LastSet(s) == s; <paramref name="init"/> is initial_lr.</summary>
        public abstract double SetValue(int s, double init);
        /// <summary>The product of the factors it multiplies by over steps a..b, where it sets nothing in a..b.</summary>
        public abstract double Product(int a, int b);
    }

    sealed class NoTerm() : Term(-1)
    {
        public override int LastSet(int t) => throw new InvalidOperationException("no closed form");
        public override double SetValue(int s, double init) => throw new InvalidOperationException("no closed form");
        public override double Product(int a, int b) => throw new InvalidOperationException("no closed form");
    }

    /// <summary>A scheduler whose every step multiplies the rate (epoch 0 is its construction-time step).</summary>
    sealed class Mul(Func<int, int, double> product, int horizon = int.MaxValue) : Term(horizon)
    {
        public override int LastSet(int t) => -1;
        public override double SetValue(int s, double init) => throw new InvalidOperationException("a multiplying term sets nothing");
        public override double Product(int a, int b) => product(a, b);
    }

    /// <summary>A scheduler whose every step sets the rate.</summary>
    sealed class Set(Func<int, double, double> value, int horizon = int.MaxValue) : Term(horizon)
    {
        public override int LastSet(int t) => t;
        public override double SetValue(int s, double init) => value(s, init);
        public override double Product(int a, int b) => 1.0;
    }

    /// <summary>ChainedScheduler: every child steps, in order, on the same rate.</summary>
    sealed class ChainTerm : Term
    {
        readonly Term[] _kids;

        public ChainTerm(Term[] kids) : base(kids.Min(k => k.Horizon)) => _kids = kids;

        public override int LastSet(int t)
        {
            int s = -1;
            foreach (var k in _kids) s = Math.Max(s, k.LastSet(t));
            return s;
        }

        public override double SetValue(int s, double init)
        {
            int j = _kids.Length - 1;
            while (_kids[j].LastSet(s) != s) j--;
            double v = _kids[j].SetValue(s, init);
            for (int i = j + 1; i < _kids.Length; i++) v *= _kids[i].Product(s, s);
            return v;
        }

        public override double Product(int a, int b)
        {
            double p = 1.0;
            foreach (var k in _kids) p *= k.Product(a, b);
            return p;
        }
    }

    /// <summary>
    /// SequentialLR over leaves: its construction sets initial_lr and steps the first child at epoch 0; at milestone m_k
    /// child k starts from PyTorch's closed form at epoch 0 (a set); in between the active child steps at step - m_k.
    /// </summary>
    sealed class SeqTerm : Term
    {
        readonly Term[] _kids;
        readonly int[] _starts;
        readonly LeafSchedule?[] _leaves;

        public SeqTerm(SequentialLR q, Term[] kids) : base(int.MaxValue)
        {
            _kids = kids;
            _starts = [0, .. q.Milestones];
            _leaves = q.Schedulers.Select(k => k as LeafSchedule).ToArray();
            Horizon = FindHorizon();
        }

        int FindHorizon()
        {
            for (int k = 0; k < _kids.Length; k++)
            {
                int start = _starts[k];
                // A composite child cannot be switched to (PyTorch raises), and as the first one SequentialLR's undo and
                // re-step reach its children's epoch 0 outside initial mode: the run decides both.
                if (_kids[k].Horizon < 0) return start - 1;
                if (k > 0 && _kids[k] is Mul && !SwitchesCleanly(_leaves[k]!)) return start - 1;
                int end = k + 1 < _kids.Length ? _starts[k + 1] - 1 : int.MaxValue;
                if (_kids[k].Horizon < int.MaxValue && (long)start + _kids[k].Horizon < end) return start + _kids[k].Horizon;
            }
            return int.MaxValue;
        }

        static bool SwitchesCleanly(LeafSchedule leaf)
        {
            try { return double.IsFinite(leaf.ClosedForm(0, 1.0) ?? double.NaN); }
            catch (ScheduleStepException) { return false; } // e.g. LinearLR's closed form with total_iters = 0
        }

        int Segment(int t) => PyMath.BisectRight(_starts, t) - 1;

        public override int LastSet(int t)
        {
            int k = Segment(t);
            int s = _kids[k].LastSet(t - _starts[k]);
            return s >= 0 ? _starts[k] + s : _starts[k];
        }

        public override double SetValue(int s, double init)
        {
            int k = Segment(s);
            int e = s - _starts[k];
            if (_kids[k].LastSet(e) == e) return _kids[k].SetValue(e, init);
            // e == 0 for a multiplying child: the reset to initial_lr and the first child's epoch 0, or a switch.
            return k == 0 ? init * _kids[0].Product(0, 0) : _leaves[k]!.ClosedForm(0, init)!.Value;
        }

        public override double Product(int a, int b)
        {
            int k = Segment(b);
            return _kids[k].Product(a - _starts[k], b - _starts[k]);
        }
    }
}
