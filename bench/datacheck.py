"""`metabench data check|where|prepare [DATASET]`: counts, checksums and expected paths of the datasets.

- check:   every expected file is there and intact (Omniglot: pixel checksums of all 32,460 images and the
           zips' md5; MNIST: md5 of the .gz and uncompressed IDX files and their headers; Mini-ImageNet: the
           split CSVs' md5 and a full decode of every image); prints the counts and each problem's path.
- where:   the resolved data root and cache folder, and where each dataset's files are expected.
- prepare: decode once into the cache (the sizes benchmarks.yaml uses); with --download, first fetch what is
           missing from the official URLs with checksums (never done otherwise).
Exit status: 0 all good, 1 a dataset has problems, 2 a usage error.
Each dataset's own checks live in its module (bench/data/<name>.py: DATASET.check/where/prepare); this file only
loops over the registered datasets that read files, so a new dataset shows here without an edit.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from bench import data
from bench.config import Config
from bench.data import DataError, Report, cache_dir, data_root

EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE = 0, 1, 2


def file_datasets() -> dict[str, data.Dataset]:
    """The registered datasets that read files (what `metabench data` covers; sine is generated)."""
    return {name: d for name, d in data.datasets().items() if d.needs_files}


def add_arguments(parser) -> None:
    """`metabench data`'s arguments; the dataset list and its help come from the registry."""
    known = file_datasets()
    parser.add_argument("action", choices=["check", "where", "prepare"])
    parser.add_argument("dataset", nargs="?", help=f"{' | '.join(known)} (default: all)")
    parser.add_argument("--data-root", help="datasets folder (default: $METABENCH_DATA, else ~/.cache/metabench/data)")
    parser.add_argument("--download", action="store_true",
                        help="with prepare: download what is missing from the official URLs (checksummed)")
    parser.formatter_class = argparse.RawDescriptionHelpFormatter  # one dataset per epilog line
    parser.epilog = "datasets:\n" + "\n".join(f"  {d.help}" for d in known.values())


def _specs(dataset: str) -> list[dict]:
    """The benchmarks.yaml specs of `dataset` (what `prepare` decodes, e.g. every image size they use)."""
    return [s for s in Config.load().benchmarks.values() if isinstance(s, dict) and s.get("dataset") == dataset]


def _root_origin(explicit: str | None) -> str:
    """Which setting chose the data root, for the report header."""
    if explicit:
        return "--data-root"
    return "$METABENCH_DATA" if os.environ.get("METABENCH_DATA") else "default"


def _run_one(action: str, dataset: data.Dataset, root: Path, download: bool) -> Report:
    """One dataset's report; a DataError (missing data, failed download) becomes a failed report."""
    try:
        if action == "check":
            return dataset.run_check(root)
        if action == "where":
            return dataset.run_where(root)
        return dataset.run_prepare(root, download, _specs(dataset.name))
    except DataError as exc:
        return Report(dataset.name, error=str(exc))


def command(args) -> int:
    """Entry point of `metabench data`: returns the exit status."""
    known = file_datasets()
    names = [args.dataset] if getattr(args, "dataset", None) else list(known)
    unknown = [n for n in names if n not in known]
    if unknown:
        print(f"metabench: error: unknown dataset {unknown[0]!r}; choose from {', '.join(known)}", file=sys.stderr)
        return EXIT_USAGE
    if getattr(args, "download", False) and args.action != "prepare":
        print("metabench: error: --download only goes with `metabench data prepare`", file=sys.stderr)
        return EXIT_USAGE
    root = data_root(getattr(args, "data_root", None))
    print(f"data root: {root}  ({_root_origin(getattr(args, 'data_root', None))})")
    print(f"cache:     {cache_dir()}  ({'$METABENCH_CACHE' if os.environ.get('METABENCH_CACHE') else 'default'})")
    ok = True
    for name in names:
        report = _run_one(args.action, known[name], root, getattr(args, "download", False))
        print(report.render(), flush=True)
        ok = ok and report.ok
    return EXIT_OK if ok else EXIT_PROBLEMS
