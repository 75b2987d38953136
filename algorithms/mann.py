"""Memory-augmented neural network with least-recently-used access (LRUA).

Santoro, Bartunov, Botvinick, Wierstra & Lillicrap, "Meta-Learning with Memory-Augmented Neural Networks",
ICML 2016, Sec. 3.1-3.2. An LSTM controller reads [x_t, y_{t-1}, r_{t-1}] (labels arrive one step late) and
emits, per head, a key k_t, a vector a_t to write, a write gate α_t and a key strength β_t.

- Read (Eq. 2-4): w^r_t(i) = softmax_i(β_t · K(k_t, M_t(i))) with K the cosine similarity; r_t = Σ_i w^r_t(i) M_t(i).
- Usage (Eq. 5): w^u_t = γ w^u_{t-1} + w^r_t + w^w_t.
- Least used (Eq. 6): the n least-used slots (n = number of read heads). The paper's w^lu has a 1 at each of
  them, which would give every head a write weight of σ + n(1 - σ); like the public re-implementations we give
  head h the h-th least-used slot, so each head's write weights sum to one and the heads write to distinct slots.
- Write (Eq. 7-8): w^w_t = σ(α_t) w^r_{t-1} + (1 - σ(α_t)) w^lu_{t-1}; before writing, the least-used slot (by
  w^u_{t-1}) is zeroed; then M_t(i) = M_{t-1}(i) + w^w_t(i) a_t.
- Output: softmax over classes of a linear map of [h_t, r_t].

Departures, each where the paper is silent or its equations cannot work: the key strength β (the NTM's;
softplus keeps it positive); tanh on keys; and a separate write vector a_t where Eq. 8 writes the key k_t
itself — the read of step t addresses the memory *after* that step's write, so with k_t written into an erased
slot every read would find its own key at cosine 1 and retrieve nothing (public re-implementations also emit
a separate a_t). `backbone: pixels` with `pixel_size: 20` is the
paper's raw-pixel input; a Conv-4 embedding trained end to end is the default.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from algorithms._registry import register
from algorithms.sequences import SequenceHparams, SequenceLearner


@dataclass
class MANNHparams(SequenceHparams):
    grad_clip: float = 10.0            # the suite's setting for the recurrent learners (0: off)
    # protocol: "sequence" like the other black-box learners (comparable tables); the paper profile sets MANN's
    # own "stream" (labels one step late, a loss at every step)
    controller: int = 200              # LSTM controller units (paper: 200)
    memory_slots: int = 128            # memory rows (paper: 128)
    memory_width: int = 40             # memory columns (paper: 40)
    read_heads: int = 4                # read heads = writes per step (paper: 4)
    gamma: float = 0.95                # usage decay γ


# β starts near 10 instead of softplus(0) = 0.7: with 128 slots and cosines in [-1, 1] a weak β reads a near-uniform
# average of the memory, whose gradient hardly tells the controller which slot would have helped
STRENGTH_OFFSET = 10.0
GATE_OFFSET = -3.0


def least_used(usage: torch.Tensor, n: int) -> torch.Tensor:
    """w^lu per head [B, n, S]: head h gets a one-hot on the h-th least-used slot of usage [B, S] (ties broken
    by slot index), so the n heads write to n distinct least-used slots."""
    idx = usage.argsort(dim=-1, stable=True)[:, :n]
    return F.one_hot(idx, usage.shape[-1]).to(usage.dtype)


def lrua_write(memory: torch.Tensor, usage_prev: torch.Tensor, read_prev: torch.Tensor, gate: torch.Tensor,
               values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One LRUA write (Eq. 7-8): returns the new memory [B, S, W] and the write weights w^w [B, H, S].

    memory [B, S, W], usage_prev w^u_{t-1} [B, S], read_prev w^r_{t-1} [B, H, S], gate σ(α) [B, H, 1],
    values a_t [B, H, W] to write.
    """
    heads = read_prev.shape[1]
    write = gate * read_prev + (1.0 - gate) * least_used(usage_prev, heads)   # w^lu_{t-1} [B, H, S]
    # the single least-used slot is erased before writing
    erase = F.one_hot(usage_prev.argmin(dim=-1), usage_prev.shape[-1]).to(memory.dtype)
    memory = memory * (1.0 - erase)[..., None] + write.transpose(1, 2) @ values
    return memory, write


def content_read(memory: torch.Tensor, keys: torch.Tensor, strength: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Content addressing (Eq. 2-4): read weights softmax(β · cosine(k, M_i)) [B, H, S] and reads [B, H, W]."""
    similarity = F.normalize(keys, dim=-1, eps=1e-8) @ F.normalize(memory, dim=-1, eps=1e-8).transpose(1, 2)
    weights = torch.softmax(strength * similarity, dim=-1)
    return weights, weights @ memory


class MANNCore(nn.Module):
    """Controller + LRUA memory, stepped over a sequence; queries branch from the state after the support."""

    def __init__(self, in_dim: int, ways: int, controller: int, slots: int, width: int, heads: int, gamma: float):
        super().__init__()
        self.slots, self.width, self.heads, self.gamma = slots, width, heads, gamma
        self.controller = nn.LSTMCell(in_dim + heads * width, controller)
        # keys k, values a, gates α, strengths β, from the controller output and (a skip connection) the input
        self.interface = nn.Linear(controller + in_dim, heads * (2 * width + 2))
        self.head = nn.Linear(controller + heads * width, ways)

    def initial_state(self, batch: int, like: torch.Tensor) -> dict[str, torch.Tensor]:
        z = like.new_zeros
        return {"h": z(batch, self.controller.hidden_size), "c": z(batch, self.controller.hidden_size),
                # a tiny constant memory: cosine similarity is undefined at zero rows
                "memory": z(batch, self.slots, self.width) + 1e-6,
                "reads": z(batch, self.heads * self.width), "read_weights": z(batch, self.heads, self.slots),
                "usage": z(batch, self.slots)}

    def step(self, x: torch.Tensor, s: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        h, c = self.controller(torch.cat([x, s["reads"]], dim=-1), (s["h"], s["c"]))
        w = self.width
        out = self.interface(torch.cat([h, x], dim=-1)).view(-1, self.heads, 2 * w + 2)
        keys, values = torch.tanh(out[..., :w]), torch.tanh(out[..., w:2 * w])
        gate = torch.sigmoid(out[..., 2 * w:2 * w + 1] + GATE_OFFSET)
        strength = F.softplus(out[..., 2 * w + 1:] + STRENGTH_OFFSET)
        memory, write = lrua_write(s["memory"], s["usage"], s["read_weights"], gate, values)
        read_weights, reads = content_read(memory, keys, strength)
        usage = self.gamma * s["usage"] + read_weights.sum(1) + write.sum(1)
        reads = reads.flatten(1)
        state = {"h": h, "c": c, "memory": memory, "reads": reads, "read_weights": read_weights, "usage": usage}
        return self.head(torch.cat([h, reads], dim=-1)), state

    def forward(self, support: torch.Tensor, query: torch.Tensor,
                positions: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits of every support step and of each query, stepped from the state after the whole support
        (default) or after its first positions[i] support steps."""
        tasks, n = support.shape[:2]
        q = query.shape[1]
        state = self.initial_state(tasks, support)
        states, outputs = [state], []
        for t in range(n):
            logits, state = self.step(support[:, t], state)
            outputs.append(logits)
            if positions is not None:
                states.append(state)
        ways = self.head.out_features
        support_logits = torch.stack(outputs, dim=1) if outputs else support.new_zeros(tasks, 0, ways)
        if not q:
            return support_logits, query.new_zeros(tasks, 0, ways)
        if positions is None:
            branched = {k: v.repeat_interleave(q, dim=0) for k, v in state.items()}
        else:   # task-major like the queries: row t*q + i is task t's state after positions[i] steps
            branched = {k: torch.stack([states[p][k] for p in positions.tolist()], dim=1).flatten(0, 1)
                        for k in state}
        query_logits, _ = self.step(query.reshape(tasks * q, -1), branched)
        return support_logits, query_logits.view(tasks, q, -1)


@register("mann")
class MANN(SequenceLearner):
    """MANN with LRUA memory (Santoro et al. 2016) on a Conv-4 embedding (or raw pixels)."""

    Hparams = MANNHparams

    def build_model(self, in_dim: int, ways: int) -> nn.Module:
        h = self.hparams
        return MANNCore(in_dim, ways, h.controller, h.memory_slots, h.memory_width, h.read_heads, h.gamma)
