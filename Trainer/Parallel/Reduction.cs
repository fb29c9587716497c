using TorchSharp;
using static TorchSharp.torch;

namespace Trainer.Parallel;

/// <summary>
/// The reduction rule every backend follows, so that results do not depend on the backend's message order:
/// members' tensors are combined strictly in rank order, ((t0 op t1) op t2) op ... t(n-1), elementwise.
/// <list type="bullet">
/// <item>bfloat16 and float16 are widened (exactly) to float32, reduced in float32, and rounded once back to the
/// tensor's dtype (round to nearest even) at the end. float32, float64 and integer types are reduced in their own dtype.</item>
/// <item><see cref="ReduceOp.Avg"/> = the rank-ordered Sum, then one true division by n in the accumulation dtype
/// (a division by a tensor on the same device, never a multiplication by 1/n: PyTorch's CUDA kernel turns a division
/// by a CPU scalar into one, which differs in the last bit). Integer tensors refuse Avg.</item>
/// <item><see cref="ReduceOp.Max"/> = elementwise maximum in rank order (NaN propagates).</item>
/// </list>
/// Because the rule is elementwise, chunk r of a reduction equals the reduction of the members' chunks r bit for bit:
/// a ReduceScatter is exactly a slice of the AllReduce. A multi-process backend keeps the rule by gathering the
/// members' tensors (or chunks) and calling <see cref="Combine"/>.
/// </summary>
public static class Reduction
{
    /// <summary>The dtype in which members' tensors are combined (float32 for 16-bit floats, else the dtype itself).</summary>
    public static ScalarType AccumulationType(ScalarType t) =>
        t is ScalarType.BFloat16 or ScalarType.Float16 ? ScalarType.Float32 : t;

    static bool IsFloating(ScalarType t) =>
        t is ScalarType.Float32 or ScalarType.Float64 or ScalarType.BFloat16 or ScalarType.Float16;

    static bool IsInteger(ScalarType t) =>
        t is ScalarType.Int64 or ScalarType.Int32 or ScalarType.Int16 or ScalarType.Int8 or ScalarType.Byte;

    /// <summary>Null when <paramref name="op"/> can reduce tensors of <paramref name="t"/>, else why not.</summary>
    public static string? Unsupported(ScalarType t, ReduceOp op)
    {
        if (!IsFloating(t) && !IsInteger(t)) return $"dtype {t} cannot be reduced (float32, float64, bfloat16, float16 or integer)";
        if (op == ReduceOp.Avg && !IsFloating(t)) return $"ReduceOp.Avg needs a floating-point tensor, got {t}";
        return null;
    }

    /// <summary>
    /// <paramref name="parts"/>[0] op ... op parts[n-1] in that order, as a new tensor of <paramref name="resultType"/>
    /// on <paramref name="device"/>, with the shape of parts[0]. Parts may live on any device; none is modified.
    /// Call under torch.no_grad().
    /// </summary>
    public static Tensor Combine(IReadOnlyList<Tensor> parts, ReduceOp op, ScalarType resultType, Device device)
    {
        if (parts.Count == 0) throw new ArgumentException("nothing to reduce", nameof(parts));
        var accType = AccumulationType(resultType);
        var acc = torch.empty(parts[0].shape, accType, device);
        acc.copy_(parts[0]);
        for (int k = 1; k < parts.Count; k++)
        {
            using var x = parts[k].to(accType, device);   // exact: same dtype, or widening bf16/f16 -> f32
            if (op == ReduceOp.Max)
            {
                var m = torch.maximum(acc, x);
                acc.Dispose();
                acc = m;
            }
            else acc.add_(x);
        }
        if (op == ReduceOp.Avg)
        {
            using var n = torch.tensor((double)parts.Count, accType, device);
            acc.div_(n);
        }
        if (accType == resultType) return acc;
        var narrowed = acc.to(resultType);
        acc.Dispose();
        return narrowed;
    }
}
