"""Nadaraya-Watson kernel regression over the support set, with a meta-learned log-bandwidth.

The smallest algorithm that still meta-learns something (one parameter, trained on query losses across
tasks); docs/regression-gate.md ("Bring your own algorithm") shows this file as what a user writes.
"""
from __future__ import annotations  # benchmarks.yaml checks hyper-parameter types by their annotation text

from dataclasses import dataclass

import torch

from algorithms import register
from algorithms.base import Learner


@dataclass
class Hparams:                      # every field can be set in benchmarks.yaml or with --set kernel.lr=0.1
    lr: float = 0.05
    meta_batch: int = 25            # tasks per meta_train_step


@register("kernel")
class Kernel(Learner):
    """Kernel regression over the support points with a meta-learned bandwidth."""
    kinds, Hparams = ("regression",), Hparams

    def __init__(self, problem, hparams, device, generators):
        super().__init__(problem, hparams, device, generators)
        self.params = torch.nn.ParameterDict({"log_width": torch.zeros((), device=device)})
        self.opt = torch.optim.Adam(self.params.parameters(), lr=hparams.lr)

    def modules(self):                              # what state_dict() saves and a resumed run restores
        return {"kernel": self.params}

    def optimizers(self):
        return {"adam": self.opt}

    def fit(self, sx, sy, qx):                      # [..., K, 1], [..., K, 1], [..., Q, 1] -> [..., Q, 1]
        width = self.params["log_width"].exp()
        return torch.softmax(-(qx - sx.transpose(-1, -2)) ** 2 / (2 * width ** 2), -1) @ sy

    def meta_train_step(self, batch):               # an EpisodeBatch of meta_batch tasks
        loss = ((self.fit(batch.support_x, batch.support_y, batch.query_x) - batch.query_y) ** 2).mean()
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return {"loss": loss.item()}

    def predict(self, episode, steps=None):         # query outputs (logits for classification)
        with torch.no_grad():
            return self.fit(episode.support_x, episode.support_y, episode.query_x)
