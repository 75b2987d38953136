"""Prototypical Networks: classify a query by the nearest class mean ("prototype") of embedded support examples.

Snell, Swersky & Zemel, "Prototypical Networks for Few-shot Learning", NeurIPS 2017. Prototype Eq. (1):
c_k = mean of f_φ(x) over the support examples of class k; Eq. (2): p(y=k|x) = softmax_k(−d(f_φ(x), c_k)) with
d the squared Euclidean distance; trained by cross-entropy on the query set of each episode (Alg. 1).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from algorithms._registry import register
from algorithms.metric_learner import MetricLearner


@dataclass
class ProtoNetHparams:
    lr: float = 0.001                  # Adam
    lr_halve_every: int = 2000         # episodes between halvings of the learning rate (paper: 2000)
    meta_batch: int = 1                # episodes per optimiser step
    train_ways: int | None = None      # ways of training episodes (paper: 60 on Omniglot); None: the benchmark's
    train_query: int | None = None     # queries per class in training episodes; None: the benchmark's
    distance: str = "euclidean"        # "euclidean" (squared, the paper's choice) or "cosine"
    backbone: str | None = None


def prototype_logits(support: torch.Tensor, support_y: torch.Tensor, query: torch.Tensor, ways: int,
                     distance: str = "euclidean") -> torch.Tensor:
    """Negative distances from each query embedding to each class prototype: [Q, ways] logits (Eq. 1-2).

    Works on one episode ([n, d] embeddings) or a batch of episodes ([T, n, d]).
    """
    one_hot = F.one_hot(support_y, ways).to(support.dtype)                  # [..., n, ways]
    prototypes = one_hot.transpose(-1, -2) @ support / one_hot.sum(-2).unsqueeze(-1)  # [..., ways, d]
    if distance == "euclidean":
        return -torch.cdist(query, prototypes).pow(2)
    if distance == "cosine":
        return F.normalize(query, dim=-1) @ F.normalize(prototypes, dim=-1).transpose(-1, -2) * 10.0
    raise ValueError(f"protonet.distance: {distance!r} is not 'euclidean' or 'cosine'")


@register("protonet")
class ProtoNet(MetricLearner):
    """Prototypical Networks (Snell et al. 2017) on a Conv-4 embedding: no module besides it."""

    Hparams = ProtoNetHparams

    def scores(self, zs, support_y, zq, batch):
        """Eq. (2): −d(f_φ(x), c_k) to the prototypes of Eq. (1); the base's cross-entropy is Alg. 1's loss."""
        return prototype_logits(zs, support_y, zq, batch.ways, self.hparams.distance)
