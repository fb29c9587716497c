namespace Trainer.Training;

/// <summary>
/// InfiniTrain's text generation, which is llm.c's sampling: start from a prompt, and for each next token take the
/// model's softmax at the last position and draw from it with llm.c's xorshift* generator, seeded 1337 at every
/// generation (so two generations differ only where the model did). The context is the last T tokens, padded with
/// end-of-text after them (the model is causal: the padding does not change the position read); up to T tokens this
/// is exactly InfiniTrain's (1, T) input.
/// </summary>
public static class TextSampler
{
    public const ulong Seed = 1337;

    /// <summary>llm.c's <c>random_u32</c>: xorshift* of the 64-bit state.</summary>
    public static uint RandomU32(ref ulong state)
    {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        return (uint)((state * 0x2545F4914F6CDD1DUL) >> 32);
    }

    /// <summary>llm.c's <c>random_f32</c>: a float in [0, 1) from the top 24 bits.</summary>
    public static float RandomF32(ref ulong state) => (RandomU32(ref state) >> 8) / 16777216.0f;

    /// <summary>llm.c's <c>sample_mult</c>: the first index whose cumulative probability (summed in float) exceeds
    /// <paramref name="coin"/>; the last index when rounding keeps the sum below it.</summary>
    public static int SampleMult(ReadOnlySpan<float> probabilities, float coin)
    {
        float cdf = 0f;
        for (int i = 0; i < probabilities.Length; i++)
        {
            cdf += probabilities[i];
            if (coin < cdf) return i;
        }
        return probabilities.Length - 1;
    }

    /// <summary>
    /// <paramref name="prompt"/> followed by sampled tokens, <paramref name="length"/> in all (just the prompt when it is
    /// that long already). <paramref name="next"/>(window, i, coin) draws the token after position i of a window of
    /// <paramref name="context"/> ids with llm.c's <paramref name="coin"/> (<see cref="SampleMult"/> over the model's
    /// probabilities there); every caller draws the same coins.
    /// </summary>
    public static int[] Generate(IReadOnlyList<int> prompt, int length, int context, int padding, Func<long[], int, float, int> next)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(context, 1);
        var ids = new List<int>(prompt);
        ulong rng = Seed;
        while (ids.Count < length)
        {
            int n = Math.Min(ids.Count, context);
            var window = new long[context];
            Array.Fill(window, padding);
            for (int i = 0; i < n; i++) window[i] = ids[ids.Count - n + i];
            ids.Add(next(window, n - 1, RandomF32(ref rng)));
        }
        return ids.ToArray();
    }
}
