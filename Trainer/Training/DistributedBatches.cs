using Trainer.Cli;

namespace Trainer.Training;

/// <summary>
/// InfiniTrain's data order over one token stream. The stream is cut into sequences of T tokens;
/// sample i is x = tokens[iT .. iT+T), y = tokens[iT+1 .. iT+T+1), so there are floor(N/T) - 1 samples.
/// Samples are grouped in global batches of B × W (W = data-parallel ranks); in global batch g, rank r
/// reads samples (gW + r)B .. (gW + r)B + B - 1 (DistributedDataLoader). The position is the index of the
/// next global batch; it wraps around at the end of the data (a new epoch, same order).
/// With <see cref="DataOrder.Llmc"/> (one rank), global batch g is llm.c's g-th sample instead (<see cref="LlmcSampleOrder"/>):
/// the same B·T+1 tokens at a shuffled start, n = (N - 1) / (B·T) of them per epoch.
/// </summary>
public sealed class DistributedBatches
{
    readonly int[] _tokens;
    public int BatchSize { get; }
    public int SequenceLength { get; }
    public int WorldSize { get; }
    public long NumSamples { get; }
    public long NumGlobalBatches { get; }
    readonly LlmcSampleOrder? _llmc;

    public DistributedBatches(int[] tokens, int batchSize, int sequenceLength, int worldSize, string sourceName = "training data", DataOrder order = DataOrder.InfiniTrain)
    {
        _tokens = tokens;
        BatchSize = batchSize; SequenceLength = sequenceLength; WorldSize = worldSize;
        NumSamples = tokens.Length / sequenceLength - 1;
        long global = (long)batchSize * worldSize;
        if (NumSamples < global)
            throw new RuntimeFailure($"{sourceName} has {tokens.Length} tokens: too few for one global batch of {batchSize} x {worldSize} sequences of {sequenceLength}+1 tokens (needs {(global + 1) * sequenceLength}); lower --batch_size, --sequence_length or --nthread_per_process");
        NumGlobalBatches = NumSamples / global;
        if (order == DataOrder.Llmc)
        {
            if (worldSize != 1) throw new ArgumentException("llm.c's data order is defined for one rank only", nameof(worldSize));
            NumGlobalBatches = (tokens.Length - 1L) / ((long)batchSize * sequenceLength);
            _llmc = new LlmcSampleOrder(NumGlobalBatches);
        }
    }

    /// <summary>The (x, y) token ids of rank <paramref name="rank"/> in global batch <paramref name="globalBatch"/>, each B×T row-major.</summary>
    public (long[] X, long[] Y) Batch(long globalBatch, int rank)
    {
        long g = _llmc?.SampleAt(globalBatch) ?? globalBatch % NumGlobalBatches;
        long firstSample = (g * WorldSize + rank) * BatchSize;
        int T = SequenceLength;
        var x = new long[BatchSize * T];
        var y = new long[BatchSize * T];
        for (int b = 0; b < BatchSize; b++)
        {
            long start = (firstSample + b) * T;
            for (int t = 0; t < T; t++)
            {
                x[b * T + t] = _tokens[start + t];
                y[b * T + t] = _tokens[start + t + 1];
            }
        }
        return (x, y);
    }
}
