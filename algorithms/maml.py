"""MAML: learn an initialisation from which a few gradient steps on a task's support set fit the task.

Finn, Abbeel & Levine, "Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks", ICML 2017.
Inner update Eq. (1): θ'_i = θ − α ∇_θ L_{T_i}(f_θ) on the support set; meta-objective Eq. (2)/(3):
θ ← θ − β ∇_θ Σ_i L_{T_i}(f_{θ'_i}) on the query sets, differentiating through the inner steps (second order).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.func import functional_call, grad, vmap

from algorithms import nets, register
from algorithms.base import EpisodeBatch, Episode, Learner
from algorithms.functional import finetune_predictions, parameters_of, task_loss


@dataclass
class MAMLHparams:
    inner_lr: float = 0.01          # α, training inner step size
    inner_steps: int = 1            # inner steps during meta-training
    test_inner_lr: float | None = None   # α at test (None: same as inner_lr)
    test_inner_steps: int = 10      # steps at test when the benchmark does not ask for a step count
    meta_batch: int = 25            # tasks per meta-update
    meta_lr: float = 0.001          # β, Adam
    grad_clip: float | None = None  # clip meta-gradient values to [-c, c] (MAML code, Mini-ImageNet)
    backbone: str | None = None     # None: the benchmark's default network


@register("maml")
class MAML(Learner):
    """Second-order MAML (Finn et al. 2017), tasks vectorised with torch.func.vmap."""

    kinds = ("regression", "classification")
    Hparams = MAMLHparams
    first_order = False

    def __init__(self, problem, hparams, device, generators):
        super().__init__(problem, hparams, device, generators)
        out_dim = problem.output_dim if problem.kind == "regression" else problem.ways
        self.net = nets.build(hparams.backbone or problem.backbone, problem.input_shape, out_dim,
                              generators["init"], device)
        self.loss_fn = task_loss(problem.kind)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=hparams.meta_lr)

    def modules(self):
        return {"net": self.net}

    def optimizers(self):
        return {"meta": self.optimizer}

    # The query loss of one task after the inner loop, as a pure function of the initial parameters, so that
    # torch.func can vectorise it over tasks and differentiate it (through the inner steps when second order).
    def _task_query_loss(self, params, support_x, support_y, query_x, query_y):
        def support_loss(p):
            return self.loss_fn(functional_call(self.net, p, (support_x,)), support_y)

        fast = params
        for _ in range(self.hparams.inner_steps):
            grads = grad(support_loss)(fast)
            if self.first_order:
                # FOMAML: treat the inner gradient as a constant (drops the Hessian term of Eq. 2's gradient)
                grads = {k: g.detach() for k, g in grads.items()}
            fast = {k: fast[k] - self.hparams.inner_lr * grads[k] for k in fast}
        return self.loss_fn(functional_call(self.net, fast, (query_x,)), query_y)

    def meta_gradients(self, batch: EpisodeBatch) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Gradient of the mean query loss over the batch's tasks w.r.t. the initial parameters."""
        params = {k: v.detach() for k, v in parameters_of(self.net).items()}

        def meta_loss(p):
            per_task = vmap(self._task_query_loss, in_dims=(None, 0, 0, 0, 0), randomness="same")(
                p, batch.support_x, batch.support_y, batch.query_x, batch.query_y)
            return per_task.mean(), per_task.mean()

        grads, loss = grad(meta_loss, has_aux=True)(params)
        return grads, loss

    def meta_train_step(self, batch: EpisodeBatch) -> dict[str, float]:
        grads, loss = self.meta_gradients(batch)
        for name, p in self.net.named_parameters():
            p.grad = grads[name]
            if self.hparams.grad_clip:
                p.grad.clamp_(-self.hparams.grad_clip, self.hparams.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return {"loss": loss.item()}

    def _test_lr(self) -> float:
        h = self.hparams
        return h.inner_lr if h.test_inner_lr is None else h.test_inner_lr

    def predict_steps(self, episode: Episode, steps: list[int]) -> dict[int, torch.Tensor]:
        return finetune_predictions(self.net, parameters_of(self.net), episode.support_x, episode.support_y,
                                    episode.query_x, self._test_lr(), steps, self.loss_fn)
