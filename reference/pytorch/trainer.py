"""Shared training loop of the PyTorch reference (gpt2.py / llama3.py), PyTorch 1.13 .. 2.x.

Single process:   /usr/bin/python3 reference/pytorch/gpt2.py --flag=value ...
Data parallel:    /usr/bin/torchrun --nproc_per_node=8 reference/pytorch/gpt2.py --flag=value ...
                  (DistributedDataParallel; gloo on CPU, nccl on CUDA)

See reference/README.md for every flag and the exact semantics.
"""
import json
import math
import os
import sys
import time
import warnings

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llmc_io  # noqa: E402
import schedules  # noqa: E402

# ----------------------------------------------------------------------------- flags (gflags style)
# name -> (type, default, help). Names use underscores; dashes are accepted alike (--lr-scheduler).
FLAGS = {
    # I/O
    "input_bin": (str, "", "token file to train on (llm.c format)"),
    "llmc_filepath": (str, "", "llm.c fp32 weight file to start from (else --model preset + --seed init)"),
    "model": (str, None, "catalog name when no --llmc_filepath (trainer-models' names, see README)"),
    "write_llmc": (str, "", "write the initial weights (after init or load) to this llm.c file"),
    "write_llmc_final": (str, "", "write the weights after training to this llm.c file"),
    "llama3_header": (str, "infinitrain", "layout of LLaMA-3 files written: infinitrain|llmc"),
    "init_only": (bool, False, "only build/init the model (and --write_llmc), no training"),
    "log_json": (str, "", "write one JSON line per step to this file"),
    # size overrides for presets (0 = preset value)
    "n_layer": (int, 0, ""), "n_head": (int, 0, ""), "n_kv_head": (int, 0, ""), "n_embd": (int, 0, ""),
    "vocab_size": (int, 0, ""), "block_size": (int, 0, ""),
    # token layout
    "batch_size": (int, 4, "micro-batch size per rank (sequences)"),
    "sequence_length": (int, 64, "sequence length T"),
    "total_batch_size": (int, 1024, "tokens per optimizer step over all ranks"),
    "num_iteration": (int, 10, "optimizer steps"),
    # optimization
    "optimizer": (str, "adamw", "sgd|adam|adamw"),
    "learning_rate": (float, 1e-2, "base (peak) learning rate (the C# default)"),
    "weight_decay": (float, 0.0, ""),
    "beta1": (float, 0.9, ""), "beta2": (float, 0.95, ""), "eps": (float, 1e-8, ""),
    "momentum": (float, 0.0, "SGD momentum"), "nesterov": (bool, False, "SGD nesterov"),
    "grad_clip": (float, 1.0, "max global grad L2 norm; 0 = off"),
    "dtype": (str, "float32", "float32|bfloat16 (bf16 = autocast of the forward)"),
    "seed": (int, 42, "seed of the weight init"),
    "device": (str, "", "cpu|cuda (default: cuda if available)"),
    "num_threads": (int, 0, "torch intra-op threads per process; 0 = cores / local world size"),
    "nthread_per_process": (int, 0, "the C# trainer's DP degree; here DP = torchrun's world size (checked if given)"),
    # LR schedule: names, defaults and meaning as trainer-loop's Trainer/Cli/SchedulerFlags.cs
    "lr_scheduler": (str, "cosine", "constant|steplr|multisteplr|linear|exponential|polynomial|cosine|cosine-restarts|"
                                    "cyclic|onecycle|warmup-stable-decay|inverse-sqrt|plateau|none"),
    "lr_schedule": (str, "", "JSON schedule tree (torch class names), @FILE or a .json path; overrides --lr-scheduler"),
    "warmup_steps": (int, -1, "-1 = auto: 10% of total steps for cosine, else 0"),
    "warmup_start_factor": (float, 0.0, "LinearLR start_factor of the warmup; 0 = 1/(warmup+1)"),
    "lr_warmup_init": (float, 0.0, "InfiniTrain's absolute warmup start LR (start_factor = it / lr when > 0)"),
    "total_steps": (int, 0, "0 = --num_iteration"),
    "step_size": (int, 0, "StepLR step_size; 0 = max(1, steps/3)"),
    "gamma": (float, None, "default per schedule"),
    "milestones": (str, "", "comma-separated; default steps/2, steps*3/4"),
    "min_lr": (float, 0.0, ""), "power": (float, 1.0, "PolynomialLR power"),
    "t0": (int, 0, "CosineAnnealingWarmRestarts T_0; 0 = max(1, steps/2)"), "t_mult": (int, 1, ""),
    "step_size_up": (int, 0, "CyclicLR; 0 = max(1, steps/4)"),
    "cyclic_mode": (str, "triangular", "triangular|triangular2|exp_range"),
    "cycle_momentum": (bool, False, ""), "pct_start": (float, 0.3, ""), "div_factor": (float, 25.0, ""),
    "final_div_factor": (float, 1e4, ""),
    "decay_steps": (int, 0, "warmup-stable-decay; 0 = max(1, steps/5)"),
    "decay_shape": (str, "linear", "linear|cosine|1-sqrt"),
    "patience": (int, 10, ""), "threshold": (float, 1e-4, ""), "cooldown": (int, 0, ""),
    "constant_factor": (float, 1.0, ""), "constant_iters": (int, 0, ""),
    # LoRA (lora.py; names and defaults as InfiniTrain / the C# trainer)
    "lora_rank": (int, 0, "LoRA rank; 0 = off"), "lora_alpha": (float, 16.0, "LoRA alpha (scale alpha/rank)"),
    "lora_target_modules": (str, "", "comma-separated; empty = gpt2 c_attn,c_proj / llama3 c_attn,c_proj,c_fc,c_fc2"),
    "lora_dropout": (float, 0.0, "dropout on the adapters' input"),
}
ALIASES = {"lr_decay_style": "lr_scheduler", "lr_warmup_iters": "warmup_steps", "lr_decay_iters": "total_steps",
           "max_checkpoint_keep": "keep_last"}
# flags of the C# trainer / InfiniTrain accepted and ignored (no effect on this reference)
IGNORED = {"input_val_bin", "tokenizer_bin", "freq_generate_txt", "text_length", "val_loss_every", "sample_every",
           "overfit_single_batch", "tensor_parallel", "sequence_parallel",
           "pipeline_parallel", "virtual_pipeline_parallel", "zero_stage", "progress", "dp", "val_max_steps",
           "save", "save_interval", "keep_last", "load", "lora_save_path", "lora_load_path"}


class Flags:
    pass


def parse_flags(argv, default_model):
    vals = {k: v[1] for k, v in FLAGS.items()}
    vals["model"] = default_model
    given = set()
    i = 0
    while i < len(argv):
        a = argv[i]
        if not a.startswith("--"):
            raise SystemExit(f"unexpected argument '{a}' (flags are --name=value)")
        body = a[2:]
        name, eq, value = body.partition("=")
        name = name.replace("-", "_")
        name = ALIASES.get(name, name)
        if name in ("help", "h"):
            for k, (t, d, h) in FLAGS.items():
                print(f"  --{k} ({t.__name__}, default {d!r}) {h}")
            raise SystemExit(0)
        if not eq:
            value = None
        if name not in FLAGS and name not in IGNORED:
            if name.startswith("no") and name[2:] in IGNORED and value is None:
                i += 1
                continue
            if name.startswith("no") and FLAGS.get(name[2:], (None,))[0] is bool and value is None:
                vals[name[2:]] = False
                given.add(name[2:])
                i += 1
                continue
            raise SystemExit(f"unknown flag --{body}")
        typ = FLAGS[name][0] if name in FLAGS else str
        if value is None:
            if typ is bool:
                value = "true"
            else:
                if i + 1 >= len(argv):
                    raise SystemExit(f"flag --{name} needs a value")
                i += 1
                value = argv[i]
        i += 1
        if name in IGNORED:
            continue
        try:
            if typ is bool:
                lv = value.lower()
                if lv not in ("1", "0", "true", "false", "yes", "no"):
                    raise ValueError
                v = lv in ("1", "true", "yes")
            elif typ is int:
                v = int(value)
            elif typ is float:
                v = float(value)
            else:
                v = value
        except ValueError:
            raise SystemExit(f"--{name}: '{value}' is not a valid {typ.__name__}")
        vals[name] = v
        given.add(name)
    f = Flags()
    for k, v in vals.items():
        setattr(f, k, v)
    f.given = given
    return f


# ----------------------------------------------------------------------------- data (InfiniTrain order)
class DistributedBatches:
    """Sample i = (tokens[iT : iT+T], tokens[iT+1 : iT+T+1]), floor(N/T) - 1 samples. In global batch g,
    rank r reads samples (g*W + r)*B .. +B-1 (InfiniTrain's DistributedDataLoader). Every micro-step of
    every optimizer step consumes the next global batch; the index wraps around at the end of the data."""

    def __init__(self, tokens, B, T, world, rank):
        self.tokens, self.B, self.T, self.W, self.r = tokens, B, T, world, rank
        self.num_samples = len(tokens) // T - 1
        if self.num_samples < B * world:
            raise SystemExit(f"{len(tokens)} tokens: too few for one global batch of {B}x{world} sequences of {T}+1")
        self.num_global = self.num_samples // (B * world)
        self.g = 0

    def next(self):
        g = self.g % self.num_global
        self.g += 1
        first = (g * self.W + self.r) * self.B
        T = self.T
        buf = self.tokens[first * T: (first + self.B) * T + 1]
        x = torch.from_numpy(np.ascontiguousarray(buf[:-1])).view(self.B, T)
        y = torch.from_numpy(np.ascontiguousarray(buf[1:])).view(self.B, T)
        return x, y


# ----------------------------------------------------------------------------- main
def main(kind, build_model, default_model):
    # SequentialLR calls step(epoch) internally; its deprecation warning is noise here
    warnings.filterwarnings("ignore", message="The epoch parameter", category=UserWarning)
    flags = parse_flags(sys.argv[1:], default_model)

    ddp = int(os.environ.get("RANK", -1)) != -1
    rank = int(os.environ.get("RANK", 0))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    world = int(os.environ.get("WORLD_SIZE", 1))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    dev_name = flags.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if dev_name not in ("cpu", "cuda"):
        raise SystemExit(f"--device={dev_name}: cpu|cuda")
    if dev_name == "cuda":
        device = torch.device("cuda", local_rank if ddp else 0)
        torch.cuda.set_device(device)
        # exact fp32 (no TF32) so that the comparison is about the schedule, not the matmul precision
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    else:
        device = torch.device("cpu")
        nt = flags.num_threads or max(1, (os.cpu_count() or 1) // local_world)
        torch.set_num_threads(nt)
    if ddp:
        import torch.distributed as dist
        dist.init_process_group(backend="nccl" if dev_name == "cuda" else "gloo")
    master = rank == 0
    if flags.nthread_per_process and flags.nthread_per_process != world:
        raise SystemExit(f"--nthread_per_process={flags.nthread_per_process} but WORLD_SIZE={world}: data parallelism "
                         f"here comes from torchrun --nproc_per_node={flags.nthread_per_process}")

    def log(msg):
        if master:
            print(msg, flush=True)

    B, T = flags.batch_size, flags.sequence_length
    tokens_per_fwdbwd = B * T * world
    if flags.total_batch_size % tokens_per_fwdbwd != 0:
        raise SystemExit(f"--total_batch_size={flags.total_batch_size} is not a multiple of "
                         f"batch_size*sequence_length*DP = {tokens_per_fwdbwd}")
    accum = flags.total_batch_size // tokens_per_fwdbwd
    if accum < 1:
        raise SystemExit("--total_batch_size smaller than one micro-batch over all ranks")

    # model: always built and initialised on the CPU (identical weights on every device and rank)
    model = build_model(flags)
    if flags.lora_rank > 0:
        import lora
        lora.apply(model, kind, flags.lora_rank, flags.lora_alpha, flags.lora_target_modules, flags.lora_dropout, flags.seed)
    if master and flags.write_llmc:
        write_weights(model, flags.write_llmc, flags)
        log(f"wrote {flags.write_llmc}")
    if flags.init_only:
        return
    if not flags.input_bin:
        raise SystemExit("--input_bin is required")
    if dev_name == "cpu" and flags.dtype == "bfloat16":
        log("note: bfloat16 autocast on CPU")
    if flags.dtype not in ("float32", "bfloat16"):
        raise SystemExit(f"--dtype={flags.dtype}: float32|bfloat16")
    model.to(device)
    raw_model = model
    if ddp:
        from torch.nn.parallel import DistributedDataParallel as DDP
        # no buffer broadcast: the only buffers are LLaMA's RoPE tables, identical on every rank
        model = DDP(model, device_ids=[local_rank] if dev_name == "cuda" else None, broadcast_buffers=False)

    tokens = llmc_io.read_tokens(flags.input_bin)
    if T > raw_model.config.block_size:
        raise SystemExit(f"--sequence_length={T} > model block size {raw_model.config.block_size}")
    if int(tokens.max()) >= raw_model.config.vocab_size:
        raise SystemExit(f"token id {int(tokens.max())} >= vocab_size {raw_model.config.vocab_size}")
    loader = DistributedBatches(tokens, B, T, world, rank)

    params = [p for p in raw_model.parameters() if p.requires_grad]
    lr = flags.learning_rate
    if flags.optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=lr, momentum=flags.momentum, nesterov=flags.nesterov,
                              weight_decay=flags.weight_decay)
    elif flags.optimizer == "adam":
        opt = torch.optim.Adam(params, lr=lr, betas=(flags.beta1, flags.beta2), eps=flags.eps,
                               weight_decay=flags.weight_decay)
    elif flags.optimizer == "adamw":
        opt = torch.optim.AdamW(params, lr=lr, betas=(flags.beta1, flags.beta2), eps=flags.eps,
                                weight_decay=flags.weight_decay)
    else:
        raise SystemExit(f"--optimizer={flags.optimizer}: sgd|adam|adamw")
    sched, wants_metric, desc = schedules.from_flags(flags, opt)
    log(f"{kind}: {sum(p.numel() for p in params):,} parameters | DP={world} | grad accumulation {accum} | "
        f"schedule {desc} | torch {torch.__version__} on {dev_name}")

    jf = open(flags.log_json, "w") if (master and flags.log_json) else None
    autocast = None
    if flags.dtype == "bfloat16":
        autocast = lambda: torch.autocast(device_type=dev_name, dtype=torch.bfloat16)  # noqa: E731
    N = flags.num_iteration
    for step in range(N):
        if dev_name == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        lrs = [float(g["lr"]) for g in opt.param_groups]  # the lr this step uses
        moms = [momentum_of(g) for g in opt.param_groups]  # and its momentum (SGD) or beta1 (Adam/AdamW)
        opt.zero_grad(set_to_none=True)
        lossf = torch.zeros((), dtype=torch.float32, device=device)
        for micro in range(accum):
            x, y = loader.next()
            x, y = x.to(device), y.to(device)
            sync_ctx = model.no_sync() if (ddp and micro < accum - 1) else _null()
            with sync_ctx:
                if autocast is not None:
                    with autocast():
                        logits = model(x)
                else:
                    logits = model(x)
                loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), y.view(-1))
                loss = loss / accum
                lossf += loss.detach()
                loss.backward()
        if flags.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, flags.grad_clip)
        opt.step()
        if ddp:
            import torch.distributed as dist
            dist.all_reduce(lossf, op=dist.ReduceOp.SUM)
            lossf = lossf / world
        loss_value = float(lossf.item())
        if sched is not None:
            if wants_metric:
                sched.step(loss_value)
            else:
                sched.step()
        if dev_name == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        tps = flags.total_batch_size / dt
        log(f"step {step + 1:4d}/{N} | train loss {loss_value:.6f} | lr {lrs[0]:.2e} | "
            f"({dt * 1e3:.2f} ms | {tps:.0f} tok/s, DP={world})")
        if jf:
            jf.write(json.dumps({"step": step + 1, "loss": loss_value, "lr": lrs, "momentum": moms,
                                 "ms": round(dt * 1e3, 3), "tok_per_s": round(tps, 1), "dp": world}) + "\n")
            jf.flush()
    if jf:
        jf.close()
    if master and flags.write_llmc_final:
        write_weights(raw_model, flags.write_llmc_final, flags)
        log(f"wrote {flags.write_llmc_final}")
    if ddp:
        import torch.distributed as dist
        dist.barrier()
        # Leave without tearing down DDP/gloo at interpreter exit: with torch 1.13 the Reducer's destructor joins
        # a gloo thread that waits for the GIL the destructor holds (seen as a rank hanging after the last step).
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def momentum_of(group):
    """The momentum-like hyper-parameter CyclicLR/OneCycleLR cycle: SGD's momentum, or beta1 of Adam/AdamW."""
    return float(group["betas"][0]) if "betas" in group else float(group.get("momentum", 0.0))


def write_weights(model, path, flags):
    if hasattr(model.config, "n_kv_head"):
        model.save_llmc(path, flags.llama3_header)
    else:
        model.save_llmc(path)


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False
