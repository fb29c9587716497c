using TorchSharp;
using static TorchSharp.torch;

namespace Trainer.Models;

/// <summary>
/// A decoder-only language model: token ids (B,T) int64 → logits (B,T,V) over the real vocabulary V.
/// Parameters are created on the CPU in float32, initialised from a seeded generator (see <see cref="ModelFactory"/>),
/// then moved to the requested device and dtype.
/// </summary>
public abstract class CausalLm : nn.Module<Tensor, Tensor>
{
    protected CausalLm(string name, ModelConfig config) : base(name) => Config = config;

    /// <summary>The architecture this model was built from.</summary>
    public ModelConfig Config { get; }

    /// <summary>The LoRA adapters wrapping this model's layers (Trainer.Lora.LoraModel.Attach), in weight-file order; empty without LoRA.</summary>
    public IReadOnlyList<Trainer.Lora.LoraAdapter> LoraAdapters { get; internal set; } = Array.Empty<Trainer.Lora.LoraAdapter>();

    /// <summary>idx: (B,T) integer token ids with T ≤ BlockSize → logits (B,T,VocabSize), in the model's dtype.</summary>
    public abstract override Tensor forward(Tensor idx);

    /// <summary>Mean cross entropy over all B*T positions, computed in float32 whatever the logits' dtype.
    /// Targets equal to -1 are ignored (llm.c's convention for masked positions).</summary>
    public virtual Tensor Loss(Tensor logits, Tensor targets)
    {
        using var scope = NewDisposeScope();
        var v = logits.shape[^1];
        var flat = logits.reshape(-1, v).to(ScalarType.Float32);
        var t = targets.reshape(-1).to(ScalarType.Int64);
        var loss = nn.functional.cross_entropy(flat, t, ignore_index: -1);
        return loss.MoveToOuterDisposeScope();
    }

    /// <summary>The parameters in llm.c weight-file order (see Trainer/Models/README.md), each with a descriptive name.</summary>
    public abstract IReadOnlyList<(string Name, Tensor Tensor)> WeightFileOrder();

    /// <summary>
    /// Copies every parameter value from <paramref name="source"/> (same architecture; any device/dtype on either side),
    /// e.g. to re-synchronise data-parallel replicas. Gradients and optimizer state are untouched.
    /// </summary>
    public void CopyParametersFrom(CausalLm source)
    {
        ArgumentNullException.ThrowIfNull(source);
        var dst = WeightFileOrder(); var src = source.WeightFileOrder();
        if (dst.Count != src.Count) throw new ArgumentException($"cannot copy '{source.Config.Name}' into '{Config.Name}': {src.Count} vs {dst.Count} tensors");
        using var _ = no_grad();
        for (int i = 0; i < dst.Count; i++)
        {
            if (!dst[i].Tensor.shape.SequenceEqual(src[i].Tensor.shape))
                throw new ArgumentException($"cannot copy '{source.Config.Name}' into '{Config.Name}': {src[i].Name} has shape [{string.Join(",", src[i].Tensor.shape)}], target [{string.Join(",", dst[i].Tensor.shape)}]");
            dst[i].Tensor.copy_(src[i].Tensor);
        }
    }

    /// <summary>Total number of parameter elements (GPT-2: the padded wte counts once; tied head adds nothing).</summary>
    public long ParameterCount() => parameters().Sum(p => p.numel());

    /// <summary>Seeded initialisation, llm.c/GPT-2 style. Random draws happen in weight-file order from <paramref name="g"/>.</summary>
    internal abstract void InitializeWeights(Generator g);

    /// <summary>Validates idx against the config and returns it as int64.</summary>
    protected Tensor CheckIdx(Tensor idx)
    {
        if (idx.dim() != 2) throw new ArgumentException($"idx must be (B,T); got shape [{string.Join(",", idx.shape)}]");
        if (idx.shape[1] > Config.BlockSize) throw new ArgumentException($"sequence length {idx.shape[1]} exceeds BlockSize {Config.BlockSize} of '{Config.Name}'");
        return idx.dtype == ScalarType.Int64 ? idx : idx.to(ScalarType.Int64);
    }

    internal static void Normal(Tensor t, double std, Generator g) => nn.init.normal_(t, 0.0, std, g);
}

/// <summary>Builds models; the only place that decides initialisation.</summary>
public static class ModelFactory
{
    /// <summary>
    /// A new model for <paramref name="cfg"/>. Two calls with the same config and seed give bit-identical parameters
    /// (initialisation runs on the CPU in float32 with a private generator seeded with <paramref name="seed"/>, then the
    /// model is cast to <paramref name="dtype"/> and moved to <paramref name="device"/>). The global torch RNG state is saved and restored around construction (Create calls are serialized).
    /// </summary>
    public static CausalLm Create(ModelConfig cfg, long seed, Device device, ScalarType dtype)
    {
        ArgumentNullException.ThrowIfNull(cfg);
        cfg.Validate();
        if (dtype is not (ScalarType.Float32 or ScalarType.BFloat16 or ScalarType.Float16 or ScalarType.Float64))
            throw new ArgumentException($"unsupported model dtype {dtype}; use Float32 or BFloat16");
        lock (CreateLock)
        {
        var saved = torch.get_rng_state();
        try
        {
            CausalLm model = cfg.Kind switch
            {
                ModelKind.GPT2 => new Gpt2(cfg),
                ModelKind.LLaMA3 => new Llama3(cfg),
                _ => throw new ArgumentException($"unknown model kind {cfg.Kind}"),
            };
            using (torch.no_grad())
            {
                // TorchSharp's Generator(seed) constructor does not reseed (it can hand back the default CPU generator),
                // so seed explicitly; the global state is restored below either way.
                var g = torch.manual_seed(seed);
                model.InitializeWeights(g);
            }
            if (dtype != ScalarType.Float32) model.to(dtype);
            if (device is not null && device.type != DeviceType.CPU) model.to(device);
            return model;
        }
        finally
        {
            torch.set_rng_state(saved);
            saved.Dispose();
        }
        }
    }

    // Module constructors draw their default init from the global generator; Create serializes and restores it.
    static readonly object CreateLock = new();

    /// <summary>Runs <paramref name="draw"/> with the global CPU generator seeded with <paramref name="seed"/>, serialized
    /// with model construction, and restores the generator's state afterwards (e.g. the LoRA adapters' init).</summary>
    internal static void WithSeededGenerator(long seed, Action<Generator> draw)
    {
        lock (CreateLock)
        {
            var saved = torch.get_rng_state();
            try { using (torch.no_grad()) draw(torch.manual_seed(seed)); }
            finally { torch.set_rng_state(saved); saved.Dispose(); }
        }
    }

    /// <summary>Shorthand: catalog name, CPU float32.</summary>
    public static CausalLm Create(string name, long seed = 42) => Create(ModelCatalog.Get(name), seed, CPU, ScalarType.Float32);
}
