"""LoRA for the PyTorch reference, as the C# trainer's Trainer/Lora (same init, same order, same arithmetic).

    y = W x + b + scale * B (A dropout(x)),  scale = alpha / rank,  A (rank, in), B (out, rank)
    A: kaiming_uniform(a=sqrt(5)) bound as PyTorch computes it, drawn with tensor.uniform_ from a CPU generator
       seeded with seed + 1_000_003, one layer after the other in llm.c weight-file order; B: zeros.
    Targets: InfiniTrain's names, matched at the end of a layer name on a '.' boundary ("c_proj" = attn.c_proj and
    mlp.c_proj). Every base parameter is frozen (requires_grad False); the optimizer gets only the adapters.

The adapter is attached with a forward hook and stored as attributes lora_A / lora_B of the nn.Linear, so the
model's own parameter names (weight_file_order, llm.c files) are unchanged.
"""
import math

import torch
import torch.nn.functional as F

DEFAULT_TARGETS = {"gpt2": "c_attn,c_proj", "llama3": "c_attn,c_proj,c_fc,c_fc2"}
KNOWN = ("c_attn", "attn.c_proj", "c_proj", "mlp.c_proj", "c_fc", "c_fc2", "attn.c_attn", "mlp.c_fc", "mlp.c_fc2")
SEED_OFFSET = 1_000_003


def kaiming_bound(fan_in):
    a = math.sqrt(5.0)
    gain = math.sqrt(2.0 / (1 + a * a))
    std = gain / math.sqrt(fan_in)
    return math.sqrt(3.0) * std


def matches(layer, target):
    return layer == target or layer.endswith("." + target)


def _hook(module, inputs, output):
    x = inputs[0]
    if module.lora_dropout > 0:
        x = F.dropout(x, module.lora_dropout, module.training)
    return output + F.linear(F.linear(x, module.lora_A), module.lora_B) * module.lora_scale


def apply(model, kind, rank, alpha, targets, dropout, seed):
    """Wraps the selected linear layers of `model` (gpt2.GPT2 / llama3.LLaMA3); returns the adapter parameters."""
    targets = [t.strip() for t in (targets or DEFAULT_TARGETS[kind]).split(",") if t.strip()]
    for t in targets:
        if t not in KNOWN:
            raise SystemExit(f"--lora_target_modules: unknown module '{t}' (known: {', '.join(KNOWN)})")
    modules = dict(model.named_modules())
    layers = []
    for name, _ in model.weight_file_order():
        short = name[len("transformer."):] if name.startswith("transformer.") else name
        if not short.endswith(".weight") or not (".attn." in short or ".mlp." in short):
            continue
        layer = short[: -len(".weight")]
        if any(matches(layer, t) for t in targets):
            layers.append(modules[name[: -len(".weight")]])
    for t in targets:
        if not any(matches(n[len("transformer."):-len(".weight")], t) for n, _ in model.weight_file_order()
                   if (".attn." in n or ".mlp." in n) and n.endswith(".weight")):
            raise SystemExit(f"--lora_target_modules: the model has no '{t}' layer")
    for p in model.parameters():
        p.requires_grad_(False)
    g = torch.Generator().manual_seed(int(seed) + SEED_OFFSET)
    params = []
    for lin in layers:
        out_f, in_f = lin.weight.shape
        if rank > min(in_f, out_f):
            raise SystemExit(f"--lora_rank={rank} is larger than a layer allows (min(in, out) = {min(in_f, out_f)})")
        a = torch.empty(rank, in_f)
        b = kaiming_bound(in_f)
        a.uniform_(-b, b, generator=g)
        lin.lora_A = torch.nn.Parameter(a)
        lin.lora_B = torch.nn.Parameter(torch.zeros(out_f, rank))
        lin.lora_scale = alpha / rank
        lin.lora_dropout = dropout
        lin.register_forward_hook(_hook)
        params += [lin.lora_A, lin.lora_B]
    return params
