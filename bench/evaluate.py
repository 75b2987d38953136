"""Evaluate a trained learner on a benchmark's frozen test episodes: one evaluator per benchmark kind, each
returning its rows as an `Evaluation` (episodes.csv rows, fits.csv rows, the learner's diagnostic tables and the
digest of the episodes it was scored on). Nothing here trains or writes files.

Test episode i of a benchmark is a pure function of (spec, eval seed, i), so every algorithm and seed is scored
on identical episodes and comparisons are paired.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from algorithms.base import Episode, EpisodicLearner, LearnedOptimizer
from bench.config import Cell
from bench.episodes import EpisodeDigest, digest

if TYPE_CHECKING:  # the per-kind task source protocols, for annotations
    from bench.data.base import ClassificationTaskSource, OptimizerTaskSource, RegressionTaskSource

FIT_TASKS = 4              # test tasks whose full fitted curve is saved (regression fit figures)
FIT_STEPS = (0, 1, 10)     # adaptation steps drawn in the fit figures (MAML paper Fig. 2)


@dataclass
class Evaluation:
    """What evaluating one cell produced; the cell copies it into its CellResult."""

    episodes: list[dict[str, Any]]               # episodes.csv: one row per (test episode, metric)
    digest: str                                  # of the test episodes (class ids + example ids), for the manifest
    fits: list[dict[str, Any]] = field(default_factory=list)           # fits.csv (regression only)
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # learner diagnostics -> <name>.csv


def frozen_episodes(source, eval_seed: int, count: int) -> Iterator[Any]:
    """Test episodes 0..count-1 of a benchmark, each a pure function of (spec, eval seed, index); drawn
    lazily so that hundreds of image episodes never sit in memory at once."""
    for index in range(count):
        yield source.test_episode(index, eval_seed)


def _row_base(cell: Cell) -> dict[str, Any]:
    return {"benchmark": cell.benchmark, "algorithm": cell.algorithm, "seed": cell.seed}


def evaluate_classification(cell: Cell, learner: EpisodicLearner, source: ClassificationTaskSource,
                            device) -> Evaluation:
    """Query accuracy (%) on every frozen episode, plus whatever extra metrics the learner reports."""
    hasher = EpisodeDigest()
    base, rows = _row_base(cell), []
    for i, episode in enumerate(frozen_episodes(source, cell.spec["eval_seed"], cell.budget["test_episodes"])):
        hasher.update(episode)
        episode = episode.to(device)
        logits = learner.predict(episode)
        accuracy = 100.0 * float((logits.argmax(-1) == episode.query_y).float().mean())
        rows.append({**base, "episode": i, "metric": "accuracy", "value": accuracy})
        for metric, value in learner.extra_metrics(episode).items():
            rows.append({**base, "episode": i, "metric": metric, "value": float(value)})
    return Evaluation(rows, hasher.hexdigest())


def evaluate_regression(cell: Cell, learner: EpisodicLearner, source: RegressionTaskSource,
                        device) -> Evaluation:
    """mse@S for S = 0..eval_steps on every frozen task, plus fitted curves of the first tasks for plots (the
    regression kind requires `source.curve`: bench.data.base.RegressionTaskSource)."""
    episodes = list(frozen_episodes(source, cell.spec["eval_seed"], cell.budget["test_episodes"]))
    base, rows = _row_base(cell), []
    steps = list(range(int(cell.spec["eval_steps"]) + 1))
    for i, episode in enumerate(episodes):
        episode = episode.to(device)
        predictions = learner.predict_steps(episode, steps)
        for s in steps:
            mse = float(((predictions[s] - episode.query_y) ** 2).mean())
            rows.append({**base, "episode": i, "metric": f"mse@{s}", "value": mse})
    fits = [row for i, episode in enumerate(episodes[:FIT_TASKS])
            for row in _fit_rows(base, i, learner, source.curve(episode).to(device))]
    return Evaluation(rows, digest(episodes), fits)


def _fit_rows(base: dict[str, Any], task: int, learner: EpisodicLearner, curve: Episode) -> list[dict[str, Any]]:
    """fits.csv rows of one task: the prediction after each of FIT_STEPS, the true curve, the support points."""
    predictions = learner.predict_steps(curve, list(FIT_STEPS))
    x = curve.query_x.view(-1).tolist()
    rows = []
    for s in FIT_STEPS:
        for xi, yi in zip(x, predictions[s].view(-1).tolist()):
            rows.append({**base, "task": task, "steps": s, "series": "prediction", "x": xi, "y": yi})
    for xi, yi in zip(x, curve.query_y.view(-1).tolist()):
        rows.append({**base, "task": task, "steps": -1, "series": "truth", "x": xi, "y": yi})
    for xi, yi in zip(curve.support_x.view(-1).tolist(), curve.support_y.view(-1).tolist()):
        rows.append({**base, "task": task, "steps": -1, "series": "support", "x": xi, "y": yi})
    return rows


def evaluate_optimizer(cell: Cell, learner: LearnedOptimizer, source: OptimizerTaskSource,
                       device) -> Evaluation:
    """Run the learner's `optimize` on every frozen test run (Andrychowicz et al. 2016, Sec. 3.2: an "episode"
    is one optimisation run); loss@T for T = 0..horizon, final_loss and auc per run."""
    hasher = EpisodeDigest()
    base, rows = _row_base(cell), []
    for i, run in enumerate(frozen_episodes(source, cell.spec["eval_seed"], int(cell.budget["test_episodes"]))):
        hasher.update(run)
        curve = learner.optimize(run.to(device), run.horizon)
        curve = torch.as_tensor(curve).detach().double().cpu().reshape(-1)
        if curve.numel() != run.horizon + 1:
            raise ValueError(f"{cell.algorithm}.optimize returned {curve.numel()} losses for a "
                             f"{run.horizon}-step run; expected loss@0..loss@{run.horizon}")
        values = curve.tolist()
        for step, value in enumerate(values):
            rows.append({**base, "episode": i, "metric": f"loss@{step}", "value": value})
        rows.append({**base, "episode": i, "metric": "final_loss", "value": values[-1]})
        auc = sum(values) / len(values)  # a diverged run (inf/nan) shows in the mean instead of hiding
        rows.append({**base, "episode": i, "metric": "auc", "value": auc})
    return Evaluation(rows, hasher.hexdigest())


# The benchmark kind (benchmarks.yaml `kind`) decides the evaluation; each relies on the learner protocol
# algorithms.base.LEARNER_PROTOCOLS[kind] and the task source protocol of that kind in bench.data.base.
EVALUATORS: dict[str, Callable[..., Evaluation]] = {
    "classification": evaluate_classification,
    "regression": evaluate_regression,
    "optimizer": evaluate_optimizer,
}


def evaluate(cell: Cell, learner, source, device: torch.device) -> Evaluation:
    """Score a trained learner on the cell's frozen test episodes, with the learner's diagnostic tables."""
    kind = cell.spec["kind"]
    if kind not in EVALUATORS:
        raise NotImplementedError(f"no evaluation for {kind!r} benchmarks")
    evaluation = EVALUATORS[kind](cell, learner, source, device)
    # diagnostics are gathered while predicting, so they are read after the evaluator ran
    base = _row_base(cell)
    tables = {name: [{**base, **row} for row in rows] for name, rows in learner.diagnostics().items()}
    return dataclasses.replace(evaluation, tables=tables)
