using Tests.Harness;

namespace Tests.Properties;

/// <summary>Progress lines from these tests, written under the lock that other tests take while they capture the console.</summary>
public static class Say
{
    public static void Line(string s)
    {
        lock (TestData.ConsoleLock) Console.WriteLine(s);
    }
}
