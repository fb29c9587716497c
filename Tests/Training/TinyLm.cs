using TorchSharp;
using TorchSharp.Modules;
using Trainer.Training;
using static TorchSharp.torch;

namespace Tests.Training;

/// <summary>
/// A very small causal LM for loop tests (independent of Trainer.Models): token embedding plus a one-token
/// look-back mix, then a linear head. Parameters come from a private generator seeded with <c>seed</c>.
/// </summary>
public sealed class TinyLm : nn.Module<Tensor, Tensor>
{
    readonly Embedding wte;
    readonly Linear mix;
    readonly Linear head;

    public TinyLm(int vocab, int width, long seed, Device device) : base("TinyLm")
    {
        wte = nn.Embedding(vocab, width);
        mix = nn.Linear(2 * width, width);
        head = nn.Linear(width, vocab);
        RegisterComponents();
        using var g = new torch.Generator((ulong)seed);
        using (torch.no_grad())
            foreach (var p in parameters())
                p.copy_(torch.randn(p.shape, generator: g) * 0.2f);
        this.to(device);
    }

    public override Tensor forward(Tensor idx)
    {
        using var scope = torch.NewDisposeScope();
        var e = wte.forward(idx);                                        // B,T,C
        var prev = torch.nn.functional.pad(e, new long[] { 0, 0, 1, 0 })[.., ..^1, ..]; // shift right along T
        var h = torch.tanh(mix.forward(torch.cat(new[] { e, prev }, -1)));
        return head.forward(h).MoveToOuterDisposeScope();
    }

    public static LossFunction Loss => (logits, targets) =>
        torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[^1]), targets.reshape(-1));

    public static ReplicaFactory Factory(int vocab = 32, int width = 16, long seed = 7) =>
        dev => new TinyLm(vocab, width, seed, dev);

    /// <summary>A learnable token stream: a noisy repeating pattern over the vocabulary.</summary>
    public static int[] Tokens(int count, int vocab = 32, int seed = 3)
    {
        var rng = new Random(seed);
        var t = new int[count];
        for (int i = 0; i < count; i++) t[i] = rng.NextDouble() < 0.1 ? rng.Next(vocab) : (i * 7 + i / 5) % vocab;
        return t;
    }
}
