# torch 1.13: float32 gradient norm (clip_grad_norm_) vs the float64 norm, gpt2-tiny, SGD momentum 0.9 lr 0.05, DP 1
# (8 micro-batches of 1x32 per step, the KJV tokens). Run: /usr/bin/python3 reference/results/align14/diag-clip/clip_norm_probe.py
import sys, torch, torch.nn.functional as F
import os; sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '../../../pytorch'))
import trainer, gpt2, llmc_io
torch.set_num_threads(1)
flags = trainer.parse_flags(["--model=gpt2-tiny","--seed=42"], "gpt2-tiny")
m = gpt2.build_model(flags)
tok = llmc_io.read_tokens(os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../../../Trainer/Data/Embedded/kjv_gpt2_train.bin"))
L = trainer.DistributedBatches(tok, 1, 32, 1, 0)
params = [p for p in m.parameters()]
opt = torch.optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=0.1)
for step in range(4):
    opt.zero_grad()
    for _ in range(8):
        x, y = L.next()
        loss = F.cross_entropy(m(x).float().view(-1, 50257), y.view(-1)) / 8
        loss.backward()
    g32 = torch.norm(torch.stack([torch.norm(p.grad, 2) for p in params]), 2)
    g64 = torch.sqrt(sum((p.grad.double() ** 2).sum() for p in params))
    c32 = 1.0 / (g32 + 1e-6)
    c64 = 1.0 / (g64.item() + 1e-6)
    print(step + 1, f"norm f32 {g32.item():.9g} f64 {g64.item():.12g} coef f32 {c32.item():.9g} (float)coef64 {float(torch.tensor(c64, dtype=torch.float32)):.9g}")
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
print("per-parameter at step 5 grads:")
opt.zero_grad()
for _ in range(8):
    x, y = L.next()
    (F.cross_entropy(m(x).float().view(-1, 50257), y.view(-1)) / 8).backward()
for n_, p in m.named_parameters():
    a = torch.norm(p.grad, 2).item(); b = p.grad.double().norm().item()
    v = torch.linalg.vector_norm(p.grad).item()
    if abs(a - b) / b > 1e-6: print(n_, tuple(p.shape), f"{a:.9g} {b:.12g} rel {abs(a-b)/b:.2e} linalg {v:.9g}")
