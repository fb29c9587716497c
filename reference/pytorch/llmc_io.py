"""llm.c / InfiniTrain binary files: token files and fp32 weight files.

Token files (both models):
    1024-byte header = 256 int32 (little endian)
      [0] magic   20240520 -> tokens are uint16 (GPT-2)
                  20240801 -> tokens are uint32 (LLaMA-3)
      [1] version (written: 1 for uint16, 7 for uint32, as llm.c does; never checked on read)
      [2] number of tokens
    then the tokens.

GPT-2 weights (magic 20240326, version 3 = fp32):
    header 256 int32: [2] max_seq_len (block_size) [3] vocab_size [4] n_layer [5] n_head
                      [6] n_embd [7] padded_vocab_size
    then, fp32, in this order (L = n_layer, C = n_embd, Vp = padded vocab, maxT = block size):
      wte (Vp,C)  wpe (maxT,C)  ln_1.w (L,C)  ln_1.b (L,C)  c_attn.w (L,3C,C)  c_attn.b (L,3C)
      attn.c_proj.w (L,C,C)  attn.c_proj.b (L,C)  ln_2.w (L,C)  ln_2.b (L,C)
      mlp.c_fc.w (L,4C,C)  mlp.c_fc.b (L,4C)  mlp.c_proj.w (L,C,4C)  mlp.c_proj.b (L,C)
      ln_f.w (C)  ln_f.b (C)
    Rows vocab_size..Vp-1 of wte are padding: written as zeros, ignored on read (the model
    only has vocab_size rows, as InfiniTrain without tensor parallelism). The LM head is tied to wte.

LLaMA-3 weights (magic 20240803, version 3 = fp32), InfiniTrain layout (1024-byte header):
    int32 [2] block_size [3] vocab_size [4] n_layer [5] n_head [6] n_kv_head [7] n_embd
    float [8] ffn_dim_multiplier   int32 [9] multiple_of   float [10] norm_eps
    float [11] rope_theta          int32 [12] use_scaled_rope   int32 [13] max_gen_batch_size
    int32 [14] version_major       int32 [15] version_minor
    trainer-models' extension (0 in other writers' files): float [16] rope scale factor, float [17] low_freq_factor,
    float [18] high_freq_factor, int32 [19] original context. When [16] is 0 the factor is 8 for files marked
    version 3.1 and 32 (LLaMA-3.2) otherwise; low/high/context default to 1, 4, 8192.
    then, fp32 (H = ffn hidden, q rows = n_embd, kv rows = n_kv_head*head_dim):
      wte (V,C)  ln_1.w (L,C)  c_attn.w (L, C+2*kv, C) [Q|K|V rows]  attn.c_proj.w (L,C,C)
      ln_2.w (L,C)  mlp.c_fc.w (L,H,C)  mlp.c_fc2.w (L,H,C)  mlp.c_proj.w (L,C,H)
      ln_f.w (C)  lm_head.w (V,C)
    The header of karpathy/llm.c's train_llama3.py (256 int32 + 256 float32 = 2048 bytes, ints
    [8] multiple_of [9] use_scaled_rope [10] major [11] minor, floats [0] ffn_dim_multiplier
    [1] norm_eps [2] rope_theta) is also accepted on read (detected by ints [10]/[11] being small)
    and can be written with layout="llmc".
"""
import math
import struct

import numpy as np
import torch

GPT2_MAGIC = 20240326
LLAMA3_MAGIC = 20240803
FP32_VERSION = 3
BF16_VERSION = 5  # llm.c's bf16 files: read (both models), never written
TOK16_MAGIC = 20240520
TOK32_MAGIC = 20240801


# ----------------------------------------------------------------------------- tokens
def read_tokens(path):
    """Returns a 1-D numpy int64 array of tokens."""
    with open(path, "rb") as f:
        header = np.frombuffer(f.read(1024), dtype="<i4")
        magic, ntok = int(header[0]), int(header[2])
        if magic == TOK16_MAGIC:
            dt = "<u2"
        elif magic == TOK32_MAGIC:
            dt = "<u4"
        else:
            raise ValueError(f"{path}: bad token-file magic {magic}")
        toks = np.frombuffer(f.read(), dtype=dt)
    if len(toks) < ntok:
        raise ValueError(f"{path}: header says {ntok} tokens, file holds {len(toks)}")
    return toks[:ntok].astype(np.int64)


def write_tokens(path, tokens, uint32=False):
    tokens = np.asarray(tokens)
    header = np.zeros(256, dtype="<i4")
    header[0] = TOK32_MAGIC if uint32 else TOK16_MAGIC
    header[1] = 7 if uint32 else 1
    header[2] = len(tokens)
    with open(path, "wb") as f:
        f.write(header.tobytes())
        f.write(tokens.astype("<u4" if uint32 else "<u2").tobytes())


# ----------------------------------------------------------------------------- helpers
def _f2i(x):
    return struct.unpack("<i", struct.pack("<f", float(x)))[0]


def _i2f(i):
    return struct.unpack("<f", struct.pack("<i", int(i)))[0]


class _Reader:
    def __init__(self, data, offset, bf16=False):
        self.data, self.off, self.bf16 = data, offset, bf16

    def take(self, *shape):
        n = int(np.prod(shape))
        if self.bf16:
            u = np.frombuffer(self.data, dtype="<u2", count=n, offset=self.off).astype(np.uint32) << 16
            a = u.view(np.float32)
            self.off += 2 * n
        else:
            a = np.frombuffer(self.data, dtype="<f4", count=n, offset=self.off)
            self.off += 4 * n
        return torch.from_numpy(a.copy()).view(*shape)

    def done(self):
        if self.off != len(self.data):
            raise ValueError(f"weight file size mismatch: consumed {self.off} of {len(self.data)} bytes")


def _w(f, t):
    f.write(t.detach().to("cpu", torch.float32).contiguous().numpy().astype("<f4").tobytes())


# ----------------------------------------------------------------------------- GPT-2
def gpt2_padded_vocab(vocab_size, multiple=128):
    return (vocab_size + multiple - 1) // multiple * multiple


def read_gpt2_header(path):
    with open(path, "rb") as f:
        h = np.frombuffer(f.read(1024), dtype="<i4")
    if int(h[0]) != GPT2_MAGIC:
        raise ValueError(f"{path}: not a GPT-2 llm.c file (magic {int(h[0])})")
    if int(h[1]) not in (FP32_VERSION, BF16_VERSION):
        raise ValueError(f"{path}: version {int(h[1])} (expected 3 = fp32 or 5 = bf16)")
    return dict(block_size=int(h[2]), vocab_size=int(h[3]), n_layer=int(h[4]), n_head=int(h[5]),
                n_embd=int(h[6]), padded_vocab_size=int(h[7]), bf16=int(h[1]) == BF16_VERSION)


def load_gpt2(model, path):
    """Fill a gpt2.GPT2 model (matching config) from an llm.c file."""
    cfg = read_gpt2_header(path)
    with open(path, "rb") as f:
        data = f.read()
    r = _Reader(data, 1024, cfg["bf16"])
    L, C, V, Vp, T = cfg["n_layer"], cfg["n_embd"], cfg["vocab_size"], cfg["padded_vocab_size"], cfg["block_size"]
    sd = {}
    sd["transformer.wte.weight"] = r.take(Vp, C)[:V]
    sd["transformer.wpe.weight"] = r.take(T, C)
    order = [("ln_1.weight", (C,)), ("ln_1.bias", (C,)), ("attn.c_attn.weight", (3 * C, C)),
             ("attn.c_attn.bias", (3 * C,)), ("attn.c_proj.weight", (C, C)), ("attn.c_proj.bias", (C,)),
             ("ln_2.weight", (C,)), ("ln_2.bias", (C,)), ("mlp.c_fc.weight", (4 * C, C)),
             ("mlp.c_fc.bias", (4 * C,)), ("mlp.c_proj.weight", (C, 4 * C)), ("mlp.c_proj.bias", (C,))]
    for name, shape in order:
        for i in range(L):
            sd[f"transformer.h.{i}.{name}"] = r.take(*shape)
    sd["transformer.ln_f.weight"] = r.take(C)
    sd["transformer.ln_f.bias"] = r.take(C)
    r.done()
    _load_exact(model, sd)
    return cfg


def save_gpt2(model, path):
    c = model.config
    L, C, V, T = c.n_layer, c.n_embd, c.vocab_size, c.block_size
    Vp = c.padded_vocab_size
    sd = model.state_dict()
    h = np.zeros(256, dtype="<i4")
    h[:8] = [GPT2_MAGIC, FP32_VERSION, T, V, L, c.n_head, C, Vp]
    with open(path, "wb") as f:
        f.write(h.tobytes())
        wte = sd["transformer.wte.weight"]
        _w(f, torch.cat([wte, torch.zeros(Vp - V, C, dtype=wte.dtype, device=wte.device)], 0))
        _w(f, sd["transformer.wpe.weight"])
        for name in ["ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias",
                     "attn.c_proj.weight", "attn.c_proj.bias", "ln_2.weight", "ln_2.bias",
                     "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias"]:
            for i in range(L):
                _w(f, sd[f"transformer.h.{i}.{name}"])
        _w(f, sd["transformer.ln_f.weight"])
        _w(f, sd["transformer.ln_f.bias"])


# ----------------------------------------------------------------------------- LLaMA-3
def llama3_ffn_hidden(n_embd, ffn_dim_multiplier, multiple_of):
    """InfiniTrain: hidden = 2*(4C)/3 (integer); if mult > 0: llround(mult*hidden); round up to multiple_of."""
    hidden = (2 * 4 * n_embd) // 3
    if ffn_dim_multiplier is not None and ffn_dim_multiplier > 0:
        x = float(np.float32(ffn_dim_multiplier)) * hidden
        hidden = int(math.floor(x + 0.5))  # llround (x > 0)
    return (hidden + multiple_of - 1) // multiple_of * multiple_of


def read_llama3_header(path):
    with open(path, "rb") as f:
        raw = f.read(2048)
    h = np.frombuffer(raw[:1024], dtype="<i4")
    if int(h[0]) != LLAMA3_MAGIC:
        raise ValueError(f"{path}: not a LLaMA-3 llm.c file (magic {int(h[0])})")
    if int(h[1]) not in (FP32_VERSION, BF16_VERSION):
        raise ValueError(f"{path}: version {int(h[1])} (expected 3 = fp32 or 5 = bf16)")
    cfg = dict(bf16=int(h[1]) == BF16_VERSION, block_size=int(h[2]), vocab_size=int(h[3]), n_layer=int(h[4]), n_head=int(h[5]),
               n_kv_head=int(h[6]), n_embd=int(h[7]))
    if 0 <= int(h[10]) < 1000 and 0 <= int(h[11]) < 1000:  # karpathy/llm.c layout (int + float headers)
        hf = np.frombuffer(raw[1024:2048], dtype="<f4")
        cfg.update(multiple_of=int(h[8]), use_scaled_rope=bool(h[9]), version_major=int(h[10]),
                   version_minor=int(h[11]), ffn_dim_multiplier=float(hf[0]), norm_eps=float(hf[1]),
                   rope_theta=float(hf[2]), max_gen_batch_size=4, header_bytes=2048, layout="llmc")
    else:  # InfiniTrain layout
        cfg.update(ffn_dim_multiplier=_i2f(h[8]), multiple_of=int(h[9]), norm_eps=_i2f(h[10]),
                   rope_theta=_i2f(h[11]), use_scaled_rope=bool(h[12]), max_gen_batch_size=int(h[13]),
                   version_major=int(h[14]), version_minor=int(h[15]), header_bytes=1024, layout="infinitrain")
    major, minor = cfg["version_major"], cfg["version_minor"]
    cfg["rope_scale_factor"] = _i2f(h[16]) if h[16] != 0 else (8.0 if (major, minor) == (3, 1) else 32.0)
    cfg["rope_low_freq_factor"] = _i2f(h[17]) if h[17] != 0 else 1.0
    cfg["rope_high_freq_factor"] = _i2f(h[18]) if h[18] != 0 else 4.0
    cfg["rope_original_context"] = int(h[19]) if h[19] != 0 else 8192
    return cfg


def load_llama3(model, path):
    cfg = read_llama3_header(path)
    with open(path, "rb") as f:
        data = f.read()
    r = _Reader(data, cfg["header_bytes"], cfg["bf16"])
    L, C, V = cfg["n_layer"], cfg["n_embd"], cfg["vocab_size"]
    hd = C // cfg["n_head"]
    kv = cfg["n_kv_head"] * hd
    H = llama3_ffn_hidden(C, cfg["ffn_dim_multiplier"], cfg["multiple_of"])
    sd = {"transformer.wte.weight": r.take(V, C)}
    for name, shape in [("ln_1.weight", (C,)), ("attn.c_attn.weight", (C + 2 * kv, C)),
                        ("attn.c_proj.weight", (C, C)), ("ln_2.weight", (C,)),
                        ("mlp.c_fc.weight", (H, C)), ("mlp.c_fc2.weight", (H, C)),
                        ("mlp.c_proj.weight", (C, H))]:
        for i in range(L):
            sd[f"transformer.h.{i}.{name}"] = r.take(*shape)
    sd["transformer.ln_f.weight"] = r.take(C)
    sd["lm_head.weight"] = r.take(V, C)
    r.done()
    _load_exact(model, sd)
    return cfg


def save_llama3(model, path, layout="infinitrain"):
    c = model.config
    L = c.n_layer
    sd = model.state_dict()
    hi = np.zeros(256, dtype="<i4")
    hi[:8] = [LLAMA3_MAGIC, FP32_VERSION, c.block_size, c.vocab_size, L, c.n_head, c.n_kv_head, c.n_embd]
    hf = None
    if layout == "infinitrain":
        hi[8] = _f2i(c.ffn_dim_multiplier)
        hi[9] = c.multiple_of
        hi[10] = _f2i(c.norm_eps)
        hi[11] = _f2i(c.rope_theta)
        hi[12] = int(c.use_scaled_rope)
        hi[13] = c.max_gen_batch_size
        hi[14], hi[15] = 3, (1 if c.rope_scale_factor == 8.0 else 2)
        hi[16] = _f2i(c.rope_scale_factor)
        hi[17] = _f2i(c.rope_low_freq_factor)
        hi[18] = _f2i(c.rope_high_freq_factor)
        hi[19] = c.rope_original_context
    elif layout == "llmc":
        hi[8] = c.multiple_of
        hi[9] = int(c.use_scaled_rope)
        hi[10], hi[11] = 3, (1 if c.rope_scale_factor == 8.0 else 2)
        hf = np.zeros(256, dtype="<f4")
        hf[:3] = [c.ffn_dim_multiplier, c.norm_eps, c.rope_theta]
    else:
        raise ValueError(layout)
    with open(path, "wb") as f:
        f.write(hi.tobytes())
        if hf is not None:
            f.write(hf.tobytes())
        _w(f, sd["transformer.wte.weight"])
        for name in ["ln_1.weight", "attn.c_attn.weight", "attn.c_proj.weight", "ln_2.weight",
                     "mlp.c_fc.weight", "mlp.c_fc2.weight", "mlp.c_proj.weight"]:
            for i in range(L):
                _w(f, sd[f"transformer.h.{i}.{name}"])
        _w(f, sd["transformer.ln_f.weight"])
        _w(f, sd["lm_head.weight"])


def _load_exact(model, sd):
    own = model.state_dict()
    for k, v in sd.items():
        if k not in own:
            raise KeyError(f"unexpected parameter {k}")
        if tuple(own[k].shape) != tuple(v.shape):
            raise ValueError(f"{k}: model shape {tuple(own[k].shape)} vs file {tuple(v.shape)}")
    with torch.no_grad():
        for k, v in sd.items():
            own[k].copy_(v)
    missing = [k for k in own if k not in sd and not k.endswith("lm_head.weight")]
    if missing:
        raise KeyError(f"parameters missing from file: {missing}")
