"""A plain LSTM that reads the support set (embedding ++ one-hot label) and then a query, and predicts its label.

The black-box baseline of the meta-learning lecture ("training and test set as one RNN input") and the LSTM
row of Santoro et al., "Meta-Learning with Memory-Augmented Neural Networks", ICML 2016, Table 1 (with
`protocol: stream`). It is known not to train well: its only memory is a fixed-size hidden state, which must
hold every support example it may be asked about.

`query_first: true` reads each query *before* the support (query, then the labelled support steps; one sequence
per query): the state then has to hold one example and watch the support for its match and that match's label,
instead of holding every support example until a query arrives. It is still a plain LSTM over the episode as one
sequence, in the other order. It did not get the LSTM off chance on 20-way 1-shot at the cpu budget, nor shorten
its plateau on 5-way (experiments/blackbox-lstm-plateau); it stays off by default.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from algorithms._registry import register
from algorithms.sequences import SequenceHparams, SequenceLearner


@dataclass
class BlackboxLSTMHparams(SequenceHparams):
    grad_clip: float = 10.0            # the suite's setting for the recurrent learners (0: off)
    hidden: int = 256                  # LSTM units per layer
    layers: int = 1
    # added to the forget gates' bias after initialisation (0: PyTorch's uniform init, forget gates near 0.5).
    # At 0.5 per step the state keeps 0.5^20 of the first of 20 support examples by the query; a bias of b keeps
    # sigmoid(b) per step (Gers et al. 2000; Jozefowicz et al. 2015 recommend 1). Added after results were
    # committed, hash-neutral at its default.
    forget_bias: float = field(default=0.0, metadata={"hash_neutral": True})
    # read each query before the support (module docstring); 'sequence' protocol only. Hash-neutral when off.
    query_first: bool = field(default=False, metadata={"hash_neutral": True})


class LSTMReader(nn.Module):
    """An LSTM over the support steps, then one more step per query from the state after the support
    (query_first: the query step, then the support steps, one sequence per query)."""

    def __init__(self, in_dim: int, ways: int, hidden: int, layers: int, query_first: bool = False):
        super().__init__()
        self.lstm = nn.LSTM(in_dim, hidden, layers, batch_first=True)
        self.head = nn.Linear(hidden, ways)
        self.query_first = query_first

    def forward(self, support: torch.Tensor, query: torch.Tensor,
                positions: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if self.query_first:
            return self._query_first(support, query, positions)
        tasks, n = support.shape[:2]
        q = query.shape[1]
        if positions is None:                       # every query right after the support: one fused LSTM call
            out, (h, c) = self.lstm(support)
            h, c = h.repeat_interleave(q, dim=1), c.repeat_interleave(q, dim=1)
        else:                                       # query i after the first positions[i] support steps
            states, state = [(support.new_zeros(self.lstm.num_layers, tasks, self.lstm.hidden_size),) * 2], None
            outs = []
            for t in range(n):
                o, state = self.lstm(support[:, t:t + 1], state)
                outs.append(o)
                states.append(state)
            out = torch.cat(outs, dim=1)
            h = torch.stack([states[p][0] for p in positions.tolist()], dim=2).flatten(1, 2)
            c = torch.stack([states[p][1] for p in positions.tolist()], dim=2).flatten(1, 2)
        query_out = query.new_zeros(tasks * q, 1, self.lstm.hidden_size)
        if q:                                       # one branch per query
            query_out, _ = self.lstm(query.reshape(tasks * q, 1, -1), (h.contiguous(), c.contiguous()))
        return self.head(out), self.head(query_out.reshape(tasks, q, self.lstm.hidden_size))

    def _query_first(self, support, query, positions):
        """Query i of each task as the first step of its own sequence, followed by the task's support steps; its
        prediction is the output after the first positions[i] of them (default: all n). The LSTM is causal, so
        one pass over [query, all support] gives every prefix."""
        tasks, n, dim = support.shape
        q = query.shape[1]
        sequences = torch.cat([query.reshape(tasks * q, 1, dim), support.repeat_interleave(q, dim=0)], dim=1)
        out, _ = self.lstm(sequences)                                       # [tasks * q, 1 + n, hidden]
        index = torch.full((q,), n, device=out.device) if positions is None else positions.to(out.device)
        picked = out[torch.arange(tasks * q, device=out.device), index.repeat(tasks)]
        support_out, _ = self.lstm(support)   # the causal per-step predictions of the interface (unused in training)
        return self.head(support_out), self.head(picked.reshape(tasks, q, -1))


@register("blackbox-lstm")
class BlackboxLSTM(SequenceLearner):
    """A plain LSTM over the episode as a sequence, on a Conv-4 embedding trained end to end."""

    Hparams = BlackboxLSTMHparams

    def __init__(self, problem, hparams, device, generators):
        super().__init__(problem, hparams, device, generators)
        if hparams.forget_bias:
            add_forget_bias(self.model.lstm, hparams.forget_bias)

    @classmethod
    def check_hparams(cls, hparams):
        super().check_hparams(hparams)
        protocol = hparams.get("protocol", "sequence")
        if hparams.get("query_first") and protocol != "sequence":
            raise ValueError(f"blackbox-lstm.query_first: needs protocol 'sequence', not {protocol!r} (a stream "
                             f"predicts at every step, with no query to read first); set query_first: false")

    def build_model(self, in_dim: int, ways: int) -> nn.Module:
        return LSTMReader(in_dim, ways, self.hparams.hidden, self.hparams.layers, self.hparams.query_first)


def add_forget_bias(lstm: nn.LSTM, value: float) -> None:
    """Add `value` to the forget-gate slice of every layer's input bias (PyTorch's gate order: i, f, g, o)."""
    with torch.no_grad():
        for layer in range(lstm.num_layers):
            bias = getattr(lstm, f"bias_ih_l{layer}")
            bias[lstm.hidden_size:2 * lstm.hidden_size] += value
