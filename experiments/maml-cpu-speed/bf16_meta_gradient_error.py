"""How far bf16 autocast moves MAML's second-order meta-gradient: relative norm of (bf16 - float32) per parameter,
4 tasks of random 28x28 images (5-way 1-shot, 3 queries per class), MAML's Omniglot network, one inner step.
Run from the repository root: python experiments/maml-cpu-speed/bf16_meta_gradient_error.py"""
import torch

import algorithms
from algorithms.base import EpisodeBatch, ProblemSpec
from bench.cell import precision
from bench.episodes import named_generators

problem = ProblemSpec(kind="classification", input_shape=(1, 28, 28), ways=5, shots=1, output_dim=5,
                      backbone="conv4-maml-omniglot")
g = torch.Generator().manual_seed(0)
labels = lambda n: torch.arange(5).repeat_interleave(n).expand(4, -1).contiguous()  # noqa: E731
batch = EpisodeBatch(torch.rand(4, 5, 1, 28, 28, generator=g), labels(1),
                     torch.rand(4, 15, 1, 28, 28, generator=g), labels(3), 5, 1)
for batching in ("threads", "vmap"):
    cls = algorithms.get("maml")
    maml = cls(problem, cls.Hparams(inner_lr=0.4, meta_batch=4, task_batching=batching), torch.device("cpu"),
               named_generators(0, ["init", "algorithm"]))
    full, _ = maml.meta_gradients(batch)
    with precision(torch.device("cpu"), "bf16"):
        mixed, _ = maml.meta_gradients(batch)
    errors = {k: float((mixed[k] - full[k]).norm() / full[k].norm()) for k in full}
    print(f"{batching}: relative error min {min(errors.values()):.3f}, median "
          f"{sorted(errors.values())[len(errors) // 2]:.3f}, max {max(errors.values()):.3f} over {len(errors)} tensors")
