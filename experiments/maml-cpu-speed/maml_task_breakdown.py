"""Where one MAML task's time goes, on one thread (Omniglot 5w1s, Conv-4 64 filters, 15 queries per class, one
inner step): the whole per-task meta-gradient, then its parts timed on their own.
Run from the repository root: python experiments/maml-cpu-speed/maml_task_breakdown.py
"""
import torch
from _setup import maml_and_batch, ms_per_task

from algorithms.functional import forward

torch.set_num_threads(1)
(maml,), batch = maml_and_batch(8, task_batching="loop")
net, loss_fn = maml.net, maml.loss_fn
params = dict(net.named_parameters())
tasks = list(batch.tasks())


def whole():
    for t in tasks:
        maml._task_gradient(params, t)


def query_forward_backward():
    for t in tasks:
        torch.autograd.grad(loss_fn(forward(net, params, t.query_x), t.query_y), list(params.values()))


def query_forward():
    with torch.no_grad():
        for t in tasks:
            forward(net, params, t.query_x)


def support_with_graph():
    for t in tasks:
        loss = loss_fn(forward(net, params, t.support_x), t.support_y)
        torch.autograd.grad(loss, list(params.values()), create_graph=True)


kept = []
for t in tasks:  # support gradients with their graphs, and the query gradients that flow back into them
    g = torch.autograd.grad(loss_fn(forward(net, params, t.support_x), t.support_y), list(params.values()),
                            create_graph=True)
    fast = {k: v - 0.4 * gi for (k, v), gi in zip(params.items(), g)}
    kept.append((g, torch.autograd.grad(loss_fn(forward(net, fast, t.query_x), t.query_y), list(fast.values()))))


def double_backward():
    for g, g_query in kept:
        torch.autograd.grad(g, list(params.values()), [-0.4 * x for x in g_query], retain_graph=True)


for name, fn in (("whole task (MAML._task_gradient)", whole), ("query forward + backward", query_forward_backward),
                 ("query forward, no graph", query_forward),
                 ("support forward + backward, create_graph", support_with_graph),
                 ("double backward through the support pass", double_backward)):
    print(f"{name:44s} {ms_per_task(fn, len(tasks)):6.1f} ms/task")
