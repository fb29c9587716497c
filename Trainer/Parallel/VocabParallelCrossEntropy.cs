using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.autograd;

namespace Trainer.Parallel;

/// <summary>
/// Mean cross entropy over B·T positions when each TP rank holds only its vocabulary columns of the logits
/// (B,T,Vl), columns [VocabStart, VocabStart+Vl) of the (padded) vocabulary. Computed in float32 (logits are upcast;
/// float64 logits stay float64): columns ≥ the real vocabulary are masked to -inf; the row max is all-reduced (MAX),
/// then the sum of exp(x - max) and the target's logit (SUM); loss = log(sumexp) - target logit. Targets equal to -1
/// are ignored and the mean is over the others (as the single-device <c>CausalLm.Loss</c>). Every TP rank returns the
/// same loss; backward gives each rank (softmax − onehot)/N for its own columns, in the logits' dtype.
/// </summary>
public static class VocabParallelCrossEntropy
{
    public const long IgnoreIndex = -1;

    /// <param name="logits">(…, Vl) this rank's vocabulary columns.</param>
    /// <param name="targets">(…) global token ids, or -1.</param>
    /// <param name="tp">The TP group over which the vocabulary is split (rank r holds columns r·Vl …).</param>
    /// <param name="realVocab">Columns with a global id ≥ this are padding and never win.</param>
    public static Tensor Loss(Tensor logits, Tensor targets, ICommunicator tp, long realVocab) =>
        Function.apply(logits, targets.to(ScalarType.Int64), tp, realVocab);

    sealed class Function : SingleTensorFunction<Function>
    {
        public override string Name => "VocabParallelCrossEntropy";

        public override Tensor forward(AutogradContext ctx, params object[] vars)
        {
            var logits = (Tensor)vars[0]; var targets = (Tensor)vars[1];
            var tp = (ICommunicator)vars[2]; long realVocab = (long)vars[3];
            using var scope = NewDisposeScope();
            long vl = logits.shape[^1], start = tp.Rank * vl;
            var computeType = logits.dtype == ScalarType.Float64 ? ScalarType.Float64 : ScalarType.Float32;
            var x = logits.reshape(-1, vl).to(computeType);
            var t = targets.reshape(-1);
            if (start + vl > realVocab)
            {
                var padded = arange(start, start + vl, dtype: ScalarType.Int64, device: x.device).ge(realVocab);
                x = x.masked_fill(padded, double.NegativeInfinity);
            }
            var rowMax = x.amax(new long[] { -1 }).contiguous();
            tp.AllReduce(rowMax, ReduceOp.Max);
            var shifted = x - rowMax.unsqueeze(-1);
            var exp = shifted.exp();
            var sumExp = exp.sum(-1).contiguous();
            tp.AllReduce(sumExp, ReduceOp.Sum);

            var mine = t.ge(start).logical_and(t.lt(start + vl));     // ignored targets (-1) are never local
            var localT = (t - start).masked_fill(mine.logical_not(), 0);
            var targetLogit = shifted.gather(1, localT.unsqueeze(1)).squeeze(1).masked_fill(mine.logical_not(), 0.0).contiguous();
            tp.AllReduce(targetLogit, ReduceOp.Sum);

            var valid = t.ne(IgnoreIndex);
            var count = valid.sum().to(computeType);
            var perRow = (sumExp.log() - targetLogit).masked_fill(valid.logical_not(), 0.0);
            var loss = perRow.sum() / count;

            var softmax = exp / sumExp.unsqueeze(-1);
            // Saved tensors are committed after forward returns: keep them out of this method's dispose scope.
            var keep = new List<Tensor> { softmax, localT, mine, valid, count };
            foreach (var k in keep) k.MoveToOuterDisposeScope();
            ctx.save_for_backward(keep);
            ctx.save_data("shape", logits.shape);
            ctx.save_data("dtype", logits.dtype);
            return loss.to(computeType).MoveToOuterDisposeScope();
        }

        public override List<Tensor> backward(AutogradContext ctx, Tensor grad)
        {
            var saved = ctx.get_saved_variables();
            Tensor softmax = saved[0], localT = saved[1], mine = saved[2], valid = saved[3], count = saved[4];
            // d loss / d x = (softmax − onehot(target)) · [target ≠ -1] / N, times the incoming scalar gradient.
            var onehot = zeros_like(softmax).scatter_(1, localT.unsqueeze(1), mine.unsqueeze(1).to(softmax.dtype));
            var g = (softmax - onehot) * valid.unsqueeze(1).to(softmax.dtype) * (grad.to(softmax.dtype) / count);
            var shape = (long[])ctx.get_data("shape");
            var dtype = (ScalarType)ctx.get_data("dtype");
            return new() { g.reshape(shape).to(dtype), null!, null!, null! };
        }
    }
}
