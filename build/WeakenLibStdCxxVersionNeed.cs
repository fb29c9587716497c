// MSBuild task, compiled by RoslynCodeTaskFactory from Directory.Build.targets (netstandard API surface only).
//
// TorchSharp 0.107's libLibTorchSharp.so lists GLIBCXX_3.4.32 among the versions it needs from libstdc++.so.6.
// Older system libstdc++ (Debian 12: GCC 12, up to GLIBCXX_3.4.30) does not define it, so ld.so refuses the
// library. No symbol the library binds is bound at that version (it only names std::ios_base_library_init), so
// marking that one version need weak (VER_FLG_WEAK in its Vernaux) lets ld.so load it. This task does exactly
// that to the copies in a build or publish output, and only when the system libstdc++ lacks the version; it
// never writes into the NuGet cache, and replaces the file atomically so a hard link to the cache is never
// written through.
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Text;
using Microsoft.Build.Framework;
using Microsoft.Build.Utilities;

public sealed class WeakenLibStdCxxVersionNeed : Task
{
    /// <summary>Copies of the native library in a build or publish output.</summary>
    [Required] public ITaskItem[] Files { get; set; }

    /// <summary>The libstdc++ version the copies may need weakly.</summary>
    public string VersionName { get; set; } = "GLIBCXX_3.4.32";

    /// <summary>The system libstdc++ to check; found with ldconfig or in the standard paths when empty.</summary>
    public string LibStdCxxPath { get; set; }

    const string LibStdCxxSoname = "libstdc++.so.6";

    public override bool Execute()
    {
        var files = Files.Select(f => Path.GetFullPath(f.ItemSpec)).Distinct(StringComparer.Ordinal).Where(File.Exists).ToList();
        if (files.Count == 0) return true;

        string libStdCxx = string.IsNullOrEmpty(LibStdCxxPath) ? FindSystemLibStdCxx() : LibStdCxxPath;
        if (libStdCxx == null || !File.Exists(libStdCxx))
        {
            Log.LogWarning("TorchSharp native patch: cannot find the system {0} (ldconfig -p, standard paths); leaving {1} as it is.",
                LibStdCxxSoname, string.Join(", ", files));
            return true;
        }

        HashSet<string> systemVersions;
        try { systemVersions = new HashSet<string>(ElfImage.Load(libStdCxx).DefinedVersions(), StringComparer.Ordinal); }
        catch (ElfLayoutException e)
        {
            Log.LogError("TorchSharp native patch: cannot read the version definitions of {0}: {1}", libStdCxx, e.Message);
            return false;
        }
        bool weakNeeded = !systemVersions.Contains(VersionName);

        foreach (string file in files)
        {
            try
            {
                var image = ElfImage.Load(file);
                var needs = image.VersionNeeds().Where(n => n.File == LibStdCxxSoname).ToList();
                if (needs.Count == 0)
                    throw new ElfLayoutException("it needs no versions from " + LibStdCxxSoname);
                var target = needs.Where(n => n.Version == VersionName).ToList();
                if (target.Count > 1)
                    throw new ElfLayoutException(string.Format("it needs {0} from {1} {2} times", VersionName, LibStdCxxSoname, target.Count));

                var stillMissing = needs.Where(n => n.Version != VersionName && !n.IsWeak && !systemVersions.Contains(n.Version)).Select(n => n.Version).ToList();
                if (stillMissing.Count > 0)
                    Log.LogWarning("TorchSharp native patch: {0} also needs {1} from {2}, which {3} does not define; it will not load here.",
                        file, string.Join(", ", stillMissing), LibStdCxxSoname, libStdCxx);

                if (target.Count == 0)
                {
                    Log.LogMessage(MessageImportance.Normal, "TorchSharp native patch: {0} does not need {1}; nothing to patch.", file, VersionName);
                    continue;
                }
                var need = target[0];
                if (need.IsWeak == weakNeeded)
                {
                    Log.LogMessage(MessageImportance.Low, "TorchSharp native patch: {0} is up to date ({1} {2}).", file, VersionName, need.IsWeak ? "weak" : "required");
                    continue;
                }
                ushort flags = weakNeeded ? (ushort)(need.Flags | ElfImage.VerFlagWeak) : (ushort)(need.Flags & ~ElfImage.VerFlagWeak);
                ReplaceWithFlags(file, image, need, flags);
                if (weakNeeded)
                    Log.LogMessage(MessageImportance.High,
                        "TorchSharp native patch: {0}: marked its need for {1} weak ({2} lacks it; the NuGet copy is untouched).", file, VersionName, libStdCxx);
                else
                    Log.LogMessage(MessageImportance.High,
                        "TorchSharp native patch: {0}: restored its need for {1} as required ({2} defines it).", file, VersionName, libStdCxx);
            }
            catch (ElfLayoutException e)
            {
                Log.LogError("TorchSharp native patch: {0} has an unexpected layout: {1}", file, e.Message);
            }
            catch (IOException e)
            {
                Log.LogError("TorchSharp native patch: cannot rewrite {0}: {1}", file, e.Message);
            }
            catch (UnauthorizedAccessException e)
            {
                Log.LogError("TorchSharp native patch: cannot rewrite {0}: {1}", file, e.Message);
            }
        }
        return !Log.HasLoggedErrors;
    }

    /// <summary>
    /// Writes a copy with the new vna_flags next to the file, checks it, and renames it over the file: the old inode
    /// (possibly shared with the NuGet cache through a hard link) is never written. The copy keeps the file's mode and
    /// modification time, so MSBuild's unchanged-file checks keep seeing it as the package's file and do not copy again.
    /// </summary>
    static void ReplaceWithFlags(string file, ElfImage image, ElfImage.VersionNeed need, ushort flags)
    {
        string temp = Path.Combine(Path.GetDirectoryName(file), "." + Path.GetFileName(file) + "." + Guid.NewGuid().ToString("N") + ".tmp");
        try
        {
            DateTime modified = File.GetLastWriteTimeUtc(file);
            File.Copy(file, temp, true);
            using (var stream = new FileStream(temp, FileMode.Open, FileAccess.ReadWrite, FileShare.None))
            {
                if (stream.Length != image.Length) throw new IOException("the file changed while it was patched");
                stream.Position = need.FlagsOffset;
                stream.WriteByte((byte)flags);
                stream.WriteByte((byte)(flags >> 8));
            }
            var written = ElfImage.Load(temp).VersionNeeds().Single(n => n.File == need.File && n.Version == need.Version);
            if (written.Flags != flags) throw new ElfLayoutException("the rewritten copy does not read back with the new flags");
            File.SetLastWriteTimeUtc(temp, modified);
            File.Replace(temp, file, null);
        }
        finally
        {
            if (File.Exists(temp)) File.Delete(temp);
        }
    }

    static string FindSystemLibStdCxx()
    {
        foreach (string ldconfig in new[] { "/sbin/ldconfig", "/usr/sbin/ldconfig", "ldconfig" })
        {
            try
            {
                var start = new ProcessStartInfo(ldconfig, "-p") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
                using (var process = Process.Start(start))
                {
                    string output = process.StandardOutput.ReadToEnd();
                    process.WaitForExit();
                    // "	libstdc++.so.6 (libc6,x86-64) => /lib/x86_64-linux-gnu/libstdc++.so.6"
                    foreach (string line in output.Split('\n'))
                    {
                        string trimmed = line.Trim();
                        int arrow = trimmed.IndexOf(" => ", StringComparison.Ordinal);
                        if (arrow < 0 || !trimmed.StartsWith(LibStdCxxSoname + " ", StringComparison.Ordinal) || !trimmed.Contains("x86-64")) continue;
                        string path = trimmed.Substring(arrow + 4).Trim();
                        if (File.Exists(path)) return path;
                    }
                }
                break;
            }
            catch (System.ComponentModel.Win32Exception) { /* not at this path: try the next */ }
        }
        foreach (string dir in new[] { "/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/lib64", "/usr/lib", "/lib" })
        {
            string path = Path.Combine(dir, LibStdCxxSoname);
            if (File.Exists(path)) return path;
        }
        return null;
    }
}

public sealed class ElfLayoutException : Exception
{
    public ElfLayoutException(string message) : base(message) { }
}

/// <summary>Just enough of a 64-bit little-endian ELF reader for the GNU symbol-versioning sections.</summary>
public sealed class ElfImage
{
    public const ushort VerFlagWeak = 0x2;
    const uint ShtStrtab = 3, ShtGnuVerdef = 0x6ffffffd, ShtGnuVerneed = 0x6ffffffe;
    const int SectionHeaderSize = 64, VerneedSize = 16, VernauxSize = 16, VerdefSize = 20, VerdauxSize = 8;

    public sealed class VersionNeed
    {
        public string File;        // vn_file: the library the version is needed from
        public string Version;     // vna_name
        public ushort Flags;       // vna_flags
        public long FlagsOffset;   // file offset of vna_flags
        public bool IsWeak { get { return (Flags & VerFlagWeak) != 0; } }
    }

    struct Section { public uint Type; public ulong Offset, Size; public uint Link, Info; }

    readonly byte[] _bytes;
    readonly Section[] _sections;
    public long Length { get { return _bytes.LongLength; } }

    ElfImage(byte[] bytes)
    {
        _bytes = bytes;
        if (bytes.Length < 64 || bytes[0] != 0x7f || bytes[1] != (byte)'E' || bytes[2] != (byte)'L' || bytes[3] != (byte)'F')
            throw new ElfLayoutException("not an ELF file");
        if (bytes[4] != 2) throw new ElfLayoutException("not a 64-bit ELF file (EI_CLASS " + bytes[4] + ")");
        if (bytes[5] != 1) throw new ElfLayoutException("not a little-endian ELF file (EI_DATA " + bytes[5] + ")");
        ulong shoff = U64(0x28);
        int shentsize = U16(0x3A);
        uint shnum = U16(0x3C);
        if (shoff == 0) throw new ElfLayoutException("no section header table");
        if (shentsize != SectionHeaderSize) throw new ElfLayoutException("section header entries of " + shentsize + " bytes");
        if (shnum == 0) shnum = (uint)ReadSection(shoff).Size; // extended numbering: the count is in section 0
        Check(shoff, (ulong)shnum * SectionHeaderSize, "the section header table");
        _sections = new Section[shnum];
        for (uint i = 0; i < shnum; i++) _sections[i] = ReadSection(shoff + (ulong)i * SectionHeaderSize);
    }

    public static ElfImage Load(string path) { return new ElfImage(System.IO.File.ReadAllBytes(path)); }

    Section ReadSection(ulong at)
    {
        Check(at, SectionHeaderSize, "a section header");
        return new Section { Type = U32(at + 4), Offset = U64(at + 24), Size = U64(at + 32), Link = U32(at + 40), Info = U32(at + 44) };
    }

    Section Single(uint type, string name)
    {
        var found = _sections.Where(s => s.Type == type).ToList();
        if (found.Count != 1) throw new ElfLayoutException("expected one " + name + " section, found " + found.Count);
        Check(found[0].Offset, found[0].Size, name);
        return found[0];
    }

    Section StringTableOf(Section section, string name)
    {
        if (section.Link == 0 || section.Link >= _sections.Length || _sections[section.Link].Type != ShtStrtab)
            throw new ElfLayoutException(name + " does not link to a string table (sh_link " + section.Link + ")");
        var strtab = _sections[section.Link];
        Check(strtab.Offset, strtab.Size, "the string table of " + name);
        return strtab;
    }

    /// <summary>Every (file, version) pair of .gnu.version_r, walking the Verneed and Vernaux chains.</summary>
    public List<VersionNeed> VersionNeeds()
    {
        var section = Single(ShtGnuVerneed, ".gnu.version_r");
        var strtab = StringTableOf(section, ".gnu.version_r");
        var result = new List<VersionNeed>();
        ulong entry = 0;
        for (uint n = 0; n < section.Info; n++)
        {
            ulong at = InSection(section, entry, VerneedSize, "Verneed");
            if (U16(at) != 1) throw new ElfLayoutException("Verneed version " + U16(at) + " at 0x" + at.ToString("x"));
            int count = U16(at + 2);
            string file = Str(strtab, U32(at + 4));
            ulong aux = entry + U32(at + 8);
            for (int a = 0; a < count; a++)
            {
                ulong auxAt = InSection(section, aux, VernauxSize, "Vernaux");
                string version = Str(strtab, U32(auxAt + 8));
                if (U32(auxAt) != ElfHash(version))
                    throw new ElfLayoutException("the hash of Vernaux " + version + " does not match its name");
                result.Add(new VersionNeed { File = file, Version = version, Flags = U16(auxAt + 4), FlagsOffset = (long)auxAt + 4 });
                uint next = U32(auxAt + 12);
                if (next == 0 && a != count - 1) throw new ElfLayoutException("the Vernaux chain of " + file + " ends early");
                aux += next;
            }
            uint nextNeed = U32(at + 12);
            if (nextNeed == 0 && n != section.Info - 1) throw new ElfLayoutException("the Verneed chain ends early");
            entry += nextNeed;
        }
        return result;
    }

    /// <summary>The version names .gnu.version_d defines (each Verdef's first Verdaux).</summary>
    public List<string> DefinedVersions()
    {
        var section = Single(ShtGnuVerdef, ".gnu.version_d");
        var strtab = StringTableOf(section, ".gnu.version_d");
        var result = new List<string>();
        ulong entry = 0;
        for (uint n = 0; n < section.Info; n++)
        {
            ulong at = InSection(section, entry, VerdefSize, "Verdef");
            if (U16(at) != 1) throw new ElfLayoutException("Verdef version " + U16(at) + " at 0x" + at.ToString("x"));
            ulong auxAt = InSection(section, entry + U32(at + 12), VerdauxSize, "Verdaux");
            result.Add(Str(strtab, U32(auxAt)));
            uint next = U32(at + 16);
            if (next == 0 && n != section.Info - 1) throw new ElfLayoutException("the Verdef chain ends early");
            entry += next;
        }
        return result;
    }

    ulong InSection(Section section, ulong offset, ulong size, string what)
    {
        if (offset > section.Size || section.Size - offset < size)
            throw new ElfLayoutException(what + " at +0x" + offset.ToString("x") + " runs past its section");
        return section.Offset + offset;
    }

    string Str(Section strtab, uint offset)
    {
        if (offset >= strtab.Size) throw new ElfLayoutException("string offset " + offset + " is outside the string table");
        ulong start = strtab.Offset + offset, end = start;
        ulong limit = strtab.Offset + strtab.Size;
        while (end < limit && _bytes[end] != 0) end++;
        if (end == limit) throw new ElfLayoutException("unterminated string at " + offset);
        return Encoding.ASCII.GetString(_bytes, (int)start, (int)(end - start));
    }

    static uint ElfHash(string name)
    {
        uint h = 0;
        foreach (char c in name)
        {
            h = (h << 4) + (byte)c;
            uint g = h & 0xf0000000;
            if (g != 0) h ^= g >> 24;
            h &= ~g;
        }
        return h;
    }

    void Check(ulong offset, ulong size, string what)
    {
        if (offset > (ulong)_bytes.LongLength || (ulong)_bytes.LongLength - offset < size)
            throw new ElfLayoutException(what + " lies outside the file");
    }

    ushort U16(ulong at) { Check(at, 2, "a field"); return (ushort)(_bytes[at] | _bytes[at + 1] << 8); }
    uint U32(ulong at) { Check(at, 4, "a field"); return (uint)(_bytes[at] | _bytes[at + 1] << 8 | _bytes[at + 2] << 16 | _bytes[at + 3] << 24); }
    ulong U64(ulong at) { return U32(at) | (ulong)U32(at + 4) << 32; }
}
