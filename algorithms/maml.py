"""MAML: learn an initialisation from which a few gradient steps on a task's support set fit the task.

Finn, Abbeel & Levine, "Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks", ICML 2017.
Inner update Eq. (1): θ'_i = θ − α ∇_θ L_{T_i}(f_θ) on the support set; meta-objective Eq. (2)/(3):
θ ← θ − β ∇_θ Σ_i L_{T_i}(f_{θ'_i}) on the query sets, differentiating through the inner steps (second order).
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
class MAMLHparams:
    inner_lr: float = 0.01          # α, training inner step size
    inner_steps: int = 1            # inner steps during meta-training
    test_inner_lr: float | None = None   # α at test (None: same as inner_lr)
    test_inner_steps: int = 10      # steps at test when the benchmark does not ask for a step count
    meta_batch: int = 25            # tasks per meta-update
    meta_lr: float = 0.001          # β, Adam
    train_query: int | None = None  # queries per class in training tasks (MAML's code: K); None: the benchmark's
    grad_clip: float | None = None  # clip meta-gradient values to [-c, c] (MAML code, Mini-ImageNet)
    backbone: str | None = None     # None: the benchmark's default network
    transductive_bn: bool = True    # batch norm on each batch's own statistics, at test too (MAML's code)
    # How the tasks of a meta-batch are computed (results are the same up to float rounding):
    #   vmap: one vectorised call over all tasks (fastest for small MLPs such as the sine regressor);
    #   threads: tasks split over worker threads running single-threaded ops (fastest for conv nets on a CPU,
    #            where small convolutions parallelise poorly inside one op);
    #   loop: one task after another;
    #   auto: threads for conv nets on a CPU, else vmap (loop for conv nets whose batch norm keeps running statistics).
    task_batching: str = "auto"
    task_threads: int = 0           # workers for "threads" (0: torch.get_num_threads())


@register("maml")
class MAML(Learner):
    """Second-order MAML (Finn et al. 2017)."""

    kinds = ("regression", "classification")
    Hparams = MAMLHparams
    first_order = False

    def __init__(self, problem, hparams, device, generators):
        super().__init__(problem, hparams, device, generators)
        if hparams.task_batching not in ("auto", "vmap", "threads", "loop"):
            raise ValueError(f"task_batching: {hparams.task_batching!r} is not one of auto, vmap, threads, loop")
        if hparams.task_batching == "vmap" and not hparams.transductive_bn:
            # running statistics are one shared buffer: tasks mapped in parallel cannot each update it
            raise ValueError("task_batching: vmap needs transductive_bn: true (batch norm without running "
                             "statistics); use task_batching: loop or threads")
        out_dim = problem.output_dim if problem.kind == "regression" else problem.ways
        self.net = nets.build(hparams.backbone or problem.backbone, problem.input_shape, out_dim,
                              generators["init"], device, transductive=hparams.transductive_bn)
        self.loss_fn = task_loss(problem.kind)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=hparams.meta_lr)

    def modules(self):
        return {"net": self.net}

    def optimizers(self):
        return {"meta": self.optimizer}

    def batch_request(self) -> BatchRequest:
        return BatchRequest(kind="episodes", tasks=self.hparams.meta_batch, query=self.hparams.train_query)

    def _batching(self) -> str:
        choice = self.hparams.task_batching
        if choice != "auto":
            return choice
        has_conv = any(isinstance(m, torch.nn.Conv2d) for m in self.net.modules())
        if has_conv and self.device.type == "cpu":
            return "threads"  # vmap's batched-weight convolutions are 2-3x slower than plain ones on a CPU
        # on a GPU, vmap over the 32 tasks of Omniglot 5w1s ran 10x the per-task loop (`metabench perf`, H100)
        return "vmap" if not has_conv or self.hparams.transductive_bn else "loop"

    # -- one task, plain autograd: used by the loop and thread strategies --------------------------------
    def _task_gradient(self, params: dict[str, torch.Tensor], task: Episode) -> tuple[list[torch.Tensor], float]:
        """∇_θ of one task's query loss after the inner loop (through the inner steps when second order)."""
        h = self.hparams
        fast = params
        for _ in range(h.inner_steps):
            loss = self.loss_fn(forward(self.net, fast, task.support_x), task.support_y)
            # create_graph keeps the inner step differentiable (Eq. 2's Hessian term); FOMAML drops it, so the
            # inner gradient is a constant and ∂θ'/∂θ is the identity.
            grads = torch.autograd.grad(loss, list(fast.values()), create_graph=not self.first_order)
            fast = {k: v - h.inner_lr * g for (k, v), g in zip(fast.items(), grads)}
        query_loss = self.loss_fn(forward(self.net, fast, task.query_x), task.query_y)
        return list(torch.autograd.grad(query_loss, list(params.values()))), query_loss.item()

    def _tasks_gradient(self, params, tasks: list[Episode]):
        total, losses = None, []
        for task in tasks:
            grads, loss = self._task_gradient(params, task)
            total = grads if total is None else [a + b for a, b in zip(total, grads)]
            losses.append(loss)
        return total, losses

    def _threaded_gradients(self, params, batch: EpisodeBatch):
        workers = self.hparams.task_threads or torch.get_num_threads()
        parts = map_tasks(lambda chunk: self._tasks_gradient(params, chunk), list(batch.tasks()), workers)
        # summed in a fixed order, so the result does not depend on which thread finished first
        total = [sum(gs) for gs in zip(*(p[0] for p in parts))]
        return total, [loss for p in parts for loss in p[1]]

    # -- all tasks at once under torch.func.vmap ---------------------------------------------------------
    def _task_query_loss(self, params, support_x, support_y, query_x, query_y):
        def support_loss(p):
            return self.loss_fn(forward(self.net, p, support_x), support_y)

        fast = params
        for _ in range(self.hparams.inner_steps):
            grads = grad(support_loss)(fast)
            if self.first_order:
                grads = {k: g.detach() for k, g in grads.items()}
            fast = {k: fast[k] - self.hparams.inner_lr * grads[k] for k in fast}
        return self.loss_fn(forward(self.net, fast, query_x), query_y)

    def _vmap_gradients(self, batch: EpisodeBatch):
        params = {k: v.detach() for k, v in parameters_of(self.net).items()}

        def meta_loss(p):
            per_task = vmap(self._task_query_loss, in_dims=(None, 0, 0, 0, 0), randomness="same")(
                p, batch.support_x, batch.support_y, batch.query_x, batch.query_y)
            return per_task.mean(), per_task.detach()

        grads, losses = grad(meta_loss, has_aux=True)(params)
        return grads, losses.tolist()

    def meta_gradients(self, batch: EpisodeBatch) -> tuple[dict[str, torch.Tensor], float]:
        """Gradient of the mean query loss over the batch's tasks w.r.t. the initial parameters, and that loss."""
        strategy = self._batching()
        if strategy == "vmap":
            grads, losses = self._vmap_gradients(batch)
        else:
            params = parameters_of(self.net)
            if strategy == "threads":
                total, losses = self._threaded_gradients(params, batch)
            else:
                total, losses = self._tasks_gradient(params, list(batch.tasks()))
            grads = {k: g / len(batch) for k, g in zip(params, total)}
        return grads, sum(losses) / len(losses)

    def meta_train_step(self, batch: EpisodeBatch) -> dict[str, float]:
        self.net.train()
        grads, loss = self.meta_gradients(batch)
        for name, p in self.net.named_parameters():
            p.grad = grads[name]
            if self.hparams.grad_clip:
                p.grad.clamp_(-self.hparams.grad_clip, self.hparams.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return {"loss": loss}

    def predict_steps(self, episode: Episode, steps: list[int]) -> dict[int, torch.Tensor]:
        h = self.hparams
        lr = h.inner_lr if h.test_inner_lr is None else h.test_inner_lr
        return finetune_predictions(self.net, parameters_of(self.net), episode.support_x, episode.support_y,
                                    episode.query_x, lr, steps, self.loss_fn)
