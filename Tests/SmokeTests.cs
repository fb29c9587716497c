using Expecto;
using Tests.Harness;
namespace Tests;
public static class SmokeTests
{
    [Tests] public static Test All => Spec.List("smoke", Spec.Case("one", () => { if (1 + 1 != 2) throw new Exception("math"); }));
}
