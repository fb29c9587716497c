#!/usr/bin/python3
"""Compare two --log-json files step by step (ours = the C# trainer, torch = the PyTorch reference).

    /usr/bin/python3 reference/compare.py OURS.jsonl TORCH.jsonl [--lr-rtol=1e-10] [--loss-atol=1e-5]
                                          [--plot=curves.png] [--labels=ours,torch] [--quiet] [--no-loss]

Each step line is a JSON object with "step", "loss" and the step's learning rates under "lr" (trainer-loop's
name) or "lrs" (list, one per param group, or a single number), and optionally "momentum" (list: SGD's momentum or
Adam's beta1 that step used). Other fields, and lines without "loss", are ignored.
Prints a table (step, lr ours, lr torch, rel diff, loss ours, loss torch, abs diff) and exits
    0  every step present in both, every LR within --lr-rtol (relative), every loss within --loss-atol, and, where
       both files log "momentum", every momentum within --lr-rtol (relative)
    1  some value out of tolerance, or the two files do not have the same steps
    2  unreadable input
--no-loss compares LRs and momenta only (for a golden PyTorch trace, whose lines have "loss": null).
--plot draws both curves (LR and loss against step) into a PNG: with matplotlib when it is importable,
otherwise with a small built-in rasterizer (no text; the axis ranges are printed and stored in the PNG's
tEXt chunk).
"""
import argparse
import json
import math
import struct
import sys
import zlib


def load(path, need_loss=True):
    rows = {}
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                o = json.loads(line)
                if "loss" not in o:
                    continue  # not a step record (val_loss, optimizer-state figures, ...)
                lr = o["lr"] if "lr" in o else o["lrs"]
                lrs = [float(x) for x in (lr if isinstance(lr, list) else [lr])]
                mom = o.get("momentum")
                moms = None if mom is None else [float(x) for x in (mom if isinstance(mom, list) else [mom])]
                loss = math.nan if o["loss"] is None and not need_loss else float(o["loss"])
                rows[int(o["step"])] = (loss, lrs, moms)
            except (ValueError, KeyError, TypeError) as e:
                raise SystemExit(f"{path}:{n}: cannot read step record ({e}): {line[:120]}")
    return rows


def rel(a, b):
    if a == b:
        return 0.0
    if math.isnan(a) or math.isnan(b):
        return math.inf
    return abs(a - b) / max(abs(a), abs(b))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("ours")
    p.add_argument("torch")
    p.add_argument("--lr-rtol", type=float, default=1e-10)
    p.add_argument("--loss-atol", type=float, default=1e-5)
    p.add_argument("--plot", default="")
    p.add_argument("--labels", default="ours,torch")
    p.add_argument("--quiet", action="store_true", help="print only failing rows and the summary")
    p.add_argument("--no-loss", action="store_true", help="compare LRs and momenta only (golden LR traces)")
    a = p.parse_args(argv)
    try:
        A, B = load(a.ours, not a.no_loss), load(a.torch, not a.no_loss)
    except OSError as e:
        print(e, file=sys.stderr)
        return 2
    la, lb = (a.labels.split(",") + ["ours", "torch"])[:2]
    ok = True
    only_a, only_b = sorted(set(A) - set(B)), sorted(set(B) - set(A))
    if only_a or only_b:
        ok = False
        print(f"step sets differ: only in {la}: {only_a[:10]}{'...' if len(only_a) > 10 else ''}; "
              f"only in {lb}: {only_b[:10]}{'...' if len(only_b) > 10 else ''}")
    steps = sorted(set(A) & set(B))
    hdr = f"{'step':>6} | {'lr ' + la:>22} | {'lr ' + lb:>22} | {'rel diff':>9} | {'loss ' + la:>12} | " \
          f"{'loss ' + lb:>12} | {'abs diff':>9}"
    print(hdr)
    print("-" * len(hdr))
    worst_lr, worst_loss, worst_mom, mom_steps, bad = 0.0, 0.0, 0.0, 0, 0
    for s in steps:
        (xa, ra, ma), (xb, rb, mb) = A[s], B[s]
        if len(ra) != len(rb):
            r = math.inf
        else:
            r = max(rel(u, v) for u, v in zip(ra, rb))
        m = 0.0
        if ma is not None and mb is not None:  # momentum / beta1, where both sides log it
            m = math.inf if len(ma) != len(mb) else max(rel(u, v) for u, v in zip(ma, mb))
            mom_steps += 1
        if a.no_loss:
            d = 0.0
        else:
            d = abs(xa - xb) if not (math.isnan(xa) or math.isnan(xb)) else math.inf
        row_bad = r > a.lr_rtol or d > a.loss_atol or m > a.lr_rtol
        worst_lr, worst_loss, worst_mom = max(worst_lr, r), max(worst_loss, d), max(worst_mom, m)
        bad += row_bad
        if row_bad or not a.quiet:
            mark = ("  <-- " + ("LR" if r > a.lr_rtol else "") + (" loss" if d > a.loss_atol else "")
                    + (" momentum" if m > a.lr_rtol else "")) if row_bad else ""
            mom = f" | {ma[0]:.15g} vs {mb[0]:.15g}" if ma is not None and mb is not None and ma != mb else ""
            print(f"{s:6d} | {ra[0]:22.15e} | {rb[0]:22.15e} | {r:9.2e} | {xa:12.8f} | {xb:12.8f} | {d:9.2e}{mark}{mom}")
    ok = ok and bad == 0 and len(steps) > 0
    mom_note = f"max momentum rel diff {worst_mom:.3e} over {mom_steps} step(s); " if mom_steps else "momentum not compared; "
    loss_note = "loss not compared" if a.no_loss else f"max loss abs diff {worst_loss:.3e} (tol {a.loss_atol:g})"
    print(f"\n{len(steps)} steps compared; max LR rel diff {worst_lr:.3e} (tol {a.lr_rtol:g}); "
          f"{loss_note}; {mom_note}{bad} step(s) out of tolerance -> {'PASS' if ok else 'FAIL'}")
    if a.plot and steps:
        plot(a.plot, steps, A, B, la, lb)
    return 0 if ok else 1


# ----------------------------------------------------------------------------- plotting
def plot(path, steps, A, B, la, lb):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        plt = None
    if plt is not None:
        fig, ax = plt.subplots(2, 1, figsize=(9, 7), sharex=True)
        ax[0].plot(steps, [A[s][1][0] for s in steps], label=la)
        ax[0].plot(steps, [B[s][1][0] for s in steps], "--", label=lb)
        ax[0].set_ylabel("learning rate")
        ax[0].legend()
        ax[1].plot(steps, [A[s][0] for s in steps], label=la)
        ax[1].plot(steps, [B[s][0] for s in steps], "--", label=lb)
        ax[1].set_ylabel("train loss")
        ax[1].set_xlabel("step")
        ax[1].legend()
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        print(f"wrote {path} (matplotlib)")
        return
    png = Canvas(900, 640)
    info = []
    for k, (title, get) in enumerate([("lr", lambda s, R: R[s][1][0]), ("loss", lambda s, R: R[s][0])]):
        x0, y0, w, h = 60, 20 + k * 315, 820, 280
        ya = [get(s, A) for s in steps]
        yb = [get(s, B) for s in steps]
        finite = [v for v in ya + yb if math.isfinite(v)]
        lo, hi = (min(finite), max(finite)) if finite else (0.0, 1.0)
        if hi == lo:
            lo, hi = lo - 0.5 * abs(lo or 1), hi + 0.5 * abs(hi or 1)
        smin, smax = steps[0], steps[-1] if steps[-1] > steps[0] else steps[0] + 1
        png.rect(x0, y0, w, h, (0, 0, 0))
        for gx in range(1, 10):
            png.vline(x0 + gx * w // 10, y0, y0 + h, (225, 225, 225))
            png.hline(x0, x0 + w, y0 + gx * h // 10, (225, 225, 225))

        def px(s, v):
            return (x0 + (s - smin) / (smax - smin) * w, y0 + h - (v - lo) / (hi - lo) * h)
        for ys, col, dash in [(ya, (31, 119, 180), False), (yb, (214, 39, 40), True)]:
            pts = [px(s, v) for s, v in zip(steps, ys) if math.isfinite(v)]
            for i in range(1, len(pts)):
                png.line(pts[i - 1], pts[i], col, dash=dash, width=2 if not dash else 1)
        info.append(f"{title} panel {'top' if k == 0 else 'bottom'}: y in [{lo:.6g}, {hi:.6g}], step in [{smin}, {smax}]")
    info.append(f"blue solid = {la}, red dashed = {lb}")
    png.save(path, "\n".join(info))
    print(f"wrote {path} (built-in rasterizer; matplotlib is not installed)")
    for line in info:
        print("  " + line)


class Canvas:
    def __init__(self, w, h):
        self.w, self.h = w, h
        self.px = bytearray(b"\xff" * (w * h * 3))

    def set(self, x, y, c):
        x, y = int(round(x)), int(round(y))
        if 0 <= x < self.w and 0 <= y < self.h:
            i = (y * self.w + x) * 3
            self.px[i:i + 3] = bytes(c)

    def hline(self, x0, x1, y, c):
        for x in range(int(x0), int(x1) + 1):
            self.set(x, y, c)

    def vline(self, x, y0, y1, c):
        for y in range(int(y0), int(y1) + 1):
            self.set(x, y, c)

    def rect(self, x, y, w, h, c):
        self.hline(x, x + w, y, c)
        self.hline(x, x + w, y + h, c)
        self.vline(x, y, y + h, c)
        self.vline(x + w, y, y + h, c)

    def line(self, p, q, c, dash=False, width=1):
        (x0, y0), (x1, y1) = p, q
        n = int(max(abs(x1 - x0), abs(y1 - y0), 1) * 2)
        for i in range(n + 1):
            t = i / n
            if dash and (int((x0 + (x1 - x0) * t) / 6) % 2):
                continue
            x, y = x0 + (x1 - x0) * t, y0 + (y1 - y0) * t
            for d in range(width):
                self.set(x, y + d, c)

    def save(self, path, text=""):
        raw = b"".join(b"\x00" + bytes(self.px[y * self.w * 3:(y + 1) * self.w * 3]) for y in range(self.h))

        def chunk(tag, data):
            return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
        with open(path, "wb") as f:
            f.write(b"\x89PNG\r\n\x1a\n")
            f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", self.w, self.h, 8, 2, 0, 0, 0)))
            if text:
                f.write(chunk(b"tEXt", b"Comment\x00" + text.encode("latin-1", "replace")))
            f.write(chunk(b"IDAT", zlib.compress(raw, 9)))
            f.write(chunk(b"IEND", b""))


if __name__ == "__main__":
    sys.exit(main())
