namespace Tests.Harness;

/// <summary>Assertions with messages that say what was expected.</summary>
public static class Must
{
    public static void True(bool condition, string message)
    {
        if (!condition) throw new Expecto.AssertException(message);
    }

    public static void Equal<T>(T actual, T expected, string what)
    {
        if (!EqualityComparer<T>.Default.Equals(actual, expected))
            throw new Expecto.AssertException($"{what}: expected {expected}, got {actual}");
    }

    /// <summary>Relative closeness (exact equality always passes).</summary>
    public static void Close(double actual, double expected, double rtol, string what)
    {
        bool ok = actual == expected || Math.Abs(actual - expected) <= rtol * Math.Max(Math.Abs(actual), Math.Abs(expected));
        if (!ok) throw new Expecto.AssertException($"{what}: expected {expected:R}, got {actual:R} (rtol {rtol})");
    }

    public static TException Throws<TException>(Action action, string what) where TException : Exception
    {
        try { action(); }
        catch (TException e) { return e; }
        catch (Exception e) { throw new Expecto.AssertException($"{what}: expected {typeof(TException).Name}, got {e.GetType().Name}: {e.Message}"); }
        throw new Expecto.AssertException($"{what}: expected {typeof(TException).Name}, nothing was thrown");
    }

    public static void Contains(string text, string part, string what) =>
        True(text.Contains(part, StringComparison.Ordinal), $"{what}: expected to find \"{part}\" in: {text}");
}
