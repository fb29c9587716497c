#!/usr/bin/python3
"""Markdown summary of an align.sh run: one row per case of align_cases.txt that has a result in OUTDIR.

    /usr/bin/python3 reference/align_summary.py [OUTDIR]        (default /tmp/align)

Columns: case, CI, schedule (the --lr_scheduler kind or the JSON tree's classes), model, optimizer, DP, steps,
max |Δloss|, LR check (max relative difference), momentum/beta1 check, result. Reads OUTDIR/CASE/table.txt (compare.py's
summary line) and OUTDIR/CASE/torch.log or csharp.log (the schedule JSON the run printed).
"""
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def read_cases():
    common, cases = [], []
    with open(os.path.join(HERE, "align_cases.txt")) as f:
        for line in f:
            w = line.split()
            if not w or w[0].startswith("#"):
                continue
            if w[0] == "COMMON":
                common = w[1:]
                continue
            i = 2
            while i < len(w) and not w[i].startswith("--"):
                i += 1
            cases.append((w[0], w[1], w[2:i], w[i:]))
    return common, cases


def last(flags, name, default):
    v = default
    for a in flags:
        if a.startswith(f"--{name}="):
            v = a.split("=", 1)[1]
    return v


def classes(tree):
    out = []

    def walk(n):
        if isinstance(n, dict):
            if "type" in n:
                t = n["type"]
                if t == "CyclicLR":
                    t += f" {n.get('mode', 'triangular')}"
                if t == "OneCycleLR":
                    t += " three-phase" if n.get("three_phase") else f" {n.get('anneal_strategy', 'cos')}"
                if n.get("cycle_momentum") and n["type"] in ("CyclicLR", "OneCycleLR"):
                    t += " (cycles momentum)"
                out.append(t)
            for v in n.values():
                walk(v)
        elif isinstance(n, list):
            for v in n:
                walk(v)
    walk(tree)
    return out


def main(argv):
    out = argv[0] if argv else "/tmp/align"
    common, cases = read_cases()
    print("| case | CI | schedule | model | optimizer | DP | steps | max \\|Δloss\\| | LR check (max rel diff) | momentum / beta1 | result |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, model, tags, flags in cases:
        table = os.path.join(out, name, "table.txt")
        if not os.path.exists(table):
            continue
        text = open(table).read()
        m = re.search(r"^(\d+) steps compared; max LR rel diff (\S+) \(tol [^)]*\); (.*?); (.*?)(\d+) step\(s\) out of tolerance -> (\w+)",
                      text, re.M)
        allf = common + flags
        golden = next((t[7:] for t in tags if t.startswith("golden=")), None)
        dp = next((t[3:] for t in tags if t.startswith("dp=")), "8")
        opt = last(allf, "optimizer", "adamw")
        if opt == "sgd":
            opt += f" (momentum {last(allf, 'momentum', '0')})"
        sched = ""
        for log in ("csharp.log", "torch.log"):
            p = os.path.join(out, name, log)
            if os.path.exists(p):
                s = re.search(r"lr schedule: (\{.*\})\s*$|schedule (\{.*?\}) \| torch", open(p).read(), re.M)
                if s:
                    sched = " + ".join(dict.fromkeys(classes(json.loads(s.group(1) or s.group(2)))))
                    break
        kind = last(allf, "lr_scheduler", "cosine") if not last(allf, "lr_schedule", "") else "JSON"
        sched = sched if kind == "JSON" else f"`{kind}`: {sched or 'no scheduler (constant LR)'}"
        if golden:
            sched += f" — vs PyTorch 2.11 golden trace `{golden}`"
        if m:
            steps, lr, loss, mom, bad, res = m.groups()
            loss = "n/a (golden trace)" if "not compared" in loss else re.sub(r"max loss abs diff (\S+) .*", r"\1", loss)
            mm = re.search(r"max momentum rel diff (\S+) over (\d+)", mom)
            mom = f"{mm.group(1)} ({mm.group(2)} steps)" if mm else "—"
        else:
            steps, lr, loss, mom, res = "—", "—", "—", "—", "no comparison (run failed)"
        ci = "ci" if "ci" in tags else ""
        print(f"| {name} | {ci} | {sched} | {model}-tiny | {opt} | {dp} | {steps} | {loss} | {lr} | {mom} | {res} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
