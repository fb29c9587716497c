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

    def __post_init__(self):
        assert self.n_embd % self.n_head == 0
        assert self.n_head % self.n_kv_head == 0
        assert (self.n_embd // self.n_head) % 2 == 0

    @property
    def ffn_hidden(self):
        return llmc_io.llama3_ffn_hidden(self.n_embd, self.ffn_dim_multiplier, self.multiple_of)


PRESETS = {
    "llama3": {},  # InfiniTrain's LLaMA3Config (1B-sized)
    "tiny": dict(n_layer=2, n_head=4, n_kv_head=2, n_embd=64, vocab_size=512, block_size=64,
                 ffn_dim_multiplier=1.5, multiple_of=32, rope_theta=500000.0, use_scaled_rope=True),
}


def rope_scale(freqs):
    """LLaMA-3.1 scaling of the inverse frequencies (elementwise, in double, returned as float32)."""
    scale_factor, low_freq_factor, high_freq_factor, old_context_len = 8.0, 1.0, 4.0, 8192.0
    low_wavelen = old_context_len / low_freq_factor
    high_wavelen = old_context_len / high_freq_factor
    out = []
    for f in freqs.tolist():
        wavelen = 2 * math.pi / f
        if wavelen < high_wavelen:
            out.append(f)
        elif wavelen > low_wavelen:
            out.append(f / scale_factor)
        else:
            smooth = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
            out.append((1 - smooth) * f / scale_factor + smooth * f)
    return torch.tensor(out, dtype=torch.float32)


def rope_tables(head_dim, end, theta, use_scaled):
    """cos, sin of shape (end, head_dim/2), float32, computed as llm.c does."""
    freqs = 1.0 / (theta ** (torch.arange(0, head_dim, 2)[: head_dim // 2].float() / head_dim))
    if use_scaled:
        freqs = rope_scale(freqs)
    t = torch.arange(end, dtype=torch.float32)
    ang = torch.outer(t, freqs)
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
        cos, sin = rope_tables(cfg.n_embd // cfg.n_head, cfg.block_size * 2, cfg.rope_theta, cfg.use_scaled_rope)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)

    def init_weights(self, seed):
        """Seeded init: N(0, 0.02) for every matrix, N(0, 0.02/sqrt(2L)) for c_proj, ones for RMSNorms.
        Drawn on the CPU generator in named_parameters() order."""
        g = torch.Generator().manual_seed(seed)
        std_res = 0.02 / math.sqrt(2 * self.config.n_layer)
        with torch.no_grad():
            for name, p in self.named_parameters():
                if p.dim() == 2:
                    std = std_res if name.endswith("c_proj.weight") else 0.02
                    p.copy_(torch.normal(0.0, std, size=tuple(p.shape), generator=g))
                else:
                    p.fill_(1.0)

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
                "multiple_of", "norm_eps", "rope_theta", "use_scaled_rope", "max_gen_batch_size")
        m = cls(LLaMA3Config(**{k: h[k] for k in keys}))
        llmc_io.load_llama3(m, path)
        return m

    def save_llmc(self, path, layout="infinitrain"):
        llmc_io.save_llama3(self, path, layout)


def build_model(flags):
    if flags.llmc_filepath:
        return LLaMA3.from_llmc(flags.llmc_filepath)
    if flags.model not in PRESETS:
        raise SystemExit(f"--model={flags.model}: unknown LLaMA-3 model (known: {', '.join(PRESETS)})")
    kw = dict(PRESETS[flags.model])
    for k in ("n_layer", "n_head", "n_kv_head", "n_embd", "vocab_size", "block_size"):
        if getattr(flags, k):
            kw[k] = getattr(flags, k)
    m = LLaMA3(LLaMA3Config(**kw))
    m.init_weights(flags.seed)
    return m


if __name__ == "__main__":
    import trainer
    trainer.main("llama3", build_model, default_model="llama3")
