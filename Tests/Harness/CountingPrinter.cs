using Expecto;
using Expecto.CSharp;

namespace Tests.Harness;

/// <summary>Counts outcomes so the run can end with the plain line `N passed, N failed` that CI reads.</summary>
public sealed class CountingPrinter : ITestPrinter
{
    int _passed, _failed, _ignored;
    public int PassedCount => _passed;
    public int FailedCount => _failed;
    public int IgnoredCount => _ignored;

    public Task BeforeRun(Test test) => Task.CompletedTask;
    public Task BeforeEach(string name, bool b) => Task.CompletedTask;
    public Task Info(string s) => Task.CompletedTask;
    public Task Passed(string name, TimeSpan d) { Interlocked.Increment(ref _passed); return Task.CompletedTask; }
    public Task Ignored(string name, string why) { Interlocked.Increment(ref _ignored); return Task.CompletedTask; }
    public Task Failed(string name, string msg, TimeSpan d) { Interlocked.Increment(ref _failed); return Task.CompletedTask; }
    public Task Exn(string name, Exception e, TimeSpan d) { Interlocked.Increment(ref _failed); return Task.CompletedTask; }
    public Task Summary(Impl.ExpectoConfig config, Impl.TestRunSummary summary) => Task.CompletedTask;
}
