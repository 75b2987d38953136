"""The gated LSTM optimizer: a gradient LSTM proposes a step, a second LSTM whose cell state *is* the parameter
decides how much of it to take (input gate = a learned learning rate) and how much of the old value to keep
(forget gate = a learned weight decay).

The two-layer idea of the lecture, combining Andrychowicz et al. 2016 (coordinatewise LSTM on preprocessed
gradients, truncated BPTT, meta-loss Σ_t f(θ_t)) with Ravi & Larochelle 2017's observation that the LSTM cell
update c_t = f_t ⊙ c_{t−1} + i_t ⊙ c̃_t is a gradient step when c_t = θ_t and c̃_t = −∇_t (their Eq. 1-2):

    h_t, m_t = LSTM_1(preprocess(∇_t), h_{t−1})       m_t: a momentum-like step from the gradient history
    i_t = σ(W_I·[h_t, θ_{t−1}, i_{t−1}] + b_I)       learned learning rate, per coordinate and step
    f_t = σ(W_F·[h_t, θ_{t−1}, f_{t−1}] + b_F)       learned weight decay (1 − f_t)
    θ_t = f_t ⊙ θ_{t−1} + i_t ⊙ (−m_t)

Both parts are coordinatewise with weights shared across all coordinates. Meta-training is that of the LSTM
optimizer (algorithms/optimizer_common.UnrolledOptimizer). The gate values of the first `record_runs` test runs
(mean per optimizee parameter tensor and step) become optimizer_gates.csv.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from algorithms._registry import register
from algorithms.optimizer_common import CoordinateLSTM, UnrolledOptimizer, preprocess, uniform_init


@dataclass
class GatedLSTMOptimizerHparams:
    hidden: int = 20              # units of the gradient LSTM
    layers: int = 1               # layers of the gradient LSTM (the gate cell is the second layer)
    preprocess: bool = True
    preprocess_p: float = 10.0
    output_scale: float = 0.1     # m_t = output_scale · W_m h_t
    forget_bias: float = 5.0      # b_F at initialisation: f ≈ 0.993 (Ravi & Larochelle: U(4, 6), "high")
    input_bias: float = 0.0       # b_I at initialisation: i ≈ 0.5
    unroll: int = 20
    meta_lr: float = 0.01
    meta_loss: str = "sum"        # "sum": Σ f(θ_t) as in the paper; "log": Σ log f(θ_t) (see UnrolledOptimizer)
    loss_weights: str = "flat"    # "flat": w_t = 1 (the paper); "ramp": later steps of an unroll count more
    grad_clip: float | None = None
    lr_schedule: str = "cosine"     # meta learning rate: "cosine" decay to 0 over the budget, or "constant"
    imitate: str | None = None      # warm start: fit a hand-designed teacher's steps first (see UnrolledOptimizer)
    teacher_lr: float | None = None  # the teacher's learning rate (e.g. its tuned one)
    imitate_iters: int = 0          # meta-iterations spent imitating before the meta-objective takes over
    imitate_lr: float | None = None  # Adam's constant learning rate while imitating (None: the meta_lr schedule)
    select_every: int = 50          # keep a snapshot every N meta-iterations; tune() keeps the best (0: the last)
    select_runs: int = 10           # validation optimizees that choose among the snapshots
    record_runs: int = 20         # test runs whose gate values are recorded


@register("gated-lstm-optimizer")
class GatedLSTMOptimizer(UnrolledOptimizer):
    """Two-LSTM optimizer whose second cell state is the parameter: input gate = learning rate, forget gate =
    weight decay."""

    Hparams = GatedLSTMOptimizerHparams

    def __init__(self, problem, hparams, device, generators):
        super().__init__(problem, hparams, device, generators)
        features = 2 if hparams.preprocess else 1
        self.net = nn.ModuleDict({"lstm": CoordinateLSTM(features, hparams.hidden, hparams.layers),
                                  "step": nn.Linear(hparams.hidden, 1),
                                  "input_gate": nn.Linear(hparams.hidden + 2, 1),
                                  "forget_gate": nn.Linear(hparams.hidden + 2, 1)})
        gen = generators["init"]
        uniform_init(self.net, gen)
        with torch.no_grad():
            # gates start near-constant (small weights) at the chosen learning-rate / decay levels
            for name, bias in (("input_gate", hparams.input_bias), ("forget_gate", hparams.forget_bias)):
                layer = self.net[name]
                layer.weight.copy_(torch.empty(layer.weight.shape).uniform_(-0.01, 0.01, generator=gen))
                layer.bias.fill_(bias)
        self.net.to(device)
        self._build_optimizer()

    def modules(self):
        return {"net": self.net}

    def initial_state(self, theta):
        zeros = theta.new_zeros(theta.numel(), 1)
        return {"lstm": self.net["lstm"].initial_state(theta.numel(), theta), "i": zeros, "f": zeros}

    def update(self, theta, grad, loss, state):
        h = self.hparams
        hidden, lstm_state = self.net["lstm"](preprocess(grad, h.preprocess, h.preprocess_p), state["lstm"])
        m = self.net["step"](hidden) * h.output_scale
        column = theta.unsqueeze(-1)
        i = torch.sigmoid(self.net["input_gate"](torch.cat([hidden, column, state["i"]], dim=-1)))
        f = torch.sigmoid(self.net["forget_gate"](torch.cat([hidden, column, state["f"]], dim=-1)))
        new_theta = (f * column - i * m).squeeze(-1)
        return new_theta, {"lstm": lstm_state, "i": i, "f": f}, {"input": i.squeeze(-1), "forget": f.squeeze(-1)}
