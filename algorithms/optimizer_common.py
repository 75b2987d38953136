"""What the optimizer-kind learners share: the `optimize(problem, steps) -> loss curve` interface, Andrychowicz
et al.'s gradient preprocessing, coordinatewise LSTMs and truncated-BPTT meta-training.

Andrychowicz, Denil, Gómez, Hoffman, Pfau, Schaul, Shillingford & de Freitas, "Learning to learn by gradient
descent by gradient descent", NeurIPS 2016. Meta-loss Eq. (3)/(4): L(φ) = E[Σ_t w_t f(θ_t)], w_t = 1, with
θ_{t+1} = θ_t + g_t and [g_t, h_{t+1}] = m(∇_t, h_t, φ); ∂∇_t/∂φ is dropped (Sec. 2: "we assume that the gradients
of the optimizee do not depend on the optimizer parameters", i.e. no second derivatives).
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from algorithms import nets
from algorithms.base import BatchRequest, Learner, OptimizeeBatch, OptimizeeProblem


@nets.backbone("mnist-mlp")
def _mnist_mlp(input_shape, out_dim, hidden=(20,), activation: str = "sigmoid", transductive: bool = False):
    """The optimizee of the MNIST optimizer benchmarks as a module: MLP 784 → hidden (sigmoid) → 10.
    OptimizeeProblem.loss is its functional form (the benchmark sets hidden sizes and activation)."""
    return nets.MLP(math.prod(input_shape), list(hidden), out_dim, activation)


def log_sign(x: torch.Tensor, p: float = 10.0) -> torch.Tensor:
    """Andrychowicz et al. App. A: x → (log|x| / p, sgn x) if |x| ≥ e^−p, else (−1, e^p x); [..., 2]."""
    big = x.abs() >= math.exp(-p)
    magnitude = torch.where(big, x.abs().clamp_min(1e-38).log() / p, torch.full_like(x, -1.0))
    direction = torch.where(big, torch.sign(x), x * math.exp(p))
    return torch.stack([magnitude, direction], dim=-1)


def preprocess(x: torch.Tensor, enabled: bool, p: float) -> torch.Tensor:
    """[n] → [n, 2] (log/sign) or [n, 1] (the raw value) features per coordinate."""
    return log_sign(x, p) if enabled else x.unsqueeze(-1)


def loss_and_gradient(problem: OptimizeeProblem, theta: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """f(θ) on minibatch `step` and ∇f as constants (no graph): what a hand-designed optimizer sees."""
    with torch.enable_grad():
        leaf = theta.detach().requires_grad_(True)
        loss = problem.loss(leaf, step)
        (grad,) = torch.autograd.grad(loss, leaf)
    return loss.detach(), grad


class OptimizerLearner(Learner):
    """Base of the optimizer-kind learners: `optimize(problem, steps)` returns loss@0..loss@steps ([steps + 1]).

    `predict` is `optimize` (the loss curve is an optimizer's prediction), so registry-wide tests and tools that
    call predict work unchanged."""

    kinds = ("optimizer",)

    def batch_request(self) -> BatchRequest:
        return BatchRequest(kind="optimizees", tasks=1)

    def meta_train_step(self, batch: OptimizeeBatch) -> dict[str, float]:
        return {}

    def optimize(self, problem: OptimizeeProblem, steps: int | None = None) -> torch.Tensor:
        raise NotImplementedError

    def predict(self, problem: OptimizeeProblem, steps: int | None = None) -> torch.Tensor:  # type: ignore[override]
        return self.optimize(problem, problem.horizon if steps is None else steps)


class CoordinateLSTM(nn.Module):
    """A stack of LSTM cells applied to every coordinate independently (the coordinates are the batch), so its
    weights are shared across all parameters of the optimizee and it works for any number of them."""

    def __init__(self, input_size: int, hidden: int, layers: int):
        super().__init__()
        sizes = [input_size] + [hidden] * layers
        self.cells = nn.ModuleList(nn.LSTMCell(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.hidden = hidden

    def initial_state(self, n: int, like: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        zeros = like.new_zeros(n, self.hidden)
        return [(zeros, zeros) for _ in self.cells]

    def forward(self, x: torch.Tensor, state):
        new_state = []
        for cell, (h, c) in zip(self.cells, state):
            h, c = lstm_cell(x, h, c, cell)
            new_state.append((h, c))
            x = h
        return x, new_state


def lstm_cell(x: torch.Tensor, h: torch.Tensor, c: torch.Tensor,
              cell: nn.LSTMCell) -> tuple[torch.Tensor, torch.Tensor]:
    """nn.LSTMCell's function (gate order i, f, g, o) with one matrix product per gate: with tens of thousands of
    coordinates as the batch the cost is all elementwise work, which runs faster (forward and backward, measured
    on 2 CPU cores) on four contiguous [n, hidden] gate tensors than on strided slices of one [n, 4·hidden]."""
    xh = torch.cat([x, h], dim=1)
    weight = torch.cat([cell.weight_ih, cell.weight_hh], dim=1)
    bias = cell.bias_ih + cell.bias_hh
    w_i, w_f, w_g, w_o = weight.chunk(4, 0)
    b_i, b_f, b_g, b_o = bias.chunk(4)
    i = torch.sigmoid(torch.addmm(b_i, xh, w_i.t()))
    f = torch.sigmoid(torch.addmm(b_f, xh, w_f.t()))
    g = torch.tanh(torch.addmm(b_g, xh, w_g.t()))
    o = torch.sigmoid(torch.addmm(b_o, xh, w_o.t()))
    c = f * c + i * g
    return o * torch.tanh(c), c


def detach_state(state: Any) -> Any:
    """Cut the graph at a truncation point (tensors, and lists/tuples/dicts of them)."""
    if isinstance(state, torch.Tensor):
        return state.detach()
    if isinstance(state, (list, tuple)):
        return type(state)(detach_state(s) for s in state)
    if isinstance(state, dict):
        return {k: detach_state(v) for k, v in state.items()}
    return state


class UnrolledOptimizer(OptimizerLearner):
    """A learned update rule meta-trained by truncated backpropagation through time on whole optimisation runs.

    Subclasses define `modules()`, `initial_state(theta)` and `update(theta, grad, loss, state) -> (theta', state',
    gates)`; hparams need unroll, meta_lr and grad_clip. One meta-iteration = one optimisation run of the training
    problem: its horizon cut into unrolls of `unroll` steps, one Adam step on Σ_{t in unroll} f(θ_t) each (100/20 =
    5 updates per run in the paper). The optimizee gradients fed to the update rule are detached, so no second
    derivatives are taken; θ and the recurrent state are detached between unrolls (the truncation).

    `meta_loss` picks the objective: "sum" is the paper's Σ_t f(θ_t); "log" is Σ_t log f(θ_t), which weighs a step
    by its relative progress (∇f/f). With the plain sum, the first unroll's losses (2.3 → 0.6) give meta-gradients
    several times those of the last (≈ 0.3), so Adam's shared moment estimates are set by the early steps and the
    optimizer learns a rule that descends fast and then flattens.

    `loss_weights` weighs the steps inside an unroll: "flat" (w_t = 1, the paper) or "ramp" (w_k = 2k / (U + 1) for the
    k-th of U steps). A truncated objective is greedy: each update only sees the next U steps, so it favours small
    safe steps whose pay-off would come later (the short-horizon bias, Wu et al. 2018). The ramp puts the weight
    on the unroll's last steps, a longer effective look-ahead at the same unroll length.

    `imitate` (off by default) warm-starts the rule by imitating a hand-designed optimizer, as in Chen et al.,
    "Training Stronger Baselines for Learning to Optimize" (NeurIPS 2020): for the first `imitate_iters`
    meta-iterations the training run follows the teacher (`imitate`: sgd, rmsprop, adam or nag at `teacher_lr`)
    and the learned rule, fed the same gradients, is fitted to the teacher's steps (squared error relative to the
    step's size, by truncated BPTT through the rule's own state only), with Adam at `imitate_lr` (constant) or on
    the meta_lr schedule; the meta-objective takes over after that, on the meta_lr schedule (which spans the whole
    budget, imitation included).
    A rule that starts from a tuned hand-designed one does not have to discover step sizes from the zero update
    under a truncated (short-horizon-biased) objective.

    Two additions the paper leaves unspecified, both switchable: the meta learning rate follows a cosine decay over
    the cell's budget (lr_schedule), and every `select_every` iterations a snapshot of the optimizer is kept, of
    which tune() keeps the one with the lowest mean final loss on the harness's validation optimizees (the paper's
    "early stopping on validation performance"): truncated-BPTT training of these optimizers is known to be
    unstable (it can plateau or drift; seen here on several seeds).
    """

    def _build_optimizer(self) -> None:
        if getattr(self.hparams, "lr_schedule", "constant") not in ("constant", "cosine"):
            raise ValueError(f"lr_schedule: {self.hparams.lr_schedule!r} is not 'constant' or 'cosine'")
        if getattr(self.hparams, "meta_loss", "sum") not in ("sum", "log"):
            raise ValueError(f"meta_loss: {self.hparams.meta_loss!r} is not 'sum' or 'log'")
        if getattr(self.hparams, "loss_weights", "flat") not in ("flat", "ramp"):
            raise ValueError(f"loss_weights: {self.hparams.loss_weights!r} is not 'flat' or 'ramp'")
        self.teacher = None
        imitating, iters = getattr(self.hparams, "imitate", None) is not None, getattr(self.hparams, "imitate_iters", 0)
        if imitating != (iters > 0):  # one without the other would silently do nothing
            raise ValueError(f"imitate: {getattr(self.hparams, 'imitate', None)!r} with imitate_iters: {iters}: set "
                             "both (a teacher and a number of iterations > 0) or neither")
        if imitating:
            teachers = ("sgd", "rmsprop", "adam", "nag")
            if self.hparams.imitate not in teachers:
                raise ValueError(f"imitate: {self.hparams.imitate!r} is not one of {', '.join(teachers)} (or null)")
            if not self.hparams.teacher_lr or self.hparams.teacher_lr <= 0:
                raise ValueError(f"teacher_lr: {self.hparams.teacher_lr!r} must be a positive learning rate for "
                                 f"the {self.hparams.imitate} teacher")
            if self.hparams.imitate_lr is not None and self.hparams.imitate_lr <= 0:
                raise ValueError(f"imitate_lr: {self.hparams.imitate_lr!r} must be a positive learning rate (or null "
                                 "for the meta_lr schedule)")
            import algorithms  # the registry imports this module: look the teacher up at construction time
            cls = algorithms.get(self.hparams.imitate)
            self.teacher = cls(self.problem, cls.Hparams(lr=self.hparams.teacher_lr), self.device, self.generators)
        params = [p for m in self.modules().values() for p in m.parameters()]
        self.optimizer = torch.optim.Adam(params, lr=self.hparams.meta_lr)
        self.gate_rows: list[dict[str, Any]] = []
        self.eval_runs = 0
        self.iteration = 0
        self.snapshots: dict[int, dict[str, Any]] = {}
        self.selection: list[dict[str, Any]] = []

    def optimizers(self):
        return {"meta": self.optimizer}

    def extra_state(self):
        return {"eval_runs": self.eval_runs, "iteration": self.iteration,
                "snapshots": {str(k): v for k, v in self.snapshots.items()}}

    def load_extra_state(self, state):
        self.eval_runs = int(state.get("eval_runs", 0))
        self.iteration = int(state.get("iteration", 0))
        self.snapshots = {int(k): v for k, v in state.get("snapshots", {}).items()}

    def _weights(self) -> dict[str, Any]:
        return {k: {n: t.detach().cpu().clone() for n, t in m.state_dict().items()} for k, m in self.modules().items()}

    def _meta_lr(self) -> float:
        h = self.hparams
        if getattr(h, "lr_schedule", "constant") == "cosine" and self.meta_iters > 0:
            return h.meta_lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, self.iteration / self.meta_iters)))
        return h.meta_lr

    def _set_meta_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def initial_state(self, theta: torch.Tensor) -> Any:
        raise NotImplementedError

    def update(self, theta: torch.Tensor, grad: torch.Tensor, loss: torch.Tensor, state: Any):
        raise NotImplementedError

    def meta_train_step(self, batch: OptimizeeBatch) -> dict[str, float]:
        h = self.hparams
        params = [p for m in self.modules().values() for p in m.parameters()]
        for m in self.modules().values():
            m.train()
        if self.teacher is not None and self.iteration < h.imitate_iters:
            return self._imitation_step(batch, params)
        total, steps, grad_norms = 0.0, 0, []
        log_objective = getattr(h, "meta_loss", "sum") == "log"
        ramp = getattr(h, "loss_weights", "flat") == "ramp"
        self._set_meta_lr(self._meta_lr())
        for problem in batch:
            horizon = problem.horizon
            theta = problem.flat_params()
            state = self.initial_state(theta)
            loss, grad = loss_and_gradient(problem, theta, 0)
            t = 0
            while t < horizon:
                theta, state = theta.detach(), detach_state(state)  # truncation
                meta_loss = theta.new_zeros(())
                length = min(h.unroll, horizon - t)
                for k in range(1, length + 1):
                    theta, state, _ = self.update(theta, grad, loss, state)
                    t += 1
                    loss_t = problem.loss(theta, t)
                    # ∇_t is an input of the next update, not a function of φ: detached (no second derivatives)
                    (grad,) = torch.autograd.grad(loss_t, theta, retain_graph=True)
                    grad, loss = grad.detach(), loss_t.detach()
                    term = loss_t.log() if log_objective else loss_t
                    # ramp: w_k = 2k / (U + 1) (mean 1), the unroll's later steps count more: a longer look-ahead
                    # than the flat sum's, against the short-horizon bias of truncation (see the class docstring)
                    meta_loss = meta_loss + (term * (2.0 * k / (length + 1)) if ramp else term)
                    total += float(loss)
                    steps += 1
                self.optimizer.zero_grad(set_to_none=True)
                meta_loss.backward()
                if h.grad_clip:
                    grad_norms.append(float(nn.utils.clip_grad_norm_(params, h.grad_clip)))
                self.optimizer.step()
        self._end_iteration()
        out = {"loss": total / max(1, steps), "final_loss": float(loss)}
        if grad_norms:
            out["meta_grad_norm"] = sum(grad_norms) / len(grad_norms)
        return out

    def _end_iteration(self) -> None:
        self.iteration += 1
        every = int(getattr(self.hparams, "select_every", 0) or 0)
        if every and self.iteration % every == 0:
            self.snapshots[self.iteration] = self._weights()

    def _imitation_step(self, batch: OptimizeeBatch, params: list[torch.Tensor]) -> dict[str, float]:
        """One run along the teacher's trajectory, fitting the learned rule's steps to the teacher's."""
        h, teacher = self.hparams, self.teacher
        self._set_meta_lr(h.imitate_lr if h.imitate_lr is not None else self._meta_lr())
        total, errors, steps = 0.0, 0.0, 0
        for problem in batch:
            theta = problem.flat_params()
            state, teacher_state = self.initial_state(theta), teacher.init_state(theta)
            loss, grad = loss_and_gradient(problem, theta, 0)
            t = 0
            while t < problem.horizon:
                state = detach_state(state)  # truncation, as in meta-training
                imitation_loss = theta.new_zeros(())
                for _ in range(min(h.unroll, problem.horizon - t)):
                    proposed, state, _ = self.update(theta, grad, loss, state)
                    with torch.no_grad():
                        target = teacher.rule(theta, grad, teacher_state, h.teacher_lr, t + 1)
                        wanted = target - theta
                    # relative squared error: early steps (large) and late ones (small) count alike
                    imitation_loss = imitation_loss + ((proposed - target).square().sum()
                                                       / wanted.square().sum().clamp_min(1e-30))
                    theta = target  # off-policy: the run follows the teacher, whatever the rule proposed
                    t += 1
                    loss, grad = loss_and_gradient(problem, theta, t)
                    total += float(loss)
                    steps += 1
                self.optimizer.zero_grad(set_to_none=True)
                imitation_loss.backward()
                if h.grad_clip:
                    nn.utils.clip_grad_norm_(params, h.grad_clip)
                self.optimizer.step()
                errors += float(imitation_loss.detach())
        self._end_iteration()
        return {"loss": total / max(1, steps), "final_loss": float(loss), "imitation_error": errors / max(1, steps)}

    @torch.no_grad()
    def optimize(self, problem: OptimizeeProblem, steps: int | None = None) -> torch.Tensor:
        steps = problem.horizon if steps is None else steps
        for m in self.modules().values():
            m.eval()
        record = getattr(self.hparams, "record_runs", 0) > self.eval_runs
        theta = problem.flat_params()
        state = self.initial_state(theta)
        curve = []
        bounds = _layer_bounds(problem)
        for t in range(steps + 1):
            loss, grad = loss_and_gradient(problem, theta, t)
            curve.append(loss)
            if t == steps:
                break
            theta, state, gates = self.update(theta, grad, loss, state)
            if record and gates:
                for gate, values in gates.items():
                    for layer, (a, b) in bounds.items():
                        self.gate_rows.append({"episode": self.eval_runs, "layer": layer, "step": t + 1,
                                               "gate": gate, "value": float(values[a:b].mean())})
        self.eval_runs += 1
        return torch.stack(curve)

    def tune(self, validation: OptimizeeBatch) -> dict[str, Any]:
        """Keep the snapshot (or the final weights) with the lowest mean final loss on the first `select_runs`
        validation optimizees of the base problem; a diverging run counts as +inf."""
        h = self.hparams
        if not self.snapshots:
            return {}
        # the base problem's runs: the optimizer chosen for a transfer benchmark is the one chosen on the base
        runs = list(validation.base or validation.problems)[: max(1, int(getattr(h, "select_runs", 10)))]
        candidates = {**self.snapshots, self.iteration: self._weights()}
        recorded, self.eval_runs = self.eval_runs, 1 << 30  # no gate rows from validation runs
        self.selection = []
        for iteration, weights in sorted(candidates.items()):
            self._load_weights(weights)
            finals = [float(self.optimize(p)[-1]) for p in runs]
            finals = [v if math.isfinite(v) else math.inf for v in finals]
            self.selection.append({"iteration": iteration, "final_loss": sum(finals) / len(finals), "runs": len(runs)})
        self.eval_runs = recorded
        best = min(self.selection, key=lambda row: (row["final_loss"], -row["iteration"]))
        for row in self.selection:
            row["chosen"] = row["iteration"] == best["iteration"]
        self._load_weights(candidates[best["iteration"]])
        return {"selected_iteration": best["iteration"], "selected_final_loss": best["final_loss"],
                "last_final_loss": self.selection[-1]["final_loss"], "validation_runs": len(runs)}

    def _load_weights(self, weights: dict[str, Any]) -> None:
        for k, m in self.modules().items():
            m.load_state_dict(weights[k])

    def diagnostics(self) -> dict[str, list[dict[str, Any]]]:
        tables = {"optimizer_gates": list(self.gate_rows)} if self.gate_rows else {}
        if self.selection:
            tables["snapshot_selection"] = [dict(row) for row in self.selection]
        return tables


def _layer_bounds(problem: OptimizeeProblem) -> dict[str, tuple[int, int]]:
    out, start = {}, 0
    for name, p in zip(problem.param_names(), problem.params):
        out[name] = (start, start + p.numel())
        start += p.numel()
    return out


def uniform_init(module: nn.Module, generator: torch.Generator, bound: float | None = None) -> None:
    """U(−b, b) for every parameter (b = 1/√hidden for LSTM cells, 1/√fan_in for linear layers), drawn from
    `generator` on the CPU (CUDA builds get CPU-identical weights)."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.LSTMCell):
                b = bound or 1.0 / math.sqrt(m.hidden_size)
            elif isinstance(m, nn.Linear):
                b = bound or 1.0 / math.sqrt(m.in_features)
            else:
                continue
            for p in m.parameters(recurse=False):
                p.copy_(torch.empty(p.shape).uniform_(-b, b, generator=generator))
