namespace Trainer.Parallel;

/// <summary>
/// Where every parameter lives in one flat buffer and which contiguous slice of it each data-parallel rank owns
/// (ZeRO-1/2). Order: param group 0's parameters in registration order, then group 1's, and so on (so each group's
/// elements are one contiguous range; InfiniTrain takes reverse order to overlap communication with backward, which
/// this synchronous path does not need). The total is padded with zeros to a multiple of the DP size; rank r owns
/// elements [r·S, (r+1)·S) with S = padded / DP. No per-parameter alignment padding.
/// </summary>
public sealed class FlatShardLayout
{
    /// <summary>Start of each parameter (flattened group-major, as given) in the flat buffer.</summary>
    public IReadOnlyList<long> Offsets { get; }
    /// <summary>Element count of each parameter.</summary>
    public IReadOnlyList<long> Sizes { get; }
    /// <summary>Group of each parameter.</summary>
    public IReadOnlyList<int> GroupOf { get; }
    /// <summary>[start, end) of each group in the flat buffer.</summary>
    public IReadOnlyList<(long Start, long End)> GroupRanges { get; }
    /// <summary>Sum of all parameter sizes.</summary>
    public long Total { get; }
    /// <summary>Total rounded up to a multiple of <see cref="Shards"/>.</summary>
    public long Padded { get; }
    /// <summary>Number of shards (the DP size).</summary>
    public int Shards { get; }
    /// <summary>Elements per shard.</summary>
    public long ShardSize => Padded / Shards;

    /// <param name="groupSizes">For each param group, the element counts of its parameters in order.</param>
    /// <param name="shards">The DP size.</param>
    public FlatShardLayout(IReadOnlyList<IReadOnlyList<long>> groupSizes, int shards)
    {
        if (shards < 1) throw new ArgumentOutOfRangeException(nameof(shards), shards, "the DP size must be at least 1");
        if (groupSizes.Count == 0) throw new ArgumentException("at least one param group is needed", nameof(groupSizes));
        var offsets = new List<long>(); var sizes = new List<long>(); var groupOf = new List<int>();
        var ranges = new List<(long, long)>();
        long at = 0;
        for (int g = 0; g < groupSizes.Count; g++)
        {
            long start = at;
            foreach (long n in groupSizes[g])
            {
                if (n < 0) throw new ArgumentException($"param group {g} has a parameter of negative size {n}", nameof(groupSizes));
                offsets.Add(at); sizes.Add(n); groupOf.Add(g);
                at += n;
            }
            ranges.Add((start, at));
        }
        if (at == 0) throw new ArgumentException("the parameters hold no elements", nameof(groupSizes));
        Offsets = offsets; Sizes = sizes; GroupOf = groupOf; GroupRanges = ranges;
        Total = at; Shards = shards;
        Padded = (at + shards - 1) / shards * shards;
    }

    /// <summary>[start, end) of rank <paramref name="rank"/>'s shard in the flat buffer.</summary>
    public (long Start, long End) Shard(int rank)
    {
        if ((uint)rank >= (uint)Shards) throw new ArgumentOutOfRangeException(nameof(rank), rank, $"there are {Shards} shards");
        return (rank * ShardSize, (rank + 1) * ShardSize);
    }

    /// <summary>The part of group <paramref name="group"/> that rank <paramref name="rank"/> owns, relative to the
    /// start of its shard: (offset in shard, length); length 0 when the shard holds none of the group.</summary>
    public (long Offset, long Length) GroupInShard(int group, int rank)
    {
        var (s, e) = Shard(rank);
        var (gs, ge) = GroupRanges[group];
        long a = Math.Max(s, gs), b = Math.Min(e, ge);
        return b > a ? (a - s, b - a) : (0, 0);
    }

    /// <summary>The pieces of parameter <paramref name="param"/> that rank <paramref name="rank"/> owns: (offset in
    /// the flattened parameter, offset in the shard, length); empty when it owns none.</summary>
    public (long InParam, long InShard, long Length)? ParamInShard(int param, int rank)
    {
        var (s, e) = Shard(rank);
        long ps = Offsets[param], pe = ps + Sizes[param];
        long a = Math.Max(s, ps), b = Math.Min(e, pe);
        return b > a ? (a - ps, a - s, b - a) : null;
    }
}
