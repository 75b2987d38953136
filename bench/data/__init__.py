"""Datasets: one module per dataset, each exposing `open_source(spec, data_root, cache_dir)` that returns a
task source (sample_train, sample_validation, test_episode, problem). Also where data and caches live."""
from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

# dataset name in benchmarks.yaml -> module under bench.data
DATASETS = {"sine": "sine"}


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
    return module.open_source(spec, data_root(root), cache_dir())
