#!/usr/bin/python3
"""GPT-2 reference model (llm.c / InfiniTrain conventions), PyTorch >= 1.13.

    learned absolute positions (wpe), pre-LayerNorm blocks (eps 1e-5), fused c_attn (Q|K|V rows),
    causal softmax attention, GELU tanh approximation, LM head tied to wte, logits over the real
    vocab_size (the llm.c padded rows live only in the file).

Run as a trainer:  /usr/bin/python3 reference/pytorch/gpt2.py --input_bin=... [flags]  (see trainer.py)
"""
import math
import os
import sys
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llmc_io  # noqa: E402


@dataclass
class GPT2Config:
    block_size: int = 1024
    vocab_size: int = 50257
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    padded_vocab_size: int = 0  # 0 -> round vocab_size up to a multiple of 128

    def __post_init__(self):
        if not self.padded_vocab_size:
            self.padded_vocab_size = llmc_io.gpt2_padded_vocab(self.vocab_size)
        assert self.n_embd % self.n_head == 0, "n_embd must be divisible by n_head"
        assert self.padded_vocab_size >= self.vocab_size


# trainer-models' catalog (Trainer/Models/ModelConfig.cs; InfiniTrain's names + CPU sizes), case-insensitive.
# vocab 50257 padded to 50304 as llm.c; block size 1024 unless given.
PRESETS = {
    "gpt2": dict(n_layer=12, n_head=12, n_embd=768),
    "d24": dict(n_layer=24, n_head=16, n_embd=1024),
    "d36": dict(n_layer=36, n_head=20, n_embd=1280),
    "d48": dict(n_layer=48, n_head=25, n_embd=1600),
    "gpt2-tiny": dict(n_layer=2, n_head=4, n_embd=64, block_size=64),
    "gpt2-mini": dict(n_layer=4, n_head=4, n_embd=128, block_size=128),
}
ALIASES = {"d12": "gpt2", "gpt2-124m": "gpt2", "gpt2-medium": "d24", "gpt2-350m": "d24", "gpt2-large": "d36",
           "gpt2-774m": "d36", "gpt2-xl": "d48", "gpt2-1558m": "d48", "tiny": "gpt2-tiny"}


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.n_head = cfg.n_head
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd)
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd)

    def forward(self, x):
        B, T, C = x.shape
        hd = C // self.n_head
        q, k, v = self.c_attn(x).split(C, dim=2)
        q = q.view(B, T, self.n_head, hd).transpose(1, 2)
        k = k.view(B, T, self.n_head, hd).transpose(1, 2)
        v = v.view(B, T, self.n_head, hd).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hd))
        mask = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
        att = att.masked_fill(mask, float("-inf"))
        att = F.softmax(att.float(), dim=-1).type_as(v)
        y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
        return self.c_proj(y)


class MLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.c_fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd)
        self.c_proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd)

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd, eps=1e-5)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.n_embd, eps=1e-5)
        self.mlp = MLP(cfg)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT2(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.config = cfg
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(cfg.vocab_size, cfg.n_embd),
            wpe=nn.Embedding(cfg.block_size, cfg.n_embd),
            h=nn.ModuleList([Block(cfg) for _ in range(cfg.n_layer)]),
            ln_f=nn.LayerNorm(cfg.n_embd, eps=1e-5),
        ))
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.lm_head.weight = self.transformer.wte.weight  # tied

    def weight_file_order(self):
        """(name, tensor) in llm.c file order; wte here has vocab_size rows (the file has padded_vocab_size)."""
        sd = dict(self.named_parameters())
        out = [("transformer.wte.weight", sd["transformer.wte.weight"]), ("transformer.wpe.weight", sd["transformer.wpe.weight"])]
        for n in ("ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias", "attn.c_proj.weight",
                  "attn.c_proj.bias", "ln_2.weight", "ln_2.bias", "mlp.c_fc.weight", "mlp.c_fc.bias",
                  "mlp.c_proj.weight", "mlp.c_proj.bias"):
            out += [(f"transformer.h.{i}.{n}", sd[f"transformer.h.{i}.{n}"]) for i in range(self.config.n_layer)]
        out += [("transformer.ln_f.weight", sd["transformer.ln_f.weight"]), ("transformer.ln_f.bias", sd["transformer.ln_f.bias"])]
        return out

    def init_weights(self, seed):
        """trainer-models' seeded init, draw for draw: a CPU generator seeded with `seed`; in weight-file order,
        wte (all padded_vocab_size rows are drawn, the padding rows then zeroed) and wpe ~ N(0, 0.02),
        c_attn/c_fc weights ~ N(0, 0.02), c_proj weights ~ N(0, 0.02/sqrt(2L)), LayerNorm weights 1, biases 0."""
        g = torch.Generator().manual_seed(int(seed))
        c = self.config
        std, resid = 0.02, 0.02 / math.sqrt(2.0 * c.n_layer)
        with torch.no_grad():
            for name, t in self.weight_file_order():
                if name == "transformer.wte.weight":
                    full = torch.empty(c.padded_vocab_size, c.n_embd)
                    full.normal_(0.0, std, generator=g)
                    t.copy_(full[: c.vocab_size])
                elif name == "transformer.wpe.weight" or name.endswith(("c_attn.weight", "c_fc.weight")):
                    t.normal_(0.0, std, generator=g)
                elif name.endswith("c_proj.weight"):
                    t.normal_(0.0, resid, generator=g)
                elif ".ln_" in name and name.endswith(".weight"):
                    t.fill_(1.0)
                else:
                    t.zero_()

    def forward(self, idx):
        B, T = idx.shape
        assert T <= self.config.block_size, f"sequence length {T} > block size {self.config.block_size}"
        pos = torch.arange(T, dtype=torch.long, device=idx.device)
        x = self.transformer.wte(idx) + self.transformer.wpe(pos)
        for blk in self.transformer.h:
            x = blk(x)
        return self.lm_head(self.transformer.ln_f(x))

    # ------------------------------------------------------------------ llm.c files
    @classmethod
    def from_llmc(cls, path):
        h = llmc_io.read_gpt2_header(path)
        cfg = GPT2Config(block_size=h["block_size"], vocab_size=h["vocab_size"], n_layer=h["n_layer"],
                         n_head=h["n_head"], n_embd=h["n_embd"], padded_vocab_size=h["padded_vocab_size"])
        m = cls(cfg)
        llmc_io.load_gpt2(m, path)
        return m

    def save_llmc(self, path):
        llmc_io.save_gpt2(self, path)


def build_model(flags):
    """Model from --llmc_filepath, or from --model preset (+ size overrides) with a --seed init."""
    if flags.llmc_filepath:
        return GPT2.from_llmc(flags.llmc_filepath)
    name = ALIASES.get(flags.model.strip().lower(), flags.model.strip().lower())
    if name not in PRESETS:
        raise SystemExit(f"--model={flags.model}: unknown GPT-2 model (known: {', '.join(list(PRESETS) + list(ALIASES))})")
    kw = dict(PRESETS[name])
    for k in ("n_layer", "n_head", "n_embd", "vocab_size", "block_size"):
        if getattr(flags, k):
            kw[k] = getattr(flags, k)
    m = GPT2(GPT2Config(**kw))
    m.init_weights(flags.seed)
    return m


if __name__ == "__main__":
    import trainer
    trainer.main("gpt2", build_model, default_model="gpt2-tiny")
