using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using Expecto;
using Tests.Harness;
using Trainer.Cli;
using Trainer.Data;
using Trainer.Training;

namespace Tests.Training;

/// <summary>Text generation (InfiniTrain's --tokenizer_bin, --freq_generate_txt, --text_length): llm.c's sampler,
/// llm.c's tokenizer file, and the trainer sampling the same text in every layout without touching the training.</summary>
public static class GenerationTests
{
    /// <summary>An llm.c tokenizer file written here byte by byte (independent of the reader under test).</summary>
    static void WriteTokenizer(string path, int magic, int version, byte[][] tokens, int eot = 0, int? declared = null, byte[]? tail = null)
    {
        using var w = new BinaryWriter(File.Create(path));
        var header = new int[256];
        header[0] = magic; header[1] = version; header[2] = declared ?? tokens.Length; header[3] = version == 2 ? eot : 0;
        foreach (var h in header) w.Write(h);
        foreach (var t in tokens) { w.Write((byte)t.Length); w.Write(t); }
        if (tail is not null) w.Write(tail);
    }

    static readonly byte[][] Table = [[(byte)'a'], [(byte)'b', (byte)'c'], [0xC3], [0xA9], [(byte)' '], [(byte)'!']];   // 2+3: "é" split in two

    static (int Code, string Err, JsonElement[] Log) Train(string dir, params string[] args)
    {
        var log = Path.Combine(dir, $"{Guid.NewGuid():N}.jsonl");
        var e = new StringWriter();
        int code = TrainCommand.Run([.. args, "--noprogress", $"--log_json={log}"], TextWriter.Null, e);
        var lines = File.Exists(log) ? File.ReadLines(log).Select(l => JsonDocument.Parse(l).RootElement).ToArray() : [];
        return (code, e.ToString(), lines);
    }

    static string[] Samples(JsonElement[] log) => log.Where(r => r.TryGetProperty("sample", out _)).Select(r => r.GetProperty("sample").GetString()!).ToArray();
    static float[] Losses(JsonElement[] log) => log.Where(r => r.TryGetProperty("loss", out _)).Select(r => r.GetProperty("loss").GetSingle()).ToArray();

    static void InTemp(Action<string> body)
    {
        var dir = Path.Combine(Path.GetTempPath(), "generation-tests", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        try { body(dir); } finally { try { Directory.Delete(dir, true); } catch { } }
    }

    // Sequenced: the runs seed torch's one global generator, which runs of parallel tests would draw from too.
    [Tests]
    public static Test All => Spec.Sequenced(Spec.List("training.generation",
        Spec.Case("llm.c's xorshift* from 1337, its float in [0, 1), and sample_mult's cumulative rule", () =>
        {
            // The first draws of llm.c's random_u32 from state 1337, computed with Python's integers.
            ulong s = TextSampler.Seed;
            uint[] expected = [989205090, 818269915, 1335155955, 3876892996, 2941700015];
            foreach (var want in expected) Must.Equal(TextSampler.RandomU32(ref s), want, "random_u32");
            s = TextSampler.Seed;
            Must.Equal(TextSampler.RandomF32(ref s), (989205090u >> 8) / 16777216f, "random_f32 = top 24 bits / 2^24");
            float[] p = [0.25f, 0.5f, 0.25f];
            Must.Equal(TextSampler.SampleMult(p, 0f), 0, "coin 0");
            Must.Equal(TextSampler.SampleMult(p, 0.25f), 1, "coin on a boundary goes right (coin < cdf)");
            Must.Equal(TextSampler.SampleMult(p, 0.74f), 1, "coin 0.74");
            Must.Equal(TextSampler.SampleMult(p, 0.75f), 2, "coin 0.75");
            Must.Equal(TextSampler.SampleMult([0.25f, 0.25f], 0.9f), 1, "a sum below the coin gives the last index");
        }),
        Spec.Case("Generate: prompt first, one draw per token, the window is the last T ids padded after them", () =>
        {
            var windows = new List<(long[] Window, int At)>();
            // A "model" that always predicts last + 1 (one-hot), so the draw cannot change the token.
            var ids = TextSampler.Generate([5, 6], length: 9, context: 4, padding: 99, (w, at, coin) =>
            {
                windows.Add(((long[])w.Clone(), at));
                var probs = new float[100];
                probs[(w[at] + 1) % 100] = 1f;
                return TextSampler.SampleMult(probs, coin);
            });
            Must.Equal(string.Join(",", ids), "5,6,7,8,9,10,11,12,13", "tokens");
            Must.Equal(windows.Count, 7, "one model call per new token");
            Must.Equal(string.Join(",", windows[0].Window), "5,6,99,99", "a short context is padded after the ids");
            Must.Equal(windows[0].At, 1, "read after the last id");
            Must.Equal(string.Join(",", windows[^1].Window), "9,10,11,12", "a long context keeps the last T ids");
            Must.Equal(windows[^1].At, 3, "read at the window's end");
            Must.Equal(TextSampler.Generate([1, 2, 3], 2, 4, 0, (_, _, _) => throw new Exception("called")).Length, 3, "a prompt at least as long as the text is all");
            // The draws are llm.c's: with uniform probabilities over 4 ids the token is floor(coin * 4).
            ulong s = TextSampler.Seed;
            var uniform = TextSampler.Generate([0], 6, 8, 0, (_, _, coin) => TextSampler.SampleMult([0.25f, 0.25f, 0.25f, 0.25f], coin));
            Must.Equal(string.Join(",", uniform.Skip(1)), string.Join(",", Enumerable.Range(0, 5).Select(_ => (int)(TextSampler.RandomF32(ref s) * 4))), "draws");
        }),
        Spec.Case("llm.c tokenizer files: v1 and v2 read, bytes joined before UTF-8, bad files named", () => InTemp(dir =>
        {
            var v1 = Path.Combine(dir, "v1.bin"); WriteTokenizer(v1, TokenizerFile.Gpt2Magic, 1, Table);
            var t1 = TokenizerFile.Open(v1);
            Must.Equal(t1.VocabSize, 6, "vocabulary"); Must.Equal(t1.EndOfText, 50256, "v1 GPT-2: llm.c's fixed EOT");
            Must.Equal(t1.Decode([0, 1, 4, 2, 3, 5]), "abc é!", "decoded text (é from two tokens)");
            Must.Equal(t1.Decode([0, 9, 0]), "a[INVALID_TOKEN]a", "an id outside the table");
            var v2 = Path.Combine(dir, "v2.bin"); WriteTokenizer(v2, TokenizerFile.Llama3Magic, 2, Table, eot: 5);
            var t2 = TokenizerFile.Open(v2);
            Must.Equal(t2.EndOfText, 5, "v2: EOT from the header"); Must.Equal(string.Join(",", t2.Prompt), "791,7438,315,2324,374", "LLaMA-3 prompt");
            Must.Equal(string.Join(",", t1.Prompt), "464,3616,286,1204,318", "GPT-2 prompt");
            void Bad(string name, string why, Action<string> write)
            {
                var p = Path.Combine(dir, name); write(p);
                var e = Must.Throws<LlmcFileException>(() => TokenizerFile.Open(p), name);
                Must.Contains(e.Message, name, "the message names the file"); Must.Contains(e.Message, why, name);
            }
            Bad("short.bin", "shorter than the 1024-byte header", p => File.WriteAllBytes(p, new byte[100]));
            Bad("tokens.bin", "looks like a token or weight file", p => CliTests.WriteTokens(p, [1, 2, 3]));
            Bad("v3.bin", "unsupported version 3", p => WriteTokenizer(p, TokenizerFile.Gpt2Magic, 3, Table));
            Bad("cut.bin", "the file ends at token 6", p => WriteTokenizer(p, TokenizerFile.Gpt2Magic, 1, Table, declared: 8));
            Bad("tail.bin", "2 unexpected trailing bytes", p => WriteTokenizer(p, TokenizerFile.Gpt2Magic, 1, Table, tail: [1, 2]));
            Bad("eot.bin", "end-of-text id 6", p => WriteTokenizer(p, TokenizerFile.Gpt2Magic, 2, Table, eot: 6));
            Bad("missing.bin", "not found", _ => { });
            Bad("llama-tokens.bin", "also a LLaMA-3 token file's", p => CliTests.WriteTokens(p, [1, 2, 3], magic: TokenFile.Llama3Magic));
            var gpt2 = TokenizerFile.Open(TokenizerFile.Embedded);
            Must.Equal(gpt2.Decode(gpt2.Prompt), "The meaning of life is", "embedded GPT-2 decodes InfiniTrain's prompt");
            Must.Equal(gpt2.Decode(PrepareDataCommand.TokenizeText("naïve café 😀", eot: false)), "naïve café 😀", "embedded: multi-byte text whole");
        })),
        Spec.Case("the trainer samples every N steps, the same text under TP+SP and DP, and training is unchanged", () => InTemp(dir =>
        {
            string[] common = ["--model=gpt2-tiny", "--num_iteration=4", "--batch_size=2", "--sequence_length=16", "--total_batch_size=64"];
            string[] gen = ["--tokenizer_bin=embedded:gpt2", "--freq_generate_txt=2", "--text_length=24"];
            var plain = Train(dir, common);
            var single = Train(dir, [.. common, .. gen]);
            Must.Equal(single.Code, 0, "exit code: " + single.Err);
            var samples = Samples(single.Log);
            Must.Equal(samples.Length, 2, "samples at steps 2 and 4");
            Must.True(samples.All(t => t.StartsWith("The meaning of life is") && t.Length > "The meaning of life is".Length), string.Join(" | ", samples));
            Must.True(samples[0] != samples[1], "the model changed between the samples, and so did the text");
            Must.Equal(string.Join(",", Losses(single.Log)), string.Join(",", Losses(plain.Log)), "losses with and without sampling (bits)");
            var tp = Train(dir, [.. common, .. gen, "--nthread_per_process=4", "--tensor_parallel=2", "--sequence_parallel", "--zero_stage=1"]);
            Must.Equal(tp.Code, 0, "TP exit code: " + tp.Err);
            Must.Equal(string.Join(" | ", Samples(tp.Log)), string.Join(" | ", samples), "TP 2 + SP x DP 2 samples");
        })),
        Spec.Case("under a pipeline the last stage samples and every stage goes on with its tokens: the single-device text", () => InTemp(dir =>
        {
            string[] common = ["--model=gpt2-tiny-pp", "--num_iteration=2", "--batch_size=2", "--sequence_length=16", "--total_batch_size=128",
                "--tokenizer_bin=embedded:gpt2", "--freq_generate_txt=2", "--text_length=40"];   // 40 > T: the window slides
            var single = Train(dir, common);
            Must.Equal(single.Code, 0, "exit code: " + single.Err);
            var pp = Train(dir, [.. common, "--nthread_per_process=8", "--tensor_parallel=2", "--sequence_parallel", "--pipeline_parallel=2", "--virtual_pipeline_parallel=2"]);
            Must.Equal(pp.Code, 0, "PP exit code: " + pp.Err);
            Must.Equal(Samples(single.Log).Length, 1, "one sample");
            Must.Equal(string.Join(" | ", Samples(pp.Log)), string.Join(" | ", Samples(single.Log)), "DP 2 x TP 2 + SP x PP 2 x VPP 2 sample");
        })),
        Spec.Case("bad generation flags: usage errors exit 2, bad tokenizer files exit 1, before training", () => InTemp(dir =>
        {
            (int, string) Run(params string[] a) { var r = Train(dir, ["--num_iteration=1", .. a]); Must.True(r.Log.Length == 0, "a step ran: " + r.Err); return (r.Code, r.Err); }
            var (c1, e1) = Run("--tokenizer_bin=embedded:gpt2", "--text_length=0");
            Must.Equal(c1, 2, "exit"); Must.Contains(e1, "--text_length", "message");
            var (c2, e2) = Run("--text_length=8");
            Must.Equal(c2, 2, "exit"); Must.Contains(e2, "--text_length needs --tokenizer_bin", "message");
            var (c3, e3) = Run($"--tokenizer_bin={dir}/none.bin");
            Must.Equal(c3, 1, "missing file exit"); Must.Contains(e3, "none.bin", "message");
            var big = Path.Combine(dir, "big.bin");
            WriteTokenizer(big, TokenizerFile.Llama3Magic, 2, Enumerable.Range(0, 60_000).Select(i => new[] { (byte)(i % 200) }).ToArray(), eot: 1);
            var (c4, e4) = Run("--model=gpt2-tiny", $"--tokenizer_bin={big}");
            Must.Equal(c4, 1, "vocabulary exit"); Must.Contains(e4, "60,000 tokens, more than the 50,257", "message");
        }))));
}
