#!/usr/bin/env python3
"""Times PyTorch's scheduler.step() on the compositions of Benchmarks/Compositions.cs.

Run with Debian's /usr/bin/python3 (torch 1.13). Prints one JSON object on stdout:
{"torch": version, "python": version, "results": [{"composition", "start_step", "ns_per_step" (median over
repetitions), "ns_per_step_min", "ns_per_step_mean", "reps", "steps_per_rep"}]}.

Measured like the C# side: the scheduler is built on a torch.optim.SGD over one parameter (one param group), advanced
to the starting step, then each repetition times steps_per_rep consecutive step() calls (time.perf_counter_ns, cyclic GC
off as timeit does). Before a repetition the scheduler is rebuilt and re-advanced whenever the repetition would leave
the window [start, start + max(start // 10, steps_per_rep)].
"""
import argparse
import gc
import json
import sys
import time
import warnings

import torch
from torch.optim import SGD
from torch.optim.lr_scheduler import (ChainedScheduler, CosineAnnealingLR, ExponentialLR, LinearLR, SequentialLR,
                                      StepLR)

BASE_LR = 0.1


def warmup_cosine(opt):
    warm = LinearLR(opt, start_factor=0.01, end_factor=1.0, total_iters=500)
    cos = CosineAnnealingLR(opt, T_max=2_000_000, eta_min=1e-5)
    return SequentialLR(opt, [warm, cos], milestones=[500])


def build(name, opt):
    # Children first, in the same order as Compositions.cs (construction order matters for chained rates).
    if name == "Leaf":
        return StepLR(opt, step_size=100_000, gamma=0.5)
    if name == "A_Chained":
        step = StepLR(opt, step_size=100_000, gamma=0.5)
        lin = LinearLR(opt, start_factor=0.1, end_factor=1.0, total_iters=500)
        return ChainedScheduler([step, lin])
    if name == "B_ThreeLevel":
        seq = warmup_cosine(opt)
        exp = ExponentialLR(opt, gamma=0.9999999)
        return ChainedScheduler([seq, exp])
    if name == "C_WarmupCosine":
        return warmup_cosine(opt)
    raise ValueError(f"unknown composition {name}")


class Rig:
    def __init__(self, name, start):
        self.param = torch.nn.Parameter(torch.zeros(16))
        self.opt = SGD([self.param], lr=BASE_LR)
        self.opt.step()  # no gradient: a no-op that keeps PyTorch from warning about the call order
        self.sched = build(name, self.opt)
        step = self.sched.step
        for _ in range(start):
            step()
        self.steps = start


def measure(name, start, steps_per_rep, reps, warmup):
    window = max(start // 10, steps_per_rep)
    rig = None
    times = []
    for r in range(warmup + reps):
        if rig is None or rig.steps + steps_per_rep > start + window:
            rig = Rig(name, start)
        step = rig.sched.step
        rng = range(steps_per_rep)
        gc_was = gc.isenabled()
        gc.disable()
        try:
            t0 = time.perf_counter_ns()
            for _ in rng:
                step()
            t1 = time.perf_counter_ns()
        finally:
            if gc_was:
                gc.enable()
        rig.steps += steps_per_rep
        if r >= warmup:
            times.append((t1 - t0) / steps_per_rep)
    times.sort()
    n = len(times)
    median = times[n // 2] if n % 2 else (times[n // 2 - 1] + times[n // 2]) / 2
    return {"composition": name, "start_step": start, "ns_per_step": median, "ns_per_step_min": times[0],
            "ns_per_step_mean": sum(times) / n, "reps": reps, "steps_per_rep": steps_per_rep,
            "final_lr": rig.opt.param_groups[0]["lr"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--compositions", default="Leaf,A_Chained,B_ThreeLevel,C_WarmupCosine")
    ap.add_argument("--starts", default="1000,100000,1000000")
    ap.add_argument("--steps-per-rep", type=int, default=4000)
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    a = ap.parse_args()
    warnings.simplefilter("ignore")  # SequentialLR's step(0) deprecation warning at the milestone
    torch.set_num_threads(1)
    results = []
    for name in a.compositions.split(","):
        for start in (int(s) for s in a.starts.split(",")):
            results.append(measure(name, start, a.steps_per_rep, a.reps, a.warmup))
            print(f"pytorch {name} @ {start}: {results[-1]['ns_per_step']:.0f} ns/step", file=sys.stderr, flush=True)
    json.dump({"torch": torch.__version__, "python": sys.version.split()[0], "results": results}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
