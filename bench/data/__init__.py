"""Datasets: one module per dataset, each exposing `open_source(spec, data_root, cache_dir)` that returns a
task source (sample_train, sample_validation, test_episode, problem). Also where data and caches live."""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

# dataset name in benchmarks.yaml -> module under bench.data. Image datasets expose
# `load_splits(spec, root, cache) -> dict[str, ImageSplit]` ("train", "val", "test") and share the episodic
# sampler in bench.episodes; other datasets expose `open_source(spec, root, cache)` themselves.
# Datasets read from the data root (sine is generated).
NEEDS_FILES = {"omniglot", "miniimagenet", "mnist"}
DATASETS = {"sine": "sine", "omniglot": "omniglot", "miniimagenet": "miniimagenet", "mnist": "mnist"}


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


def open_source(spec: dict[str, Any], root: str | os.PathLike | None = None):
    """The task source for a resolved benchmark spec."""
    module = importlib.import_module(f"bench.data.{DATASETS[spec['dataset']]}")
    if hasattr(module, "open_source"):
        return module.open_source(spec, data_root(root), cache_dir())
    from bench.episodes import ClassificationSource
    return ClassificationSource(spec, module.load_splits(spec, data_root(root), cache_dir()))


def split_sizes(spec: dict[str, Any]) -> dict[str, tuple[int, int]] | None:
    """(classes, examples per class) per part of an image benchmark's split when the committed split files say
    so without reading images; None when they cannot (other datasets, an unreadable split: the cell reports it)."""
    module = importlib.import_module(f"bench.data.{DATASETS[spec['dataset']]}")
    if not hasattr(module, "split_sizes"):
        return None
    try:
        return module.split_sizes(spec)
    except (DataError, OSError, ValueError, KeyError, TypeError):
        return None


class DataError(RuntimeError):
    """Missing or corrupt dataset files; the message lists each problem with its expected path and the fix."""


@dataclass
class ImageSplit:
    """One split of an image dataset, decoded once: uint8 images [classes, examples_per_class, C, H, W].

    class_names[i] names class i (e.g. 'Greek/character03@rot90' or 'n01532829'); every class has the same
    number of examples, so an episode is a pair of index gathers.
    """

    images: torch.Tensor
    class_names: list[str]

    def __post_init__(self):
        if self.images.dtype != torch.uint8 or self.images.dim() != 5:
            raise ValueError(f"ImageSplit.images must be uint8 [classes, n, C, H, W], got "
                             f"{self.images.dtype} {tuple(self.images.shape)}")
        if len(self.class_names) != self.images.shape[0]:
            raise ValueError("ImageSplit: one class name per class")

    @property
    def num_classes(self) -> int:
        return self.images.shape[0]

    @property
    def per_class(self) -> int:
        return self.images.shape[1]
