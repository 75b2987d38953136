"""Nearest neighbour in raw pixel space: each query takes the class of the closest support image (Euclidean).

Lake, Salakhutdinov & Tenenbaum, "Human-level concept learning through probabilistic program induction", Science
350 (2015), the "1-NN" baseline of its one-shot classification runs (21.7% on the within-alphabet 20-way task, as
Koch et al. 2015 Table 2 quote it). It learns nothing: no parameters, 0 meta-iterations in every profile. It shows
how much of a benchmark is solved by pixel overlap alone, the floor any learned embedding must clear.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from algorithms._registry import register
from algorithms.base import Episode, EpisodeBatch, Learner


@dataclass
class PixelsOneNNHparams:
    """No hyper-parameters: the rule and its distance are fixed (an empty dataclass keeps the config schema)."""


def nearest_support_scores(support_x: torch.Tensor, support_y: torch.Tensor, query_x: torch.Tensor,
                           ways: int) -> torch.Tensor:
    """Scores [..., Q, ways]: minus the Euclidean distance from each query to the nearest support image of each
    class, so argmax is the 1-NN label (with K shots, the nearest of the class's K images). Images [..., n, C, H, W]
    or a batch of episodes with a leading task dimension."""
    support = support_x.flatten(-3).double()  # float64: near-equal distances must not swap on rounding
    query = query_x.flatten(-3).double()
    # the direct form, not the matrix-product shortcut cdist takes for large inputs, which loses exactness
    dist = torch.cdist(query, support, compute_mode="donot_use_mm_for_euclid_dist")  # [..., Q, n]
    member = F.one_hot(support_y, ways).bool().unsqueeze(-3)  # [..., 1, n, ways]
    per_class = dist.unsqueeze(-1).masked_fill(~member, float("inf")).amin(dim=-2)  # [..., Q, ways]
    return (-per_class).to(support_x.dtype)


@register("pixels-1nn")
class PixelsOneNN(Learner):
    """1-nearest-neighbour on raw pixels (Lake et al. 2015's baseline)."""

    kinds = ("classification",)
    Hparams = PixelsOneNNHparams

    def meta_train_step(self, batch: EpisodeBatch) -> dict[str, float]:
        """A no-op: there is nothing to learn. Every profile gives this algorithm 0 meta-iterations, so the harness
        never calls it; it exists for callers that step any learner (e.g. the registry-wide resume test)."""
        return {}

    def predict(self, episode: Episode | EpisodeBatch, steps: int | None = None) -> torch.Tensor:
        """Scores [Q, ways] whose argmax is the nearest support image's class; `steps` is ignored (no adaptation)."""
        return nearest_support_scores(episode.support_x, episode.support_y, episode.query_x, episode.ways)
