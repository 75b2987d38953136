"""Sine-wave regression tasks (Finn et al. 2017, Sec. 5.1): y = A·sin(x − φ), A ~ U[a0, a1], φ ~ U[p0, p1],
x ~ U[x0, x1] for support and query points alike. Nothing is read from disk."""
from __future__ import annotations

from typing import Any

import torch

from algorithms.base import BatchRequest, Episode, EpisodeBatch, ProblemSpec
from bench.data.base import INT_MAX, Dataset
from bench.episodes import frozen_generator

PAIR_FIELDS = ("amplitude", "phase", "x_range")  # [low, high] ranges of the uniform draws


class SineTasks:
    """Task source of a sine benchmark; all draws come from the generator the caller passes."""

    kind = "regression"

    def __init__(self, spec: dict[str, Any]):
        self.spec = spec
        self.amplitude = tuple(float(v) for v in spec["amplitude"])
        self.phase = tuple(float(v) for v in spec["phase"])
        self.x_range = tuple(float(v) for v in spec["x_range"])
        self.shots = int(spec["shots"])
        self.train_query = int(spec["train_query"])
        self.test_query = int(spec["test_query"])
        # What determines the frozen test tasks (not the benchmark's name or its number of test episodes).
        self.sampling_key = {"dataset": "sine", "amplitude": self.amplitude, "phase": self.phase,
                             "x_range": self.x_range, "shots": self.shots, "test_query": self.test_query}

    def problem(self) -> ProblemSpec:
        return ProblemSpec(kind="regression", input_shape=(1,), ways=1, shots=self.shots, output_dim=1,
                           backbone=self.spec["backbone"], train_shots=self.shots, train_query=self.train_query,
                           loss="mse")

    def _uniform(self, shape, bounds, generator):
        low, high = bounds
        return low + (high - low) * torch.rand(shape, generator=generator)

    def _tasks(self, n: int, shots: int, query: int, generator: torch.Generator) -> EpisodeBatch:
        amplitude = self._uniform((n, 1, 1), self.amplitude, generator)
        phase = self._uniform((n, 1, 1), self.phase, generator)
        x = self._uniform((n, shots + query, 1), self.x_range, generator)
        y = amplitude * torch.sin(x - phase)
        return EpisodeBatch(x[:, :shots], y[:, :shots], x[:, shots:], y[:, shots:], ways=1, shots=shots,
                            info={"amplitude": amplitude.view(n), "phase": phase.view(n)})

    def sample_train(self, request: BatchRequest, generator: torch.Generator) -> EpisodeBatch:
        if request.kind != "episodes":
            raise ValueError(f"sine benchmarks provide episodes only, not {request.kind!r} batches")
        shots = self.shots if request.shots is None else request.shots
        query = self.train_query if request.query is None else request.query
        return self._tasks(request.tasks, shots, query, generator)

    def sample_validation(self, tasks: int, generator: torch.Generator) -> EpisodeBatch:
        """Fresh tasks from the training distribution (sine has no held-out classes), test-sized queries."""
        return self._tasks(tasks, self.shots, self.test_query, generator)

    def test_episode(self, index: int, eval_seed: int) -> Episode:
        task = self._tasks(1, self.shots, self.test_query,
                           frozen_generator(self.sampling_key, eval_seed, index)).task(0)
        task.info["ids"] = torch.cat([task.info["amplitude"].view(1), task.info["phase"].view(1),
                                      task.support_x.view(-1), task.query_x.view(-1)]).double()
        return task

    def curve(self, episode: Episode, points: int = 200) -> Episode:
        """The same task with the query set replaced by a dense grid over the input range (for fit plots)."""
        grid = torch.linspace(*self.x_range, points).view(points, 1)
        y = episode.info["amplitude"] * torch.sin(grid - episode.info["phase"])
        return Episode(episode.support_x, episode.support_y, grid, y, 1, episode.shots, dict(episode.info))


def open_source(spec: dict[str, Any], data_root=None, cache_dir=None) -> SineTasks:
    return SineTasks(spec)


def validate(checker, where: str, spec: dict[str, Any]) -> None:
    """Each range a finite [low, high] with low <= high (torch.rand would silently flip or overflow otherwise)."""
    for key in PAIR_FIELDS:
        pair = spec.get(key)
        if pair is not None and (len(pair) != 2 or pair[0] > pair[1] or any(abs(x) == float("inf") for x in pair)):
            checker.fail(f"{where}.{key}", f"expected [low, high] with finite low <= high, got {pair!r}")


DATASET = Dataset(
    name="sine", kind="regression", open=open_source, validate=validate,
    help="sine: generated sine-wave regression tasks (Finn et al. 2017); no files",
    fields={"shots": "int", "train_query": "int", "test_query": "int", "amplitude": "list[float]",
            "phase": "list[float]", "x_range": "list[float]", "eval_steps": "int"},
    required=("shots", "train_query", "test_query", "amplitude", "phase", "x_range", "eval_steps"),
    ranges={"shots": (1, INT_MAX), "test_query": (1, INT_MAX), "train_query": (1, INT_MAX), "eval_steps": (0, 10_000)})
