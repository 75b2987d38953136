"""A/B, tried and dropped: MAML's per-task meta-gradient as one backward through query and inner-step graphs together
(`MAML._task_gradient`) against two passes (the query gradient at leaf adapted weights, then that vector back
through the inner step), timed as `metabench perf` runs MAML (threads, the process allocator settings). Same process,
same 32-task batch, interleaved with the reference loop; medians of 8.
Run from the repository root: python experiments/maml-cpu-speed/maml_split_backward.py
"""
import statistics
import time

import torch
from _setup import maml_and_batch

from algorithms.functional import forward
from algorithms.maml import MAML
from bench import perf

(split, joint), batch = maml_and_batch(32, learners=2)
joint.net.load_state_dict(split.net.state_dict())


def two_passes(self, params, task):
    fast = params
    for _ in range(self.hparams.inner_steps):
        loss = self.loss_fn(forward(self.net, fast, task.support_x), task.support_y)
        grads = torch.autograd.grad(loss, list(fast.values()), create_graph=True)
        fast = {k: v - self.hparams.inner_lr * g for (k, v), g in zip(fast.items(), grads)}
    adapted = {k: v.detach().requires_grad_(True) for k, v in fast.items()}
    query_loss = self.loss_fn(forward(self.net, adapted, task.query_x), task.query_y)
    query_grads = torch.autograd.grad(query_loss, list(adapted.values()))
    return list(torch.autograd.grad(list(fast.values()), list(params.values()), query_grads)), query_loss.item()


split._task_gradient = two_passes.__get__(split, MAML)
a, b = split.meta_gradients(batch)[0], joint.meta_gradients(batch)[0]
print("largest difference:", max((a[k] - b[k]).abs().max().item() for k in a))
reference = perf.textbook_conv4(5)
perf.reference_maml_step(reference, batch)
times = {"two passes": [], "one graph (MAML)": [], "reference loop": []}
for _ in range(8):
    for name, fn in (("two passes", lambda: split.meta_gradients(batch)),
                     ("one graph (MAML)", lambda: joint.meta_gradients(batch)),
                     ("reference loop", lambda: perf.reference_maml_step(reference, batch))):
        tic = time.perf_counter()
        fn()
        times[name].append(time.perf_counter() - tic)
ref = statistics.median(times["reference loop"])
for name, ts in times.items():
    print(f"{name}: {statistics.median(ts) / 32 * 1e3:.1f} ms/task, "
          f"ratio to the reference {ref / statistics.median(ts):.3f}")
