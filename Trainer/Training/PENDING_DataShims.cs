// TEMPORARY (trainer-loop): thin adapters to the models helper's token/weight IO (Trainer/Data, Trainer/Models).
// Until branch trainer-models lands them, tokens are read here and weights/embedded data are refused.
using Trainer.Cli;
using Trainer.Models;

namespace Trainer.Training;

internal static class TokenFiles
{
    public static int[] Read(string path, string flag)
    {
        if (!File.Exists(path)) throw new RuntimeFailure($"{flag}: file '{path}' does not exist");
        var bytes = File.ReadAllBytes(path);
        if (bytes.Length < 1024) throw new RuntimeFailure($"{flag}: '{path}' is truncated: {bytes.Length} bytes, shorter than the 1024-byte llm.c header");
        int magic = BitConverter.ToInt32(bytes, 0), version = BitConverter.ToInt32(bytes, 4), n = BitConverter.ToInt32(bytes, 8);
        int width = magic switch { 20240520 => 2, 20240801 => 4, _ => throw new RuntimeFailure($"{flag}: '{path}' has wrong magic {magic} (expected 20240520 for GPT-2 or 20240801 for LLaMA-3 tokens)") };
        if (version != 1) throw new RuntimeFailure($"{flag}: '{path}' has unsupported version {version} (expected 1)");
        long need = 1024L + (long)n * width;
        if (n < 0 || bytes.Length < need) throw new RuntimeFailure($"{flag}: '{path}' is truncated: header says {n} tokens ({need} bytes), file has {bytes.Length} bytes");
        var t = new int[n];
        for (int i = 0; i < n; i++) t[i] = width == 2 ? BitConverter.ToUInt16(bytes, 1024 + 2 * i) : BitConverter.ToInt32(bytes, 1024 + 4 * i);
        return t;
    }

    public static int[] Embedded(ModelConfig cfg) =>
        throw new RuntimeFailure("this build has no embedded dataset yet; pass --input_bin");
}

internal static class WeightFiles
{
    public static ModelConfig ReadConfig(string path) => throw new RuntimeFailure("--llmc_filepath: weight files are not supported in this build yet");
    public static void LoadInto(CausalLm model, string path) => throw new RuntimeFailure("--llmc_filepath: weight files are not supported in this build yet");
}
