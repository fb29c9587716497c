#!/usr/bin/python3
"""LLaMA-3 reference model (llm.c train_llama3.py / InfiniTrain conventions), PyTorch >= 1.13.

    RMSNorm (x * rsqrt(mean(x^2) + eps) * w), RoPE on interleaved pairs (x[2i], x[2i+1]) with
    theta = rope_theta and, when use_scaled_rope, the LLaMA-3.1 frequency scaling (factor 8,
    low 1, high 4, original context 8192), GQA (query head h uses kv head h // (n_head/n_kv_head)),
    fused c_attn rows [Q | K | V], SwiGLU MLP c_proj(c_fc(x) * silu(c_fc2(x))), no biases,
    untied lm_head.

Run as a trainer:  /usr/bin/python3 reference/pytorch/llama3.py --input_bin=... [flags]  (see trainer.py)
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
class LLaMA3Config:
    block_size: int = 8192
    vocab_size: int = 128256
    n_layer: int = 16
    n_head: int = 32
    n_kv_head: int = 8
    n_embd: int = 2048
    ffn_dim_multiplier: float = 1.5
    multiple_of: int = 256
    norm_eps: float = 1e-5
    rope_theta: float = 500000.0
    use_scaled_rope: bool = True
    max_gen_batch_size: int = 4
    # LLaMA-3.1 RoPE scaling parameters (trainer-models' convention: factor 8 for files marked version 3.1,
    # 32 (LLaMA-3.2) otherwise; header ints [16..19] carry them explicitly when nonzero)
    rope_scale_factor: float = 32.0
    rope_low_freq_factor: float = 1.0
    rope_high_freq_factor: float = 4.0
    rope_original_context: int = 8192

    def __post_init__(self):
        assert self.n_embd % self.n_head == 0
        assert self.n_head % self.n_kv_head == 0
        assert (self.n_embd // self.n_head) % 2 == 0

    @property
    def ffn_hidden(self):
        return llmc_io.llama3_ffn_hidden(self.n_embd, self.ffn_dim_multiplier, self.multiple_of)


# trainer-models' catalog (Trainer/Models/ModelConfig.cs), names case-insensitive
PRESETS = {
    "llama3": dict(n_layer=16, n_head=32, n_kv_head=8, n_embd=2048, block_size=8192, vocab_size=128256,
                   ffn_dim_multiplier=1.5, multiple_of=256),
    "llama3-tiny": dict(n_layer=2, n_head=4, n_kv_head=2, n_embd=64, block_size=64, vocab_size=50257,
                        ffn_dim_multiplier=1.5, multiple_of=32),
    "llama3-mini": dict(n_layer=4, n_head=8, n_kv_head=2, n_embd=128, block_size=128, vocab_size=50257,
                        ffn_dim_multiplier=1.5, multiple_of=64),
}
ALIASES = {"llama3.2-1b": "llama3", "llama3-1b": "llama3", "tiny": "llama3-tiny"}


def rope_inv_freqs(cfg):
    """Inverse frequencies 1/theta^(2i/D), i < D/2, in double, with LLaMA-3.1 scaling when use_scaled_rope
    (Meta's / llm.c's apply_scaling with this config's factor, low/high freq factors, original context)."""
    d = cfg.n_embd // cfg.n_head
    out = []
    for i in range(d // 2):
        f = 1.0 / math.pow(cfg.rope_theta, (2.0 * i) / d)
        if cfg.use_scaled_rope:
            old = float(cfg.rope_original_context)
            low_wavelen = old / cfg.rope_low_freq_factor
            high_wavelen = old / cfg.rope_high_freq_factor
            wavelen = 2 * math.pi / f
            if wavelen < high_wavelen:
                pass
            elif wavelen > low_wavelen:
                f = f / cfg.rope_scale_factor
            else:
                smooth = (old / wavelen - cfg.rope_low_freq_factor) / (cfg.rope_high_freq_factor - cfg.rope_low_freq_factor)
                f = (1 - smooth) * f / cfg.rope_scale_factor + smooth * f
        out.append(f)
    return out


def rope_tables(cfg, end):
    """cos, sin of shape (end, head_dim/2), float32: frequencies in double cast to float32, angles t*f in float32."""
    inv = torch.tensor(rope_inv_freqs(cfg), dtype=torch.float64).float()
    t = torch.arange(end, dtype=torch.float32)
    ang = torch.outer(t, inv)
    return torch.cos(ang), torch.sin(ang)


def apply_rope(x, cos, sin):
    """x: (B, T, H, D); pairs (x[..., 2i], x[..., 2i+1]) rotated by angle t*freq_i."""
    B, T, H, D = x.shape
    xf = x.float().reshape(B, T, H, D // 2, 2)
    x0, x1 = xf[..., 0], xf[..., 1]
    c = cos[:T].view(1, T, 1, D // 2)
    s = sin[:T].view(1, T, 1, D // 2)
    out = torch.stack([x0 * c - x1 * s, x0 * s + x1 * c], dim=-1).flatten(3)
    return out.type_as(x)


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x) * self.weight


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.n_head, self.n_kv_head = cfg.n_head, cfg.n_kv_head
        self.hd = cfg.n_embd // cfg.n_head
        self.c_attn = nn.Linear(cfg.n_embd, (cfg.n_head + 2 * cfg.n_kv_head) * self.hd, bias=False)
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=False)

    def forward(self, x, cos, sin):
        B, T, C = x.shape
        hd, nh, nkv = self.hd, self.n_head, self.n_kv_head
        q, k, v = self.c_attn(x).split([nh * hd, nkv * hd, nkv * hd], dim=-1)
        q, k, v = q.view(B, T, nh, hd), k.view(B, T, nkv, hd), v.view(B, T, nkv, hd)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        rep = nh // nkv
        if rep > 1:  # repeat_interleave over heads: kv head j serves query heads j*rep .. j*rep+rep-1
            k = k[:, :, :, None, :].expand(B, T, nkv, rep, hd).reshape(B, T, nh, hd)
            v = v[:, :, :, None, :].expand(B, T, nkv, rep, hd).reshape(B, T, nh, hd)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hd))
        mask = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
        att = att.masked_fill(mask, torch.finfo(att.dtype).min)
        att = F.softmax(att.float(), dim=-1).type_as(q)
        y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
        return self.c_proj(y)


class MLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        h = cfg.ffn_hidden
        self.c_fc = nn.Linear(cfg.n_embd, h, bias=False)   # "up"   (Meta w3)
        self.c_fc2 = nn.Linear(cfg.n_embd, h, bias=False)  # "gate" (Meta w1)
        self.c_proj = nn.Linear(h, cfg.n_embd, bias=False)  # "down" (Meta w2)

    def forward(self, x):
        return self.c_proj(self.c_fc(x) * F.silu(self.c_fc2(x)))


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.ln_1 = RMSNorm(cfg.n_embd, cfg.norm_eps)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = RMSNorm(cfg.n_embd, cfg.norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x, cos, sin):
        x = x + self.attn(self.ln_1(x), cos, sin)
        return x + self.mlp(self.ln_2(x))


class LLaMA3(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.config = cfg
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(cfg.vocab_size, cfg.n_embd),
            h=nn.ModuleList([Block(cfg) for _ in range(cfg.n_layer)]),
            ln_f=RMSNorm(cfg.n_embd, cfg.norm_eps),
        ))
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        cos, sin = rope_tables(cfg, cfg.block_size)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)

    def weight_file_order(self):
        """(name, tensor) in llm.c / InfiniTrain file order."""
        sd = dict(self.named_parameters())
        out = [("transformer.wte.weight", sd["transformer.wte.weight"])]
        for n in ("ln_1.weight", "attn.c_attn.weight", "attn.c_proj.weight", "ln_2.weight",
                  "mlp.c_fc.weight", "mlp.c_fc2.weight", "mlp.c_proj.weight"):
            out += [(f"transformer.h.{i}.{n}", sd[f"transformer.h.{i}.{n}"]) for i in range(self.config.n_layer)]
        out += [("transformer.ln_f.weight", sd["transformer.ln_f.weight"]), ("lm_head.weight", sd["lm_head.weight"])]
        return out

    def init_weights(self, seed):
        """trainer-models' seeded init, draw for draw: a CPU generator seeded with `seed`; in weight-file order,
        RMSNorm weights = 1, *c_proj.weight ~ N(0, 0.02/sqrt(2L)), every other matrix ~ N(0, 0.02) (tensor.normal_)."""
        g = torch.Generator().manual_seed(int(seed))
        std, resid = 0.02, 0.02 / math.sqrt(2.0 * self.config.n_layer)
        with torch.no_grad():
            for name, t in self.weight_file_order():
                if "ln_" in name:
                    t.fill_(1.0)
                elif name.endswith("c_proj.weight"):
                    t.normal_(0.0, resid, generator=g)
                else:
                    t.normal_(0.0, std, generator=g)

    def forward(self, idx):
        B, T = idx.shape
        assert T <= self.config.block_size, f"sequence length {T} > block size {self.config.block_size}"
        x = self.transformer.wte(idx)
        for blk in self.transformer.h:
            x = blk(x, self.rope_cos, self.rope_sin)
        return self.lm_head(self.transformer.ln_f(x))

    @classmethod
    def from_llmc(cls, path):
        h = llmc_io.read_llama3_header(path)
        keys = ("block_size", "vocab_size", "n_layer", "n_head", "n_kv_head", "n_embd", "ffn_dim_multiplier",
                "multiple_of", "norm_eps", "rope_theta", "use_scaled_rope", "max_gen_batch_size",
                "rope_scale_factor", "rope_low_freq_factor", "rope_high_freq_factor", "rope_original_context")
        m = cls(LLaMA3Config(**{k: h[k] for k in keys}))
        llmc_io.load_llama3(m, path)
        return m

    def save_llmc(self, path, layout="infinitrain"):
        llmc_io.save_llama3(self, path, layout)


def build_model(flags):
    if flags.llmc_filepath:
        return LLaMA3.from_llmc(flags.llmc_filepath)
    name = ALIASES.get(flags.model.strip().lower(), flags.model.strip().lower())
    if name not in PRESETS:
        raise SystemExit(f"--model={flags.model}: unknown LLaMA-3 model (known: {', '.join(list(PRESETS) + list(ALIASES))})")
    kw = dict(PRESETS[name])
    for k in ("n_layer", "n_head", "n_kv_head", "n_embd", "vocab_size", "block_size"):
        if getattr(flags, k):
            kw[k] = getattr(flags, k)
    m = LLaMA3(LLaMA3Config(**kw))
    m.init_weights(flags.seed)
    return m


if __name__ == "__main__":
    import trainer
    trainer.main("llama3", build_model, default_model="llama3-tiny")
