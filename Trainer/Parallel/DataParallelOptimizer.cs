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
/// <item>Stage 0: the gradients are copied into a flat buffer, all-reduced (Avg), and the inner optimizer steps every
/// parameter on every rank.</item>
/// <item>Stage 1: a persistent flat gradient buffer is reduce-scattered (Avg) into this rank's shard (see
/// <see cref="FlatShardLayout"/> for the order and padding); the inner optimizer runs over one shard tensor per param
/// group (a view of this rank's parameter shard; empty when the shard holds none of the group) whose <c>.grad</c> is
/// the matching view of the gradient shard; after its step the parameter shards are all-gathered and copied into the
/// model.</item>
/// <item>Stage 2: as stage 1, but the full flat gradient exists only during the reduce-scatter and the model's
/// <c>.grad</c> tensors are dropped after it: only the gradient shard persists.</item>
/// </list>
/// <para>Main dtype: float32/float64 models are stepped in their own dtype. A bfloat16/float16 model gets float32 main
/// parameters (the whole model under ZeRO-0, this rank's shard under ZeRO-1/2; Megatron's mixed-precision optimizer):
/// gradients are widened to float32 before the reduction, the norm, clipping and the optimizer run in float32, and the
/// model receives the main parameters rounded to its dtype after every step. Besides being the better numerics this is
/// what makes the stages agree: TorchSharp's bfloat16 optimizer arithmetic rounds differently in libtorch's vectorised
/// body and scalar tail, so a shard and the full tensor would not give the same bits.</para>
/// <para>Every stage computes the same floats: reductions add in rank order (a deterministic communicator gives
/// reduce-scatter chunk r ≡ all-reduce chunk r), the norm is defined per DP shard (<see cref="GradNorm"/>), and
/// SGD/Adam/AdamW are elementwise, so ZeRO-1/2 reproduce ZeRO-0 bit for bit. A parameter without a gradient counts as a
/// zero gradient in every stage (so Adam still decays and moves it, as a DDP bucket would).</para>
/// Call order per step: backward (every micro-batch) → <see cref="ReduceGradients"/> → <see cref="ClipGradNorm"/> →
/// <see cref="Step"/> (the model holds the updated parameters when it returns) → scheduler step → <see cref="ZeroGrad"/>
/// before the next backward. Every DP member calls each of these in the same order (they are collectives).
/// <para>Truth between steps: for a float32/float64 model, the model's parameters (each step starts by reading this
/// rank's slice from them, so loading a model checkpoint needs nothing else); with float32 main parameters, those — they
/// are saved and loaded with <see cref="SaveState"/>/<see cref="LoadState"/>.</para>
/// </summary>
public sealed class DataParallelOptimizer : IDisposable
{
    readonly ICommunicator _dp;
    readonly Parameter[] _params;           // the model's parameters, group-major (layout order)
    readonly FlatShardLayout _layout;
    readonly OptimizerHelper _inner;
    readonly TorchSharpParamGroups _groups;
    readonly ICommunicator? _modelParallel;
    readonly ScalarType _modelType, _mainType;
    readonly Device _device;
    readonly bool _separateMain;            // main parameters are float32 copies of a 16-bit model
    readonly Tensor? _flatGrad;             // stage 0/1: persistent, Padded elements, main dtype
    readonly Parameter[]? _mainParams;      // stage 0 with separate main params: one per model parameter, .grad views of _flatGrad
    readonly Tensor? _gradShard;            // stage 1/2: this rank's reduced gradient, ShardSize elements, main dtype
    readonly Tensor? _paramShard;           // stage 1/2: this rank's main parameters, ShardSize elements
    readonly Tensor? _modelShard;           // stage 1/2: _paramShard in the model dtype (the same tensor when no separate main)
    readonly Tensor? _flatParams;           // stage 1/2: all-gather target, Padded elements, model dtype
    readonly Tensor[] _flatParamViews;      // stage 1/2: each model parameter's view into _flatParams
    readonly Tensor? _normMask;             // this shard: 1 where the element counts in the norm, 0 elsewhere; null = all count
    readonly List<Tensor> _owned = new();   // tensors to dispose
    bool _flatHoldsGrads = true;            // stage 0: false after a one-rank ReduceGradients left the gradients in .grad

    public int ZeroStage { get; }
    public FlatShardLayout Layout => _layout;
    /// <summary>The dtype the optimizer computes in (float32 for a 16-bit model).</summary>
    public ScalarType MainType => _mainType;
    /// <summary>The TorchSharp optimizer this rank steps (over the model or its float32 main copy, or over shard tensors).</summary>
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
        _modelType = _params[0].dtype;
        _device = _params[0].device;
        foreach (var p in _params)
            if (p.dtype != _modelType || p.device.type != _device.type || p.device.index != _device.index)
                throw new ArgumentException($"all parameters must share one dtype and device; found {_modelType} on {_device} and {p.dtype} on {p.device}", nameof(groups));
        _mainType = _modelType is ScalarType.BFloat16 or ScalarType.Float16 ? ScalarType.Float32 : _modelType;
        _separateMain = _mainType != _modelType;
        _layout = new FlatShardLayout(groups.Select(g => (IReadOnlyList<long>)g.Select(p => p.numel()).ToArray()).ToArray(), dp.Size);
        _modelParallel = normScope?.ModelParallel;

        using (torch.no_grad())
        {
            long padded = _layout.Padded, shard = _layout.ShardSize;
            if (zeroStage <= 1) _flatGrad = Keep(torch.zeros(padded, _mainType, _device));
            if (zeroStage == 0)
            {
                _flatParamViews = Array.Empty<Tensor>();
                if (_separateMain)
                {
                    _mainParams = new Parameter[_params.Length];
                    for (int i = 0; i < _params.Length; i++)
                    {
                        _mainParams[i] = (Parameter)Keep(new Parameter(_params[i].detach().to(_mainType).clone(), requires_grad: true));
                        _mainParams[i].grad = FlatSlot(_flatGrad!, i).view(_params[i].shape);
                    }
                    int at = 0;
                    _inner = factory(groups.Select(g => { var m = _mainParams.Skip(at).Take(g.Count).ToArray(); at += g.Count; return (IReadOnlyList<Parameter>)m; }).ToArray());
                }
                else _inner = factory(groups);
            }
            else
            {
                _gradShard = Keep(torch.zeros(shard, _mainType, _device));
                _paramShard = Keep(torch.zeros(shard, _mainType, _device));
                _modelShard = _separateMain ? Keep(torch.zeros(shard, _modelType, _device)) : _paramShard;
                _flatParams = Keep(torch.zeros(padded, _modelType, _device));
                _flatParamViews = _params.Select((p, i) => Keep(FlatSlot(_flatParams, i).view(p.shape))).ToArray();
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

    Tensor FlatSlot(Tensor flat, int param) => flat.narrow(0, _layout.Offsets[param], _layout.Sizes[param]);

    /// <summary>Zeroes the model's gradients (stage 2 has none between steps).</summary>
    public void ZeroGrad()
    {
        using var scope = torch.NewDisposeScope();
        foreach (var p in _params) p.grad?.zero_();
    }

    /// <summary>Collective over DP: the average of every rank's gradients (in the main dtype) — into every parameter's
    /// <c>.grad</c> (stage 0 without separate main parameters), into the main parameters' gradients (stage 0, 16-bit
    /// model) or into this rank's gradient shard (stage 1/2). Where the reduced gradient is not in the model's
    /// <c>.grad</c>, those keep this rank's own gradients, and stage 2 drops them.</summary>
    public void ReduceGradients()
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        _flatHoldsGrads = true;
        if (ZeroStage == 0 && !_separateMain && _dp.Size == 1)
        {
            // One rank: its .grad tensors already are the reduced gradient (an average over one). Copying them into the
            // flat buffer and back cost two passes over the model and a model-sized temporary per step (issue #15);
            // the flat copy is made only if the norm needs it (GradNorm).
            _flatHoldsGrads = false;
            foreach (var p in _params) if (p.grad is null) p.grad = torch.zeros_like(p);
            return;
        }
        var flat = _flatGrad ?? torch.zeros(_layout.Padded, _mainType, _device);   // stage 2: a temporary
        for (int i = 0; i < _params.Length; i++)
        {
            var slot = FlatSlot(flat, i);
            var g = _params[i].grad;
            if (g is null) slot.zero_(); else slot.copy_(g.reshape(-1));
        }
        if (ZeroStage == 0)
        {
            _dp.AllReduce(flat, ReduceOp.Avg);
            if (_separateMain) return;   // the main parameters' gradients are views of the flat buffer
            for (int i = 0; i < _params.Length; i++)
            {
                var p = _params[i];
                var slot = FlatSlot(flat, i).view(p.shape);
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
    Tensor OwnedGradSlice()
    {
        if (ZeroStage > 0) return _gradShard!;
        if (!_flatHoldsGrads)
        {
            for (int i = 0; i < _params.Length; i++) FlatSlot(_flatGrad!, i).copy_(_params[i].grad!.reshape(-1));
            _flatHoldsGrads = true;
        }
        return _flatGrad!.narrow(0, _layout.Shard(_dp.Rank).Start, _layout.ShardSize);
    }

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
    /// maxNorm / (norm + 1e-6), applied only when below 1) on the global norm of <see cref="GradNorm"/>: scales the
    /// reduced gradient wherever <see cref="ReduceGradients"/> put it. Returns the norm before clipping. Collective.
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
            if (ZeroStage > 0) _gradShard!.mul_(c);
            else if (_separateMain) _flatGrad!.mul_(c);
            else foreach (var p in _params) p.grad?.mul_(c);
        }
        return norm;
    }

    /// <summary>Steps the inner optimizer; under ZeRO-1/2 then all-gathers the parameters (collective); the model
    /// holds the updated parameters (rounded to its dtype) when it returns.</summary>
    public void Step()
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        if (ZeroStage == 0)
        {
            _inner.step();
            if (_mainParams is not null)
                for (int i = 0; i < _params.Length; i++) _params[i].copy_(_mainParams[i]);
            return;
        }
        if (!_separateMain) CopyOwnedSliceFromModel();
        _inner.step();
        if (_separateMain) _modelShard!.copy_(_paramShard!);
        _dp.AllGather(_flatParams!, _modelShard!);
        for (int i = 0; i < _params.Length; i++) _params[i].copy_(_flatParamViews[i]);
    }

    /// <summary>The model's parameters → this rank's parameter shard (exact: same dtype, or widening to float32).</summary>
    void CopyOwnedSliceFromModel()
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        for (int i = 0; i < _params.Length; i++)
            if (_layout.ParamInShard(i, _dp.Rank) is { } piece)
                _paramShard!.narrow(0, piece.InShard, piece.Length).copy_(_params[i].reshape(-1).narrow(0, piece.InParam, piece.Length));
    }

    /// <summary>Bytes of optimizer state on this rank: the inner optimizer's state tensors (Adam's exp_avg/exp_avg_sq,
    /// SGD's momentum buffers...) plus the float32 main parameters of a 16-bit model. ZeRO-1/2 hold about 1/DP of ZeRO-0's.</summary>
    public long OptimizerStateBytes()
    {
        long main = !_separateMain ? 0
            : ZeroStage == 0 ? _mainParams!.Sum(p => p.numel() * p.ElementSize)
            : Enumerable.Range(0, _layout.GroupRanges.Count).Sum(g => _layout.GroupInShard(g, _dp.Rank).Length) * _paramShard!.ElementSize;
        return StateBytes(_inner) + main;
    }
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

    const string StateMagic = "Trainer.DataParallelOptimizer";
    const int StateVersion = 1;

    // A ZeRO-0 state is the same on every DP rank (and for any DP size); a ZeRO-1/2 state is one rank's shard.
    string StateHeader => (ZeroStage == 0 ? "zero_stage=0" : $"zero_stage={ZeroStage} dp={_layout.Shards} rank={_dp.Rank}") +
        $" elements={_layout.Total} groups={_layout.GroupRanges.Count} main={_mainType}";

    /// <summary>Writes this rank's optimizer state to <paramref name="path"/>: a header (stage, DP size, rank, parameter
    /// count, main dtype), the inner optimizer's state (TorchSharp's format) and, for a 16-bit model, the float32 main
    /// parameters. Under ZeRO-1/2 it is this rank's shard: <see cref="LoadState"/> accepts it only under the same
    /// stage, DP size, rank and parameters.</summary>
    public void SaveState(string path)
    {
        using var stream = File.Create(path);
        using var w = new BinaryWriter(stream);
        w.Write(StateMagic); w.Write(StateVersion); w.Write(StateHeader);
        _inner.save_state_dict(w);
        foreach (var t in MainTensors()) t.Save(w);
    }

    /// <summary>Reads what <see cref="SaveState"/> wrote. Throws <see cref="InvalidDataException"/> naming the file
    /// when it is not such a file or was written under another stage, DP size, rank or model.</summary>
    public void LoadState(string path)
    {
        using var stream = File.OpenRead(path);
        using var r = new BinaryReader(stream);
        string magic, header; int version;
        try { magic = r.ReadString(); version = r.ReadInt32(); header = r.ReadString(); }
        catch (EndOfStreamException) { throw new InvalidDataException($"{path}: not a data-parallel optimizer state (truncated header)"); }
        if (magic != StateMagic || version != StateVersion)
            throw new InvalidDataException($"{path}: not a data-parallel optimizer state (version {StateVersion})");
        if (header != StateHeader)
            throw new InvalidDataException($"{path}: optimizer state written for {header}; this optimizer is {StateHeader}");
        _inner.load_state_dict(r);
        using var noGrad = torch.no_grad();
        foreach (var t in MainTensors()) t.Load(r);
    }

    // ---- moving optimizer state between layouts ------------------------------------------------------------------

    /// <summary>This rank's range of the (padded) flat parameter buffer that <see cref="ExportFlatState"/> covers:
    /// all of it under ZeRO-0, this rank's shard under ZeRO-1/2.</summary>
    public (long Start, long Length) FlatRange => ZeroStage == 0 ? (0, _layout.Padded) : (_layout.Shard(_dp.Rank).Start, _layout.ShardSize);

    /// <summary>
    /// This rank's optimizer state in the flat parameter order (<see cref="Layout"/>), over <see cref="FlatRange"/>:
    /// one float tensor per elementwise state field of the inner optimizer (AdamW's exp_avg, exp_avg_sq; SGD's
    /// momentum_buffer), "main" for the float32 main parameters of a 16-bit model, and the non-tensor fields (the
    /// step count), which every parameter shares. With the parameter names and shard specs this is what a checkpoint
    /// needs to move to another layout (<see cref="ImportFlatState"/>).
    /// </summary>
    public (Dictionary<string, Tensor> Fields, Dictionary<string, object> Scalars) ExportFlatState()
    {
        using var noGrad = torch.no_grad();
        var (start, length) = FlatRange;
        var fields = new Dictionary<string, Tensor>();
        var scalars = new Dictionary<string, object>();
        var states = _inner.state_dict().State;
        foreach (var (state, flatStart, numel) in StateSlots(states))
        {
            foreach (var (name, t) in TensorFields(state, numel))
            {
                if (!fields.TryGetValue(name, out var flat)) fields[name] = flat = torch.zeros(length, _mainType, _device);
                flat.narrow(0, flatStart - start, numel).copy_(t.reshape(-1));
            }
            if (numel > 0 || scalars.Count == 0)
                foreach (var f in ScalarFields(state)) scalars[f.Name] = f.GetValue(state)!;
        }
        if (_separateMain)
        {
            var main = torch.zeros(length, _mainType, _device);
            if (ZeroStage == 0) for (int i = 0; i < _params.Length; i++) FlatSlot(main, i).copy_(_mainParams![i].reshape(-1));
            else main.copy_(_paramShard!);
            fields["main"] = main;
        }
        return (fields, scalars);
    }

    /// <summary>The inverse of <see cref="ExportFlatState"/> for this rank's <see cref="FlatRange"/>; the model's
    /// parameters must already hold their new values (they are the main parameters of a float32 model).</summary>
    public void ImportFlatState(IReadOnlyDictionary<string, Tensor> fields, IReadOnlyDictionary<string, object> scalars)
    {
        using var noGrad = torch.no_grad();
        var (start, _) = FlatRange;
        foreach (var (state, flatStart, numel) in StateSlots(_inner.state_dict().State))
        {
            foreach (var (name, t) in TensorFields(state, numel))
            {
                if (!fields.TryGetValue(name, out var flat)) throw new InvalidDataException($"optimizer state field '{name}' is missing");
                t.copy_(flat.narrow(0, flatStart - start, numel).view(t.shape));
            }
            foreach (var f in ScalarFields(state))
                if (scalars.TryGetValue(f.Name, out var v)) f.SetValue(state, v);
        }
        if (_separateMain)
        {
            var main = fields["main"];
            if (ZeroStage == 0) for (int i = 0; i < _params.Length; i++) _mainParams![i].copy_(FlatSlot(main, i).view(_params[i].shape));
            else _paramShard!.copy_(main);
        }
        else if (ZeroStage > 0) CopyOwnedSliceFromModel();
    }

    /// <summary>Each inner state object with where its parameter sits in the flat buffer: ZeRO-0 one per model
    /// parameter, ZeRO-1/2 one per param group's piece of this rank's shard.</summary>
    IEnumerable<(object State, long FlatStart, long Numel)> StateSlots<TState>(IList<TState> states) where TState : class
    {
        if (ZeroStage == 0)
            for (int i = 0; i < states.Count; i++) yield return (states[i], _layout.Offsets[i], _layout.Sizes[i]);
        else
        {
            long shardStart = _layout.Shard(_dp.Rank).Start;
            for (int g = 0; g < states.Count; g++)
            {
                var (off, len) = _layout.GroupInShard(g, _dp.Rank);
                yield return (states[g], shardStart + off, len);
            }
        }
    }

    static IEnumerable<(string Name, Tensor Tensor)> TensorFields(object state, long numel) =>
        state.GetType().GetFields(BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance)
            .Where(f => typeof(Tensor).IsAssignableFrom(f.FieldType))
            .Select(f => (f.Name, Value: f.GetValue(state) as Tensor))
            .Where(x => x.Value is not null and not Parameter && !x.Value.IsInvalid && x.Value.numel() == numel && x.Value.dim() > 0)
            .Select(x => (x.Name, x.Value!));

    static IEnumerable<FieldInfo> ScalarFields(object state) =>
        state.GetType().GetFields(BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance)
            .Where(f => f.FieldType.IsPrimitive);

    /// <summary>The float32 main parameters of a 16-bit model (none otherwise: the model holds them).</summary>
    IEnumerable<Tensor> MainTensors() =>
        !_separateMain ? Array.Empty<Tensor>() : ZeroStage == 0 ? _mainParams! : new[] { _paramShard! };

    public void Dispose()
    {
        _inner.Dispose();
        foreach (var t in _owned) t.Dispose();
        _owned.Clear();
    }
}
