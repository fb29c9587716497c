"""LR schedules of the reference, built from real torch.optim.lr_scheduler objects.

from_json(spec, opt): the corpus grammar of /work/shared/golden/FORMAT.md
    {"type": <torch.optim.lr_scheduler class name>, ...keyword arguments...}, SequentialLR{schedulers,
    milestones}, ChainedScheduler{schedulers}, LambdaLR/MultiplicativeLR lr_lambda = function
    description(s) {"fn": const|pow|step|warmup_linear|warmup_cosine|inverse_sqrt, ...}.
from_flags(flags, opt): the --lr-scheduler shorthand flags, translated to such a JSON tree first
    (so every shorthand has an exact JSON equivalent; see reference/README.md).
"""
import json
import math

import torch.optim.lr_scheduler as S


# ----------------------------------------------------------------------------- lambda functions
def make_fn(f):
    k = f["fn"]
    if k == "const":
        c = f["c"]
        return lambda e: c
    if k == "pow":
        b = f["base"]
        return lambda e: b ** e
    if k == "step":
        g, n = f["gamma"], f["every"]
        return lambda e: g ** (e // n)
    if k == "warmup_linear":
        w, tot = f["warmup"], f["total"]

        def fn(e):
            if e < w:
                return float(e) / float(max(1, w))
            return max(0.0, float(tot - e) / float(max(1, tot - w)))
        return fn
    if k == "warmup_cosine":
        w, tot, cyc = f["warmup"], f["total"], f["cycles"]

        def fn(e):
            if e < w:
                return float(e) / float(max(1, w))
            p = float(e - w) / float(max(1, tot - w))
            return max(0.0, 0.5 * (1.0 + math.cos(math.pi * float(cyc) * 2.0 * p)))
        return fn
    if k == "inverse_sqrt":
        w = f["warmup"]

        def fn(e):
            if e < w:
                return float(e) / float(max(1, w))
            return 1.0 / math.sqrt(e / w)
        return fn
    raise ValueError(f"unknown lr_lambda fn {k!r}")


def _lambdas(l):
    return [make_fn(x) for x in l] if isinstance(l, list) else make_fn(l)


def from_json(spec, opt):
    """Build the scheduler tree (children constructed in list order before the parent)."""
    if isinstance(spec, str):
        spec = json.loads(spec)
    t = spec["type"]
    a = {k: v for k, v in spec.items() if k != "type"}
    if t == "LambdaLR":
        return S.LambdaLR(opt, _lambdas(a["lr_lambda"]))
    if t == "MultiplicativeLR":
        return S.MultiplicativeLR(opt, _lambdas(a["lr_lambda"]))
    if t == "SequentialLR":
        kids = [from_json(c, opt) for c in a["schedulers"]]
        return S.SequentialLR(opt, kids, a["milestones"])
    if t == "ChainedScheduler":
        kids = [from_json(c, opt) for c in a["schedulers"]]
        return S.ChainedScheduler(kids)
    if t in ("CyclicLR", "OneCycleLR") and a.get("cycle_momentum", True) and "momentum" not in opt.defaults:
        # torch 1.13 cannot cycle Adam's betas; make the choice explicit instead of failing
        raise SystemExit(f"{t}: cycle_momentum needs an optimizer with momentum; set \"cycle_momentum\": false")
    cls = getattr(S, t, None)
    if cls is None:
        raise SystemExit(f"unknown scheduler type {t!r}")
    return cls(opt, **a)


# ----------------------------------------------------------------------------- shorthand flags
def flags_to_json(flags):
    """--lr-scheduler & friends -> JSON tree (dict), or None for no scheduler.

    L = --total-steps (0 -> --num_iteration), W = --warmup-steps, D = L - W (the horizon after warmup),
    lr = --learning_rate. --warmup-steps=W > 0 wraps the schedule as
        SequentialLR([LinearLR(start_factor=1/W, end_factor=1, total_iters=W), <schedule>], milestones=[W])
    except for onecycle / warmup-stable-decay / inverse-sqrt (warmup built in) and plateau / none (refused).
    """
    name = flags.lr_scheduler
    L = flags.total_steps or flags.num_iteration
    W = flags.warmup_steps
    if W < 0 or W > L:
        raise SystemExit(f"--warmup-steps={W} must be in [0, total steps {L}]")
    D = L - W
    lr = flags.learning_rate
    min_factor = flags.min_lr / lr if lr > 0 else 0.0

    def gamma(default):
        return default if flags.gamma is None else flags.gamma

    def wrap(s):
        if W == 0:
            return s
        return {"type": "SequentialLR", "milestones": [W], "schedulers": [
            {"type": "LinearLR", "start_factor": 1.0 / W, "end_factor": 1.0, "total_iters": W}, s]}

    if name == "none":
        if W:
            raise SystemExit("--warmup-steps needs an --lr-scheduler (e.g. constant)")
        return None
    if name == "constant":
        return wrap({"type": "ConstantLR", "factor": 1.0, "total_iters": 0})
    if name == "steplr":
        return wrap({"type": "StepLR", "step_size": flags.step_size or max(1, D // 3), "gamma": gamma(0.1)})
    if name == "multisteplr":
        ms = [int(x) for x in flags.milestones.split(",") if x.strip()] if flags.milestones else []
        if not ms:
            raise SystemExit("multisteplr needs --milestones=a,b,...")
        return wrap({"type": "MultiStepLR", "milestones": ms, "gamma": gamma(0.1)})
    if name == "linear":
        return wrap({"type": "LinearLR", "start_factor": 1.0, "end_factor": min_factor, "total_iters": D})
    if name == "exponential":
        return wrap({"type": "ExponentialLR", "gamma": gamma(0.95)})
    if name == "polynomial":
        return wrap({"type": "PolynomialLR", "total_iters": D, "power": flags.power})
    if name == "cosine":
        return wrap({"type": "CosineAnnealingLR", "T_max": D, "eta_min": flags.min_lr})
    if name == "cosine-restarts":
        return wrap({"type": "CosineAnnealingWarmRestarts", "T_0": flags.step_size or max(1, D),
                     "T_mult": flags.t_mult, "eta_min": flags.min_lr})
    if name == "cyclic":
        return wrap({"type": "CyclicLR", "base_lr": flags.min_lr, "max_lr": lr,
                     "step_size_up": flags.step_size or max(1, D // 2), "mode": "triangular",
                     "gamma": gamma(1.0), "cycle_momentum": False})
    if name == "onecycle":
        return {"type": "OneCycleLR", "max_lr": lr, "total_steps": L,
                "pct_start": (W / L) if W else 0.3, "anneal_strategy": "cos", "div_factor": 25.0,
                "final_div_factor": 1e4, "three_phase": False, "cycle_momentum": False}
    if name == "warmup-stable-decay":
        dec = flags.decay_steps or max(1, round(0.2 * L))
        if W + dec > L:
            raise SystemExit(f"warmup ({W}) + decay ({dec}) > total steps ({L})")
        kids, ms = [], []
        if W:
            kids.append({"type": "LinearLR", "start_factor": 1.0 / W, "end_factor": 1.0, "total_iters": W})
            ms.append(W)
        kids.append({"type": "ConstantLR", "factor": 1.0, "total_iters": 0})
        ms.append(L - dec)
        kids.append({"type": "LinearLR", "start_factor": 1.0, "end_factor": min_factor, "total_iters": dec})
        return {"type": "SequentialLR", "schedulers": kids, "milestones": ms}
    if name == "inverse-sqrt":
        return {"type": "LambdaLR", "lr_lambda": {"fn": "inverse_sqrt", "warmup": max(1, W)}}
    if name == "plateau":
        if W:
            raise SystemExit("plateau cannot be combined with --warmup-steps")
        return {"type": "ReduceLROnPlateau", "mode": "min", "factor": gamma(0.1), "patience": flags.patience,
                "threshold": flags.threshold, "threshold_mode": "rel", "cooldown": flags.cooldown,
                "min_lr": flags.min_lr, "eps": 1e-8}
    raise SystemExit(f"--lr-scheduler={name}: unknown")


def from_flags(flags, opt):
    """Returns (scheduler or None, wants_metric, description)."""
    if flags.lr_schedule:
        spec = json.loads(flags.lr_schedule)
    else:
        spec = flags_to_json(flags)
    if spec is None:
        return None, False, "none"
    sched = from_json(spec, opt)
    return sched, spec["type"] == "ReduceLROnPlateau", json.dumps(spec, separators=(",", ":"))
