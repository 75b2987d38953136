"""Relation Networks: a learned relation module scores (class, query) pairs of embedded feature maps.

Sung, Yang, Zhang, Xiang, Torr & Hospedales, "Learning to Compare: Relation Network for Few-Shot Learning",
CVPR 2018. Eq. (1): r_{i,j} = g_φ(C(f_φ(x_i), f_φ(x_j))) with C the channel concatenation of feature maps;
K-shot (Sec. 3.2): the class feature map is the element-wise sum of its support embeddings; Eq. (2): trained by
mean squared error of r against 1 for the matching class and 0 otherwise. Architecture (Fig. 2): embedding = 4
blocks of 64 3x3 filters, batch norm, ReLU, 2x2 max-pool in the first two only (backbone `conv4-relation`);
relation module = 2 such blocks with max-pool, then FC(8, ReLU) and FC(1, sigmoid).

Speed: the relation module's first convolution is linear in its concatenated input, so
conv([s_c, q]) = conv_s(s_c) + conv_q(q) with the weight split along input channels. We convolve every class
map and every query map once (N + Q convolutions) and add them for all N·Q pairs, instead of convolving N·Q
concatenations — the same numbers up to float rounding (tests/test_metric_family.py) for a fraction of the cost.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from algorithms import nets
from algorithms._registry import register
from algorithms.metric_learner import MetricLearner


@dataclass
class RelationNetHparams:
    lr: float = 0.001                     # Adam (paper)
    lr_halve_every: int = 100000          # episodes between halvings (paper: StepLR 100,000, gamma 0.5)
    meta_batch: int = 1                   # episodes per optimiser step (paper: 1)
    train_ways: int | None = None         # ways of training episodes; None: the benchmark's
    train_query: int | None = None        # queries per class in training episodes; None: the benchmark's
    relation_hidden: int = 8              # the FC layer of the relation module (paper: 8)
    backbone: str | None = "conv4-relation"


class RelationModule(nn.Module):
    """g_φ: conv block (on the concatenated pair) -> conv block -> FC(hidden, ReLU) -> FC(1, sigmoid)."""

    def __init__(self, channels: int, size: int, hidden: int):
        super().__init__()
        # first block written out: its convolution is split over the two halves of the concatenation
        self.conv1 = nn.Conv2d(2 * channels, channels, 3, padding=1, bias=False)  # batch norm follows
        self.norm1 = nn.BatchNorm2d(channels)
        self.block2 = nets.ConvBlock(channels, channels, pool=True)
        out = (size // 2) // 2
        if out < 1:
            raise ValueError(f"relationnet: {size}x{size} feature maps are too small for two 2x2 poolings")
        self.fc1 = nn.Linear(channels * out * out, hidden)
        self.fc2 = nn.Linear(hidden, 1)
        self.channels = channels

    def forward(self, classes: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
        """Relation scores [Q, N] in (0, 1) of query maps [Q, c, s, s] to class maps [N, c, s, s]."""
        c = self.channels
        w = self.conv1.weight
        # channels-last inputs give channels-last halves, so the broadcast sum over all pairs is written once in
        # the layout that CPU batch norm and max-pool prefer
        cl = torch.channels_last
        a = F.conv2d(classes.contiguous(memory_format=cl), w[:, :c], padding=1)  # the support half of C(s, q)
        b = F.conv2d(queries.contiguous(memory_format=cl), w[:, c:], padding=1)
        x = (b.unsqueeze(1) + a.unsqueeze(0)).flatten(0, 1)  # [Q*N, c, s, s], pair (q, n) at q*N + n
        x = x.contiguous(memory_format=cl)                  # a no-op when the sum kept the layout
        x = F.relu(F.max_pool2d(self.norm1(x), 2))          # pool before ReLU: same result, less work
        x = self.block2(x).flatten(1)
        x = F.relu(self.fc1(x))
        return torch.sigmoid(self.fc2(x)).view(len(queries), len(classes))

    def reference(self, classes: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
        """The textbook computation on explicit concatenations (for tests)."""
        q, n = len(queries), len(classes)
        pairs = torch.cat([classes.unsqueeze(0).expand(q, -1, -1, -1, -1),
                           queries.unsqueeze(1).expand(-1, n, -1, -1, -1)], dim=2).flatten(0, 1)
        x = F.max_pool2d(F.relu(self.norm1(self.conv1(pairs))), 2)
        x = self.block2(x).flatten(1)
        return torch.sigmoid(self.fc2(F.relu(self.fc1(x)))).view(q, n)


@register("relationnet")
class RelationNet(MetricLearner):
    """Relation Network (Sung et al. 2018): learned metric on concatenated feature maps, MSE to one-hot."""

    Hparams = RelationNetHparams

    def build_heads(self, generators):
        self.channels = self.net.blocks[-1].conv.out_channels
        self.size = int(round(math.sqrt(self.net.feature_dim / self.channels)))
        if self.channels * self.size * self.size != self.net.feature_dim:
            raise ValueError(f"relationnet: backbone {self.hparams.backbone!r} must give square feature maps "
                             f"(flattened C x S x S), got {self.net.feature_dim} features")
        return {"relation": RelationModule(self.channels, self.size, self.hparams.relation_hidden)}

    @property
    def relation(self) -> RelationModule:
        return self.heads["relation"]

    def scores(self, zs, support_y, zq, batch):
        """Relation scores r of Eq. (1) between each query and each class map, [..., Q, ways]."""
        return self.per_task(self._batched_scores, zs, support_y, zq, batch.ways)

    def _batched_scores(self, zs, support_y, zq, ways):
        shape = (self.channels, self.size, self.size)
        zs, zq = zs.view(*zs.shape[:2], *shape), zq.view(*zq.shape[:2], *shape)  # the flattened maps again
        scores = []
        for i in range(len(zs)):
            one_hot = F.one_hot(support_y[i], ways).to(zs.dtype)                    # [n, ways]
            classes = torch.einsum("nk,nchw->kchw", one_hot, zs[i])                 # K-shot: sum per class
            scores.append(self.relation(classes, zq[i]))
        return torch.stack(scores)

    def loss(self, scores, batch):
        """Eq. (2): squared error of r against 1 for the matching class, 0 otherwise."""
        return F.mse_loss(scores, F.one_hot(batch.query_y, batch.ways).to(scores.dtype))
