using Expecto;
using Tests.Harness;
using TorchSharp;

namespace Tests.Native;

/// <summary>
/// TorchSharp's native library loads in this process, and the build patched the output's copies of libLibTorchSharp.so
/// exactly when the libstdc++ the process uses lacks GLIBCXX_3.4.32, leaving the NuGet cache's copy as published.
/// </summary>
public static class NativeLoadingTests
{
    const string Library = "libLibTorchSharp.so", LibStdCxx = "libstdc++.so.6", Version = "GLIBCXX_3.4.32";

    /// <summary>Paths of the mapped files of this process whose name starts with <paramref name="name"/>.</summary>
    static List<string> Mapped(string name) =>
        File.ReadLines("/proc/self/maps")
            .Select(line => line.IndexOf('/') is var slash and >= 0 ? line[slash..] : "")
            .Where(path => Path.GetFileName(path).StartsWith(name, StringComparison.Ordinal))
            .Distinct()
            .ToList();

    static void LoadTorch()
    {
        using var scope = torch.NewDisposeScope();
        var sum = torch.arange(1, 5, dtype: torch.float64).sum().item<double>();
        if (sum != 10.0) throw new Exception($"1+2+3+4 on TorchSharp gave {sum}");
    }

    static List<string> OutputCopies() =>
        Directory.EnumerateFiles(AppContext.BaseDirectory, Library, SearchOption.AllDirectories).ToList();

    static string NuGetCacheCopy()
    {
        var root = Environment.GetEnvironmentVariable("NUGET_PACKAGES") is { Length: > 0 } p
            ? p : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
        var version = typeof(torch).Assembly.GetName().Version!.ToString(3);
        return Path.Combine(root, "torchsharp", version, "runtimes", "linux-x64", "native", Library);
    }

    static bool IsWeak(string path) =>
        ElfVersionNeeds.Flags(path, LibStdCxx, Version) is { } flags
            ? (flags & ElfVersionNeeds.VerFlagWeak) != 0
            : throw new Exception($"{path} does not need {Version} from {LibStdCxx}: the layout the build patches has changed");

    [Tests]
    public static Test All => Spec.Sequenced(Spec.List("native",
        Spec.Case("TorchSharp computes on the CPU, loading libLibTorchSharp.so from the build output", () =>
        {
            if (!OperatingSystem.IsLinux()) return;
            LoadTorch();
            var loaded = Mapped(Library);
            if (loaded.Count != 1) throw new Exception($"expected one mapped {Library}, found: {string.Join(", ", loaded)}");
            var output = Path.GetFullPath(AppContext.BaseDirectory);
            if (!loaded[0].StartsWith(output, StringComparison.Ordinal))
                throw new Exception($"{Library} came from {loaded[0]}, not from the build output {output}");
        }),
        Spec.Case($"the output's copies need {Version} weakly iff the process's libstdc++ lacks it", () =>
        {
            if (!OperatingSystem.IsLinux()) return;
            LoadTorch();
            var libstdcxx = Mapped("libstdc++.so");
            if (libstdcxx.Count != 1) throw new Exception($"expected one mapped libstdc++, found: {string.Join(", ", libstdcxx)}");
            bool systemHasIt = ElfVersionNeeds.MentionsVersion(libstdcxx[0], Version);
            var copies = OutputCopies();
            if (copies.Count == 0) throw new Exception($"no {Library} under {AppContext.BaseDirectory}");
            foreach (var copy in copies)
                if (IsWeak(copy) == systemHasIt)
                    throw new Exception($"{copy}: {Version} is {(IsWeak(copy) ? "weak" : "required")}, but {libstdcxx[0]} {(systemHasIt ? "defines" : "lacks")} it");
        }),
        Spec.Case($"the NuGet cache's {Library} is left as published ({Version} required, other bytes as the output's copy)", () =>
        {
            if (!OperatingSystem.IsLinux()) return;
            var cache = NuGetCacheCopy();
            if (!File.Exists(cache)) throw new Exception($"no {cache}");
            if (IsWeak(cache)) throw new Exception($"{cache} has been patched: the build must only patch its own copies");
            var original = File.ReadAllBytes(cache);
            foreach (var copy in OutputCopies())
            {
                var bytes = File.ReadAllBytes(copy);
                if (bytes.Length != original.Length) throw new Exception($"{copy} and {cache} differ in length");
                int differing = bytes.Where((b, i) => b != original[i]).Count();
                if (differing > 1) throw new Exception($"{copy} differs from {cache} in {differing} bytes (the patch changes one)");
            }
        })));
}
