using Trainer.Data;
using Trainer.Lora;
using Trainer.Training;
using static TorchSharp.torch;

namespace Trainer.Cli;

/// <summary>
/// <c>Trainer lora-merge</c>: the base model (--model + --seed, or --llmc_filepath) plus an adapter file
/// (--lora_load_path, written by <c>train --lora_save_path</c>) → a plain llm.c weight file with W + (alpha/r)·B·A in
/// every adapted layer (float32). Rank, alpha and targets come from the adapter file.
/// </summary>
public static class LoraMergeCommand
{
    public static FlagSet Flags()
    {
        var f = new FlagSet("Trainer lora-merge", "Merge LoRA adapters into the base weights and write a plain llm.c weight file.");
        f.String("model", "gpt2-tiny", "Base model configuration (seeded with --seed), as for train: " + string.Join("|", ModelBinding.ModelNames()) + ".");
        f.String("llmc_filepath", "", "Base weights from this llm.c file instead (--model is then ignored).");
        f.Int("seed", 42, "Seed of the base model's initialisation (the training run's --seed).");
        f.String("lora_load_path", "", "Adapter file to merge (written by train --lora_save_path). Required.");
        f.String("output", "", "llm.c weight file to write (float32). Required.");
        return f;
    }

    /// <summary>Returns the exit code (0 ok, 1 runtime failure, 2 usage).</summary>
    public static int Run(string[] args, TextWriter output, TextWriter error)
    {
        if (Flags().ParseOrReport(args, output, error, out var v) is { } exit) return exit;
        try
        {
            if (v.Positional.Count > 0) throw new UsageException($"unexpected argument '{v.Positional[0]}' (flags start with --; see --help)");
            string adapters = v.GetString("lora_load_path"), outPath = v.GetString("output"), llmc = v.GetString("llmc_filepath");
            if (adapters.Length == 0) throw new UsageException("--lora_load_path is required (the adapter file to merge)");
            if (outPath.Length == 0) throw new UsageException("--output is required (the llm.c file to write)");
            if (!File.Exists(adapters)) throw new RuntimeFailure($"--lora_load_path: file '{adapters}' does not exist");
            if (llmc.Length > 0 && !File.Exists(llmc)) throw new RuntimeFailure($"--llmc_filepath: file '{llmc}' does not exist");
            OutputDestination.CheckFile("--output", outPath);
            var binding = ModelBinding.Resolve(v.GetString("model"), llmc, bf16: false, v.GetInt("seed"));
            LoraConfig cfg;
            try { cfg = LoraWeights.ReadConfig(adapters).Config; }
            catch (LoraConfigException e) { throw new RuntimeFailure(e.Message); }
            try { LoraTargets.Resolve(binding.Config, cfg); }
            catch (LoraConfigException e) { throw new RuntimeFailure($"--lora_load_path: '{adapters}' does not fit model '{binding.Name}': {e.Message}"); }
            binding = new ModelBinding { Config = binding.Config, Name = binding.Name, WeightFile = binding.WeightFile, Seed = binding.Seed, BFloat16 = false, Lora = cfg, LoraLoadPath = adapters };
            using var model = (Trainer.Models.CausalLm)binding.Factory(CPU);
            LoraModel.MergeInto(model);
            LlmcWeights.Save(model, outPath);
            output.WriteLine($"merged {model.LoraAdapters.Count} adapters ({cfg.Describe()}) into {binding.Name}; wrote {outPath}");
            return 0;
        }
        catch (UsageException e) { error.WriteLine($"error: {e.Message}"); return 2; }
        catch (RuntimeFailure e) { error.WriteLine($"error: {e.Message}"); return 1; }
        catch (IOException e) { error.WriteLine($"error: {e.Message}"); return 1; }
        catch (UnauthorizedAccessException e) { error.WriteLine($"error: {e.Message}"); return 1; }
    }
}
