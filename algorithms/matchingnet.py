"""Matching Networks: attention over the labelled support set, optionally with full context embeddings (FCE).

Vinyals, Blundell, Lillicrap, Kavukcuoglu & Wierstra, "Matching Networks for One Shot Learning", NeurIPS 2016.
Eq. (1): ŷ = Σ_i a(x̂, x_i) y_i; Eq. (2): a = softmax over the support of the cosine similarity c(f(x̂), g(x_i)).
Full context embeddings (Sec. 2.1.2, App. A): g(x_i, S) = h→_i + h←_i + g'(x_i) from a bidirectional LSTM over
the support embeddings (App. A.2), and f(x̂, S) = attLSTM(f'(x̂), g(S), K) — K "processing" steps of an LSTM
whose state is read out with attention over g(S) (App. A.1):
    ĥ_k, c_k = LSTM(f'(x̂), [h_{k-1}, r_{k-1}], c_{k-1});  h_k = ĥ_k + f'(x̂);
    r_{k-1} = Σ_i softmax_i(h_{k-1}ᵀ g(x_i)) g(x_i).
f' = g' is one shared Conv-4. Without FCE the classifier is invariant to the order of the support set; the
bidirectional LSTM makes g (and so the logits) depend on it.

`scale` multiplies the cosine before the softmax (Vinyals: 1, i.e. none). With cosines in [-1, 1] the unscaled
attention stays nearly uniform over the support set and training is slow (reproductions note the cosine
version converges slowly); Chen et al.'s re-implementation uses 100. The logits are log ŷ (exact, by
log-sum-exp over each class's attention scores) and training minimises their cross-entropy on the query set.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from algorithms._registry import register
from algorithms.metric_learner import MetricLearner


@dataclass
class MatchingNetHparams:
    lr: float = 0.001                  # Adam
    lr_halve_every: int = 0            # episodes between halvings of the learning rate; 0: constant
    meta_batch: int = 1                # episodes per optimiser step
    train_ways: int | None = None      # ways of training episodes; None: the benchmark's
    train_query: int | None = None     # queries per class in training episodes; None: the benchmark's
    fce: bool = True                   # full context embeddings (bidirectional LSTM g, attention LSTM f)
    fce_steps: int = 5                 # K processing steps of the attention LSTM
    scale: float = 10.0                # multiplier of the cosines inside the softmax (paper: 1; see above)
    backbone: str | None = None


class FullContextEmbedding(nn.Module):
    """g: bidirectional LSTM over the support embeddings; f: attention LSTM per query (Vinyals App. A)."""

    def __init__(self, dim: int, steps: int):
        super().__init__()
        self.steps = steps
        self.g_lstm = nn.LSTM(dim, dim, batch_first=True, bidirectional=True)
        # input f'(x̂); the state is [h, r] (2·dim): the hidden part is h, the read-out r is concatenated
        # to the input instead (the usual implementation of "LSTM(f'(x̂), [h, r], c)")
        self.f_cell = nn.LSTMCell(2 * dim, dim)

    def embed_support(self, zs: torch.Tensor) -> torch.Tensor:
        """g(x_i, S) for support embeddings [T, n, d], in the order given."""
        out, _ = self.g_lstm(zs)
        d = zs.shape[-1]
        return zs + out[..., :d] + out[..., d:]

    def embed_query(self, zq: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """f(x̂, S) for query embeddings [T, Q, d] given g(S) [T, n, d]."""
        t, q, d = zq.shape
        h, c = zq, torch.zeros_like(zq)
        for _ in range(self.steps):
            attention = torch.softmax(h @ g.transpose(-1, -2), dim=-1)       # [T, Q, n]
            r = attention @ g                                                # [T, Q, d]
            # the input before the state: autograd sums zq's gradients in the order of these ops
            x = torch.cat([zq, r], -1).view(t * q, 2 * d)
            h_new, c = self.f_cell(x, (h.reshape(t * q, d), c.reshape(t * q, d)))
            h, c = h_new.view(t, q, d) + zq, c.view(t, q, d)
        return h


def matching_logits(zq: torch.Tensor, zs: torch.Tensor, support_y: torch.Tensor, ways: int, scale: float):
    """log ŷ_k = log Σ_{i: y_i = k} softmax_i(scale · cos(zq, zs_i)) for [T, Q, d] / [T, n, d] → [T, Q, ways]."""
    scores = scale * (F.normalize(zq, dim=-1) @ F.normalize(zs, dim=-1).transpose(-1, -2))   # [T, Q, n]
    member = F.one_hot(support_y, ways).transpose(-1, -2).bool()                             # [T, ways, n]
    per_class = scores.unsqueeze(-2).masked_fill(~member.unsqueeze(-3), float("-inf"))      # [T, Q, ways, n]
    return per_class.logsumexp(-1) - scores.logsumexp(-1, keepdim=True)


@register("matchingnet")
class MatchingNet(MetricLearner):
    """Matching Networks (Vinyals et al. 2016), cosine attention, optional full context embeddings."""

    Hparams = MatchingNetHparams

    def build_heads(self, generators):
        if not self.hparams.fce:
            return {}
        return {"fce": FullContextEmbedding(self.net.feature_dim, self.hparams.fce_steps)}

    @property
    def fce(self) -> FullContextEmbedding | None:
        return self.heads.get("fce")

    def scores(self, zs, support_y, zq, batch):
        """log ŷ of Eq. (1)-(2), on the full context embeddings g(x_i, S), f(x̂, S) when fce is on."""
        return self.per_task(self._batched_scores, zs, support_y, zq, batch.ways)

    def _batched_scores(self, zs, support_y, zq, ways):
        if self.fce is not None:
            zs = self.fce.embed_support(zs)
            zq = self.fce.embed_query(zq, zs)
        return matching_logits(zq, zs, support_y, ways, self.hparams.scale)
