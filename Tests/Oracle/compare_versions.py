#!/usr/bin/python3
"""Evidence for the oracle test's exclusions: replays every golden (PyTorch 2.11) case's inputs through this machine's
PyTorch (torch_oracle.run) and prints, per case shape, where the two versions disagree.
usage: /usr/bin/python3 Tests/Oracle/compare_versions.py Tests/Data/golden/pytorch-2.11/lr_traces.jsonl.gz [--show N]"""
import collections, gzip, json, math, os, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_oracle as oracle

def close(a, b):
    return a == b or abs(a - b) <= 1e-10 * max(abs(a), abs(b))

def rows_differ(x, y):
    if x is None or y is None: return False
    for ra, rb in zip(x, y):
        if ra is None or rb is None: continue
        if len(ra) != len(rb) or not all(close(a, b) for a, b in zip(ra, rb)): return True
    return False

def shape(spec):
    kids = spec.get("schedulers")
    return spec["type"] if not kids else spec["type"] + "(" + ",".join(shape(k) for k in kids) + ")"

def verdict(new, old):
    if ("error" in new) != ("error" in old):
        return "refusal: 2.11 %s / 1.13 %s" % (old.get("error", {}).get("type", "accepts"), new.get("error", {}).get("type", "accepts"))
    if "error" in new: return None
    es_new, es_old = new.get("error_at_step"), old.get("error_at_step")
    if (es_new or {}).get("step") != (es_old or {}).get("step"):
        return "step error: 2.11 %s / 1.13 %s" % (es_old and (es_old["type"], es_old["step"]), es_new and (es_new["type"], es_new["step"]))
    n = min(len(new["trace"]), len(old["trace"]))
    if rows_differ(new["trace"][:n], old["trace"][:n]): return "trace"
    if rows_differ(new["last_lr"][:n], old["last_lr"][:n]): return "last_lr"
    if rows_differ(new.get("momentum"), old.get("momentum")): return "momentum"
    k = old.get("resume_at")
    if "resume_error" in new and "error_at_step" not in new: return "resume error 1.13: " + new["resume_error"]["type"]
    if k is not None and "resume_trace" in new and rows_differ(new["resume_trace"], new["trace"][k + 1:]):
        return "1.13 resume differs from its own uninterrupted run"
    return None

show = int(sys.argv[sys.argv.index("--show") + 1]) if "--show" in sys.argv else 0
by = collections.defaultdict(list)
total = 0
with gzip.open(sys.argv[1], "rt") as f:
    for line in f:
        old = json.loads(line); total += 1
        case = {k: old[k] for k in ("id", "lrs", "steps", "scheduler", "metrics", "resume_at") if k in old}
        new = oracle.finite(oracle.run(case))
        v = verdict(new, old)
        if v: by[v].append((old["id"], shape(old["scheduler"])))
print("torch", oracle.torch.__version__, "vs corpus:", total, "cases,", sum(map(len, by.values())), "differ", file=sys.stderr)
for v, cases in sorted(by.items(), key=lambda kv: -len(kv[1])):
    print("%4d  %s" % (len(cases), v))
    for cid, s in cases[: max(show, 0)]: print("        ", cid, s)
