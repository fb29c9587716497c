#!/usr/bin/python3
"""Live PyTorch oracle for the learning-rate schedule tests.

Protocol: one JSON case per line on stdin, {"id", "lrs", "steps", "scheduler", "metrics"?, "resume_at"?} in the
golden corpus grammar (Tests/Data/golden/FORMAT.md). For each, one JSON line on stdout with what PyTorch did:
{"id", "torch", "trace"|"error", "last_lr", "momentum"?, "error_at_step"?, "resume_trace"?, "resume_error"?},
flushed at once. The first line written is a greeting {"ready": true, "torch": VERSION} so the caller knows torch
imported. Nothing else is ever written to stdout: anything PyTorch or Python prints goes to stderr.
A case the oracle itself cannot handle (bad JSON, unknown lambda) gets {"id", "oracle_error": text}.

Non-finite floats are written as the strings "nan", "inf", "-inf" (JSON has no such numbers).
"""
import copy
import json
import math
import sys
import traceback
import warnings

PROTOCOL_OUT = sys.stdout
sys.stdout = sys.stderr  # whatever else prints (torch warnings, debug prints) must not reach the protocol stream
warnings.filterwarnings("ignore")

try:
    import torch
    import torch.optim.lr_scheduler as lrs
except Exception as exc:  # reported as a line so the C# side can say what to install
    PROTOCOL_OUT.write(json.dumps({"ready": False, "error": "%s: %s" % (type(exc).__name__, exc)}) + "\n")
    PROTOCOL_OUT.flush()
    sys.exit(3)

SGD_MOMENTUM = 0.9


# ---------------------------------------------------------------- lr_lambda function descriptions (FORMAT.md table)
# One implementation for the whole project: reference/pytorch/schedules.py (copied next to this script by Tests.csproj).
from schedules import make_fn


def lr_function(d):
    try:
        return make_fn(d)
    except ValueError as exc:
        raise OracleError(str(exc))


class OracleError(Exception):
    """The case is outside what the oracle can express (not a PyTorch error)."""


def lambdas(spec):
    given = spec["lr_lambda"]
    return [lr_function(x) for x in given] if isinstance(given, list) else lr_function(given)


# ---------------------------------------------------------------- building schedulers as a user writes them
def construct(spec, optimizer):
    kind = spec["type"]
    kwargs = {k: v for k, v in spec.items() if k != "type"}
    if kind in ("LambdaLR", "MultiplicativeLR"):
        return getattr(lrs, kind)(optimizer, lambdas(spec))
    if kind == "SequentialLR":
        children = [construct(child, optimizer) for child in kwargs["schedulers"]]
        return lrs.SequentialLR(optimizer, children, kwargs["milestones"])
    if kind == "ChainedScheduler":
        children = [construct(child, optimizer) for child in kwargs["schedulers"]]
        return lrs.ChainedScheduler(children)
    cls = getattr(lrs, kind, None)
    if cls is None or not isinstance(cls, type):
        raise OracleError("torch %s has no scheduler %r" % (torch.__version__, kind))
    return cls(optimizer, **kwargs)


def new_optimizer(initial_lrs):
    groups = [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr} for lr in initial_lrs]
    return torch.optim.SGD(groups, lr=initial_lrs[0], momentum=SGD_MOMENTUM)


def cycles_momentum(spec):
    if spec["type"] in ("CyclicLR", "OneCycleLR"):
        return bool(spec.get("cycle_momentum", True))
    return any(cycles_momentum(child) for child in spec.get("schedulers", []))


def group_values(optimizer, key):
    return [float(g[key]) for g in optimizer.param_groups]


def last_lr_of(scheduler):
    # torch 1.13's ReduceLROnPlateau has no get_last_lr() but keeps the same list in _last_lr after a step.
    try:
        if hasattr(scheduler, "get_last_lr"):
            return [float(x) for x in scheduler.get_last_lr()]
        if hasattr(scheduler, "_last_lr"):
            return [float(x) for x in scheduler._last_lr]
    except Exception:
        pass
    return None


def error_of(exc):
    return {"type": type(exc).__name__, "message": str(exc)}


def step_once(scheduler, case, i):
    if case["scheduler"]["type"] == "ReduceLROnPlateau":
        scheduler.step(case["metrics"][i])
    else:
        scheduler.step()


# ---------------------------------------------------------------- one case
def run(case):
    answer = {"id": case.get("id"), "torch": torch.__version__}
    optimizer = new_optimizer(case["lrs"])
    try:
        scheduler = construct(case["scheduler"], optimizer)
    except OracleError:
        raise
    except Exception as exc:
        answer["error"] = error_of(exc)
        return answer
    with_momentum = cycles_momentum(case["scheduler"])
    trace = [group_values(optimizer, "lr")]
    last = [last_lr_of(scheduler)]
    momenta = [group_values(optimizer, "momentum")]
    resume_at = case.get("resume_at")
    saved = None
    for i in range(case["steps"]):
        if resume_at == i:
            try:
                saved = (copy.deepcopy(optimizer.state_dict()), copy.deepcopy(scheduler.state_dict()))
            except Exception as exc:
                answer["resume_error"] = error_of(exc)
        optimizer.step()
        try:
            step_once(scheduler, case, i)
        except Exception as exc:
            answer["error_at_step"] = dict(step=i + 1, **error_of(exc))
            break
        trace.append(group_values(optimizer, "lr"))
        last.append(last_lr_of(scheduler))
        momenta.append(group_values(optimizer, "momentum"))
    answer["trace"] = trace
    answer["last_lr"] = last
    if with_momentum:
        answer["momentum"] = momenta
    if saved is not None and "error_at_step" not in answer:
        try:
            optimizer2 = new_optimizer(case["lrs"])
            scheduler2 = construct(case["scheduler"], optimizer2)
            optimizer2.load_state_dict(saved[0])
            scheduler2.load_state_dict(saved[1])
            resumed = []
            for i in range(resume_at, case["steps"]):
                optimizer2.step()
                step_once(scheduler2, case, i)
                resumed.append(group_values(optimizer2, "lr"))
            answer["resume_trace"] = resumed
        except Exception as exc:
            answer["resume_error"] = error_of(exc)
    return answer


def finite(value):
    """JSON has no NaN or infinity: spell them as strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, list):
        return [finite(v) for v in value]
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    return value


def reply(obj):
    PROTOCOL_OUT.write(json.dumps(finite(obj), separators=(",", ":"), allow_nan=False) + "\n")
    PROTOCOL_OUT.flush()


def main():
    reply({"ready": True, "torch": torch.__version__})
    for line in sys.stdin:
        if not line.strip():
            continue
        case_id = None
        try:
            case = json.loads(line)
            case_id = case.get("id")
            answer = run(case)
        except Exception:
            answer = {"id": case_id, "oracle_error": traceback.format_exc(limit=3)}
        reply(answer)


if __name__ == "__main__":
    main()
