"""Hand-designed optimizers, the baselines of the learned-optimizer benchmarks: SGD, RMSprop, Adam and Nesterov's
accelerated gradient, each with its learning rate chosen by a grid search on training optimizees.

Andrychowicz et al. 2016, Sec. 3: "we compare to SGD, RMSprop, ADAM and NAG, tuning the learning rate of each
per problem" (for the best final loss). One file for the four: they differ only in the update rule (a few
lines each) and share the tuning, the state handling and the interface (`optimize(problem, steps)` → loss@0..
loss@steps, the same as the learned optimizers'). They need no meta-training: every profile gives them 0
meta-iterations, and `tune()` (the harness calls it on training optimizees of the benchmark's problem) is where
they learn their one number.

Update rules (θ flat, g = ∇f(θ_t) on minibatch t):
  SGD      θ ← θ − lr·g
  RMSprop  v ← ρv + (1−ρ)g²;  θ ← θ − lr·g/(√v + ε)                       (Tieleman & Hinton 2012)
  Adam     m ← β₁m + (1−β₁)g; v ← β₂v + (1−β₂)g²; θ ← θ − lr·m̂/(√v̂ + ε)   (Kingma & Ba 2015, Alg. 1)
  NAG      b ← μb + g;  θ ← θ − lr·(g + μb)     (Nesterov momentum in Sutskever et al.'s 2013 form, as in
                                                 torch.optim.SGD(nesterov=True): θ holds the look-ahead point)
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from algorithms._registry import register
from algorithms.base import OptimizeeBatch, OptimizeeProblem
from algorithms.optimizer_common import OptimizerLearner, loss_and_gradient

DEFAULT_GRID = [1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0]


def _grid() -> list[float]:
    return list(DEFAULT_GRID)


@dataclass
class HandHparams:
    lr: float | None = None        # a fixed learning rate; None: grid search over lr_grid in tune()
    lr_grid: list[float] = field(default_factory=_grid)
    default_lr: float = 0.01       # used before tune() has run (e.g. predict() on an untuned learner)
    tune_metric: str = "final_loss"  # what the grid search minimises: mean final_loss (the paper) or auc


@dataclass
class RMSpropHparams(HandHparams):
    decay: float = 0.9             # ρ (TensorFlow's default, the paper's framework)
    eps: float = 1e-8


@dataclass
class AdamHparams(HandHparams):
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8


@dataclass
class NAGHparams(HandHparams):
    momentum: float = 0.9          # μ


class HandOptimizer(OptimizerLearner):
    """Shared part: run the rule, tune the learning rate, log the search."""

    Hparams = HandHparams

    def __init__(self, problem, hparams, device, generators):
        super().__init__(problem, hparams, device, generators)
        if hparams.tune_metric not in ("final_loss", "auc"):
            raise ValueError(f"tune_metric: {hparams.tune_metric!r} is not 'final_loss' or 'auc'")
        if hparams.lr is None and not hparams.lr_grid:
            raise ValueError("lr_grid is empty and lr is not set: give one of them")
        self.lr = float(hparams.lr if hparams.lr is not None else hparams.default_lr)
        self.search: list[dict[str, Any]] = []

    # the update rule: state is a dict of tensors shaped like θ
    def init_state(self, theta: torch.Tensor) -> dict[str, Any]:
        return {}

    def rule(self, theta: torch.Tensor, grad: torch.Tensor, state: dict[str, Any], lr: float, t: int) -> torch.Tensor:
        raise NotImplementedError

    def run(self, problem: OptimizeeProblem, steps: int, lr: float) -> torch.Tensor:
        theta = problem.flat_params()
        state = self.init_state(theta)
        curve = []
        for t in range(steps + 1):
            loss, grad = loss_and_gradient(problem, theta, t)
            curve.append(loss)
            if t == steps:
                break
            if not torch.isfinite(loss):  # diverged: the rest of the curve is the same non-finite value
                curve += [loss] * (steps - t)
                break
            with torch.no_grad():
                theta = self.rule(theta, grad, state, lr, t + 1)
        return torch.stack(curve)

    def optimize(self, problem: OptimizeeProblem, steps: int | None = None) -> torch.Tensor:
        return self.run(problem, problem.horizon if steps is None else steps, self.lr)

    def tune(self, validation: OptimizeeBatch) -> dict[str, Any]:
        """Grid search: the learning rate with the lowest mean `tune_metric` over the training optimizees
        (a diverging run counts as +inf)."""
        h = self.hparams
        if h.lr is not None:
            self.lr = float(h.lr)
            return {"lr": self.lr, "lr_source": "fixed"}
        self.search = []
        for lr in h.lr_grid:
            finals, aucs = [], []
            for problem in validation:
                curve = self.run(problem, problem.horizon, float(lr)).double()
                finite = bool(torch.isfinite(curve).all())
                finals.append(float(curve[-1]) if finite else math.inf)
                aucs.append(float(curve.mean()) if finite else math.inf)
            self.search.append({"lr": float(lr), "final_loss": sum(finals) / len(finals),
                                "auc": sum(aucs) / len(aucs), "runs": len(finals)})
        best = min(self.search, key=lambda row: row[h.tune_metric])
        self.lr = best["lr"]
        for row in self.search:
            row["chosen"] = row["lr"] == self.lr
        grid = sorted(h.lr_grid)
        return {"lr": self.lr, "lr_source": "grid search on training optimizees",
                f"best_{h.tune_metric}": best[h.tune_metric], "lr_grid": [float(v) for v in h.lr_grid],
                "validation_runs": len(validation), "at_grid_edge": self.lr in (grid[0], grid[-1])}

    def diagnostics(self) -> dict[str, list[dict[str, Any]]]:
        return {"lr_search": [dict(row) for row in self.search]} if self.search else {}

    def extra_state(self) -> dict[str, Any]:
        return {"lr": self.lr}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        if "lr" in state:
            self.lr = float(state["lr"])


@register("sgd")
class SGD(HandOptimizer):
    """Plain stochastic gradient descent, learning rate tuned."""

    Hparams = HandHparams

    def rule(self, theta, grad, state, lr, t):
        return theta - lr * grad


@register("rmsprop")
class RMSprop(HandOptimizer):
    """RMSprop (Tieleman & Hinton 2012), learning rate tuned."""

    Hparams = RMSpropHparams

    def init_state(self, theta):
        return {"v": torch.zeros_like(theta)}

    def rule(self, theta, grad, state, lr, t):
        h = self.hparams
        state["v"].mul_(h.decay).addcmul_(grad, grad, value=1 - h.decay)
        return theta - lr * grad / (state["v"].sqrt() + h.eps)


@register("adam")
class Adam(HandOptimizer):
    """Adam (Kingma & Ba 2015) with bias correction, learning rate tuned."""

    Hparams = AdamHparams

    def init_state(self, theta):
        return {"m": torch.zeros_like(theta), "v": torch.zeros_like(theta)}

    def rule(self, theta, grad, state, lr, t):
        h = self.hparams
        state["m"].mul_(h.beta1).add_(grad, alpha=1 - h.beta1)
        state["v"].mul_(h.beta2).addcmul_(grad, grad, value=1 - h.beta2)
        m_hat = state["m"] / (1 - h.beta1 ** t)
        v_hat = state["v"] / (1 - h.beta2 ** t)
        return theta - lr * m_hat / (v_hat.sqrt() + h.eps)


@register("nag")
class NAG(HandOptimizer):
    """Nesterov's accelerated gradient (momentum form of Sutskever et al. 2013), learning rate tuned."""

    Hparams = NAGHparams

    def init_state(self, theta):
        return {"b": torch.zeros_like(theta)}

    def rule(self, theta, grad, state, lr, t):
        state["b"].mul_(self.hparams.momentum).add_(grad)
        return theta - lr * (grad + self.hparams.momentum * state["b"])
