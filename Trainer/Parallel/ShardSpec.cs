using static TorchSharp.torch;

namespace Trainer.Parallel;

/// <summary>
/// How a tensor-parallel rank's parameter is cut from the full one: along <see cref="Dim"/>, the full tensor is a run
/// of <see cref="Blocks"/> (lengths), each split evenly over the TP ranks; rank r holds its piece of every block,
/// concatenated. One block = a plain even split (column-parallel rows, row-parallel columns, vocabulary rows); three
/// blocks = a fused projection, e.g. GPT-2's c_attn rows [q | k | v] → rank r holds [q_r | k_r | v_r].
/// When the blocks add up to more than the full length (<see cref="FullLength"/>), the full tensor is first padded
/// with zero rows at the end (a vocabulary padded to a multiple of TP); gathering drops them again.
/// </summary>
public sealed record ShardSpec(int Dim, long[] Blocks, long FullLength)
{
    /// <summary>An even split of a dim of length <paramref name="length"/>, padded up to a multiple of <paramref name="tpSize"/>.</summary>
    public static ShardSpec Even(int dim, long length, int tpSize) =>
        new(dim, new[] { (length + tpSize - 1) / tpSize * tpSize }, length);

    /// <summary>Blocks that are each split evenly (no padding: every block must divide by TP).</summary>
    public static ShardSpec Fused(int dim, params long[] blocks) => new(dim, blocks, blocks.Sum());

    /// <summary>Length of a rank's shard along <see cref="Dim"/>.</summary>
    public long LocalLength(int tpSize)
    {
        foreach (var b in Blocks)
            if (b % tpSize != 0) throw new ArgumentException($"a block of {b} does not split evenly over {tpSize} tensor-parallel ranks");
        return Blocks.Sum() / tpSize;
    }

    /// <summary>Rank <paramref name="rank"/>'s shard of <paramref name="full"/> (a new contiguous tensor, same dtype and device).</summary>
    public Tensor Slice(Tensor full, int rank, int tpSize)
    {
        using var scope = NewDisposeScope();
        if (full.shape[Dim] != FullLength)
            throw new ArgumentException($"expected length {FullLength} along dim {Dim}, got shape [{string.Join(",", full.shape)}]");
        LocalLength(tpSize);
        long padded = Blocks.Sum();
        var src = full;
        if (padded > FullLength)
        {
            var padShape = full.shape.ToArray(); padShape[Dim] = padded - FullLength;
            src = cat(new[] { full, zeros(padShape, dtype: full.dtype, device: full.device) }, Dim);
        }
        var pieces = new List<Tensor>();
        long offset = 0;
        foreach (var b in Blocks)
        {
            long part = b / tpSize;
            pieces.Add(src.narrow(Dim, offset + rank * part, part));
            offset += b;
        }
        var shard = (pieces.Count == 1 ? pieces[0] : cat(pieces, Dim)).contiguous().clone();
        return shard.MoveToOuterDisposeScope();
    }

    /// <summary>The full tensor from every rank's shard (index = TP rank); the inverse of <see cref="Slice"/>.</summary>
    public Tensor Unslice(IReadOnlyList<Tensor> shards)
    {
        using var scope = NewDisposeScope();
        int tpSize = shards.Count;
        var blocks = new List<Tensor>();
        long offset = 0;
        foreach (var b in Blocks)
        {
            long part = b / tpSize;
            blocks.Add(cat(shards.Select(s => s.narrow(Dim, offset, part)).ToArray(), Dim));
            offset += part;
        }
        var full = blocks.Count == 1 ? blocks[0] : cat(blocks, Dim);
        if (full.shape[Dim] > FullLength) full = full.narrow(Dim, 0, FullLength);
        return full.contiguous().MoveToOuterDisposeScope();
    }

    /// <summary>Collective over <paramref name="tp"/>: every rank's <paramref name="local"/> gathered and reassembled
    /// into the full tensor (on every rank).</summary>
    public Tensor Gather(Tensor local, ICommunicator tp)
    {
        using var scope = NewDisposeScope();
        var flat = local.contiguous();
        var shape = flat.shape.ToArray(); shape[0] *= tp.Size;
        var all = empty(shape, dtype: local.dtype, device: local.device);
        tp.AllGather(all, flat);
        var shards = all.chunk(tp.Size, 0);
        return Unslice(shards).MoveToOuterDisposeScope();
    }
}
