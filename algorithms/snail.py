"""SNAIL: a Simple Neural AttentIve meta-Learner.

Mishra, Rohaninejad, Chen & Abbeel, "A Simple Neural Attentive Meta-Learner", ICLR 2018, Sec. 3 and App. B.
The episode is one sequence (support embeddings ++ their one-hot labels, then the query with a zero label);
dense blocks of causal dilated convolutions (TC blocks) and causal soft-attention blocks are interleaved, each
concatenating its output to its input:

- DenseBlock(R, D): xf, xg = CausalConv(kernel 2, dilation R, D filters)(x); x ++ tanh(xf) * sigmoid(xg).
- TCBlock(T, D): DenseBlock(2^i, D) for i = 0 .. ⌈log2 T⌉ - 1 (dilations 1, 2, 4, ... reach back over all T).
- AttentionBlock(K, V): keys, queries [K] and values [V] by linear maps; softmax(q kᵀ / √K) over the current and
  earlier steps only; x ++ the attended values.
- Omniglot model (App. B): Attention(64, 32), TC(T, 128), Attention(256, 128), TC(T, 128), Attention(512, 256),
  then a linear layer to N class logits.

Every block takes (support steps [B, n, C], query steps [B, q, C], positions [q]) and treats query i as the step
at position p_i of its own sequence "support[:p_i] + query i" (p_i = n by default: right after the support):
support features are computed once, each query reads only the support steps before it and itself.
`forward(seq, empty)` is the plain causal network over one sequence.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from algorithms._registry import register
from algorithms.sequences import SequenceHparams, SequenceLearner


@dataclass
class SNAILHparams(SequenceHparams):
    # lr: the base's 0.001; the paper profile uses 0.0001 with meta-batch 32 (Mishra et al.)
    tc_filters: int = 128                                           # D of both TC blocks (paper: 128)
    attention_keys: list[int] = field(default_factory=lambda: [64, 256, 512])   # K of the three attention blocks
    attention_values: list[int] = field(default_factory=lambda: [32, 128, 256])  # V of the three attention blocks


Steps = tuple[torch.Tensor, torch.Tensor, torch.Tensor]   # support [B, n, C], query [B, q, C], positions [q]


class DenseBlock(nn.Module):
    """Gated causal convolution with kernel 2 and dilation R: out_t = W_past x_{t-R} + W_now x_t + b."""

    def __init__(self, channels: int, filters: int, dilation: int):
        super().__init__()
        self.dilation, self.filters = dilation, filters
        self.past = nn.Linear(channels, 2 * filters, bias=False)
        self.now = nn.Linear(channels, 2 * filters)

    def _gate(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(z[..., :self.filters]) * torch.sigmoid(z[..., self.filters:])

    def forward(self, steps: Steps) -> Steps:
        support, query, positions = steps
        n, d = support.shape[1], self.dilation
        past = self.past(support)                                          # the tap of every step on step t + d
        zeros = past.new_zeros(past.shape[0], min(d, n), past.shape[2])
        shifted = torch.cat([zeros, past[:, :n - d]], dim=1) if n > d else zeros  # x_{t-d}, zero before t = d
        out_support = self._gate(shifted + self.now(support))
        back = positions - d                                               # query i sits at position p_i
        query_past = past[:, back.clamp(min=0)] * (back >= 0).to(past.dtype)[None, :, None] if n else 0.0
        out_query = self._gate(query_past + self.now(query))
        return torch.cat([support, out_support], dim=-1), torch.cat([query, out_query], dim=-1), positions


class TCBlock(nn.Sequential):
    def __init__(self, channels: int, length: int, filters: int):
        layers = []
        for i in range(max(1, math.ceil(math.log2(length)))):
            layers.append(DenseBlock(channels, filters, 2 ** i))
            channels += filters
        super().__init__(*layers)
        self.out_channels = channels


class AttentionBlock(nn.Module):
    """Causal single-head soft attention; its values are concatenated to the input."""

    def __init__(self, channels: int, key: int, value: int):
        super().__init__()
        self.key, self.value = key, value
        self.project = nn.Linear(channels, 2 * key + value)

    def _split(self, x: torch.Tensor):
        p = self.project(x)
        return p[..., :self.key], p[..., self.key:2 * self.key], p[..., 2 * self.key:]

    def forward(self, steps: Steps) -> Steps:
        support, query, positions = steps
        n = support.shape[1]
        scale = 1.0 / math.sqrt(self.key)
        qs, ks, vs = self._split(support)
        logits = qs @ ks.transpose(1, 2) * scale
        future = torch.ones(n, n, dtype=torch.bool, device=support.device).triu(1)
        out_support = torch.softmax(logits.masked_fill(future, float("-inf")), dim=-1) @ vs
        qq, kq, vq = self._split(query)
        # each query attends to the support steps before it and to itself, never to the other queries
        later = torch.arange(n, device=support.device)[None, :] >= positions[:, None]          # [q, n]
        to_support = (qq @ ks.transpose(1, 2)).masked_fill(later, float("-inf"))
        weights = torch.softmax(torch.cat([to_support, (qq * kq).sum(-1, keepdim=True)], -1) * scale, -1)
        out_query = weights[..., :n] @ vs + weights[..., n:] * vq
        return torch.cat([support, out_support], dim=-1), torch.cat([query, out_query], dim=-1), positions


class SNAILNet(nn.Module):
    def __init__(self, in_dim: int, ways: int, length: int, filters: int, keys: list[int], values: list[int]):
        super().__init__()
        if len(keys) != 3 or len(values) != 3:
            raise ValueError("snail.attention_keys / attention_values: three sizes each (one per attention block)")
        blocks, channels = [], in_dim
        for i in range(3):
            blocks.append(AttentionBlock(channels, keys[i], values[i]))
            channels += values[i]
            if i < 2:
                tc = TCBlock(channels, length, filters)
                blocks.append(tc)
                channels = tc.out_channels
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(channels, ways)

    def forward(self, support: torch.Tensor, query: torch.Tensor,
                positions: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if positions is None:
            positions = torch.full((query.shape[1],), support.shape[1], dtype=torch.long, device=support.device)
        support, query, _ = self.blocks((support, query, positions))
        return self.head(support), self.head(query)


@register("snail")
class SNAIL(SequenceLearner):
    """SNAIL (Mishra et al. 2018) on a Conv-4 embedding trained end to end."""

    Hparams = SNAILHparams

    def build_model(self, in_dim: int, ways: int) -> nn.Module:
        h = self.hparams
        shots = h.train_shots or self.problem.shots
        length = ways * max(shots, self.problem.shots) + 1                  # support + the query
        return SNAILNet(in_dim, ways, length, h.tc_filters, h.attention_keys, h.attention_values)
