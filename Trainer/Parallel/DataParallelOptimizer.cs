using System.Reflection;
using Schedules.Torch;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Trainer.Parallel;

/// <summary>
/// What the global gradient norm adds up beyond this rank's DP shard (for TP/PP layouts; both optional).
/// </summary>
/// <param name="ModelParallel">The model-parallel group (TP×PP) whose members hold different parts of the model: their
/// sums of squares are added (in rank order) after the DP sum. Null when the model is not split.</param>
/// <param name="CountsInNorm">False for a parameter whose gradient another member of the model-parallel group already
/// counts (a TP-duplicated parameter on tp rank &gt; 0, the second copy of a tied weight; Megatron's
/// <c>param_is_not_tensor_parallel_duplicate</c> / <c>param_is_not_shared</c>). Called once, at construction, with the
/// Parameter objects given to the optimizer. Null: every parameter counts.</param>
public sealed record GradNormScope(ICommunicator? ModelParallel = null, Func<Parameter, bool>? CountsInNorm = null);

/// <summary>
/// The optimizer of one data-parallel rank: reduces gradients over the DP group, clips them on the global norm, and
/// steps a TorchSharp optimizer — over the whole model (ZeRO-0) or over this rank's shard of the parameters (ZeRO-1/2,
/// InfiniTrain's/Megatron's DistributedOptimizer).
/// <list type="bullet">
/// <item>Stage 0: the gradients are copied into a flat buffer, all-reduced (Avg), copied back; the inner optimizer
/// steps every parameter on every rank.</item>
/// <item>Stage 1: a persistent flat gradient buffer is reduce-scattered (Avg) into this rank's shard (see
/// <see cref="FlatShardLayout"/> for the order and padding); the inner optimizer runs over one shard tensor per param
/// group (a view of the owned slice of the flat parameters; empty when the shard holds none of the group) whose
/// <c>.grad</c> is the matching view of the gradient shard; after its step the flat parameters are all-gathered and
/// copied into the model.</item>
/// <item>Stage 2: as stage 1, but the full flat gradient exists only during the reduce-scatter and the model's
/// <c>.grad</c> tensors are dropped after it: only the gradient shard persists.</item>
/// </list>
/// Every stage computes the same floats: reductions add in rank order (a deterministic communicator gives reduce-scatter
/// chunk r ≡ all-reduce chunk r), the norm is defined per DP shard (<see cref="ClipGradNorm"/>), and SGD/Adam/AdamW are
/// elementwise, so ZeRO-1/2 reproduce ZeRO-0 bit for bit. A parameter without a gradient counts as a zero gradient in
/// every stage (so Adam still decays and moves it, as a DDP bucket would).
/// Call order per step: backward (every micro-batch) → <see cref="ReduceGradients"/> → <see cref="ClipGradNorm"/> →
/// <see cref="Step"/> (the model holds the updated parameters when it returns) → scheduler step → <see cref="ZeroGrad"/>
/// before the next backward. Every DP member calls each method in the same order (they are collectives).
/// The model's parameters are the truth between steps: <see cref="Step"/> reads the owned slice from them, so loading
/// a model checkpoint needs nothing else.
/// </summary>
public sealed class DataParallelOptimizer : IDisposable
{
    readonly ICommunicator _dp;
    readonly Parameter[] _params;           // the model's parameters, group-major (layout order)
    readonly Tensor[] _flatParamViews;      // stage 1/2: each parameter's view into _flatParams
    readonly FlatShardLayout _layout;
    readonly OptimizerHelper _inner;
    readonly TorchSharpParamGroups _groups;
    readonly ICommunicator? _modelParallel;
    readonly Tensor? _flatGrad;             // stage 0/1: persistent, Padded elements
    readonly Tensor? _gradShard;            // stage 1/2: this rank's reduced gradient, ShardSize elements
    readonly Tensor? _paramShard;           // stage 1/2: this rank's parameters, ShardSize elements
    readonly Tensor? _flatParams;           // stage 1/2: all-gather target, Padded elements
    readonly Tensor? _normMask;             // this shard: 1 where the element counts in the norm, 0 elsewhere; null = all count
    readonly List<Tensor> _owned = new();   // views and shard parameters to dispose
    readonly ScalarType _dtype;
    readonly Device _device;

    public int ZeroStage { get; }
    public FlatShardLayout Layout => _layout;
    /// <summary>The TorchSharp optimizer this rank steps (over the model, or over its shard tensors).</summary>
    public OptimizerHelper Inner => _inner;
    /// <summary>The inner optimizer's param groups, one per group given at construction, in that order, on every
    /// rank and stage: drive them with one scheduler through <c>ReplicatedParamGroups</c>.</summary>
    public IParamGroups ParamGroups => _groups;

    /// <param name="dp">The data-parallel group (its size is the number of shards).</param>
    /// <param name="groups">The model's trainable parameters by param group (every rank the same shapes, same order).
    /// One dtype and one device.</param>
    /// <param name="factory">Builds the inner optimizer (SGD/Adam/AdamW with the CLI's options).</param>
    /// <param name="zeroStage">0, 1 or 2.</param>
    /// <param name="normScope">Model-parallel additions to the gradient norm; null for pure data parallelism.</param>
    public DataParallelOptimizer(ICommunicator dp, IReadOnlyList<IReadOnlyList<Parameter>> groups, ShardOptimizerFactory factory,
        int zeroStage, GradNormScope? normScope = null)
    {
        if (zeroStage is < 0 or > 2) throw new ArgumentOutOfRangeException(nameof(zeroStage), zeroStage, "ZeRO stage must be 0, 1 or 2");
        _dp = dp ?? throw new ArgumentNullException(nameof(dp));
        ZeroStage = zeroStage;
        _params = groups.SelectMany(g => g).ToArray();
        if (_params.Length == 0) throw new ArgumentException("no parameters to optimize", nameof(groups));
        _dtype = _params[0].dtype;
        _device = _params[0].device;
        foreach (var p in _params)
            if (p.dtype != _dtype || p.device.type != _device.type || p.device.index != _device.index)
                throw new ArgumentException($"all parameters must share one dtype and device; found {_dtype} on {_device} and {p.dtype} on {p.device}", nameof(groups));
        _layout = new FlatShardLayout(groups.Select(g => (IReadOnlyList<long>)g.Select(p => p.numel()).ToArray()).ToArray(), dp.Size);
        _modelParallel = normScope?.ModelParallel;

        using (torch.no_grad())
        {
            long padded = _layout.Padded, shard = _layout.ShardSize;
            if (zeroStage <= 1) _flatGrad = Keep(torch.zeros(padded, _dtype, _device));
            if (zeroStage == 0)
            {
                _flatParamViews = Array.Empty<Tensor>();
                _inner = factory(groups);
            }
            else
            {
                _gradShard = Keep(torch.zeros(shard, _dtype, _device));
                _flatParams = Keep(torch.zeros(padded, _dtype, _device));
                _paramShard = Keep(_flatParams.narrow(0, _dp.Rank * shard, shard).clone());
                _flatParamViews = _params.Select((p, i) => Keep(_flatParams.narrow(0, _layout.Offsets[i], _layout.Sizes[i]).view(p.shape))).ToArray();
                CopyOwnedSliceFromModel();
                var shardGroups = new List<IReadOnlyList<Parameter>>();
                for (int g = 0; g < groups.Count; g++)
                {
                    var (off, len) = _layout.GroupInShard(g, _dp.Rank);
                    var piece = (Parameter)Keep(new Parameter(_paramShard.narrow(0, off, len), requires_grad: true));
                    piece.grad = _gradShard.narrow(0, off, len);
                    shardGroups.Add(new[] { piece });
                }
                _inner = factory(shardGroups);
            }
            if (normScope?.CountsInNorm is { } counts && _params.Any(p => !counts(p)))
            {
                var (s, e) = _layout.Shard(_dp.Rank);
                var mask = torch.zeros(_layout.ShardSize, ScalarType.Float64, _device);
                for (int i = 0; i < _params.Length; i++)
                    if (counts(_params[i]) && _layout.ParamInShard(i, _dp.Rank) is { } piece)
                        mask.narrow(0, piece.InShard, piece.Length).fill_(1.0);
                _normMask = Keep(mask);
            }
        }
        _groups = new TorchSharpParamGroups(_inner);
        if (_groups.Count != groups.Count)
            throw new InvalidOperationException($"the optimizer factory built {_groups.Count} param group(s) for {groups.Count}");
    }

    Tensor Keep(Tensor t) { t.DetachFromDisposeScope(); _owned.Add(t); return t; }

    /// <summary>Zeroes the model's gradients (stage 2 has none between steps).</summary>
    public void ZeroGrad()
    {
        using var scope = torch.NewDisposeScope();
        foreach (var p in _params) p.grad?.zero_();
    }

    /// <summary>Collective over DP: the average of every rank's gradients — into every parameter's <c>.grad</c>
    /// (stage 0) or into this rank's gradient shard (stage 1/2; the model's <c>.grad</c> are then not the reduced
    /// gradients, and stage 2 drops them).</summary>
    public void ReduceGradients()
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var flat = _flatGrad ?? torch.zeros(_layout.Padded, _dtype, _device);   // stage 2: a temporary
        for (int i = 0; i < _params.Length; i++)
        {
            var slot = flat.narrow(0, _layout.Offsets[i], _layout.Sizes[i]);
            var g = _params[i].grad;
            if (g is null) slot.zero_(); else slot.copy_(g.reshape(-1));
        }
        if (ZeroStage == 0)
        {
            _dp.AllReduce(flat, ReduceOp.Avg);
            for (int i = 0; i < _params.Length; i++)
            {
                var p = _params[i];
                var slot = flat.narrow(0, _layout.Offsets[i], _layout.Sizes[i]).view(p.shape);
                var g = p.grad;
                if (g is null) p.grad = slot.clone(); else g.copy_(slot);
            }
            return;
        }
        _dp.ReduceScatter(_gradShard!, flat, ReduceOp.Avg);
        if (ZeroStage == 2)
            foreach (var p in _params) p.grad = null;   // only the shard persists; the next backward allocates afresh
    }

    /// <summary>The reduced gradient elements this rank's norm share covers: slice r of the flat gradient.</summary>
    Tensor OwnedGradSlice() => ZeroStage == 0
        ? _flatGrad!.narrow(0, _layout.Shard(_dp.Rank).Start, _layout.ShardSize)
        : _gradShard!;

    /// <summary>
    /// Collective over DP (and the model-parallel group): the global L2 norm of the reduced gradient, defined the same
    /// way in every stage so every stage gets the same bits: each DP rank r sums the squares (in float64) of slice r of
    /// the flat reduced gradient (elements of parameters that do not count masked to 0), the sums are all-reduced over
    /// DP in rank order, then over the model-parallel group, and the square root is taken. Call after
    /// <see cref="ReduceGradients"/>.
    /// </summary>
    public double GradNorm()
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var sq = OwnedGradSlice().to(ScalarType.Float64).square();
        if (_normMask is not null) sq = sq * _normMask;
        var sum = sq.sum().reshape(1);
        _dp.AllReduce(sum, ReduceOp.Sum);
        _modelParallel?.AllReduce(sum, ReduceOp.Sum);
        return Math.Sqrt(sum.cpu().item<double>());
    }

    /// <summary>
    /// Clips the reduced gradient to <paramref name="maxNorm"/> as PyTorch's <c>clip_grad_norm_</c> does (coefficient
    /// maxNorm / (norm + 1e-6), applied only when below 1) on the global norm of <see cref="GradNorm"/>; scales every
    /// parameter's gradient (stage 0) or the gradient shard (stage 1/2). Returns the norm before clipping. Collective.
    /// </summary>
    public double ClipGradNorm(double maxNorm)
    {
        if (!(maxNorm > 0)) throw new ArgumentOutOfRangeException(nameof(maxNorm), maxNorm, "the max gradient norm must be positive");
        double norm = GradNorm();
        double coef = maxNorm / (norm + 1e-6);
        if (coef < 1.0)
        {
            using var scope = torch.NewDisposeScope();
            using var noGrad = torch.no_grad();
            float c = (float)coef;   // one float32 scalar, as PyTorch multiplies by a float32 tensor
            if (ZeroStage == 0) foreach (var p in _params) p.grad?.mul_(c);
            else _gradShard!.mul_(c);
        }
        return norm;
    }

    /// <summary>Steps the inner optimizer; under ZeRO-1/2 then all-gathers the parameters (collective) and copies
    /// them into the model. Returns when the model holds the updated parameters.</summary>
    public void Step()
    {
        if (ZeroStage == 0) { _inner.step(); return; }
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        CopyOwnedSliceFromModel();
        _inner.step();
        _dp.AllGather(_flatParams!, _paramShard!);
        for (int i = 0; i < _params.Length; i++) _params[i].copy_(_flatParamViews[i]);
    }

    /// <summary>The model's parameters (the truth between steps) → this rank's parameter shard.</summary>
    void CopyOwnedSliceFromModel()
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        for (int i = 0; i < _params.Length; i++)
            if (_layout.ParamInShard(i, _dp.Rank) is { } piece)
                _paramShard!.narrow(0, piece.InShard, piece.Length).copy_(_params[i].reshape(-1).narrow(0, piece.InParam, piece.Length));
    }

    /// <summary>Bytes held by the inner optimizer's state tensors on this rank (Adam's exp_avg/exp_avg_sq, SGD's
    /// momentum buffers...): ZeRO-1/2 hold about 1/DP of ZeRO-0's.</summary>
    public long OptimizerStateBytes() => StateBytes(_inner);

    /// <summary>Bytes of the tensors held by a TorchSharp optimizer's per-parameter state objects.</summary>
    public static long StateBytes(OptimizerHelper optimizer)
    {
        long bytes = 0;
        foreach (var state in optimizer.state_dict().State)
        {
            var type = state.GetType();
            var values = type.GetFields(BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance)
                .Where(f => typeof(Tensor).IsAssignableFrom(f.FieldType)).Select(f => f.GetValue(state))
                .Concat(type.GetProperties(BindingFlags.Public | BindingFlags.Instance)
                    .Where(p => typeof(Tensor).IsAssignableFrom(p.PropertyType) && p.GetIndexParameters().Length == 0)
                    .Select(p => p.GetValue(state)));
            foreach (var v in values.Distinct())
                if (v is Tensor t and not Parameter && !t.IsInvalid) bytes += t.numel() * t.ElementSize;   // the state's back-reference to its parameter is no state
        }
        return bytes;
    }

    /// <summary>Writes this rank's inner optimizer state (TorchSharp's format) to <paramref name="path"/>. Under
    /// ZeRO-1/2 it is this rank's shard: reload it only under the same DP size, rank and parameters.</summary>
    public void SaveState(string path) => _inner.save_state_dict(path);

    /// <summary>Reads what <see cref="SaveState"/> wrote, into this rank's inner optimizer.</summary>
    public void LoadState(string path) => _inner.load_state_dict(path);

    public void Dispose()
    {
        _inner.Dispose();
        foreach (var t in _owned) t.Dispose();
        _owned.Clear();
    }
}
