using System.Runtime.InteropServices;
using TorchSharp;
using Trainer.Models;
using static TorchSharp.torch;

namespace Trainer.Data;

/// <summary>
/// llm.c weight files. Header: 256 little-endian int32 (1024 bytes); then every parameter as float32 (bf16 for
/// GPT-2 version 5) in the order of <see cref="CausalLm.WeightFileOrder"/>.
/// GPT-2 (magic 20240326, version 3 = fp32): [2] max_seq_len, [3] vocab_size, [4] num_layers, [5] num_heads, [6] channels, [7] padded_vocab_size.
/// LLaMA-3 (magic 20240803, version 3 = fp32, InfiniTrain's header): [2] block_size, [3] vocab_size, [4] n_layer, [5] n_head,
/// [6] n_kv_head, [7] n_embd, [8] ffn_dim_multiplier (float32), [9] multiple_of, [10] norm_eps (float32), [11] rope_theta (float32),
/// [12] use_scaled_rope, [13] max_gen_batch_size, [14] version_major, [15] version_minor;
/// this project's extension (0 in other writers' files): [16] rope scale factor, [17] low_freq_factor, [18] high_freq_factor (float32), [19] original context.
/// karpathy/llm.c's train_llama3.py layout is also read (auto-detected) and can be written: 256 int32 ([8] multiple_of,
/// [9] use_scaled_rope, [10] major, [11] minor) + 256 float32 ([0] ffn_dim_multiplier, [1] norm_eps, [2] rope_theta) = 2048 bytes.
/// </summary>
public static class LlmcWeights
{
    /// <summary>Header layout of LLaMA-3 weight files.</summary>
    public enum Llama3Header
    {
        /// <summary>InfiniTrain's 1024-byte header (default).</summary>
        InfiniTrain,
        /// <summary>karpathy/llm.c train_llama3.py's 2048-byte header (int section + float section).</summary>
        Llmc,
    }

    public const int Gpt2Fp32Version = 3;
    public const int Gpt2Bf16Version = 5;   // llm.c's bf16 version, read for both GPT-2 and LLaMA-3
    public const int Llama3Fp32Version = 3;

    /// <summary>The model config a weight file describes (validated; size checked against the file length).</summary>
    public static ModelConfig ReadConfig(string path) => ReadHeader(path).Config;

    /// <summary>Builds a model from the file's header and loads its weights.</summary>
    public static CausalLm Load(string path, Device device, ScalarType dtype)
    {
        var hdr = ReadHeader(path);
        var model = ModelFactory.Create(hdr.Config, 0, CPU, ScalarType.Float32);
        try
        {
            ReadParameters(path, hdr, model);
            if (dtype != ScalarType.Float32) model.to(dtype);
            if (device is not null && device.type != DeviceType.CPU) model.to(device);
            return model;
        }
        catch { model.Dispose(); throw; }
    }

    /// <summary>Loads the file into <paramref name="model"/>; the header must describe the model's architecture.</summary>
    public static void LoadInto(CausalLm model, string path)
    {
        var hdr = ReadHeader(path);
        var a = hdr.Config; var b = model.Config;
        var mismatches = new List<string>();
        void Cmp<T>(string field, T fileValue, T modelValue) { if (!EqualityComparer<T>.Default.Equals(fileValue, modelValue)) mismatches.Add($"{field}: file {fileValue}, model {modelValue}"); }
        Cmp("kind", a.Kind, b.Kind);
        Cmp("block_size", a.BlockSize, b.BlockSize);
        Cmp("vocab_size", a.VocabSize, b.VocabSize);
        Cmp("padded_vocab_size", a.PaddedVocabSize, b.PaddedVocabSize);
        Cmp("n_layer", a.NLayer, b.NLayer);
        Cmp("n_head", a.NHead, b.NHead);
        Cmp("n_kv_head", a.NKvHead, b.NKvHead);
        Cmp("n_embd", a.NEmbd, b.NEmbd);
        Cmp("ffn_hidden", a.FfnHidden, b.FfnHidden);
        if (mismatches.Count > 0)
            throw new LlmcFileException(path, $"weight file does not match model '{b.Name}': {string.Join("; ", mismatches)}");
        ReadParameters(path, hdr, model);
    }

    /// <summary>Writes <paramref name="model"/> as an fp32 llm.c weight file, atomically (temp file + rename).</summary>
    public static void Save(CausalLm model, string path) => Save(model, path, Llama3Header.InfiniTrain);

    /// <summary>As <see cref="Save(CausalLm, string)"/>, choosing the LLaMA-3 header layout (ignored for GPT-2).</summary>
    public static void Save(CausalLm model, string path, Llama3Header layout)
    {
        var header = model.Config.Kind == ModelKind.LLaMA3 && layout == Llama3Header.Llmc ? BuildLlmcLlama3Header(model.Config) : BuildHeader(model.Config);
        var tensors = model.WeightFileOrder();
        AtomicFile.Write(path, s =>
        {
            s.Write(MemoryMarshal.AsBytes(header.AsSpan()));
            foreach (var (_, t) in tensors)
            {
                using var cpu = t.detach().to(ScalarType.Float32).cpu().contiguous();
                var data = cpu.data<float>().ToArray();
                s.Write(MemoryMarshal.AsBytes(data.AsSpan()));
            }
        });
    }

    /// <summary>The 256-int header for a config (fp32 version).</summary>
    public static int[] BuildHeader(ModelConfig c)
    {
        var h = new int[TokenFile.HeaderInts];
        if (c.Kind == ModelKind.GPT2)
        {
            h[0] = LlmcMagic.Gpt2Weights; h[1] = Gpt2Fp32Version; h[2] = c.BlockSize; h[3] = c.VocabSize;
            h[4] = c.NLayer; h[5] = c.NHead; h[6] = c.NEmbd; h[7] = c.PaddedVocabSize;
            return h;
        }
        h[0] = LlmcMagic.Llama3Weights; h[1] = Llama3Fp32Version; h[2] = c.BlockSize; h[3] = c.VocabSize;
        h[4] = c.NLayer; h[5] = c.NHead; h[6] = c.NKvHead; h[7] = c.NEmbd;
        h[8] = F(c.FfnDimMultiplier); h[9] = c.MultipleOf; h[10] = F((float)c.NormEps); h[11] = F((float)c.RopeTheta);
        h[12] = c.UseScaledRope ? 1 : 0; h[13] = 4; h[14] = 3; h[15] = c.RopeScaleFactor == 8.0 ? 1 : 2;
        h[16] = F((float)c.RopeScaleFactor); h[17] = F((float)c.RopeLowFreqFactor); h[18] = F((float)c.RopeHighFreqFactor); h[19] = c.RopeOriginalContext;
        return h;
    }

    /// <summary>karpathy/llm.c's 512-int (2048-byte) LLaMA-3 header: 256 ints then 256 floats (bit patterns).</summary>
    public static int[] BuildLlmcLlama3Header(ModelConfig c)
    {
        if (c.Kind != ModelKind.LLaMA3) throw new ArgumentException("the llm.c 2048-byte header is for LLaMA-3 configs");
        var h = new int[2 * TokenFile.HeaderInts];
        h[0] = LlmcMagic.Llama3Weights; h[1] = Llama3Fp32Version; h[2] = c.BlockSize; h[3] = c.VocabSize;
        h[4] = c.NLayer; h[5] = c.NHead; h[6] = c.NKvHead; h[7] = c.NEmbd;
        h[8] = c.MultipleOf; h[9] = c.UseScaledRope ? 1 : 0; h[10] = 3; h[11] = c.RopeScaleFactor == 8.0 ? 1 : 2;
        h[256] = F(c.FfnDimMultiplier); h[257] = F((float)c.NormEps); h[258] = F((float)c.RopeTheta);
        return h;
    }

    static int F(float f) => BitConverter.SingleToInt32Bits(f);
    static float Fl(int i) => BitConverter.Int32BitsToSingle(i);
    // float32 header value → the shortest double that prints the same (1e-5f → 1e-05, not 9.99999974e-06).
    static double Fd(int i) => double.Parse(Fl(i).ToString("R", System.Globalization.CultureInfo.InvariantCulture), System.Globalization.CultureInfo.InvariantCulture);

    sealed record Header(ModelConfig Config, int Version, bool Bf16, long ParamCount, int HeaderBytes);

    static Header ReadHeader(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (!File.Exists(path)) throw new LlmcFileException(path, "weight file not found");
        long length = new FileInfo(path).Length;
        if (length < TokenFile.HeaderBytes)
            throw new LlmcFileException(path, length == 0 ? "weight file is empty (expected a 1024-byte header)" : $"truncated: {length} bytes, shorter than the 1024-byte header");
        var bytes = new byte[Math.Min(length, 2 * TokenFile.HeaderBytes)];
        using (var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read)) fs.ReadExactly(bytes);
        var h = MemoryMarshal.Cast<byte, int>(bytes.AsSpan(0, TokenFile.HeaderBytes)).ToArray();
        int headerBytes = TokenFile.HeaderBytes;
        string name = $"{Path.GetFileName(path)}";
        ModelConfig cfg;
        bool bf16 = false;
        try
        {
            switch (h[0])
            {
                case LlmcMagic.Gpt2Weights:
                    if (h[1] is not (Gpt2Fp32Version or Gpt2Bf16Version))
                        throw new LlmcFileException(path, $"unsupported GPT-2 weight file version {h[1]} (expected {Gpt2Fp32Version} fp32 or {Gpt2Bf16Version} bf16)");
                    bf16 = h[1] == Gpt2Bf16Version;
                    CheckDimensions(path, h, ("max_seq_len", 2), ("vocab_size", 3), ("num_layers", 4), ("num_heads", 5), ("channels", 6), ("padded_vocab_size", 7));
                    cfg = ModelConfig.Gpt2(name, nLayer: h[4], nHead: h[5], nEmbd: h[6], blockSize: h[2], vocabSize: h[3], paddedVocabSize: h[7]);
                    break;
                case LlmcMagic.Llama3Weights:
                    if (h[1] is not (Llama3Fp32Version or Gpt2Bf16Version))
                        throw new LlmcFileException(path, $"unsupported LLaMA-3 weight file version {h[1]} (expected {Llama3Fp32Version} fp32 or {Gpt2Bf16Version} bf16)");
                    bf16 = h[1] == Gpt2Bf16Version;
                    CheckDimensions(path, h, ("block_size", 2), ("vocab_size", 3), ("n_layer", 4), ("n_head", 5), ("n_kv_head", 6), ("n_embd", 7));
                    if (h[10] is >= 0 and < 1000 && h[11] is >= 0 and < 1000)
                    {
                        // karpathy/llm.c layout: small ints at [10]/[11] are version major/minor (InfiniTrain has float bits there).
                        if (bytes.Length < 2 * TokenFile.HeaderBytes)
                            throw new LlmcFileException(path, $"truncated: llm.c-layout LLaMA-3 header needs 2048 bytes, file has {length}");
                        var hf = MemoryMarshal.Cast<byte, float>(bytes.AsSpan(TokenFile.HeaderBytes, TokenFile.HeaderBytes));
                        headerBytes = 2 * TokenFile.HeaderBytes;
                        cfg = ModelConfig.Llama3(name, nLayer: h[4], nHead: h[5], nKvHead: h[6], nEmbd: h[7], blockSize: h[2], vocabSize: h[3],
                            ffnDimMultiplier: hf[0], multipleOf: h[8], normEps: Fd(F(hf[1])), ropeTheta: Fd(F(hf[2])), useScaledRope: h[9] != 0,
                            ropeScaleFactor: h[10] == 3 && h[11] == 1 ? 8.0 : 32.0);
                        break;
                    }
                    double factor = h[16] != 0 ? Fd(h[16]) : (h[14] == 3 && h[15] == 1 ? 8.0 : 32.0);
                    cfg = ModelConfig.Llama3(name, nLayer: h[4], nHead: h[5], nKvHead: h[6], nEmbd: h[7], blockSize: h[2], vocabSize: h[3],
                        ffnDimMultiplier: Fl(h[8]), multipleOf: h[9], normEps: Fd(h[10]), ropeTheta: Fd(h[11]), useScaledRope: h[12] != 0, ropeScaleFactor: factor);
                    if (h[17] != 0) cfg = cfg with { RopeLowFreqFactor = Fd(h[17]) };
                    if (h[18] != 0) cfg = cfg with { RopeHighFreqFactor = Fd(h[18]) };
                    if (h[19] != 0) cfg = cfg with { RopeOriginalContext = h[19] };
                    break;
                default:
                    throw new LlmcFileException(path, $"wrong magic {h[0]} (expected {LlmcMagic.Gpt2Weights} for GPT-2 or {LlmcMagic.Llama3Weights} for LLaMA-3 weights)" +
                        (h[0] is LlmcMagic.Gpt2Tokens or LlmcMagic.Llama3Tokens ? "; this looks like a token file" : ""));
            }
        }
        catch (ArgumentException e) { throw new LlmcFileException(path, $"inconsistent header: {e.Message}", e); }
        long count = ParamCount(cfg);
        long expected = headerBytes + count * (bf16 ? 2 : 4);
        if (length < expected)
            throw new LlmcFileException(path, $"truncated: header describes {count} parameters ({expected - headerBytes} bytes) but only {length - headerBytes} bytes follow the {headerBytes}-byte header");
        if (length > expected)
            throw new LlmcFileException(path, $"{length - expected} unexpected trailing bytes after the {count} parameters the header describes");
        return new Header(cfg, h[1], bf16, count, headerBytes);
    }

    /// <summary>Largest value a size field of a weight header may hold: far above any real model, low enough that derived sizes (4·C, C·C) cannot overflow.</summary>
    public const int MaxHeaderDimension = 1 << 24;

    /// <summary>Each size field of the header in [1, <see cref="MaxHeaderDimension"/>], named when it is not.</summary>
    static void CheckDimensions(string path, int[] h, params (string Name, int Index)[] fields)
    {
        foreach (var (name, i) in fields)
            if (h[i] < 1 || h[i] > MaxHeaderDimension)
                throw new LlmcFileException(path, $"header field {name} (int {i}) = {h[i]} is out of range (must be in [1, {MaxHeaderDimension}])");
    }

    /// <summary>Number of values stored in a weight file for <paramref name="c"/>.</summary>
    public static long ParamCount(ModelConfig c)
    {
        long C = c.NEmbd, L = c.NLayer, H = c.FfnHidden;
        if (c.Kind == ModelKind.GPT2)
            return (long)c.PaddedVocabSize * C + (long)c.BlockSize * C
                 + L * (C + C + 3 * C * C + 3 * C + C * C + C + C + C + H * C + H + C * H + C) + 2 * C;
        long kv = (long)c.NKvHead * c.HeadDim;
        return (long)c.VocabSize * C + L * (C + (C + 2 * kv) * C + C * C + C + 2 * H * C + C * H) + C + (long)c.VocabSize * C;
    }

    static void ReadParameters(string path, Header hdr, CausalLm model)
    {
        var tensors = model.WeightFileOrder();
        long total = tensors.Sum(t => t.Tensor.numel());
        if (total != hdr.ParamCount)
            throw new LlmcFileException(path, $"internal: model has {total} parameters, file layout has {hdr.ParamCount}");
        using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20);
        fs.Seek(hdr.HeaderBytes, SeekOrigin.Begin);
        using var _ = no_grad();
        foreach (var (name, t) in tensors)
        {
            long n = t.numel();
            var data = new float[n];
            if (hdr.Bf16)
            {
                var raw = new ushort[n];
                ReadFully(fs, MemoryMarshal.AsBytes(raw.AsSpan()), path, name);
                for (long i = 0; i < n; i++) data[i] = BitConverter.Int32BitsToSingle(raw[i] << 16);
            }
            else ReadFully(fs, MemoryMarshal.AsBytes(data.AsSpan()), path, name);
            using var src = torch.tensor(data, t.shape, dtype: ScalarType.Float32);
            t.copy_(src);
        }
    }

    static void ReadFully(Stream s, Span<byte> dst, string path, string what)
    {
        try { s.ReadExactly(dst); }
        catch (EndOfStreamException e) { throw new LlmcFileException(path, $"truncated while reading {what}", e); }
    }
}
