using System.Text.Json;
using TorchSharp;
using Trainer.Models;
using static TorchSharp.torch;

namespace Trainer.Lora;

/// <summary>
/// The full (unsharded) adapters of a model, float32 on the CPU, by layer name in weight-file order: A (rank, in) and
/// B (out, rank). Built by <see cref="Init"/> (A drawn, B zero), read from an adapter file (<see cref="Load"/>), or
/// gathered from a training run's ranks.
/// </summary>
public sealed class LoraWeights : IDisposable
{
    public LoraWeights(LoraConfig config, IReadOnlyList<(LoraLayer Layer, Tensor A, Tensor B)> layers) { Config = config; Layers = layers; }

    public LoraConfig Config { get; }
    public IReadOnlyList<(LoraLayer Layer, Tensor A, Tensor B)> Layers { get; }

    /// <summary>Fresh adapters: every A kaiming-uniform with a = √5 as PyTorch's nn.Linear and PEFT's LoRA initialise
    /// (bound = √3 · gain / √in, gain = √(2 / (1 + a²)), i.e. U(-1/√in, 1/√in)), drawn from a generator seeded with
    /// <see cref="LoraConfig.InitSeed"/>(<paramref name="seed"/>) in weight-file order of the layers; every B zero.
    /// Deterministic: every rank (and reference/pytorch/lora.py) gets the same A.</summary>
    public static LoraWeights Init(ModelConfig model, LoraConfig lora, long seed)
    {
        var chosen = LoraTargets.Resolve(model, lora);
        var list = new List<(LoraLayer, Tensor, Tensor)>();
        ModelFactory.WithSeededGenerator(LoraConfig.InitSeed(seed), g =>
        {
            foreach (var l in chosen)
            {
                var a = empty(new long[] { lora.Rank, l.In }, ScalarType.Float32);
                nn.init.uniform_(a, -KaimingBound(l.In), KaimingBound(l.In), g);
                list.Add((l, a, zeros(new long[] { l.Out, lora.Rank }, ScalarType.Float32)));
            }
        });
        return new LoraWeights(lora, list);
    }

    /// <summary>PyTorch's kaiming_uniform_(a=√5, fan_in) bound, computed as PyTorch computes it.</summary>
    public static double KaimingBound(long fanIn)
    {
        double a = Math.Sqrt(5.0);
        double gain = Math.Sqrt(2.0 / (1 + a * a));
        double std = gain / Math.Sqrt(fanIn);
        return Math.Sqrt(3.0) * std;
    }

    const string Magic = "Trainer.LoRA";
    const int Version = 1;

    /// <summary>Number of adapter elements (A and B of every layer).</summary>
    public long ElementCount => Layers.Sum(l => l.A.numel() + l.B.numel());

    /// <summary>Writes an adapter file (only the adapters: small), atomically: a header (the LoRA settings, the model
    /// name) and every layer's A and B as float32.</summary>
    public void Save(string path, string modelName)
    {
        var header = JsonSerializer.Serialize(new Header(Config.Rank, Config.Alpha, Config.Targets.ToArray(), Config.Dropout, modelName,
            Layers.Select(l => l.Layer.Name).ToArray()));
        string tmp = path + ".tmp";
        using (var stream = File.Create(tmp))
        using (var w = new BinaryWriter(stream))
        {
            w.Write(Magic); w.Write(Version); w.Write(header);
            foreach (var (_, a, b) in Layers) { a.to(ScalarType.Float32).cpu().Save(w); b.to(ScalarType.Float32).cpu().Save(w); }
        }
        File.Move(tmp, path, overwrite: true);
    }

    sealed record Header(int Rank, double Alpha, string[] Targets, double Dropout, string Model, string[] Layers);

    /// <summary>The LoRA settings an adapter file was trained with (rank, alpha, targets, dropout) and its model's name.</summary>
    public static (LoraConfig Config, string Model) ReadConfig(string path, string flag = "--lora_load_path")
    {
        try
        {
            using var stream = File.OpenRead(path);
            using var r = new BinaryReader(stream);
            if (r.ReadString() != Magic || r.ReadInt32() != Version) throw new LoraConfigException($"{flag}: '{path}' is not an adapter file (version {Version}) written by this trainer");
            var h = JsonSerializer.Deserialize<Header>(r.ReadString()) ?? throw new LoraConfigException($"{flag}: '{path}': empty header");
            return (new LoraConfig(h.Rank, h.Alpha, h.Targets, h.Dropout), h.Model);
        }
        catch (Exception e) when (e is EndOfStreamException or IOException or JsonException or FormatException)
        {
            throw new LoraConfigException($"{flag}: '{path}' cannot be read as an adapter file ({e.GetType().Name}: {e.Message})");
        }
    }

    /// <summary>Reads an adapter file for a model of <paramref name="model"/> whose run uses <paramref name="lora"/>: the
    /// file must hold exactly the layers <paramref name="lora"/> selects, at its rank (alpha and dropout are the run's).
    /// Throws <see cref="LoraConfigException"/> naming <paramref name="flag"/> and the file otherwise.</summary>
    public static LoraWeights Load(string path, ModelConfig model, LoraConfig lora, string flag = "--lora_load_path")
    {
        var chosen = LoraTargets.Resolve(model, lora);
        Header h;
        try
        {
            using var stream = File.OpenRead(path);
            using var r = new BinaryReader(stream);
            if (r.ReadString() != Magic || r.ReadInt32() != Version) throw new LoraConfigException($"{flag}: '{path}' is not an adapter file (version {Version}) written by this trainer");
            h = JsonSerializer.Deserialize<Header>(r.ReadString()) ?? throw new LoraConfigException($"{flag}: '{path}': empty header");
            if (h.Rank != lora.Rank)
                throw new LoraConfigException($"{flag}: '{path}' holds rank-{h.Rank} adapters, but --lora_rank={lora.Rank}");
            if (!h.Layers.SequenceEqual(chosen.Select(c => c.Name)))
                throw new LoraConfigException($"{flag}: '{path}' holds adapters for [{string.Join(", ", h.Layers)}] (model '{h.Model}', targets {string.Join(",", h.Targets)}), " +
                    $"but --lora_target_modules={string.Join(",", lora.Targets)} selects [{string.Join(", ", chosen.Select(c => c.Name))}] of model '{model.Name}'");
            var list = new List<(LoraLayer, Tensor, Tensor)>();
            foreach (var l in chosen)
            {
                var a = zeros(new long[] { lora.Rank, l.In }, ScalarType.Float32);
                var b = zeros(new long[] { l.Out, lora.Rank }, ScalarType.Float32);
                try { a.Load(r); b.Load(r); }
                catch (Exception e) when (e is ArgumentException or InvalidOperationException or NotImplementedException)
                {
                    throw new LoraConfigException($"{flag}: '{path}': adapter of {l.Name} does not fit the model (expected A [{lora.Rank},{l.In}], B [{l.Out},{lora.Rank}]): {e.Message}");
                }
                list.Add((l, a, b));
            }
            if (stream.Position != stream.Length) throw new LoraConfigException($"{flag}: '{path}' has {stream.Length - stream.Position} bytes after the last adapter");
            return new LoraWeights(lora, list);
        }
        catch (Exception e) when (e is EndOfStreamException or IOException or JsonException or FormatException)
        {
            throw new LoraConfigException($"{flag}: '{path}' cannot be read as an adapter file ({e.GetType().Name}: {e.Message})");
        }
    }

    public void Dispose()
    {
        foreach (var (_, a, b) in Layers) { a.Dispose(); b.Dispose(); }
    }
}
