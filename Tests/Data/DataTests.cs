using System.Runtime.InteropServices;
using System.Text;
using Expecto;
using Tests.Harness;
using TorchSharp;
using Trainer.Data;
using Trainer.Models;
using static TorchSharp.torch;

namespace Tests.Data;

public static class DataTests
{
    static void Check(bool ok, string msg) { if (!ok) throw new Exception(msg); }

    /// <summary>A fresh folder under the temp dir, deleted on Dispose.</summary>
    sealed class TempFolder : IDisposable
    {
        public string Dir { get; } = Path.Combine(Path.GetTempPath(), "trainer-models-tests", Guid.NewGuid().ToString("N"));
        public TempFolder() => Directory.CreateDirectory(Dir);
        public void Dispose() { try { Directory.Delete(Dir, recursive: true); } catch { } }
    }

    static void Throws<T>(Action a, params string[] fragments) where T : Exception
    {
        try { a(); }
        catch (T e)
        {
            foreach (var f in fragments) Check(e.Message.Contains(f), $"message '{e.Message}' lacks '{f}'");
            return;
        }
        throw new Exception($"expected {typeof(T).Name}");
    }

    static void WriteRaw(string path, int magic, int version, int count, int dataBytes)
    {
        var h = new int[256]; h[0] = magic; h[1] = version; h[2] = count;
        File.WriteAllBytes(path, MemoryMarshal.AsBytes(h.AsSpan()).ToArray().Concat(new byte[dataBytes]).ToArray());
    }

    static Test Tokenizer => Spec.List("tokenizer",
        Spec.Case("known GPT-2 ids", () =>
        {
            var t = Gpt2Tokenizer.Instance;
            Check(t.Encode("Hello world").SequenceEqual(new[] { 15496, 995 }), $"Hello world → {string.Join(",", t.Encode("Hello world"))}");
            Check(t.Encode("The quick brown fox").SequenceEqual(new[] { 464, 2068, 7586, 21831 }), $"fox → {string.Join(",", t.Encode("The quick brown fox"))}");
            Check(t.Encode("<|endoftext|>").SequenceEqual(new[] { 50256 }), "EOT");
            Check(t.Encode("a<|endoftext|>b").SequenceEqual(new[] { 64, 50256, 65 }), $"a EOT b → {string.Join(",", t.Encode("a<|endoftext|>b"))}");
            Check(t.Encode("").Length == 0, "empty");
            Check(t.Encode("\n").SequenceEqual(new[] { 198 }) && t.Encode("\n\n").SequenceEqual(new[] { 628 }), "newlines");
            Check(t.Encode("Hello  world").SequenceEqual(new[] { 15496, 220, 995 }), $"double space → {string.Join(",", t.Encode("Hello  world"))}");
        }),
        Spec.Case("decode inverts encode (unicode, whitespace, EOT)", () =>
        {
            var t = Gpt2Tokenizer.Instance;
            foreach (var s in new[] { "Hello world", "  two  spaces\n\nand lines\t", "naïve café — 日本語 🎉", "x<|endoftext|>y" })
                Check(t.Decode(t.Encode(s)) == s, $"round trip of '{s}' gave '{t.Decode(t.Encode(s))}'");
        }));

    static Test TokenFiles => Spec.List("token files",
        Spec.Case("write → open round trip, both formats", () =>
        {
            using var tmp = new TempFolder(); var dir = tmp.Dir;
            var toks = new[] { 0, 1, 50256, 65535, 12345 };
            foreach (var fmt in new[] { TokenFormat.Gpt2, TokenFormat.Llama3 })
            {
                var p = Path.Combine(dir, $"t_{fmt}.bin");
                TokenFile.Write(p, toks, fmt);
                Check(new FileInfo(p).Length == 1024 + toks.Length * (fmt == TokenFormat.Gpt2 ? 2 : 4), "file size");
                using var f = TokenFile.Open(p);
                Check(f.Format == fmt && f.Count == toks.Length && f.ReadAll().SequenceEqual(toks), $"{fmt} round trip");
                Check(f[2] == 50256, "indexer");
                var hdr = MemoryMarshal.Cast<byte, int>(File.ReadAllBytes(p).AsSpan(0, 1024)).ToArray();
                Check(hdr[0] == (fmt == TokenFormat.Gpt2 ? 20240520 : 20240801) && hdr[1] == (fmt == TokenFormat.Gpt2 ? 1 : 7) && hdr[2] == 5 && hdr.Skip(3).All(x => x == 0), "header");
            }
            var big = Path.Combine(dir, "big.bin");
            TokenFile.Write(big, new[] { 70000 }, TokenFormat.Llama3);
            using (var f = TokenFile.Open(big)) Check(f[0] == 70000, "uint32 token");
            Throws<ArgumentException>(() => TokenFile.Write(Path.Combine(dir, "x.bin"), new[] { 70000 }, TokenFormat.Gpt2), "70000");
            Check(!File.Exists(Path.Combine(dir, "x.bin")), "failed write left a file");
            Check(Directory.GetFiles(dir).All(f => !Path.GetFileName(f).StartsWith('.')), "temp files left behind");
        }),
        Spec.Case("batch: y is x shifted by one", () =>
        {
            using var tmp = new TempFolder(); var dir = tmp.Dir; var p = Path.Combine(dir, "b.bin");
            TokenFile.Write(p, Enumerable.Range(100, 50).ToArray(), TokenFormat.Gpt2);
            using var f = TokenFile.Open(p);
            var (x, y) = f.Batch(3, 2, 4);
            Check(x.shape.SequenceEqual(new long[] { 2, 4 }) && x.dtype == ScalarType.Int64, "shape/dtype");
            Check(x.data<long>().ToArray().SequenceEqual(Enumerable.Range(103, 8).Select(i => (long)i)), "x");
            Check(y.data<long>().ToArray().SequenceEqual(Enumerable.Range(104, 8).Select(i => (long)i)), "y");
        }),
        Spec.Case("clear errors: missing, empty, short header, truncated, trailing, wrong magic, version", () =>
        {
            using var tmp = new TempFolder(); var dir = tmp.Dir;
            var missing = Path.Combine(dir, "nope.bin");
            Throws<LlmcFileException>(() => TokenFile.Open(missing), "nope.bin", "not found");
            var empty = Path.Combine(dir, "empty.bin"); File.WriteAllBytes(empty, Array.Empty<byte>());
            Throws<LlmcFileException>(() => TokenFile.Open(empty), "empty.bin", "empty");
            var shortH = Path.Combine(dir, "short.bin"); File.WriteAllBytes(shortH, new byte[100]);
            Throws<LlmcFileException>(() => TokenFile.Open(shortH), "short.bin", "truncated", "1024-byte header");
            var trunc = Path.Combine(dir, "trunc.bin"); WriteRaw(trunc, 20240520, 1, 10, 7);
            Throws<LlmcFileException>(() => TokenFile.Open(trunc), "trunc.bin", "truncated", "10 tokens", "7 bytes");
            var trail = Path.Combine(dir, "trail.bin"); WriteRaw(trail, 20240801, 7, 2, 12);
            Throws<LlmcFileException>(() => TokenFile.Open(trail), "trail.bin", "4 unexpected trailing bytes");
            var magic = Path.Combine(dir, "magic.bin"); WriteRaw(magic, 12345, 1, 0, 0);
            Throws<LlmcFileException>(() => TokenFile.Open(magic), "magic.bin", "wrong magic 12345", "20240520", "20240801");
            var weights = Path.Combine(dir, "weights.bin"); WriteRaw(weights, 20240326, 3, 0, 0);
            Throws<LlmcFileException>(() => TokenFile.Open(weights), "looks like a weight file");
            var ver = Path.Combine(dir, "ver.bin"); WriteRaw(ver, 20240520, 9, 0, 0);
            Throws<LlmcFileException>(() => TokenFile.Open(ver), "ver.bin", "version 9");
        }));

    static bool SameParameters(CausalLm a, CausalLm b) =>
        a.WeightFileOrder().Zip(b.WeightFileOrder()).All(p => p.Item1.Name == p.Item2.Name
            && p.Item1.Tensor.shape.SequenceEqual(p.Item2.Tensor.shape)
            && p.Item1.Tensor.to(ScalarType.Float32).eq(p.Item2.Tensor.to(ScalarType.Float32)).all().item<bool>());

    static Test WeightRoundTrip(string name) => Spec.Case($"{name}: write → read gives identical parameters and logits", () =>
    {
        using var tmp = new TempFolder(); var dir = tmp.Dir; var p = Path.Combine(dir, $"{name}.bin");
        using var m = ModelFactory.Create(name, 77);
        LlmcWeights.Save(m, p);
        Check(new FileInfo(p).Length == 1024 + 4 * LlmcWeights.ParamCount(m.Config), "file size");
        Check(LlmcWeights.ParamCount(m.Config) == m.ParameterCount(), "ParamCount vs module");
        var cfg = LlmcWeights.ReadConfig(p);
        Check(cfg with { Name = m.Config.Name } == m.Config, $"config from header {cfg} vs {m.Config}");
        using var loaded = LlmcWeights.Load(p, CPU, ScalarType.Float32);
        Check(SameParameters(m, loaded), "Load: parameters differ");
        using var other = ModelFactory.Create(name, 78);
        Check(!SameParameters(m, other), "seeds 77/78 equal?");
        LlmcWeights.LoadInto(other, p);
        Check(SameParameters(m, other), "LoadInto: parameters differ");
        using var idx = randint(0, m.Config.VocabSize, new long[] { 1, 10 }, dtype: ScalarType.Int64);
        using var _ = no_grad();
        Check(m.forward(idx).eq(loaded.forward(idx)).all().item<bool>(), "logits differ");
        // bf16 model: saved as fp32, reloaded into bf16 exactly.
        using var b16 = ModelFactory.Create(ModelCatalog.Get(name), 79, CPU, ScalarType.BFloat16);
        var p16 = Path.Combine(dir, $"{name}-bf16.bin");
        LlmcWeights.Save(b16, p16);
        using var b16b = LlmcWeights.Load(p16, CPU, ScalarType.BFloat16);
        Check(b16b.parameters().First().dtype == ScalarType.BFloat16 && SameParameters(b16, b16b), "bf16 round trip");
        Check(Directory.GetFiles(dir).All(f => !Path.GetFileName(f).StartsWith('.')), "temp files left behind");
    });

    static Test WeightFiles => Spec.List("weight files",
        WeightRoundTrip("gpt2-tiny"),
        WeightRoundTrip("llama3-tiny"),
        Spec.Case("LLaMA-3: karpathy/llm.c 2048-byte header layout is written and auto-detected", () =>
        {
            using var tmp = new TempFolder(); var p = Path.Combine(tmp.Dir, "llmc.bin");
            using var m = ModelFactory.Create("llama3-tiny", 31);
            LlmcWeights.Save(m, p, LlmcWeights.Llama3Header.Llmc);
            Check(new FileInfo(p).Length == 2048 + 4 * LlmcWeights.ParamCount(m.Config), "file size");
            var h = MemoryMarshal.Cast<byte, int>(File.ReadAllBytes(p).AsSpan(0, 2048)).ToArray();
            Check(h[0] == 20240803 && h[1] == 3 && h[8] == 32 && h[9] == 1 && h[10] == 3 && h[11] == 2, string.Join(",", h.Take(12)));
            Check(BitConverter.Int32BitsToSingle(h[256]) == 1.5f && BitConverter.Int32BitsToSingle(h[257]) == 1e-5f && BitConverter.Int32BitsToSingle(h[258]) == 500000f, "float section");
            Check(LlmcWeights.ReadConfig(p) with { Name = m.Config.Name } == m.Config, $"config {LlmcWeights.ReadConfig(p)}");
            using var back = LlmcWeights.Load(p, CPU, ScalarType.Float32);
            Check(SameParameters(m, back), "parameters differ");
        }),
        Spec.Case("GPT-2 header fields are llm.c's", () =>
        {
            var h = LlmcWeights.BuildHeader(ModelCatalog.Get("gpt2"));
            Check(h.Take(8).SequenceEqual(new[] { 20240326, 3, 1024, 50257, 12, 12, 768, 50304 }), string.Join(",", h.Take(8)));
            var l = LlmcWeights.BuildHeader(ModelCatalog.Get("llama3.2-1b"));
            Check(l[0] == 20240803 && l[1] == 3 && l[2] == 8192 && l[3] == 128256 && l[4] == 16 && l[5] == 32 && l[6] == 8 && l[7] == 2048, "llama ints");
            Check(BitConverter.Int32BitsToSingle(l[8]) == 1.5f && l[9] == 256 && BitConverter.Int32BitsToSingle(l[10]) == 1e-5f
                  && BitConverter.Int32BitsToSingle(l[11]) == 500000f && l[12] == 1, "llama floats");
        }),
        Spec.Case("clear errors: missing, truncated, wrong magic, token file, config mismatch", () =>
        {
            using var tmp = new TempFolder(); var dir = tmp.Dir;
            using var m = ModelFactory.Create("gpt2-tiny", 1);
            var good = Path.Combine(dir, "good.bin"); LlmcWeights.Save(m, good);
            Throws<LlmcFileException>(() => LlmcWeights.Load(Path.Combine(dir, "nope.bin"), CPU, ScalarType.Float32), "nope.bin", "not found");
            var trunc = Path.Combine(dir, "trunc.bin");
            File.WriteAllBytes(trunc, File.ReadAllBytes(good)[..5000]);
            Throws<LlmcFileException>(() => LlmcWeights.Load(trunc, CPU, ScalarType.Float32), "trunc.bin", "truncated", "parameters");
            Throws<LlmcFileException>(() => LlmcWeights.LoadInto(m, trunc), "truncated");
            var bad = Path.Combine(dir, "bad.bin");
            var bytes = File.ReadAllBytes(good); bytes[0] ^= 0x5A; File.WriteAllBytes(bad, bytes);
            Throws<LlmcFileException>(() => LlmcWeights.ReadConfig(bad), "bad.bin", "wrong magic");
            var tok = Path.Combine(dir, "tok.bin"); TokenFile.Write(tok, new[] { 1, 2, 3 }, TokenFormat.Gpt2);
            Throws<LlmcFileException>(() => LlmcWeights.ReadConfig(tok), "looks like a token file");
            using var llama = ModelFactory.Create("llama3-tiny", 1);
            Throws<LlmcFileException>(() => LlmcWeights.LoadInto(llama, good), "does not match", "kind");
            using var wider = ModelFactory.Create(ModelCatalog.Get("gpt2-tiny") with { NLayer = 3 }, 1, CPU, ScalarType.Float32);
            Throws<LlmcFileException>(() => LlmcWeights.LoadInto(wider, good), "n_layer: file 2, model 3");
        }));

    static (int Code, string Out, string Err) Prep(params string[] args)
    {
        var o = new StringWriter(); var e = new StringWriter();
        int code = PrepareDataCommand.Run(args, o, e);
        return (code, o.ToString(), e.ToString());
    }

    static Test PrepareData => Spec.List("prepare-data",
        Spec.Case("text → gpt2 and llama3 token files", () =>
        {
            using var tmp = new TempFolder(); var dir = tmp.Dir; var txt = Path.Combine(dir, "in.txt");
            File.WriteAllText(txt, "Hello world");
            var (c1, _, e1) = Prep("prepare-data", $"--input={txt}", $"--output={Path.Combine(dir, "o.bin")}");
            Check(c1 == 0, $"exit {c1}: {e1}");
            using (var f = TokenFile.Open(Path.Combine(dir, "o.bin"))) Check(f.Format == TokenFormat.Gpt2 && f.ReadAll().SequenceEqual(new[] { 50256, 15496, 995 }), "gpt2 tokens");
            var (c2, _, e2) = Prep("--input", txt, "--output", Path.Combine(dir, "sub", "o32.bin"), "--format=llama3", "--eot=false");
            Check(c2 == 0, $"exit {c2}: {e2}");
            using (var f = TokenFile.Open(Path.Combine(dir, "sub", "o32.bin"))) Check(f.Format == TokenFormat.Llama3 && f.ReadAll().SequenceEqual(new[] { 15496, 995 }), "llama3 tokens");
        }),
        Spec.Case("--eot_paragraphs: EOT after every blank line (llm.c tinyshakespeare recipe)", () =>
        {
            using var tmp = new TempFolder(); var dir = tmp.Dir; var txt = Path.Combine(dir, "in.txt");
            File.WriteAllText(txt, "a\n\nb");
            var (c, _, e) = Prep($"--input={txt}", $"--output={dir}/o.bin", "--eot_paragraphs");
            Check(c == 0, e);
            using var f = TokenFile.Open($"{dir}/o.bin");
            Check(f.ReadAll().SequenceEqual(new[] { 50256, 64, 628, 50256, 65 }), string.Join(",", f.ReadAll()));
        }),
        Spec.Case("val split: first N tokens to --val_output", () =>
        {
            using var tmp = new TempFolder(); var dir = tmp.Dir; var txt = Path.Combine(dir, "in.txt");
            File.WriteAllText(txt, "The quick brown fox");
            var (c, _, e) = Prep($"--input={txt}", $"--output={dir}/tr.bin", $"--val_output={dir}/va.bin", "--val_tokens=2");
            Check(c == 0, e);
            using var va = TokenFile.Open($"{dir}/va.bin"); using var tr = TokenFile.Open($"{dir}/tr.bin");
            Check(va.ReadAll().SequenceEqual(new[] { 50256, 464 }) && tr.ReadAll().SequenceEqual(new[] { 2068, 7586, 21831 }), "split");
        }),
        Spec.Case("usage errors exit 2, runtime errors exit 1, nothing written", () =>
        {
            using var tmp = new TempFolder(); var dir = tmp.Dir; var txt = Path.Combine(dir, "in.txt"); File.WriteAllText(txt, "hi");
            var outp = Path.Combine(dir, "o.bin");
            Check(Prep("--help").Code == 0 && Prep("--help").Out.Contains("llama3"), "--help");
            Check(Prep().Code == 2, "no args");
            Check(Prep($"--input={txt}").Err.Contains("--output"), "missing --output message");
            Check(Prep($"--input={txt}", $"--output={outp}", "--bogus=1") is { Code: 2 } r1 && r1.Err.Contains("--bogus"), "unknown flag");
            Check(Prep($"--input={txt}", $"--output={outp}", "--format=utf8") is { Code: 2 } r2 && r2.Err.Contains("utf8"), "bad format");
            Check(Prep($"--input={txt}", $"--output={outp}", "--val_tokens=5") is { Code: 2 }, "val_tokens without val_output");
            Check(Prep($"--input={txt}", $"--output={txt}") is { Code: 2 }, "overwrite input");
            var r3 = Prep($"--input={dir}/missing.txt", $"--output={outp}");
            Check(r3.Code == 1 && r3.Err.Contains("missing.txt") && r3.Err.Contains("not found"), $"missing input: {r3.Err}");
            var badUtf8 = Path.Combine(dir, "bad.txt"); File.WriteAllBytes(badUtf8, new byte[] { 0x41, 0xFF, 0xFE, 0x42 });
            var r4 = Prep($"--input={badUtf8}", $"--output={outp}");
            Check(r4.Code == 1 && r4.Err.Contains("UTF-8"), $"bad utf8: {r4.Err}");
            var emptyTxt = Path.Combine(dir, "empty.txt"); File.WriteAllText(emptyTxt, "");
            Check(Prep($"--input={emptyTxt}", $"--output={outp}").Code == 1, "empty input");
            var r5 = Prep($"--input={txt}", $"--output={outp}", $"--val_output={dir}/v.bin", "--val_tokens=100");
            Check(r5.Code == 1 && r5.Err.Contains("not enough"), $"split too large: {r5.Err}");
            Check(!File.Exists(outp) && !File.Exists($"{dir}/v.bin"), "an output was written on error");
            Check(Directory.GetFiles(dir).All(f => !Path.GetFileName(f).StartsWith('.')), "temp files left behind");
        }),
        Spec.Case("read in pieces: small blocks give exactly the whole text's tokens (multi-byte, spaces, EOT, paragraphs)", () =>
        {
            using var tmp = new TempFolder(); var dir = tmp.Dir;
            string[] atoms = ["a", "Zebra", "don't", "'s", "'ll", " ", "  ", "\n", "\n\n", "\t", "\r\n", "\u00A0", "\u3000", "é", "中文",
                              "😀", "12", "3.5", "!?", "--", "<|endoftext|>", "<|endo", " x", "\u0085", "Ω"];
            for (int seed = 0; seed < 12; seed++)
            {
                var rng = new Random(seed);
                var sb = new StringBuilder();
                for (int i = 0; i < 400; i++) sb.Append(atoms[rng.Next(atoms.Length)]);
                string text = sb.ToString();
                var txt = Path.Combine(dir, $"in{seed}.txt");
                File.WriteAllBytes(txt, [.. (seed % 2 == 0 ? Encoding.UTF8.GetPreamble() : []), .. Encoding.UTF8.GetBytes(text)]);
                bool eot = seed % 3 != 0, paragraphs = seed % 4 == 1;
                var whole = PrepareDataCommand.TokenizeText(paragraphs ? text.Replace("\n\n", "\n\n" + Gpt2Tokenizer.EndOfTextText) : text, eot);
                foreach (int block in new[] { 1, 3, 7, 64, 1 << 20 })
                {
                    var (tr, va) = (Path.Combine(dir, "tr.bin"), Path.Combine(dir, "va.bin"));
                    var (nTrain, nVal, chars) = PrepareDataCommand.Prepare(txt, tr, TokenFormat.Gpt2, eot, va, 50, paragraphs, block);
                    using var t = TokenFile.Open(tr); using var v = TokenFile.Open(va);
                    var got = v.ReadAll().Concat(t.ReadAll()).ToArray();
                    Check(got.SequenceEqual(whole), $"seed {seed}, block {block}: tokens differ from the whole text's at " +
                          $"{Enumerable.Range(0, Math.Min(got.Length, whole.Length)).FirstOrDefault(i => got[i] != whole[i], Math.Min(got.Length, whole.Length))}");
                    Check(nVal == 50 && nTrain == whole.Length - 50 && chars == text.Length, $"seed {seed}, block {block}: counts {nTrain} {nVal} {chars}");
                }
            }
        }),
        Spec.Case("read in pieces: the embedded corpus in 4 KB blocks is the embedded token file", () =>
        {
            using var tmp = new TempFolder(); var txt = Path.Combine(tmp.Dir, "kjv.txt"); var tr = Path.Combine(tmp.Dir, "tr.bin");
            File.WriteAllText(txt, EmbeddedData.Text());
            PrepareDataCommand.Prepare(txt, tr, TokenFormat.Gpt2, eot: true, valOutput: null, valTokens: 0, eotParagraphs: false, blockBytes: 4096);
            using var got = TokenFile.Open(tr);
            using var gv = EmbeddedData.OpenVal(TokenFormat.Gpt2); using var g = EmbeddedData.OpenTrain(TokenFormat.Gpt2);
            Check(got.ReadAll().SequenceEqual(gv.ReadAll().Concat(g.ReadAll())), "tokens differ from the embedded file");
        }),
        Spec.Case("read in pieces: bad UTF-8 is named by its byte offset, and nothing is written", () =>
        {
            using var tmp = new TempFolder(); var dir = tmp.Dir; var txt = Path.Combine(dir, "bad.txt");
            File.WriteAllBytes(txt, [.. Encoding.UTF8.GetBytes(new string('a', 99) + "é"), 0xFF, .. "tail"u8]);
            var outp = Path.Combine(dir, "o.bin");
            foreach (int block in new[] { 7, 100, 1 << 20 })
            {
                Throws<IOException>(() => PrepareDataCommand.Prepare(txt, outp, TokenFormat.Gpt2, true, null, 0, false, block), "bad.txt", "bad byte at offset 101");
            }
            Check(Directory.GetFiles(dir).Single() == txt, "a file was left behind");
        }),
        Spec.Case("flag parsing is gflags style", () =>
        {
            var v = PrepareDataCommand.Flags().Parse(new[] { "--input=a.txt", "-output=b.bin", "--val-output", "v.bin", "--noeot", "--eot_paragraphs" });
            Check(v.GetString("input") == "a.txt" && v.GetString("output") == "b.bin" && v.GetString("val_output") == "v.bin"
                  && !v.GetBool("eot") && v.GetBool("eot_paragraphs"), string.Join(";", v.Given));
        }));

    static Test Embedded => Spec.List("embedded",
        Spec.Case("token files open, formats agree, split sizes", () =>
        {
            using var g = EmbeddedData.OpenTrain(TokenFormat.Gpt2); using var gv = EmbeddedData.OpenVal(TokenFormat.Gpt2);
            using var l = EmbeddedData.OpenTrain(TokenFormat.Llama3); using var lv = EmbeddedData.OpenVal(TokenFormat.Llama3);
            Check(g.Format == TokenFormat.Gpt2 && l.Format == TokenFormat.Llama3, "formats");
            Check(gv.Count == EmbeddedData.ValTokens && g.Count > 100_000, $"counts {gv.Count} {g.Count}");
            Check(g.ReadAll().SequenceEqual(l.ReadAll()) && gv.ReadAll().SequenceEqual(lv.ReadAll()), "gpt2 and llama3 ids differ");
            Check(gv[0] == Gpt2Tokenizer.EndOfText, "val starts with EOT");
            var path = EmbeddedData.TrainPath(TokenFormat.Gpt2);
            using var onDisk = TokenFile.Open(path);
            Check(onDisk.Count == g.Count && onDisk.ReadArray(0, 1000).SequenceEqual(g.ReadArray(0, 1000)), "extracted copy");
            Check(EmbeddedData.GptTokensPath() == path, "GptTokensPath");
        }),
        Spec.Case("token files are exactly prepare-data's output for kjv.txt", () =>
        {
            var text = EmbeddedData.Text();
            Check(text.Length > 500_000 && text.StartsWith("THE FIRST BOOK OF MOSES"), "text");
            var all = PrepareDataCommand.TokenizeText(text);
            using var gv = EmbeddedData.OpenVal(TokenFormat.Gpt2); using var g = EmbeddedData.OpenTrain(TokenFormat.Gpt2);
            Check(gv.ReadAll().Concat(g.ReadAll()).SequenceEqual(all), "embedded tokens differ from tokenizing kjv.txt");
            Check(Gpt2Tokenizer.Instance.Decode(all.Skip(1)) == text, "decode(tokens) != text");
        }),
        Spec.Case("a tiny model trains a few steps on it (loss goes down)", () =>
        {
            using var m = ModelFactory.Create("gpt2-tiny", 3);
            using var f = EmbeddedData.OpenTrain(TokenFormat.Gpt2);
            using var opt = optim.AdamW(m.parameters(), lr: 1e-2);
            var (x, y) = f.Batch(0, 4, 32);
            float first = 0, last = 0;
            for (int i = 0; i < 15; i++)
            {
                opt.zero_grad();
                using var loss = m.Loss(m.forward(x), y);
                loss.backward(); opt.step();
                if (i == 0) first = loss.item<float>();
                last = loss.item<float>();
            }
            Check(last < first - 1.0, $"loss {first} → {last}");
        }));

    [Tests]
    public static Test All => Spec.List("data", Tokenizer, TokenFiles, WeightFiles, PrepareData, Embedded);
}
