"""Reptile: move the initialisation towards the weights that a few steps of SGD/Adam reach on each task.

Nichol, Achiam & Schulman, "On First-Order Meta-Learning Algorithms", arXiv 1803.02999 (2018), Algorithm 2
(batched version): θ̃_i = U^k_{τ_i}(φ) for each task of the meta-batch, then φ ← φ + ε · (1/n) Σ_i (θ̃_i − φ),
with ε annealed linearly over meta-training.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.func import functional_call, grad, vmap

from algorithms import nets, register
from algorithms.base import Episode, EpisodeBatch, Learner
from algorithms.functional import finetune_predictions, parameters_of, task_loss


@dataclass
class ReptileHparams:
    inner_lr: float = 0.02             # step size of the inner optimizer
    inner_steps: int = 5               # k, inner steps per task during meta-training
    inner_batch: int | None = None     # examples per inner step (None: all of the task's examples)
    inner_optimizer: str = "sgd"       # "sgd" or "adam" (the paper's code: Adam with beta1 = 0)
    meta_batch: int = 5                # tasks per outer update
    outer_lr: float = 1.0              # ε at the first meta-iteration
    outer_lr_final: float = 0.0        # ε at the last meta-iteration (linear annealing)
    test_inner_lr: float | None = None  # SGD step size at test (None: inner_lr)
    test_inner_steps: int = 10
    backbone: str | None = None


@register("reptile")
class Reptile(Learner):
    """Batched Reptile (Nichol et al. 2018, Alg. 2); inner loops of all tasks run together under vmap."""

    kinds = ("regression", "classification")
    Hparams = ReptileHparams

    def __init__(self, problem, hparams, device, generators):
        super().__init__(problem, hparams, device, generators)
        if hparams.inner_optimizer not in ("sgd", "adam"):
            raise ValueError(f"reptile.inner_optimizer: {hparams.inner_optimizer!r} is not one of 'sgd', 'adam'")
        out_dim = problem.output_dim if problem.kind == "regression" else problem.ways
        self.net = nets.build(hparams.backbone or problem.backbone, problem.input_shape, out_dim,
                              generators["init"], device)
        self.loss_fn = task_loss(problem.kind)
        self.iteration = 0

    def modules(self):
        return {"net": self.net}

    def extra_state(self):
        return {"iteration": self.iteration}

    def load_extra_state(self, state):
        self.iteration = int(state.get("iteration", 0))

    def _epsilon(self) -> float:
        h = self.hparams
        frac = self.iteration / max(1, self.meta_iters)
        return h.outer_lr + (h.outer_lr_final - h.outer_lr) * min(1.0, frac)

    def _inner_loop(self, params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> dict:
        """k inner steps on every task at once: x, y are [T, n, ...]; returns per-task weights [T, ...]."""
        h = self.hparams
        tasks, n = x.shape[0], x.shape[1]
        fast = {k: v.detach().unsqueeze(0).expand(tasks, *v.shape).clone() for k, v in params.items()}
        moments = {k: (torch.zeros_like(v), torch.zeros_like(v)) for k, v in fast.items()}

        def loss(p, xb, yb):
            return self.loss_fn(functional_call(self.net, p, (xb,)), yb)

        per_task_grad = vmap(grad(loss), randomness="same")
        gen = self.generators["algorithm"]
        for step in range(1, h.inner_steps + 1):
            if h.inner_batch is not None and h.inner_batch < n:
                idx = torch.stack([torch.randperm(n, generator=gen)[: h.inner_batch] for _ in range(tasks)])
                idx = idx.to(x.device)
                xb = torch.gather(x, 1, idx.view(tasks, -1, *([1] * (x.dim() - 2))).expand(-1, -1, *x.shape[2:]))
                yb = torch.gather(y, 1, idx.view(tasks, -1, *([1] * (y.dim() - 2))).expand(-1, -1, *y.shape[2:]))
            else:
                xb, yb = x, y
            grads = per_task_grad(fast, xb, yb)
            for k in fast:
                g = grads[k]
                if h.inner_optimizer == "adam":
                    # Adam with beta1 = 0 as in the paper's code: no momentum to carry across tasks.
                    _, v = moments[k]
                    v.mul_(0.999).addcmul_(g, g, value=0.001)
                    v_hat = v / (1 - 0.999 ** step)
                    g = g / (v_hat.sqrt() + 1e-8)
                fast[k] = fast[k] - h.inner_lr * g
        return fast

    def meta_train_step(self, batch: EpisodeBatch) -> dict[str, float]:
        x = torch.cat([batch.support_x, batch.query_x], dim=1)
        y = torch.cat([batch.support_y, batch.query_y], dim=1)
        params = parameters_of(self.net)
        with torch.no_grad():
            before = float(self.loss_fn(functional_call(self.net, params, (x.flatten(0, 1),)), y.flatten(0, 1)))
        fast = self._inner_loop(params, x, y)
        eps = self._epsilon()
        with torch.no_grad():
            for k, p in params.items():
                p.add_(fast[k].mean(0) - p, alpha=eps)
        self.iteration += 1
        return {"loss": before, "epsilon": eps}

    def predict_steps(self, episode: Episode, steps: list[int]) -> dict[int, torch.Tensor]:
        h = self.hparams
        lr = h.inner_lr if h.test_inner_lr is None else h.test_inner_lr
        return finetune_predictions(self.net, parameters_of(self.net), episode.support_x, episode.support_y,
                                    episode.query_x, lr, steps, self.loss_fn)
