"""Prototypical Networks: classify a query by the nearest class mean ("prototype") of embedded support examples.

Snell, Swersky & Zemel, "Prototypical Networks for Few-shot Learning", NeurIPS 2017. Prototype Eq. (1):
c_k = mean of f_φ(x) over the support examples of class k; Eq. (2): p(y=k|x) = softmax_k(−d(f_φ(x), c_k)) with
d the squared Euclidean distance; trained by cross-entropy on the query set of each episode (Alg. 1).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from algorithms import nets
from algorithms._registry import register
from algorithms.base import AdamEpisodicLearner, Episode, EpisodeBatch


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
class ProtoNet(AdamEpisodicLearner):
    """Prototypical Networks (Snell et al. 2017) on a Conv-4 embedding."""

    kinds = ("classification",)
    Hparams = ProtoNetHparams

    def __init__(self, problem, hparams, device, generators):
        super().__init__(problem, hparams, device, generators)
        self.net = nets.build(hparams.backbone or problem.backbone, problem.input_shape, 0, generators["init"], device)
        self.setup_adam(self.net.parameters())

    def modules(self):
        return {"net": self.net}

    def _logits(self, batch: EpisodeBatch | Episode) -> torch.Tensor:
        support, query = batch.support_x, batch.query_x
        # one pass of the embedding over support and query images together ([T,] n, C, H, W each)
        z = self.net(torch.cat([support.flatten(0, -4), query.flatten(0, -4)]))
        n_support = support.shape[:-3].numel()
        zs = z[:n_support].view(*support.shape[:-3], -1)
        zq = z[n_support:].view(*query.shape[:-3], -1)
        return prototype_logits(zs, batch.support_y, zq, batch.ways, self.hparams.distance)

    def meta_train_step(self, batch: EpisodeBatch) -> dict[str, float]:
        self.net.train()
        logits = self._logits(batch)
        loss = F.cross_entropy(logits.flatten(0, -2), batch.query_y.flatten())
        self.adam_step(loss, episodes=len(batch))
        accuracy = (logits.argmax(-1) == batch.query_y).float().mean()
        return {"loss": loss.item(), "accuracy": 100.0 * accuracy.item()}

    @torch.no_grad()
    def predict(self, episode: Episode, steps: int | None = None) -> torch.Tensor:
        self.net.eval()
        return self._logits(episode)
