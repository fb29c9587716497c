using Expecto;
using Microsoft.FSharp.Collections;
using Microsoft.FSharp.Core;

namespace Tests.Harness;

/// <summary>Expecto from C#: test cases and lists without F# syntax.</summary>
public static class Spec
{
    public static Test Case(string name, Action body) =>
        Expecto.Tests.testCase(name, FuncConvert.FromAction(body));

    public static Test List(string name, params Test[] tests) =>
        Expecto.Tests.testList(name, ListModule.OfArray(tests));

    public static Test List(string name, IEnumerable<Test> tests) =>
        Expecto.Tests.testList(name, ListModule.OfSeq(tests));

    /// <summary>Tests in a list run one after another (they share a process-wide resource).</summary>
    public static Test Sequenced(Test test) => Expecto.Tests.testSequenced(test);
}
