namespace Schedules.Core;

/// <summary>
/// A multiplicative factor as a function of the scheduler's epoch, for LambdaLR and MultiplicativeLR.
/// The corpus families (<c>const, pow, step, warmup_linear, warmup_cosine, inverse_sqrt</c>) are data, so a schedule that
/// uses them can be written to JSON and read back; <see cref="Custom"/> wraps any C# function (not serialisable).
/// Each evaluates with Python's float operations in PyTorch's order.
/// </summary>
public abstract record LrLambda
{
    public abstract double At(int epoch);
    /// <summary>The corpus name of the family (<c>fn</c> in JSON).</summary>
    public abstract string Fn { get; }

    internal virtual IEnumerable<ScheduleProblem> Problems(string path) => [];

    /// <summary><c>c</c> at every epoch.</summary>
    public sealed record Const(double C) : LrLambda
    {
        public override string Fn => "const";
        public override double At(int e) => C;
    }

    /// <summary><c>base ** e</c>.</summary>
    public sealed record Pow(double Base) : LrLambda
    {
        public override string Fn => "pow";
        public override double At(int e) => PyMath.Pow(Base, e, "lr_lambda pow");
    }

    /// <summary><c>gamma ** (e // every)</c>.</summary>
    public sealed record Step(double Gamma, int Every) : LrLambda
    {
        public override string Fn => "step";
        public override double At(int e) => PyMath.Pow(Gamma, PyMath.FloorDiv(e, Every, "lr_lambda step"), "lr_lambda step");
        internal override IEnumerable<ScheduleProblem> Problems(string path)
        {
            if (Every <= 0) yield return new(path, "every", Every.ToString(), "must be a positive integer (it divides the epoch)");
        }
    }

    /// <summary>Hugging Face's linear warmup then linear decay to 0 at <c>total</c>.</summary>
    public sealed record WarmupLinear(int Warmup, int Total) : LrLambda
    {
        public override string Fn => "warmup_linear";
        public override double At(int e) =>
            e < Warmup
                ? (double)e / Math.Max(1, Warmup)
                : PyMath.MaxZero((double)(Total - e) / Math.Max(1, Total - Warmup));
    }

    /// <summary>Hugging Face's linear warmup then cosine decay over <c>cycles</c> half-waves... (0.5 = one half cosine).</summary>
    public sealed record WarmupCosine(int Warmup, int Total, double Cycles) : LrLambda
    {
        public override string Fn => "warmup_cosine";
        public override double At(int e)
        {
            if (e < Warmup) return (double)e / Math.Max(1, Warmup);
            double p = (double)(e - Warmup) / Math.Max(1, Total - Warmup);
            return PyMath.MaxZero(0.5 * (1.0 + Math.Cos(Math.PI * Cycles * 2.0 * p)));
        }
    }

    /// <summary>Hugging Face's inverse square root with linear warmup (timescale = warmup).</summary>
    public sealed record InverseSqrt(int Warmup) : LrLambda
    {
        public override string Fn => "inverse_sqrt";
        public override double At(int e)
        {
            if (e < Warmup) return (double)e / Math.Max(1, Warmup);
            int shift = Warmup - Warmup;
            double ratio = PyMath.Div(e + shift, Warmup, "lr_lambda inverse_sqrt");
            if (ratio < 0) throw new ScheduleStepException($"lr_lambda inverse_sqrt: math domain error at epoch {e}");
            return PyMath.Div(1.0, Math.Sqrt(ratio), "lr_lambda inverse_sqrt");
        }
        internal override IEnumerable<ScheduleProblem> Problems(string path)
        {
            if (Warmup <= 0) yield return new(path, "warmup", Warmup.ToString(), "must be a positive integer (it is the timescale)");
        }
    }

    /// <summary>
    /// Library extension (not in PyTorch's corpus): <c>1 - sqrt(min(e, length) / length)</c> scaled into [floor, 1],
    /// the "1-sqrt" cooldown of warmup-stable-decay schedules.
    /// </summary>
    public sealed record OneMinusSqrt(int Length, double Floor) : LrLambda
    {
        public override string Fn => "one_minus_sqrt";
        public override double At(int e)
        {
            double p = (double)Math.Clamp(e, 0, Length) / Length;
            return Floor + (1.0 - Floor) * (1.0 - Math.Sqrt(p));
        }
        internal override IEnumerable<ScheduleProblem> Problems(string path)
        {
            if (Length <= 0) yield return new(path, "length", Length.ToString(), "must be a positive integer");
            if (!(Floor >= 0 && Floor <= 1)) yield return new(path, "floor", Fmt.Num(Floor), "must be between 0 and 1");
        }
    }

    /// <summary>
    /// Library extension: cosine decay from 1 to <c>floor</c> over <c>length</c> epochs, then <c>floor</c>
    /// (a cosine cooldown whose floor is relative to each group's base LR).
    /// </summary>
    public sealed record CosineDecay(int Length, double Floor) : LrLambda
    {
        public override string Fn => "cosine_decay";
        public override double At(int e)
        {
            double p = (double)Math.Clamp(e, 0, Length) / Length;
            return Floor + (1.0 - Floor) * (1 + Math.Cos(Math.PI * p)) / 2;
        }
        internal override IEnumerable<ScheduleProblem> Problems(string path)
        {
            if (Length <= 0) yield return new(path, "length", Length.ToString(), "must be a positive integer");
            if (!(Floor >= 0 && Floor <= 1)) yield return new(path, "floor", Fmt.Num(Floor), "must be between 0 and 1");
        }
    }

    /// <summary>
    /// Library extension: half-cosine ramp from <c>start</c> to 1 over <c>warmup</c> epochs, then 1 (a cosine warmup).
    /// </summary>
    public sealed record CosineWarmup(int Warmup, double Start) : LrLambda
    {
        public override string Fn => "cosine_warmup";
        public override double At(int e)
        {
            if (e >= Warmup) return 1.0;
            double p = (double)Math.Max(e, 0) / Warmup;
            return Start + (1.0 - Start) * 0.5 * (1.0 - Math.Cos(Math.PI * p));
        }
        internal override IEnumerable<ScheduleProblem> Problems(string path)
        {
            if (Warmup <= 0) yield return new(path, "warmup", Warmup.ToString(), "must be a positive integer");
            if (!(Start >= 0 && Start <= 1)) yield return new(path, "start", Fmt.Num(Start), "must be between 0 and 1");
        }
    }

    /// <summary>Any C# function of the epoch. Cannot be written to JSON.</summary>
    public sealed record Custom(string Name, Func<int, double> Function) : LrLambda
    {
        public override string Fn => "custom:" + Name;
        public override double At(int e) => Function(e);
    }
}
