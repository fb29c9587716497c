#!/usr/bin/python3
"""Issue #15: this project's C# trainer vs llm.c's CPU trainer (train_gpt2.c, fp32, OpenMP), side by side.

    reference/llmc_cpu.py --llmc=PATH/TO/train_gpt2 [--threads=1,2] [--repeat=1] [--out=/tmp/llmc_cpu]

Build llm.c's CPU trainer yourself and pass the binary; nothing is downloaded or built here. train_gpt2.c takes no
flags: it reads gpt2_124M.bin and dev/data/tinyshakespeare/tiny_shakespeare_{train,val}.bin from its working
directory and trains 41 steps (B=4, T=64, AdamW lr 1e-4, betas 0.9/0.999, eps 1e-8, no weight decay, no schedule, no
clipping), shuffling its samples with its own seeded generator. This script makes such a working directory under
--out: the seeded GPT-2 124M weights written by reference/pytorch/gpt2.py (llm.c file version 3) and the KJV token
files of `Trainer prepare-data` (Trainer/Data/Embedded) under llm.c's names. The C# trainer runs the same 41 steps
on the same files with --data_order=llmc (llm.c's sample order) and the same optimizer settings.

Printed per thread count (OMP_NUM_THREADS for llm.c, --num_threads for C#): both trainers' per-step losses and their
largest difference, each trainer's median ms/step and tokens/s (its own timing of steps 2..41), and minor page
faults and CPU ms (user + system, all threads) per step (medians over steps 2..41 of the increase of the process's
minflt and utime + stime in /proc/PID/stat between step lines, read as each line appears; llm.c runs under
stdbuf -oL so its lines arrive as they are printed; llm.c's val/sampling passes before steps 11, 21, 31, 41 fall in
those steps' deltas, which the median skips). CPU ms per step depends less on other load than ms/step does. --repeat runs the pairs again,
back to back, and reports each figure's median over the repeats.
"""
import argparse, json, os, re, statistics, subprocess, sys, time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
STEPS, B, T = 41, 4, 64   # fixed in train_gpt2.c's main


TICK_MS = 1000.0 / os.sysconf("SC_CLK_TCK")


def proc_counters(pid):
    """(minor page faults, CPU ms in user + system) of process pid so far, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        v = f.read().rsplit(")", 1)[1].split()   # v[0] is field 3 (state)
    return int(v[7]), (int(v[11]) + int(v[12])) * TICK_MS   # fields 10 (minflt), 14 (utime), 15 (stime)


def run(cmd, cwd, env, step_re, log_path):
    """Runs cmd; returns [(step, loss, ms, (minflt, cpu ms) at the step line)] and the exit status."""
    rows = []
    with open(log_path, "w", buffering=1) as log:
        p = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in p.stdout:
            log.write(line)
            m = step_re.search(line)
            if m:
                try: flt = proc_counters(p.pid)
                except OSError: flt = None
                rows.append((int(m.group(1)), float(m.group(2)), float(m.group(3)), flt))
        rc = p.wait()
    return rows, rc


def per_step(rows, k):
    """Median over steps 2..N of the step's increase of counter k (0: minor faults, 1: CPU ms) between step lines."""
    f = [r[3] for r in rows]
    d = [b[k] - a[k] for a, b in zip(f[:-1], f[1:]) if a is not None and b is not None]
    return statistics.median(d) if d else float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--llmc", required=True, help="llm.c's CPU trainer binary (train_gpt2), built by you")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--out", default="/tmp/llmc_cpu")
    ap.add_argument("--trainer", default=os.environ.get("CS_TRAINER", f"dotnet {ROOT}/Trainer/bin/Release/net10.0/Trainer.dll"))
    a = ap.parse_args()
    llmc = os.path.abspath(a.llmc)
    if not (os.path.isfile(llmc) and os.access(llmc, os.X_OK)):
        ap.error(f"--llmc={a.llmc}: not an executable file (build llm.c's CPU trainer train_gpt2 yourself and pass its path)")
    try: threads = [int(x) for x in a.threads.split(",")]
    except ValueError: ap.error(f"--threads={a.threads}: expected comma-separated thread counts, e.g. 1,2")
    if a.repeat < 1 or any(n < 1 for n in threads): ap.error("--repeat and --threads must be >= 1")

    # llm.c's working directory: its fixed file names, pointing at the shared files.
    work = os.path.join(a.out, "llmc_cwd")
    data = os.path.join(work, "dev/data/tinyshakespeare")
    os.makedirs(data, exist_ok=True)
    weights = os.path.join(a.out, "gpt2_124M_seed42.bin")
    if not os.path.exists(weights):
        subprocess.run(["/usr/bin/python3", f"{HERE}/pytorch/gpt2.py", "--model=gpt2", "--seed=42", "--init_only",
                        f"--write_llmc={weights}"], check=True, stdout=subprocess.DEVNULL)
    train = f"{ROOT}/Trainer/Data/Embedded/kjv_gpt2_train.bin"
    val = f"{ROOT}/Trainer/Data/Embedded/kjv_gpt2_val.bin"
    for src, name in [(weights, os.path.join(work, "gpt2_124M.bin")), (train, os.path.join(data, "tiny_shakespeare_train.bin")),
                      (val, os.path.join(data, "tiny_shakespeare_val.bin"))]:
        if os.path.lexists(name): os.remove(name)
        os.symlink(src, name)

    cs_flags = [f"--llmc_filepath={weights}", f"--input_bin={train}", f"--batch_size={B}", f"--sequence_length={T}",
                f"--total_batch_size={B * T}", f"--num_iteration={STEPS}", "--learning_rate=1e-4", "--optimizer=adamw",
                "--beta1=0.9", "--beta2=0.999", "--eps=1e-8", "--weight_decay=0", "--lr_scheduler=none", "--grad_clip=0",
                "--data_order=llmc", "--noprogress"]
    llmc_re = re.compile(r"^step (\d+): train loss ([-\d.naif]+) \(took ([\d.]+) ms\)")
    cs_re = re.compile(r"^step\s+(\d+)/\d+ \| train loss ([-\d.naif]+) .*\(([\d.]+) ms")
    load = lambda: open("/proc/loadavg").read().split()[:3]
    print(f"machine: {os.cpu_count()} cores, load at start {' '.join(load())}; {STEPS} steps, B={B}, T={T}, GPT-2 124M fp32")
    results = {}   # threads -> list of per-repeat dicts
    for rep in range(a.repeat):
        for n in threads:
            tag = f"t{n}_r{rep + 1}"
            env = dict(os.environ, OMP_NUM_THREADS=str(n))
            l_rows, l_rc = run(["stdbuf", "-oL", llmc], work, env, llmc_re, os.path.join(a.out, f"llmc_{tag}.log"))
            c_rows, c_rc = run(a.trainer.split() + cs_flags + [f"--num_threads={n}", f"--log_json={a.out}/cs_{tag}.jsonl"],
                               ROOT, dict(os.environ), cs_re, os.path.join(a.out, f"cs_{tag}.log"))
            if l_rc or c_rc or len(l_rows) != STEPS or len(c_rows) != STEPS:
                sys.exit(f"run {tag} failed: llm.c exit {l_rc}, {len(l_rows)} steps; C# exit {c_rc}, {len(c_rows)} steps (logs in {a.out})")
            cs_json = [json.loads(l) for l in open(f"{a.out}/cs_{tag}.jsonl") if '"loss"' in l]
            results.setdefault(n, []).append(dict(
                llmc_loss=[r[1] for r in l_rows], cs_loss=[r["loss"] for r in cs_json],
                llmc_ms=statistics.median(r[2] for r in l_rows[1:]), cs_ms=statistics.median(r["ms"] for r in cs_json[1:]),
                llmc_pf=per_step(l_rows, 0), cs_pf=per_step(c_rows, 0), llmc_cpu=per_step(l_rows, 1), cs_cpu=per_step(c_rows, 1)))

    print(f"\nper-step train loss (first repeat, {threads[0]} thread(s); llm.c prints 6 decimals)")
    r0 = results[threads[0]][0]
    print(f"{'step':>4} {'llm.c':>10} {'C#':>10} {'diff':>10}")
    for i, (x, y) in enumerate(zip(r0["llmc_loss"], r0["cs_loss"])):
        print(f"{i + 1:>4} {x:>10.6f} {y:>10.6f} {y - x:>+10.6f}")
    print(f"\n{'threads':>7} {'max|dloss|':>10} | {'llm.c ms':>9} {'C# ms':>8} | {'llm.c tok/s':>11} {'C# tok/s':>9} {'C#/llm.c':>8} | {'llm.c pf/step':>13} {'C# pf/step':>10} | {'llm.c cpu ms':>12} {'C# cpu ms':>9}")
    med = lambda rs, k: statistics.median(r[k] for r in rs)
    for n in threads:
        rs = results[n]
        dl = max(abs(x - y) for r in rs for x, y in zip(r["llmc_loss"], r["cs_loss"]))
        lm, cm = med(rs, "llmc_ms"), med(rs, "cs_ms")
        print(f"{n:>7} {dl:>10.2e} | {lm:>9.1f} {cm:>8.1f} | {B * T / lm * 1000:>11.0f} {B * T / cm * 1000:>9.0f} {lm / cm:>7.2f}x |"
              f" {med(rs, 'llmc_pf'):>13.0f} {med(rs, 'cs_pf'):>10.0f} | {med(rs, 'llmc_cpu'):>12.0f} {med(rs, 'cs_cpu'):>9.0f}")
    if len(threads) > 1:
        for name, k in [("llm.c", "llmc_ms"), ("C#", "cs_ms")]:
            s = " ".join(f"{threads[0]}->{n}: {med(results[threads[0]], k) / med(results[n], k):.2f}x" for n in threads[1:])
            print(f"speed-up from more threads, {name}: {s}")
    print(f"load at end {' '.join(load())}; {a.repeat} repeat(s), medians; logs in {a.out}")
    worst = max(abs(x - y) for rs in results.values() for r in rs for x, y in zip(r["llmc_loss"], r["cs_loss"]))
    return 0 if worst <= 1e-5 else 1


if __name__ == "__main__":
    sys.exit(main())
