"""Prototype: MAML's second-order term as a forward-over-reverse Hessian-vector product (torch.func.jvp of the
support gradient, in the direction of the query gradient) instead of a double backward through the inner step.

For one inner step, dL_q(θ')/dθ = g_q − α H_s(θ) g_q with g_q = ∇L_q(θ'). Both variants are timed per task, one
thread, on the perf command's Omniglot 5w1s batch (8 tasks), and checked against each other.
Run from the repository root: python experiments/maml-cpu-speed/hvp_forward_mode.py
"""
import torch
from _setup import maml_and_batch, ms_per_task

from algorithms.functional import forward

torch.set_num_threads(1)
(maml,), batch = maml_and_batch(8, task_batching="loop")
net, loss_fn, alpha = maml.net, maml.loss_fn, 0.4
params = {k: v.detach() for k, v in net.named_parameters()}
tasks = list(batch.tasks())


def forward_over_reverse(task):
    p = {k: v.clone().requires_grad_() for k, v in params.items()}
    grads = torch.autograd.grad(loss_fn(forward(net, p, task.support_x), task.support_y), list(p.values()))
    adapted = {k: (v - alpha * g).detach().requires_grad_() for (k, v), g in zip(params.items(), grads)}
    query_loss = loss_fn(forward(net, adapted, task.query_x), task.query_y)
    g_q = dict(zip(adapted, torch.autograd.grad(query_loss, list(adapted.values()))))
    support_grad = torch.func.grad(lambda q: loss_fn(forward(net, q, task.support_x), task.support_y))
    _, hvp = torch.func.jvp(support_grad, (params,), (g_q,))
    return [g_q[k] - alpha * hvp[k] for k in params]


def double_backward(task):  # what MAML does
    return maml._task_gradient(dict(net.named_parameters()), task)[0]


a, b = forward_over_reverse(tasks[0]), double_backward(tasks[0])
print("largest relative difference:", max(((x - y).abs().max() / y.abs().max()).item() for x, y in zip(a, b)))
print(f"double backward: {ms_per_task(lambda: [double_backward(t) for t in tasks], len(tasks)):.1f} ms/task")
print(f"forward-over-reverse: {ms_per_task(lambda: [forward_over_reverse(t) for t in tasks], len(tasks)):.1f} ms/task")
