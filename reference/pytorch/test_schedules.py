#!/usr/bin/python3
"""Self-checks of schedules.py under the local PyTorch:
 1. every --lr-scheduler shorthand (with and without --warmup-steps) builds and steps --num_iteration times;
    prints the JSON tree each one becomes and its first/last LRs;
 2. schedules.from_json replays the golden corpus (/work/shared/golden/pytorch-2.11/lr_traces.jsonl.gz) and
    counts the cases whose LR trace equals PyTorch 2.11's within 1e-12 relative (version differences of
    torch 1.13 on nested composites are expected; see reference/README.md)."""
import gzip, json, math, os, sys, warnings
import torch
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import schedules, trainer
warnings.filterwarnings("ignore")

NAMES = ["none", "constant", "steplr", "multisteplr", "linear", "exponential", "polynomial", "cosine",
         "cosine-restarts", "cyclic", "onecycle", "warmup-stable-decay", "inverse-sqrt", "plateau"]

def opt_for(kind="adamw", lr=1e-3):
    p = torch.nn.Parameter(torch.zeros(1))
    return {"sgd": lambda: torch.optim.SGD([p], lr=lr), "adamw": lambda: torch.optim.AdamW([p], lr=lr)}[kind]()

fails = 0
for name in NAMES:
    for W in (-1, 0, 3):
        if W > 0 and name in ("none", "plateau"):
            continue
        argv = [f"--lr-scheduler={name}", "--num_iteration=20", f"--warmup-steps={W}", "--learning_rate=1e-3",
                "--min_lr=1e-5"]
        f = trainer.parse_flags(argv, "tiny")
        opt = opt_for()
        try:
            s, metric, desc = schedules.from_flags(f, opt)
            lrs = []
            for i in range(20):
                lrs.append(opt.param_groups[0]["lr"])
                opt.step()
                if s is not None:
                    s.step(1.0) if metric else s.step()
            assert all(math.isfinite(x) and x >= 0 for x in lrs)
            print(f"{name:20s} W={W}: {lrs[0]:.3e} .. {lrs[-1]:.3e}  {desc}")
        except Exception as e:
            fails += 1
            print(f"{name:20s} W={W}: FAILED {type(e).__name__}: {e}")

path = "/work/shared/golden/pytorch-2.11/lr_traces.jsonl.gz"
if os.path.exists(path):
    same = diff = skipped = 0
    for line in gzip.open(path, "rt"):
        c = json.loads(line)
        if "error" in c or "error_at_step" in c:
            skipped += 1
            continue
        ps = [torch.nn.Parameter(torch.zeros(1)) for _ in c["lrs"]]
        opt = torch.optim.SGD([{"params": [p], "lr": lr} for p, lr in zip(ps, c["lrs"])], lr=c["lrs"][0], momentum=0.9)
        try:
            s = schedules.from_json(c["scheduler"], opt)
            tr = [[g["lr"] for g in opt.param_groups]]
            for i in range(c["steps"]):
                opt.step()
                s.step(c["metrics"][i]) if c["scheduler"]["type"] == "ReduceLROnPlateau" else s.step()
                tr.append([g["lr"] for g in opt.param_groups])
            ok = all(abs(u - v) <= 1e-12 * max(abs(v), 1e-300) for a, b in zip(tr, c["trace"]) for u, v in zip(a, b))
        except Exception:
            ok = False
        same += ok
        diff += not ok
    print(f"golden replay under torch {torch.__version__}: {same} equal, {diff} different "
          f"({skipped} error cases skipped)")
sys.exit(1 if fails else 0)
