"""Reptile: move the initialisation towards the weights that a few steps of SGD/Adam reach on each task.

Nichol, Achiam & Schulman, "On First-Order Meta-Learning Algorithms", arXiv 1803.02999 (2018), Algorithm 2
(batched version): θ̃_i = U^k_{τ_i}(φ) for each task of the meta-batch, then φ ← φ + ε · (1/n) Σ_i (θ̃_i − φ),
with ε annealed linearly over meta-training.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.func import grad, vmap

from algorithms import nets
from algorithms._registry import register
from algorithms.base import BatchRequest, Episode, EpisodeBatch, Learner
from algorithms.functional import finetune_predictions, forward, map_tasks, parameters_of, task_loss


@dataclass
class ReptileHparams:
    inner_lr: float = 0.02             # step size of the inner optimizer
    inner_steps: int = 5               # k, inner steps per task during meta-training
    inner_batch: int | None = None     # examples per inner step (None: all of the task's examples)
    # minibatches drawn with replacement (independently per step) or, as in the paper's code by default, as
    # consecutive slices of reshuffled passes over the task (5 steps x 10 = one pass over 5 x 10 shots)
    replacement: bool = False
    inner_optimizer: str = "sgd"       # "sgd" or "adam" (the paper's code: Adam with beta1 = 0)
    # Adam's second-moment estimates carried from task to task (and used, unchanged, at test), as in the
    # paper's code, where Adam's slot variables sit outside the model state that Reptile resets per task
    # (learn2learn's example does the same); false: a fresh Adam per task, whose first step is sign-SGD
    carry_adam_state: bool = True
    meta_batch: int = 5                # tasks per outer update
    outer_lr: float = 1.0              # ε at the first meta-iteration
    outer_lr_final: float = 0.0        # ε at the last meta-iteration (linear annealing)
    train_shots: int | None = None     # examples per class of a training task (paper: 10 on Omniglot)
    test_inner_lr: float | None = 0.02  # step size at test (None: inner_lr)
    test_inner_steps: int = 10         # adaptation steps at test (the paper: 50 on Omniglot)
    backbone: str | None = None
    transductive_bn: bool = True       # batch statistics at test as in the paper's code
    task_threads: int = 0              # conv nets on a CPU: tasks side by side in threads (0: all cores)


class InnerOptimizer:
    """Plain SGD or Adam with beta1 = 0 (no momentum to carry across tasks), on dicts of tensors whose
    leading dimension may index tasks. `second` and `step_count` start Adam from a carried state."""

    def __init__(self, kind: str, lr: float, second: dict[str, torch.Tensor] | None = None, step_count: int = 0):
        if kind not in ("sgd", "adam"):
            raise ValueError(f"reptile.inner_optimizer: {kind!r} is not one of 'sgd', 'adam'")
        self.kind, self.lr, self.step_count, self.second = kind, lr, step_count, dict(second or {})

    def step(self, params: dict[str, torch.Tensor], grads: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        self.step_count += 1
        out = {}
        for k, g in grads.items():
            if self.kind == "adam":
                v = self.second.get(k)
                v = g * g * 0.001 if v is None else v * 0.999 + g * g * 0.001
                self.second[k] = v
                g = g / ((v / (1 - 0.999 ** self.step_count)).sqrt() + 1e-8)
            out[k] = params[k] - self.lr * g
        return out


@register("reptile")
class Reptile(Learner):
    """Batched Reptile (Nichol et al. 2018, Alg. 2)."""

    kinds = ("regression", "classification")
    Hparams = ReptileHparams

    def __init__(self, problem, hparams, device, generators):
        super().__init__(problem, hparams, device, generators)
        InnerOptimizer(hparams.inner_optimizer, hparams.inner_lr)  # validates the name early
        out_dim = problem.output_dim if problem.kind == "regression" else problem.ways
        self.net = nets.build(hparams.backbone or problem.backbone, problem.input_shape, out_dim,
                              generators["init"], device, transductive=hparams.transductive_bn)
        self.loss_fn = task_loss(problem.kind)
        self.has_conv = any(isinstance(m, torch.nn.Conv2d) for m in self.net.modules())
        self.iteration = 0
        # carried Adam state: second moments shaped like the parameters, and the step count for bias correction
        self.adam_second: dict[str, torch.Tensor] = {}
        self.adam_steps = 0

    def modules(self):
        return {"net": self.net}

    def extra_state(self):
        return {"iteration": self.iteration, "adam_second": self.adam_second, "adam_steps": self.adam_steps}

    def load_extra_state(self, state):
        self.iteration = int(state.get("iteration", 0))
        self.adam_second = {k: v.to(self.device) for k, v in state.get("adam_second", {}).items()}
        self.adam_steps = int(state.get("adam_steps", 0))

    def _inner_optimizer(self, lr: float, tasks: int | None = None) -> InnerOptimizer:
        """The inner optimizer of one task (or of `tasks` tasks side by side), from the carried Adam state."""
        h = self.hparams
        if h.inner_optimizer != "adam" or not h.carry_adam_state or not self.adam_second:
            return InnerOptimizer(h.inner_optimizer, lr)
        second = self.adam_second if tasks is None else \
            {k: v.unsqueeze(0).expand(tasks, *v.shape) for k, v in self.adam_second.items()}
        return InnerOptimizer(h.inner_optimizer, lr, second, self.adam_steps)

    @classmethod
    def training_episode(cls, hparams):
        # Reptile trains on all of a task's examples: with train_shots set there is no query part at all
        shots = hparams.get("train_shots")
        return {"ways": None, "shots": shots, "query": 0 if shots is not None else None}

    def batch_request(self) -> BatchRequest:
        return BatchRequest(kind="episodes", tasks=self.hparams.meta_batch,
                            **self.training_episode(vars(self.hparams)))

    def _epsilon(self) -> float:
        h = self.hparams
        frac = self.iteration / max(1, self.meta_iters)
        return h.outer_lr + (h.outer_lr_final - h.outer_lr) * min(1.0, frac)

    def _minibatches(self, tasks: int, n: int, steps: int) -> list[torch.Tensor | None]:
        """Example indices [tasks, inner_batch] per inner step, from the algorithm's own generator."""
        b = self.hparams.inner_batch
        if b is None or b >= n:
            return [None] * steps
        gen = self.generators["algorithm"]
        if self.hparams.replacement:
            return [torch.stack([torch.randperm(n, generator=gen)[:b] for _ in range(tasks)]) for _ in range(steps)]
        passes = -(-steps * b // n)  # enough shuffled passes over the task's examples for all the steps
        order = torch.stack([torch.cat([torch.randperm(n, generator=gen) for _ in range(passes)])
                             for _ in range(tasks)])
        return [order[:, i * b:(i + 1) * b] for i in range(steps)]

    def _adapt_vmap(self, params, x, y, batches) -> tuple[dict[str, torch.Tensor], InnerOptimizer]:
        """Inner loops of all tasks at once (small MLPs): x, y [T, n, ...] -> per-task weights [T, ...] and
        the optimizer (its Adam state per task)."""
        tasks = x.shape[0]
        fast = {k: v.detach().unsqueeze(0).expand(tasks, *v.shape).clone() for k, v in params.items()}
        opt = self._inner_optimizer(self.hparams.inner_lr, tasks)
        per_task_grad = vmap(grad(lambda p, xb, yb: self.loss_fn(forward(self.net, p, xb), yb)))
        for idx in batches:
            xb, yb = (x, y) if idx is None else (_gather(x, idx.to(x.device)), _gather(y, idx.to(y.device)))
            fast = opt.step(fast, per_task_grad(fast, xb, yb))
        return fast, opt

    def _adapt_one(self, params, x, y, batches) -> tuple[dict[str, torch.Tensor], InnerOptimizer]:
        """One task's inner loop with plain autograd (conv nets); returns its adapted weights and optimizer."""
        fast = {k: v.detach() for k, v in params.items()}
        opt = self._inner_optimizer(self.hparams.inner_lr)
        for idx in batches:
            xb, yb = (x, y) if idx is None else (x[idx], y[idx])
            with torch.enable_grad():
                leaves = {k: v.requires_grad_(True) for k, v in fast.items()}
                grads = torch.autograd.grad(self.loss_fn(forward(self.net, leaves, xb), yb), list(leaves.values()))
            fast = {k: v.detach() for k, v in opt.step(leaves, dict(zip(leaves, grads))).items()}
        return fast, opt

    def meta_train_step(self, batch: EpisodeBatch) -> dict[str, float]:
        self.net.train()
        x = torch.cat([batch.support_x, batch.query_x], dim=1)
        y = torch.cat([batch.support_y, batch.query_y], dim=1)
        params = parameters_of(self.net)
        with torch.no_grad():
            before = float(self.loss_fn(forward(self.net, params, x.flatten(0, 1)), y.flatten(0, 1)))
        batches = self._minibatches(len(batch), x.shape[1], self.hparams.inner_steps)
        if self.has_conv:
            def adapt(indices):
                return [self._adapt_one(params, x[i], y[i], [None if b is None else b[i] for b in batches])
                        for i in indices]
            workers = self.hparams.task_threads or torch.get_num_threads()
            results = [r for chunk in map_tasks(adapt, list(range(len(batch))), workers) for r in chunk]
            # means over tasks, summed in a fixed order
            mean = {k: sum(w[k] for w, _ in results) / len(batch) for k in params}
            seconds = [opt.second for _, opt in results]
            second = {k: sum(s[k] for s in seconds) / len(batch) for k in seconds[0]}
        else:
            fast, opt = self._adapt_vmap(params, x, y, batches)
            mean = {k: v.mean(0) for k, v in fast.items()}
            second = {k: v.mean(0) for k, v in opt.second.items()}
        if self.hparams.inner_optimizer == "adam" and self.hparams.carry_adam_state:
            # The tasks ran side by side from the same state, so the next meta-iteration starts from their
            # mean second moments, advanced by one task's steps (the paper's code chains the tasks instead;
            # with beta2 = 0.999 the two differ little)
            self.adam_second = {k: v.detach() for k, v in second.items()}
            self.adam_steps += len(batches)
        eps = self._epsilon()
        with torch.no_grad():
            for k, p in params.items():
                p.add_(mean[k] - p, alpha=eps)
        self.iteration += 1
        return {"loss": before, "epsilon": eps}

    def predict_steps(self, episode: Episode, steps: list[int]) -> dict[int, torch.Tensor]:
        """Query predictions after each step count of the inner optimizer on the full support set."""
        h = self.hparams
        self.net.train()  # transductive batch norm, as in training
        lr = h.inner_lr if h.test_inner_lr is None else h.test_inner_lr
        opt = self._inner_optimizer(lr)  # a copy of the carried state: test episodes never change it
        return finetune_predictions(self.net, parameters_of(self.net), episode.support_x, episode.support_y,
                                    episode.query_x, lr, steps, self.loss_fn, update=opt.step)


def _gather(t: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """t[i, idx[i]] for every task i."""
    return torch.gather(t, 1, idx.view(*idx.shape, *([1] * (t.dim() - 2))).expand(-1, -1, *t.shape[2:]))
