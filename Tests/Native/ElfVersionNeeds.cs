using System.Buffers.Binary;
using System.Text;

namespace Tests.Native;

/// <summary>
/// A second, independent reader of .gnu.version_r (the build's patcher has its own): the tests check the build's work
/// with code that does not share its mistakes.
/// </summary>
static class ElfVersionNeeds
{
    public const ushort VerFlagWeak = 0x2;

    /// <summary>vna_flags of the need for <paramref name="version"/> from <paramref name="library"/>; null when not needed.</summary>
    public static ushort? Flags(string path, string library, string version)
    {
        var elf = File.ReadAllBytes(path);
        if (elf[4] != 2 || elf[5] != 1) throw new InvalidDataException($"{path} is not ELF64 little-endian");
        ushort U16(long at) => BinaryPrimitives.ReadUInt16LittleEndian(elf.AsSpan((int)at));
        uint U32(long at) => BinaryPrimitives.ReadUInt32LittleEndian(elf.AsSpan((int)at));
        long U64(long at) => checked((long)BinaryPrimitives.ReadUInt64LittleEndian(elf.AsSpan((int)at)));
        string Str(long at) => Encoding.ASCII.GetString(elf, (int)at, Array.IndexOf(elf, (byte)0, (int)at) - (int)at);

        long shoff = U64(0x28);
        int shnum = U16(0x3C);
        long Header(int i) => shoff + 64L * i;
        for (int s = 0; s < shnum; s++)
        {
            if (U32(Header(s) + 4) != 0x6ffffffe) continue; // SHT_GNU_verneed
            long start = U64(Header(s) + 24);
            long strtab = U64(Header((int)U32(Header(s) + 40)) + 24);
            long need = start;
            for (uint n = U32(Header(s) + 44); n > 0; n--)
            {
                string file = Str(strtab + U32(need + 4));
                long aux = need + U32(need + 8);
                for (int a = U16(need + 2); a > 0; a--)
                {
                    if (file == library && Str(strtab + U32(aux + 8)) == version) return U16(aux + 4);
                    aux += U32(aux + 12);
                }
                need += U32(need + 12);
            }
        }
        return null;
    }

    /// <summary>Whether a library defines a version: its name appears as a whole string in the file.</summary>
    public static bool MentionsVersion(string path, string version)
    {
        var bytes = File.ReadAllBytes(path);
        var needle = Encoding.ASCII.GetBytes("\0" + version + "\0");
        return bytes.AsSpan().IndexOf(needle) >= 0;
    }
}
