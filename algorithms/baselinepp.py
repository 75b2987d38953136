"""Baseline++: Chen's pre-training baseline with cosine-similarity classifiers in training and at test.

Chen, Liu, Kira, Wang & Huang, "A Closer Look at Few-shot Classification", ICLR 2019, Sec. 3.2: the training
classifier's logits are s · cos(f(x), w_c) for the weight vector w_c of every base class (scale s fixed: the
authors' code uses 2 for at most 200 classes and 10 above, i.e. 10 for Omniglot's thousands of training classes
and 2 for Mini-ImageNet's 64); at test a new cosine classifier over the episode's classes is fine-tuned on the
frozen support features (SGD as for Baseline; the code's rule gives it scale 2). Everything else is
algorithms/pretrain.py's Baseline.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from algorithms._registry import register
from algorithms.base import Episode
from algorithms.pretrain import Pretrain, PretrainHparams, train_linear_head


@dataclass
class BaselinePPHparams(PretrainHparams):
    cosine_scale: float = 2.0         # scale of the training classifier over all base classes
    head_scale: float = 2.0           # scale of the cosine head fine-tuned on each episode's support set


@register("baselinepp")
class BaselinePP(Pretrain):
    """Baseline++ (Chen et al. 2019): cosine classifier pre-training, cosine head fine-tuned per episode."""

    kinds = ("classification",)
    Hparams = BaselinePPHparams

    def __init__(self, problem, hparams, device, generators):
        if hparams.cosine_scale <= 0 or hparams.head_scale <= 0:
            raise ValueError("baselinepp.cosine_scale and head_scale must be positive")
        self.cosine_scale = hparams.cosine_scale  # read by Pretrain: bias-free head, cosine logits in training
        super().__init__(problem, hparams, device, generators)

    def predict(self, episode: Episode, steps: int | None = None) -> torch.Tensor:
        self.net.eval()
        with torch.no_grad():
            support, query = self.net(episode.support_x), self.net(episode.query_x)
        head = train_linear_head(support, episode.support_y, episode.ways, self.hparams,
                                 self._episode_generator(episode), cosine_scale=self.hparams.head_scale)
        with torch.no_grad():
            return head(query)
