namespace Trainer.Training;

/// <summary>
/// The order in which llm.c's CPU trainer (train_gpt2.c: <c>dataloader_init(..., should_shuffle=1)</c>, one token
/// file, one process) reads its samples, so this trainer can read the same batches (--data_order=llmc). The file is cut
/// into n = (tokens - 1) / (B·T) samples of B·T+1 tokens, sample i starting at token i·B·T; every epoch visits them in
/// a new random permutation drawn from one Mersenne Twister seeded with 42 (llmc/rand.h, numerically torch's mt19937):
/// starting from the identity, for i = n-1 down to 1, swap i with <c>randint32() % (i + 1)</c>.
/// </summary>
public sealed class LlmcSampleOrder
{
    public const uint Seed = 42;
    readonly int _samples;
    readonly MersenneTwister _rng = new(Seed);
    readonly List<int[]> _epochs = new();

    public LlmcSampleOrder(long samples)
    {
        if (samples is < 1 or > int.MaxValue) throw new ArgumentOutOfRangeException(nameof(samples), samples, "llm.c's loader permutes between 1 and 2^31-1 samples");
        _samples = (int)samples;
    }

    /// <summary>The sample read at position <paramref name="position"/> (0-based, counting across epochs).</summary>
    public long SampleAt(long position)
    {
        long epoch = position / _samples;
        lock (_epochs)
        {
            while (_epochs.Count <= epoch) _epochs.Add(NextPermutation());
            return _epochs[(int)epoch][position % _samples];
        }
    }

    int[] NextPermutation()
    {
        var p = new int[_samples];
        for (int i = 0; i < p.Length; i++) p[i] = i;
        for (int i = p.Length - 1; i > 0; i--)
        {
            int j = (int)(_rng.Next() % (uint)(i + 1));
            (p[i], p[j]) = (p[j], p[i]);
        }
        return p;
    }

    /// <summary>MT19937 as torch and llm.c seed and temper it (32-bit outputs).</summary>
    public sealed class MersenneTwister
    {
        const int N = 624, M = 397;
        const uint MatrixA = 0x9908b0df, Upper = 0x80000000, Lower = 0x7fffffff;
        readonly uint[] _s = new uint[N];
        int _left = 1, _next;

        public MersenneTwister(uint seed)
        {
            _s[0] = seed;
            for (uint j = 1; j < N; j++) _s[j] = 1812433253u * (_s[j - 1] ^ (_s[j - 1] >> 30)) + j;
        }

        public uint Next()
        {
            if (--_left <= 0) Regenerate();
            uint y = _s[_next++];
            y ^= y >> 11;
            y ^= (y << 7) & 0x9d2c5680;
            y ^= (y << 15) & 0xefc60000;
            return y ^ (y >> 18);
        }

        void Regenerate()
        {
            _left = N; _next = 0;
            for (int j = 0; j < N; j++)
            {
                uint y = (_s[j] & Upper) | (_s[(j + 1) % N] & Lower);
                _s[j] = _s[(j + M) % N] ^ (y >> 1) ^ ((y & 1) != 0 ? MatrixA : 0);
            }
        }
    }
}
