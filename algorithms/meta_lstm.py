"""Meta-LSTM: an LSTM meta-learner whose cell state is the learner's parameters, trained to run T updates of a
few-shot classifier on an episode's support set.

Ravi & Larochelle, "Optimization as a Model for Few-Shot Learning", ICLR 2017. Eq. (2): c_t = f_t ⊙ c_{t−1} +
i_t ⊙ c̃_t with c_t = θ_t and c̃_t = −∇_{θ_{t−1}} L_t, so a gradient step is the case f_t = 1, i_t = α. Eq. (3)-(4):
i_t = σ(W_I·[∇_{θ_{t−1}} L_t, L_t, θ_{t−1}, i_{t−1}] + b_I), f_t = σ(W_F·[∇_{θ_{t−1}} L_t, L_t, θ_{t−1}, f_{t−1}] +
b_F); Sec. 3.3 (as in their code): a first, ordinary LSTM (20 units) reads the preprocessed loss and gradient
(Andrychowicz et al.'s log/sign preprocessing, p = 10) and its hidden state replaces [∇, L] in the gates; all of it
coordinatewise with parameters shared across coordinates; the learned initial cell state c_0 is the learner's
initialisation; Sec. 3.2: the gradient of the learner's loss is taken as a constant (second-order terms ignored);
Adam, gradient-norm clipping 0.25, forget-gate bias initialised high (U(4, 6)) and input-gate bias low (U(−5, −4)).
Alg. 1: T updates on the support set, then the meta-loss is the query loss of θ_T.

Batch norm: the learner uses each batch's own statistics (support batches during the updates, the query batch
at the end), so nothing carries over between episodes — the "statistics per episode" of Sec. 3.4 without running
averages (their code collects running statistics on the support set instead; with 1-shot supports of 5 images,
those are noisier). Gate values (mean over each layer's coordinates, and one fixed coordinate per layer as in the
paper's figure) for the first `record_episodes` test episodes become gates.csv.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from algorithms import nets
from algorithms._registry import register
from algorithms.base import BatchRequest, Episode, EpisodeBatch, Learner
from algorithms.optimizer_common import CoordinateLSTM, log_sign, uniform_init


@dataclass
class MetaLSTMHparams:
    updates: int = 12               # T learner updates per episode (paper: 12 for 1-shot, 5 for 5-shot)
    test_updates: int | None = None  # T at test (None: the same as in training, as the paper does)
    hidden: int = 20                # units of the first (ordinary) LSTM
    preprocess_p: float = 10.0
    meta_lr: float = 0.001          # Adam
    grad_clip: float | None = 0.25  # meta-gradient norm clipping (paper)
    meta_batch: int = 1             # episodes per meta-update (paper: 1)
    forget_bias: list[float] | None = None  # U(a, b) for b_F at initialisation; None: [4, 6] (paper)
    input_bias: list[float] | None = None   # U(a, b) for b_I; None: [-5, -4] (paper)
    backbone: str = "conv4-maml-mini"  # Conv-4, 32 filters, max-pool (the paper's learner)
    record_episodes: int = 50       # test episodes whose gate values are recorded (gates.csv)


class MetaLSTMCell(nn.Module):
    """The second layer: cell state = the learner's parameters (flat), gates from [h_t, c_{t−1}, gate_{t−1}]."""

    def __init__(self, hidden: int):
        super().__init__()
        self.input_gate = nn.Linear(hidden + 2, 1)
        self.forget_gate = nn.Linear(hidden + 2, 1)

    def forward(self, h, c, grad, i_prev, f_prev):
        column = c.unsqueeze(-1)
        f = torch.sigmoid(self.forget_gate(torch.cat([h, column, f_prev], dim=-1)))
        i = torch.sigmoid(self.input_gate(torch.cat([h, column, i_prev], dim=-1)))
        return (f * column - i * grad.unsqueeze(-1)).squeeze(-1), i, f


@register("meta-lstm")
class MetaLSTM(Learner):
    """Meta-learner LSTM (Ravi & Larochelle 2017) over a Conv-4 learner."""

    kinds = ("classification",)
    Hparams = MetaLSTMHparams

    def __init__(self, problem, hparams, device, generators):
        super().__init__(problem, hparams, device, generators)
        gen = generators["init"]
        # the learner: a functional network; its parameters live in the flat cell state c_0 below
        self.net = nets.build(hparams.backbone, problem.input_shape, problem.ways, gen, device, transductive=True)
        self.names = [k for k, _ in self.net.named_parameters()]
        self.shapes = [p.shape for _, p in self.net.named_parameters()]
        flat = torch.cat([p.detach().reshape(-1) for p in self.net.parameters()])
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.lstm = CoordinateLSTM(4, hparams.hidden, 1)
        self.cell = MetaLSTMCell(hparams.hidden)
        uniform_init(self.lstm, gen)
        with torch.no_grad():
            for layer in (self.cell.input_gate, self.cell.forget_gate):
                layer.weight.copy_(torch.empty(layer.weight.shape).uniform_(-0.01, 0.01, generator=gen))
            for layer, bounds in ((self.cell.forget_gate, hparams.forget_bias or [4.0, 6.0]),
                                  (self.cell.input_gate, hparams.input_bias or [-5.0, -4.0])):
                layer.bias.copy_(torch.empty(1).uniform_(float(bounds[0]), float(bounds[1]), generator=gen))
        self.meta = nn.ModuleDict({"lstm": self.lstm, "cell": self.cell})
        self.meta.register_parameter("c0", nn.Parameter(flat))  # c_0: the learned initialisation
        self.meta.to(device)
        self.optimizer = torch.optim.Adam(self.meta.parameters(), lr=hparams.meta_lr)
        # layer index of every coordinate (blocks.k.* -> k + 1, head.* -> last) for the gate figure
        layer_of = [self._layer(name) for name in self.names]
        self.layer_ids = torch.cat([torch.full((s.numel(),), layer, dtype=torch.long)
                                    for layer, s in zip(layer_of, self.shapes)]).to(device)
        self.layers = sorted(set(layer_of))
        counts = torch.bincount(self.layer_ids.cpu(), minlength=max(self.layers) + 1).float()
        self.layer_counts = counts
        # one fixed coordinate per layer (the paper plots "one random parameter in each layer")
        starts = {}
        offset = 0
        for layer, s in zip(layer_of, self.shapes):
            starts.setdefault(layer, []).append((offset, s.numel()))
            offset += s.numel()
        self.probe = {layer: spans[0][0] + int(torch.randint(spans[0][1], (1,), generator=gen))
                      for layer, spans in starts.items()}
        self.gate_rows: list[dict[str, Any]] = []
        self.episodes_seen = 0

    @staticmethod
    def _layer(name: str) -> int:
        if name.startswith("blocks."):
            return int(name.split(".")[1]) + 1
        return 5  # the linear head (after the four conv blocks)

    # -- state ------------------------------------------------------------------------------------------
    def modules(self):
        return {"meta": self.meta}

    def optimizers(self):
        return {"adam": self.optimizer}

    def extra_state(self):
        return {"episodes_seen": self.episodes_seen}

    def load_extra_state(self, state):
        self.episodes_seen = int(state.get("episodes_seen", 0))

    def batch_request(self) -> BatchRequest:
        return BatchRequest(kind="episodes", tasks=self.hparams.meta_batch)

    # -- the inner loop -------------------------------------------------------------------------------
    def _params(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        out, start = {}, 0
        for name, shape in zip(self.names, self.shapes):
            n = shape.numel()
            out[name] = flat[start:start + n].view(shape)
            start += n
        return out

    def _learn(self, support_x, support_y, updates: int, record: bool = False) -> torch.Tensor:
        """θ_T after `updates` meta-learner steps on the support set; differentiable w.r.t. the meta-parameters
        except through the learner's gradients and losses (Sec. 3.2)."""
        c = self.meta.c0
        n = c.numel()
        state = self.lstm.initial_state(n, c)
        i_prev = f_prev = c.new_zeros(n, 1)
        for t in range(updates):
            with torch.enable_grad():
                leaf = c.detach().requires_grad_(True)
                loss = F.cross_entropy(self.net.forward_with(self._params(leaf), support_x), support_y)
                (grad,) = torch.autograd.grad(loss, leaf)
            loss = loss.detach()
            x = torch.cat([log_sign(loss, self.hparams.preprocess_p).expand(n, 2),
                           log_sign(grad, self.hparams.preprocess_p)], dim=-1)
            h, state = self.lstm(x, state)
            c, i_prev, f_prev = self.cell(h, c, grad, i_prev, f_prev)
            if record:
                self._record(t + 1, i_prev.squeeze(-1), f_prev.squeeze(-1))
        return c

    def _record(self, step: int, i: torch.Tensor, f: torch.Tensor) -> None:
        for gate, values in (("input", i), ("forget", f)):
            sums = values.new_zeros(len(self.layer_counts)).index_add_(0, self.layer_ids, values).cpu()
            means = (sums / self.layer_counts.clamp_min(1)).tolist()
            for layer in self.layers:
                self.gate_rows.append({"episode": self.episodes_seen, "layer": layer, "step": step, "gate": gate,
                                       "value": means[layer], "one_coordinate": float(values[self.probe[layer]])})

    # -- training and prediction -----------------------------------------------------------------------
    def meta_train_step(self, batch: EpisodeBatch) -> dict[str, float]:
        self.net.train()
        total, correct = 0.0, 0.0
        self.optimizer.zero_grad(set_to_none=True)
        for task in batch.tasks():
            theta = self._learn(task.support_x, task.support_y, self.hparams.updates)
            logits = self.net.forward_with(self._params(theta), task.query_x)
            loss = F.cross_entropy(logits, task.query_y)
            (loss / len(batch)).backward()
            total += float(loss.detach())
            correct += float((logits.argmax(-1) == task.query_y).float().mean())
        if self.hparams.grad_clip:
            nn.utils.clip_grad_norm_(self.meta.parameters(), self.hparams.grad_clip)
        self.optimizer.step()
        return {"loss": total / len(batch), "accuracy": 100.0 * correct / len(batch)}

    def predict(self, episode: Episode, steps: int | None = None) -> torch.Tensor:
        h = self.hparams
        if steps is None:
            steps = h.updates if h.test_updates is None else h.test_updates
        record = self.episodes_seen < h.record_episodes
        with torch.no_grad():
            theta = self._learn(episode.support_x, episode.support_y, steps, record=record)
            logits = self.net.forward_with(self._params(theta), episode.query_x)
        self.episodes_seen += 1
        return logits

    def diagnostics(self) -> dict[str, list[dict[str, Any]]]:
        return {"gates": list(self.gate_rows)} if self.gate_rows else {}
