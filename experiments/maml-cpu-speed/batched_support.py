"""Prototype: MAML (1 inner step, second order) with all tasks' support passes batched at the shared θ."""
import statistics
import sys

import torch
from torch.nn import functional as F

from algorithms.base import BatchRequest
from algorithms.functional import forward, map_tasks, parameters_of
from bench import perf
from bench.allocator import keep_freed_memory
from bench.config import Config

keep_freed_memory()
config = Config.load()
source, _ = perf.omniglot_source(config, None)
T = int(sys.argv[1]) if len(sys.argv) > 1 else 32
batch = source.sample_train(BatchRequest(tasks=T, ways=5, shots=1, query=15), torch.Generator().manual_seed(0))
maml = perf.build(config, "maml", source, {"backbone": "conv4", "inner_lr": 0.4, "inner_steps": 1, "meta_batch": T})
net = maml.net
alpha = 0.4
EPS = 1e-5

def bn_per_task(y, gamma, beta):  # y [T, n, C, H, W]; gamma/beta [T, C]
    mean = y.mean(dim=(1, 3, 4), keepdim=True)
    var = (y - mean).square().mean(dim=(1, 3, 4), keepdim=True)
    return (y - mean) * torch.rsqrt(var + EPS) * gamma[:, None, :, None, None] + beta[:, None, :, None, None]

def support_grads(params, sx, sy):
    """Per-task gradients g_t of each task's support loss at the shared params, differentiable (create_graph)."""
    Tn, n = sx.shape[:2]
    x = sx.flatten(0, 1)
    expanded = {k: v.expand(Tn, *v.shape) for k, v in params.items() if "norm" in k or "head" in k}
    conv_inputs, conv_outputs = [], []
    for i in range(4):
        w = params[f"blocks.{i}.conv.weight"]
        if i == 0:
            cols = F.unfold(x, 3, padding=1)                    # [N, 9, HW]
            y = (cols.transpose(1, 2) @ w.view(64, -1).t())    # [N, HW, 64]
            y = y.view(x.shape[0], 28, 28, 64).permute(0, 3, 1, 2)
        else:
            x = x.contiguous(memory_format=torch.channels_last)
            y = F.conv2d(x, w, None, padding=1)
        conv_inputs.append(x)
        conv_outputs.append(y)
        z = bn_per_task(
            y.view(Tn, n, *y.shape[1:]), expanded[f"blocks.{i}.norm.weight"], expanded[f"blocks.{i}.norm.bias"]
        )
        z = z.flatten(0, 1)
        x = F.relu(F.max_pool2d(z, 2))
    feats = x.flatten(1).view(Tn, n, -1)
    logits = torch.baddbmm(expanded["head.bias"][:, None, :], feats, expanded["head.weight"].transpose(1, 2))
    loss = F.cross_entropy(logits.flatten(0, 1), sy.flatten(), reduction="sum") / n  # Σ_t mean-CE_t
    keys = list(expanded)
    grads = torch.autograd.grad(loss, [expanded[k] for k in keys] + conv_outputs, create_graph=True)
    g = dict(zip(keys, grads[:len(keys)]))
    for i, (xin, dy) in enumerate(zip(conv_inputs, grads[len(keys):])):
        cin = xin.shape[1]
        cols = F.unfold(xin, 3, padding=1)                     # [N, cin*9, HW]
        cols = cols.view(Tn, n, cin * 9, -1).permute(0, 2, 1, 3).reshape(Tn, cin * 9, -1)   # [T, cin*9, n*HW]
        d = dy.reshape(Tn, n, 64, -1).permute(0, 1, 3, 2).reshape(Tn, -1, 64)              # [T, n*HW, 64]
        g[f"blocks.{i}.conv.weight"] = torch.bmm(cols, d).transpose(1, 2).reshape(Tn, 64, cin, 3, 3)
    return g

def meta_grad_batched(b):
    params = parameters_of(net)
    g = support_grads(params, b.support_x, b.support_y)
    fast = {k: (params[k] - alpha * g[k]).detach() for k in params}
    tasks = list(b.tasks())
    def query(idx):
        out = []
        for t in idx:
            leaves = {k: fast[k][t].requires_grad_(True) for k in params}
            loss = F.cross_entropy(forward(net, leaves, tasks[t].query_x), tasks[t].query_y)
            out.append(torch.autograd.grad(loss, list(leaves.values())))
        return out
    parts = map_tasks(query, list(range(len(tasks))), torch.get_num_threads())
    order = [t for w in range(len(parts)) for t in list(range(len(tasks)))[w::len(parts)]]
    v = {k: torch.empty_like(g[k]) for k in params}
    flat = [gr for p in parts for gr in p]
    for t, grs in zip(order, flat):
        for k, gr in zip(params, grs):
            v[k][t] = gr
    inner = sum((g[k] * v[k]).sum() for k in params)
    hv = torch.autograd.grad(inner, list(params.values()))
    return {k: (v[k].sum(0) - alpha * h) / len(tasks) for k, h in zip(params, hv)}, (g, v)

ref, _ = maml.meta_gradients(batch)
ours, _ = meta_grad_batched(batch)
print("max abs diff", max(float((ref[k] - ours[k]).abs().max()) for k in ref))
def support_phase():
    params = parameters_of(net)
    g = support_grads(params, batch.support_x, batch.support_y)
    v = {k: torch.randn_like(g[k]) for k in g}
    return torch.autograd.grad(sum((g[k] * v[k]).sum() for k in g), list(params.values()))
full = lambda: maml.meta_gradients(batch)
new = lambda: meta_grad_batched(batch)
for f in (full, new, support_phase):
    f()
a, b, c = [], [], []
for _ in range(5):
    a.append(perf._once(full))
    b.append(perf._once(new))
    c.append(perf._once(support_phase))
A, B, C = map(statistics.median, (a, b, c))
print(f"current {A*1000:.0f} ms  batched-support {B*1000:.0f} ms (speed-up x{A/B:.2f})  "
      f"support phase alone {C*1000:.0f} ms")
