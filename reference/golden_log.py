#!/usr/bin/python3
"""A golden PyTorch LR trace as a --log_json file, for cases the local PyTorch cannot run (align.sh `golden=ID`).

    /usr/bin/python3 reference/golden_log.py GOLDEN.jsonl.gz ID TRAINER-FLAGS... --out=F.jsonl

Reads case ID of the golden corpus (Tests/Data/golden/FORMAT.md) and checks that the trainer flags describe it:
--lr_schedule is the case's scheduler tree, --learning_rate its single param group's lr, --warmup_steps 0 (no ramp
wrapped around it) and --num_iteration at most its number of steps. Writes one line per training step k = 1..N:
{"step": k, "loss": null, "lr": trace[k-1], "momentum": momentum[k-1] (where the case cycles momentum)}, i.e. the LR
(and momentum, which PyTorch 2.x writes to Adam's beta1 alike) that PyTorch uses for step k. Compare with
`compare.py --no-loss`. Exit 2 when the flags do not match the case (naming the flag) or the case is missing.
"""
import gzip
import json
import sys


def flag_values(argv):
    vals = {}
    for a in argv:
        if a.startswith("--") and "=" in a:
            k, v = a[2:].split("=", 1)
            vals[k.replace("-", "_")] = v
    return vals


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    path, case_id, flags = argv[0], argv[1], flag_values(argv[2:])
    out = flags.get("out")
    if not out:
        print("golden_log.py: --out=FILE is required", file=sys.stderr)
        return 2
    case = None
    with gzip.open(path, "rt") as f:
        for line in f:
            if f'"id": "{case_id}"' in line or f'"id":"{case_id}"' in line:
                o = json.loads(line)
                if o["id"] == case_id:
                    case = o
                    break
    if case is None:
        print(f"golden_log.py: no case '{case_id}' in {path}", file=sys.stderr)
        return 2
    problems = []
    if "trace" not in case or "error" in case:
        problems.append(f"case '{case_id}' has no trace (PyTorch refused it)")
    if len(case["lrs"]) != 1:
        problems.append(f"case '{case_id}' has {len(case['lrs'])} param groups; the trainer has one")
    try:
        sched = json.loads(flags.get("lr_schedule", "null"))
    except ValueError as e:
        sched = None
        problems.append(f"--lr_schedule is not JSON ({e})")
    if sched != case["scheduler"]:
        problems.append(f"--lr_schedule={flags.get('lr_schedule')} is not the case's scheduler {json.dumps(case['scheduler'])}")
    if float(flags.get("learning_rate", "nan")) != case["lrs"][0]:
        problems.append(f"--learning_rate={flags.get('learning_rate')} is not the case's lr {case['lrs'][0]!r}")
    if int(flags.get("warmup_steps", "-1")) != 0:
        problems.append("--warmup_steps must be 0 (a warmup ramp would wrap the case's scheduler)")
    n = int(flags.get("num_iteration", "0"))
    if not 1 <= n <= len(case.get("trace", [])):
        problems.append(f"--num_iteration={n} must be in 1..{len(case.get('trace', []))} (the trace's length)")
    if problems:
        for p in problems:
            print(f"golden_log.py: {case_id}: {p}", file=sys.stderr)
        return 2
    mom = case.get("momentum")
    with open(out, "w") as f:
        for k in range(1, n + 1):
            rec = {"step": k, "loss": None, "lr": case["trace"][k - 1]}
            if mom is not None:
                rec["momentum"] = mom[k - 1]
            f.write(json.dumps(rec) + "\n")
    print(f"golden PyTorch {case['torch']} trace '{case_id}': {n} steps written to {out}"
          f"{' (lr and momentum)' if mom is not None else ' (lr)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
