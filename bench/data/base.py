"""What every dataset shares: the TaskSource protocol the harness samples and evaluates through, the `Dataset`
record each dataset module exports (files, checks, schema, how to open it), DataError, and where data and caches
live. Imports nothing from bench.episodes, so bench.episodes can import DataError from here at module level while
the dataset modules import bench.episodes: data -> episodes -> data.base, never a circle."""
from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import torch

from bench.data._files import Problem, md5sum

if TYPE_CHECKING:  # annotations only: importing bench.data must stay light (no algorithm modules)
    from algorithms.base import BatchRequest, Episode, EpisodeBatch, OptimizeeProblem, ProblemSpec

SHOWN = 20  # problems listed per dataset by `metabench data check` before "... and N more"


class DataError(RuntimeError):
    """Missing or corrupt dataset files; the message lists each problem with its expected path and the fix."""


def data_root(explicit: str | os.PathLike | None = None) -> Path:
    """--data-root > $METABENCH_DATA > ~/.cache/metabench/data."""
    if explicit:
        return Path(explicit).expanduser()
    if os.environ.get("METABENCH_DATA"):
        return Path(os.environ["METABENCH_DATA"]).expanduser()
    return Path("~/.cache/metabench/data").expanduser()


def cache_dir() -> Path:
    """$METABENCH_CACHE > ~/.cache/metabench/cache: decoded tensors go here (the data root may be read-only)."""
    if os.environ.get("METABENCH_CACHE"):
        return Path(os.environ["METABENCH_CACHE"]).expanduser()
    return Path("~/.cache/metabench/cache").expanduser()


# ---------------------------------------------------------------------------------------------------------
# what the harness calls on an opened dataset


@runtime_checkable
class TaskSource(Protocol):
    """An opened benchmark: training draws from a caller's generator, frozen test episodes from (spec, seed, i).

    `sampling_key` is what determines the frozen test episodes (not the benchmark's name or how many are
    evaluated); `test_episode(i, seed)` must put what identifies episode i into `info["ids"]`, whose bytes the
    run manifest's episode digest covers. Evaluation dispatches on `kind`: see the per-kind protocols below."""

    kind: str  # "classification", "regression" or "optimizer"
    sampling_key: dict[str, Any]

    def problem(self) -> ProblemSpec: ...

    def sample_train(self, request: BatchRequest, generator: torch.Generator) -> Any: ...

    def sample_validation(self, tasks: int, generator: torch.Generator) -> Any: ...

    def test_episode(self, index: int, eval_seed: int) -> Episode | OptimizeeProblem: ...


class ClassificationTaskSource(TaskSource, Protocol):
    """kind "classification": test episodes are N-way K-shot Episodes scored by query accuracy."""

    def sample_validation(self, tasks: int, generator: torch.Generator) -> EpisodeBatch: ...

    def test_episode(self, index: int, eval_seed: int) -> Episode: ...


class RegressionTaskSource(TaskSource, Protocol):
    """kind "regression": test episodes are scored by MSE after 0..eval_steps steps; `curve` gives the same task
    on a dense input grid for the fit figures."""

    def test_episode(self, index: int, eval_seed: int) -> Episode: ...

    def curve(self, episode: Episode, points: int = 200) -> Episode: ...


class OptimizerTaskSource(TaskSource, Protocol):
    """kind "optimizer": a test "episode" is an optimisation problem (θ_0 and its minibatch order) the learner's
    `optimize(problem, steps)` runs; `training_key()` lets benchmarks that meta-train identically share it."""

    def test_episode(self, index: int, eval_seed: int) -> OptimizeeProblem: ...

    def training_key(self) -> dict[str, Any]: ...


@dataclass
class ImageSplit:
    """One split of an image dataset, decoded once: uint8 images [classes, examples_per_class, C, H, W].

    class_names[i] names class i (e.g. 'Greek/character03@rot90' or 'n01532829'); every class has the same
    number of examples, so an episode is a pair of index gathers. Optional, for protocols that constrain how an
    episode is drawn (Lake et al. 2015's within-alphabet runs): groups[i], the group of class i (its alphabet),
    and drawers[i, j], who made example j of class i (Omniglot's drawer number).
    """

    images: torch.Tensor
    class_names: list[str]
    groups: list[str] | None = None
    drawers: torch.Tensor | None = None

    def __post_init__(self):
        if self.images.dtype != torch.uint8 or self.images.dim() != 5:
            raise ValueError(f"ImageSplit.images must be uint8 [classes, n, C, H, W], got "
                             f"{self.images.dtype} {tuple(self.images.shape)}")
        if len(self.class_names) != self.images.shape[0]:
            raise ValueError("ImageSplit: one class name per class")
        if self.groups is not None and len(self.groups) != self.images.shape[0]:
            raise ValueError("ImageSplit: one group per class")
        if self.drawers is not None and tuple(self.drawers.shape) != tuple(self.images.shape[:2]):
            raise ValueError(f"ImageSplit.drawers must be [classes, n] = {tuple(self.images.shape[:2])}, got "
                             f"{tuple(self.drawers.shape)}")

    @property
    def num_classes(self) -> int:
        return self.images.shape[0]

    @property
    def per_class(self) -> int:
        return self.images.shape[1]


# ---------------------------------------------------------------------------------------------------------
# `metabench data check|where|prepare` results


@dataclass
class Report:
    """What one action found for one dataset: lines to print and the problems (none means ok)."""

    dataset: str
    lines: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    fix: str = ""
    error: str = ""  # a DataError that stopped the action (its message names the path and the fix)

    @property
    def ok(self) -> bool:
        return not self.problems and not self.error

    def render(self) -> str:
        out = [f"{self.dataset}:"] + [f"  {line}" for line in self.lines]
        if self.error:
            out.append(f"  error: {self.error}")
        if self.problems:
            noun = "problem" if len(self.problems) == 1 else "problems"
            out.append(f"  {len(self.problems)} {noun}:")
            out += [f"    {p}" for p in self.problems[:SHOWN]]
            if len(self.problems) > SHOWN:
                out.append(f"    ... and {len(self.problems) - SHOWN} more")
            out.append(f"  fix: {self.fix}")
        out.append(f"  {'ok' if self.ok else 'FAILED'}")
        return "\n".join(out)


# ---------------------------------------------------------------------------------------------------------
# the record a dataset module exports


@dataclass(frozen=True)
class Resource:
    """One official file (torchvision's resources table): its path under the data root, md5 and where it comes
    from. A dataset with no check of its own gets `metabench data check|where` from these alone."""

    path: str
    md5: str
    url: str = ""


# Episodic image benchmarks: N-way K-shot with Q queries per class; training episodes may differ
# (ProtoNets trains 60-way on Omniglot); null train_* means "same as the test setting".
CLASSIFICATION_FIELDS = {"ways": "int", "shots": "int", "test_query": "int", "train_ways": "int|null",
                         "train_shots": "int|null", "train_query": "int", "split": "str", "image_size": "int"}
CLASSIFICATION_REQUIRED = ("ways", "shots", "test_query")
INT_MAX = 2**31 - 1  # bench.config's cap: torch and numpy overflow beyond it
CLASSIFICATION_RANGES = {"ways": (2, INT_MAX), "shots": (1, INT_MAX), "test_query": (1, INT_MAX),
                         "train_ways": (2, INT_MAX), "train_shots": (1, INT_MAX), "train_query": (1, INT_MAX),
                         "image_size": (1, 4096)}


@dataclass(frozen=True)
class Dataset:
    """Everything the harness knows about one dataset; each module under bench/data exports one as `DATASET`.

    open(spec, data_root, cache_dir) -> TaskSource. fields/required/ranges: the benchmark keys this dataset adds
    to benchmarks.yaml (types as bench.config writes them), checked on load; validate(checker, keypath, spec):
    checks the schema cannot express (bench.config passes its checker: .fail(keypath, msg), .keys(...)).
    check(root) / where(root) / prepare(root, download, specs) -> Report back `metabench data`; `specs` are the
    benchmarks.yaml specs using this dataset (what to decode). split_sizes(spec): (classes, examples per class)
    per part without reading data, so impossible episode shapes are refused before a run starts."""

    name: str
    help: str  # one line for `metabench data --help`
    kind: str
    open: Callable[[dict[str, Any], Path, Path], TaskSource]
    fields: Mapping[str, str] = field(default_factory=dict)
    required: tuple[str, ...] = ()
    ranges: Mapping[str, tuple] = field(default_factory=dict)
    validate: Callable[[Any, str, dict[str, Any]], None] | None = None
    files: tuple[Resource, ...] = ()
    fix: str = ""  # what to do about missing files, for the default check
    check: Callable[[Path], Report] | None = None
    where: Callable[[Path], Report] | None = None
    prepare: Callable[[Path, bool, list[dict[str, Any]]], Report] | None = None
    split_sizes: Callable[[dict[str, Any]], dict[str, tuple[int, int]]] | None = None

    @property
    def needs_files(self) -> bool:
        """Whether benchmarks of this dataset read from the data root (sine is generated)."""
        return bool(self.files) or self.check is not None

    def run_check(self, root: Path) -> Report:
        return self.check(root) if self.check else check_resources(self, root)

    def run_where(self, root: Path) -> Report:
        return self.where(root) if self.where else where_resources(self, root)

    def run_prepare(self, root: Path, download: bool, specs: list[dict[str, Any]]) -> Report:
        if self.prepare:
            return self.prepare(root, download, specs)
        report = check_resources(self, root)  # nothing to decode: the files are read as they are
        if download:
            report.lines.append(f"--download: {self.name} has no downloader; {self.fix or 'see its files above'}")
        return report


def check_resources(dataset: Dataset, root: Path) -> Report:
    """The default check: every Resource present with its md5."""
    report = Report(dataset.name, fix=dataset.fix or "put the files listed above in place")
    for resource in dataset.files:
        path = Path(root) / resource.path
        if not path.is_file():
            report.problems.append(Problem(path, "missing" + (f"; download {resource.url}" if resource.url else "")))
        elif (actual := md5sum(path)) != resource.md5:
            report.problems.append(Problem(path, f"md5 {actual}, expected {resource.md5}"))
        else:
            report.lines.append(f"{resource.path}: md5 ok")
    return report


def where_resources(dataset: Dataset, root: Path) -> Report:
    """The default where: each Resource's expected path and whether it is there."""
    lines = [f"{Path(root) / r.path}   [{'found' if (Path(root) / r.path).is_file() else 'missing'}]"
             + (f"   from {r.url}" if r.url else "") for r in dataset.files]
    return Report(dataset.name, lines or ["no files: generated on the fly"])
