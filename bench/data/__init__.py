"""Datasets: one module per dataset, each exporting one `DATASET` (bench.data.base.Dataset: its files and
checksums, check/where/prepare, its benchmarks.yaml fields, and `open` -> a TaskSource). Adding a dataset is
its module, one line in MODULES, and its benchmarks in benchmarks.yaml (or an overlay)."""
from __future__ import annotations

import difflib
import importlib
import os
from typing import Any

from bench.data.base import DataError, Dataset, ImageSplit, Report, Resource, TaskSource, cache_dir, data_root  # noqa: F401

# The registry, in the order `metabench data` lists them. Modules are imported on first use, not here: importing
# bench.data (for DataError or data_root) must not pull in PIL and every loader, nor bench.episodes, which the
# dataset modules import (bench.episodes imports bench.data.base).
MODULES: tuple[str, ...] = ("bench.data.sine", "bench.data.omniglot", "bench.data.mnist", "bench.data.miniimagenet")


# Datasets registered at import by modules outside this package (a plugin given with --plugin MODULE, as for
# algorithms): name -> (module, Dataset). Adding one then touches no file of the suite.
_REGISTERED: dict[str, tuple[str, Dataset]] = {}


def register(dataset: Dataset, module: str | None = None) -> Dataset:
    """Register a dataset defined outside bench/data (call it at the end of a plugin module:
    `register(DATASET)`). A name already taken by a built-in or another module is an error naming both."""
    module = module or getattr(dataset.open, "__module__", "?")
    taken = _REGISTERED.get(dataset.name)
    if dataset.name in _builtin_names() or (taken and taken[0] != module):
        owner = taken[0] if taken else "a built-in dataset"
        raise ValueError(f"{module}: dataset name {dataset.name!r} is already taken by {owner}; rename it")
    _REGISTERED[dataset.name] = (module, dataset)
    return dataset


def _builtin_names() -> set[str]:
    return {importlib.import_module(module).DATASET.name for module in MODULES}


def datasets() -> dict[str, Dataset]:
    """name -> Dataset for every module in MODULES, then every registered one (read on each call, so an added
    module shows at once)."""
    found: dict[str, Dataset] = {}
    for module in MODULES:
        dataset = importlib.import_module(module).DATASET
        if dataset.name in found:
            raise ValueError(f"{module}: dataset name {dataset.name!r} is already taken; rename DATASET.name")
        found[dataset.name] = dataset
    for name, (_, dataset) in _REGISTERED.items():
        found.setdefault(name, dataset)
    return found


def get(name: str) -> Dataset:
    """The Dataset called `name`; a DataError that lists the known ones otherwise."""
    known = datasets()
    if name not in known:
        close = difflib.get_close_matches(str(name), list(known), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise DataError(f"unknown dataset {name!r}{hint}; known: {', '.join(known)}")
    return known[name]


def open_source(spec: dict[str, Any], root: str | os.PathLike | None = None) -> TaskSource:
    """The task source for a resolved benchmark spec."""
    return get(spec["dataset"]).open(spec, data_root(root), cache_dir())


def split_sizes(spec: dict[str, Any]) -> dict[str, tuple[int, int]] | None:
    """(classes, examples per class) per part of an image benchmark's split when the committed split files say
    so without reading images; None when they cannot (other datasets, an unreadable split: the cell reports it)."""
    sizes = get(spec["dataset"]).split_sizes
    if sizes is None:
        return None
    try:
        return sizes(spec)
    except (DataError, OSError, ValueError, KeyError, TypeError):
        return None


def __getattr__(name: str) -> Any:
    # NEEDS_FILES is derived from the registry, so a dataset added to MODULES needs no second edit here
    if name == "NEEDS_FILES":
        return {n for n, d in datasets().items() if d.needs_files}
    raise AttributeError(f"module 'bench.data' has no attribute {name!r}")
