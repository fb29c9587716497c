#!/usr/bin/python3
"""Write a synthetic llm.c token file: --out=FILE --count=N --vocab=V --seed=S [--uint32]."""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llmc_io  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--out", required=True)
p.add_argument("--count", type=int, default=65536)
p.add_argument("--vocab", type=int, default=512)
p.add_argument("--seed", type=int, default=1234)
p.add_argument("--uint32", action="store_true", help="LLaMA-3 file (magic 20240801, uint32)")
a = p.parse_args()
rng = np.random.default_rng(a.seed)
# a learnable stream: a random walk over the vocabulary with small steps, so the loss goes down
steps = rng.integers(-3, 4, size=a.count)
toks = np.mod(np.cumsum(steps) + rng.integers(0, a.vocab), a.vocab)
llmc_io.write_tokens(a.out, toks, uint32=a.uint32)
print(f"wrote {a.out}: {a.count} tokens, vocab {a.vocab}, {'uint32' if a.uint32 else 'uint16'}")
