using System.Globalization;
using System.Text;

namespace Trainer.Cli;

/// <summary>A command-line mistake: the message names the flag and the value. Exit code 2.</summary>
public sealed class UsageException(string message) : Exception(message);

/// <summary>A failure while running (missing file, bad checkpoint, ...). Exit code 1.</summary>
public sealed class RuntimeFailure(string message) : Exception(message);

public enum FlagKind { String, Int, Double, Bool }

/// <summary>One declared flag. Names are stored with underscores; dashes are accepted alike.</summary>
public sealed record FlagDef(string Name, FlagKind Kind, string Default, string Help, string Group, string[] Aliases);

/// <summary>
/// gflags-style parser: <c>--flag=value</c> and <c>--flag value</c>, one or two leading dashes,
/// dashes and underscores alike in names, booleans as <c>--flag</c>, <c>--noflag</c>, <c>--flag=false</c>.
/// <c>--</c> ends flag parsing; everything else that is not a flag is a positional argument.
/// Declare flags, call <see cref="Parse"/>, then read typed values from the returned <see cref="FlagValues"/>.
/// Every subcommand (train, prepare-data, lora-merge, lr replay|preview|plot-logs) declares its flags here and starts
/// with <see cref="ParseOrReport"/>: --help (-h, --helpfull) prints <see cref="HelpText"/> and exits 0, an unknown flag
/// or a bad value is one line naming the flag and exit code 2.
/// </summary>
public sealed class FlagSet
{
    readonly List<FlagDef> _defs = new();
    readonly Dictionary<string, FlagDef> _byName = new(StringComparer.Ordinal);

    /// <param name="program">The command as typed (usage line).</param>
    /// <param name="summary">What the command does (first lines of --help).</param>
    /// <param name="arguments">The positional arguments it takes, for the usage line (e.g. <c>FILE.jsonl...</c>); empty = none.</param>
    /// <param name="errorPrefix">What a usage error line starts with (<c>error</c>, or the command's name).</param>
    public FlagSet(string program, string summary, string arguments = "", string errorPrefix = "error")
    { Program = program; Summary = summary; Arguments = arguments; ErrorPrefix = errorPrefix; }
    public string Program { get; }
    public string Summary { get; }
    public string Arguments { get; }
    public string ErrorPrefix { get; }
    public IReadOnlyList<FlagDef> Definitions => _defs;

    public static string Normalize(string name) => name.Replace('-', '_');

    public FlagSet Define(string name, FlagKind kind, object? defaultValue, string help, string group = "", params string[] aliases)
    {
        string def = defaultValue switch
        {
            null => "",
            bool b => b ? "true" : "false",
            double d => d.ToString("R", CultureInfo.InvariantCulture),
            IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
            _ => defaultValue.ToString() ?? "",
        };
        var fd = new FlagDef(Normalize(name), kind, def, help, group, aliases.Select(Normalize).ToArray());
        foreach (var n in fd.Aliases.Prepend(fd.Name))
        {
            if (!_byName.TryAdd(n, fd)) throw new InvalidOperationException($"flag --{n} declared twice");
        }
        _defs.Add(fd);
        return this;
    }

    public FlagSet String(string name, string? def, string help, string group = "", params string[] aliases) => Define(name, FlagKind.String, def, help, group, aliases);
    public FlagSet Int(string name, long def, string help, string group = "", params string[] aliases) => Define(name, FlagKind.Int, def, help, group, aliases);
    public FlagSet Double(string name, double def, string help, string group = "", params string[] aliases) => Define(name, FlagKind.Double, def, help, group, aliases);
    public FlagSet Bool(string name, bool def, string help, string group = "", params string[] aliases) => Define(name, FlagKind.Bool, def, help, group, aliases);

    public FlagValues Parse(IReadOnlyList<string> args)
    {
        var set = new Dictionary<string, string>(StringComparer.Ordinal);
        var positional = new List<string>();
        bool help = false;
        for (int i = 0; i < args.Count; i++)
        {
            string a = args[i];
            if (a == "--") { positional.AddRange(args.Skip(i + 1)); break; }
            if (!a.StartsWith('-') || a == "-") { positional.Add(a); continue; }
            string body = a.TrimStart('-');
            string? value = null;
            int eq = body.IndexOf('=');
            if (eq >= 0) { value = body[(eq + 1)..]; body = body[..eq]; }
            string name = Normalize(body);
            if (name is "help" or "h" or "helpfull") { help = true; continue; }
            if (name.Length == 0) throw new UsageException($"malformed argument '{a}'");
            FlagDef? def;
            bool negated = false;
            if (!_byName.TryGetValue(name, out def))
            {
                if (name.StartsWith("no") && _byName.TryGetValue(name[2..], out var nd) && nd.Kind == FlagKind.Bool)
                {
                    if (value is not null) throw new UsageException($"--{body} takes no value (got '{value}')");
                    def = nd; negated = true;
                }
                else throw new UsageException($"unknown flag --{body}" + Suggest(name));
            }
            if (def.Kind == FlagKind.Bool)
            {
                if (negated) value = "false";
                else if (value is null) value = "true";
            }
            else if (value is null)
            {
                if (i + 1 >= args.Count) throw new UsageException($"flag --{def.Name} needs a value");
                value = args[++i];
            }
            Validate(def, value);
            set[def.Name] = value;
        }
        return new FlagValues(this, set, positional, help);
    }

    /// <summary>
    /// The preamble every subcommand shares: parse <paramref name="args"/>; on --help write <see cref="HelpText"/> to
    /// <paramref name="output"/> and return 0; on a usage error write <c>PREFIX: message</c> to <paramref name="error"/> and
    /// return 2; otherwise return null with the parsed <paramref name="values"/> (the command runs).
    /// </summary>
    public int? ParseOrReport(IReadOnlyList<string> args, TextWriter output, TextWriter error, out FlagValues values)
    {
        values = null!;
        try { values = Parse(args); }
        catch (UsageException e) { error.WriteLine($"{ErrorPrefix}: {e.Message}"); return 2; }
        if (values.HelpRequested) { output.Write(HelpText()); return 0; }
        return null;
    }

    /// <summary>Reports a usage error (exit code 2) the way <see cref="ParseOrReport"/> does.</summary>
    public int UsageError(TextWriter error, string message)
    {
        error.WriteLine($"{ErrorPrefix}: {message}");
        return 2;
    }

    string Suggest(string name)
    {
        var best = _defs.SelectMany(d => d.Aliases.Prepend(d.Name)).Select(n => (n, d: Distance(n, name))).OrderBy(t => t.d).FirstOrDefault();
        return best.n is not null && best.d <= Math.Max(2, name.Length / 4) ? $" (did you mean --{best.n}?)" : " (see --help)";
    }

    static int Distance(string a, string b)
    {
        var d = new int[a.Length + 1, b.Length + 1];
        for (int i = 0; i <= a.Length; i++) d[i, 0] = i;
        for (int j = 0; j <= b.Length; j++) d[0, j] = j;
        for (int i = 1; i <= a.Length; i++)
            for (int j = 1; j <= b.Length; j++)
                d[i, j] = Math.Min(Math.Min(d[i - 1, j] + 1, d[i, j - 1] + 1), d[i - 1, j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1));
        return d[a.Length, b.Length];
    }

    internal static void Validate(FlagDef def, string value)
    {
        switch (def.Kind)
        {
            case FlagKind.Int:
                if (!long.TryParse(value, NumberStyles.Integer, CultureInfo.InvariantCulture, out _))
                    throw new UsageException($"--{def.Name}: '{value}' is not an integer");
                break;
            case FlagKind.Double:
                if (!double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out var d) || !double.IsFinite(d))
                    throw new UsageException($"--{def.Name}: '{value}' is not a number");
                break;
            case FlagKind.Bool:
                if (ParseBool(value) is null) throw new UsageException($"--{def.Name}: '{value}' is not a boolean (true/false/1/0/yes/no)");
                break;
        }
    }

    internal static bool? ParseBool(string v) => v.ToLowerInvariant() switch
    {
        "true" or "1" or "yes" or "y" or "t" => true,
        "false" or "0" or "no" or "n" or "f" => false,
        _ => null,
    };

    /// <summary>Every flag with its default and meaning, grouped.</summary>
    public string HelpText()
    {
        var sb = new StringBuilder();
        sb.AppendLine(Summary).AppendLine();
        sb.AppendLine($"usage: {Program} [--flag=value | --flag value | --flag | --noflag] ...{(Arguments.Length > 0 ? " " + Arguments : "")}");
        sb.AppendLine("Flag names take dashes or underscores alike; --help prints this text.").AppendLine();
        foreach (var g in _defs.GroupBy(d => d.Group))
        {
            if (g.Key.Length > 0) sb.AppendLine(g.Key + ":");
            foreach (var d in g)
            {
                string kind = d.Kind switch { FlagKind.Int => "int", FlagKind.Double => "double", FlagKind.Bool => "bool", _ => "string" };
                string names = "--" + d.Name + string.Concat(d.Aliases.Select(x => ", --" + x));
                sb.AppendLine($"  {names} ({kind}, default: {(d.Default.Length == 0 ? "\"\"" : d.Default)})");
                foreach (var line in d.Help.Split('\n')) sb.AppendLine("      " + line);
            }
            sb.AppendLine();
        }
        return sb.ToString();
    }
}

/// <summary>Parsed values: typed getters fall back to the declared default.</summary>
public sealed class FlagValues
{
    readonly FlagSet _set;
    readonly Dictionary<string, string> _given;
    public FlagValues(FlagSet set, Dictionary<string, string> given, List<string> positional, bool help)
    { _set = set; _given = given; Positional = positional; HelpRequested = help; }

    public IReadOnlyList<string> Positional { get; }
    public bool HelpRequested { get; }
    public IReadOnlyDictionary<string, string> Given => _given;

    FlagDef Def(string name) =>
        _set.Definitions.FirstOrDefault(d => d.Name == FlagSet.Normalize(name)) ?? throw new InvalidOperationException($"flag --{name} not declared");

    public bool IsSet(string name) => _given.ContainsKey(Def(name).Name);
    public string Raw(string name) { var d = Def(name); return _given.TryGetValue(d.Name, out var v) ? v : d.Default; }
    public string GetString(string name) => Raw(name);
    public long GetInt(string name) => long.Parse(Raw(name), CultureInfo.InvariantCulture);
    public double GetDouble(string name) => double.Parse(Raw(name), CultureInfo.InvariantCulture);
    public bool GetBool(string name) => FlagSet.ParseBool(Raw(name)) ?? false;

    public int GetInt32(string name, long min = int.MinValue, long max = int.MaxValue)
    {
        long v = GetInt(name);
        if (v > int.MaxValue && max == int.MaxValue)
            throw new UsageException($"--{Def(name).Name}: '{Raw(name)}' is too large (at most {int.MaxValue}, a 32-bit integer)");
        if (v < int.MinValue && min == int.MinValue)
            throw new UsageException($"--{Def(name).Name}: '{Raw(name)}' is too small (at least {int.MinValue}, a 32-bit integer)");
        if (v < min || v > max)
            throw new UsageException($"--{Def(name).Name}: '{Raw(name)}' is out of range" + (max == int.MaxValue ? $" (must be >= {min})" : $" (must be in [{min}, {max}])"));
        return (int)v;
    }

    public double GetDouble(string name, double min, double max = double.PositiveInfinity, bool minExclusive = false)
    {
        double v = GetDouble(name);
        if (v < min || (minExclusive && v == min) || v > max)
            throw new UsageException($"--{Def(name).Name}: '{Raw(name)}' is out of range (must be {(minExclusive ? ">" : ">=")} {min.ToString(CultureInfo.InvariantCulture)}" + (double.IsPositiveInfinity(max) ? ")" : $" and <= {max.ToString(CultureInfo.InvariantCulture)})"));
        return v;
    }

    public string GetChoice(string name, params string[] choices)
    {
        string v = Raw(name);
        if (!choices.Contains(v)) throw new UsageException($"--{Def(name).Name}: '{v}' is not one of {string.Join("|", choices)}");
        return v;
    }

    /// <summary>Comma-separated integers, e.g. <c>--milestones=30,80</c>.</summary>
    public int[] GetIntList(string name)
    {
        string v = Raw(name);
        if (v.Trim().Length == 0) return Array.Empty<int>();
        return v.Split(',').Select(s =>
            int.TryParse(s.Trim(), NumberStyles.Integer, CultureInfo.InvariantCulture, out var x) ? x
            : throw new UsageException($"--{Def(name).Name}: '{v}' is not a comma-separated list of integers")).ToArray();
    }
}
