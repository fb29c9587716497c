namespace Schedules.Core;

/// <summary>
/// Python's arithmetic where it differs from C#'s, so that our rates follow PyTorch's float operations one for one:
/// floor division and modulo, and the places where Python raises instead of producing infinity or NaN.
/// </summary>
public static class PyMath
{
    /// <summary>Python's <c>a // b</c> for ints (rounds toward negative infinity).</summary>
    public static int FloorDiv(int a, int b, string what)
    {
        if (b == 0) throw new ScheduleStepException($"{what}: integer division by zero");
        int q = a / b;
        if ((a % b != 0) && ((a < 0) != (b < 0))) q--;
        return q;
    }

    /// <summary>Python's <c>a % b</c> for ints (result has the sign of b).</summary>
    public static int FloorMod(int a, int b, string what)
    {
        if (b == 0) throw new ScheduleStepException($"{what}: integer modulo by zero");
        int r = a % b;
        if (r != 0 && ((r < 0) != (b < 0))) r += b;
        return r;
    }

    /// <summary>Python's true division <c>a / b</c>, which raises on a zero divisor.</summary>
    public static double Div(double a, double b, string what)
    {
        if (b == 0.0) throw new ScheduleStepException($"{what}: division by zero");
        return a / b;
    }

    /// <summary>Python's <c>max(0.0, x)</c>: the first argument wins ties and NaN comparisons.</summary>
    public static double MaxZero(double x) => x > 0.0 ? x : 0.0;

    /// <summary>Python's float <c>**</c>: raises where C's pow would return infinity or NaN.</summary>
    public static double Pow(double x, double y, string what)
    {
        if (x == 0.0 && y < 0) throw new ScheduleStepException($"{what}: 0.0 cannot be raised to a negative power");
        double r = Math.Pow(x, y);
        if (double.IsNaN(r) && !double.IsNaN(x) && !double.IsNaN(y))
            throw new ScheduleStepException($"{what}: {x} ** {y} is not a real number");
        if (double.IsInfinity(r) && !double.IsInfinity(x) && !double.IsInfinity(y))
            throw new ScheduleStepException($"{what}: {x} ** {y} overflows");
        return r;
    }

    /// <summary>bisect.bisect_right over an ascending array.</summary>
    public static int BisectRight(IReadOnlyList<int> sorted, int x)
    {
        int lo = 0, hi = sorted.Count;
        while (lo < hi)
        {
            int mid = (lo + hi) >> 1;
            if (x < sorted[mid]) hi = mid; else lo = mid + 1;
        }
        return lo;
    }
}
