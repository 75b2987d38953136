"""A run folder and its cells: drive a grid of cells through an executor, keep the folder current after every
finished cell, and resume a folder a previous run left unfinished.

Data flows one way: grid -> executor -> bench.cell.run_cell -> bench.evaluate, and the finished CellResults
-> bench.results (tables, manifest). Executors are handed `run_cell`, so they never import the harness back.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import data as datasets
from bench.cell import STREAMS, CellResult, run_cell
from bench.config import Cell, Config
from bench.executors import LocalExecutor
from bench.readers import read_json
from bench.results import manifest, write_results
from bench.reuse import copied_from, reused_results
from bench.rundir import RunDir, atomic_write_text, environment, git_commit, new_run_id, provenance, utc_now


def default_out(label: str) -> Path:
    """results/runs/<run-id> under the working directory."""
    return Path("results") / "runs" / new_run_id(label)


def cell_file(run: RunDir, cell: Cell) -> Path:
    return run.path / "cells" / f"{cell.benchmark}__{cell.algorithm}__seed{cell.seed}.json"


def _keep_cell(run: RunDir, result: CellResult) -> None:
    """cells/<key>.json: a finished cell's whole result, what --resume reads back."""
    atomic_write_text(cell_file(run, result.cell),
                      json.dumps({"config_hash": result.cell.config_hash, **result.to_json()}) + "\n")


def finished_results(run: RunDir, cells: list[Cell]) -> dict[str, CellResult]:
    """Results of cells a previous run of this folder finished (ok or failed), keyed by cell key."""
    done = {}
    for cell in cells:
        path = cell_file(run, cell)
        if path.is_file():
            data = read_json(path, "finished-cell record")  # a damaged record: one line naming it (bench.readers)
            if data.pop("config_hash", None) == cell.config_hash:
                done[cell.key] = CellResult.from_json(cell, data)
    return done


def changed_cells(previous: dict[str, Any], cells: list[Cell]) -> list[str]:
    """For --resume: the cells whose resolved configuration differs from the manifest's, with the keys."""
    before = {c["key"]: c for c in previous.get("cells", [])}
    now = {c.key: c for c in cells}
    problems = []
    for key in sorted(set(before) | set(now)):
        if key not in now:
            problems.append(f"{key} (no longer in the grid)")
        elif key not in before:
            problems.append(f"{key} (not in the original grid)")
        elif before[key]["config_hash"] != now[key].config_hash:
            diff = _differing_keys(before[key]["config"], json.loads(json.dumps(now[key].resolved(), default=str)))
            problems.append(f"{key} ({', '.join(diff) or 'configuration'})")
    return problems


def _differing_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += _differing_keys(a.get(k), b.get(k), f"{prefix}.{k}" if prefix else str(k))
        return out
    return [] if a == b else [f"{prefix}: {a!r} -> {b!r}"]


def _grid_hash(cells: list[Cell]) -> str:
    return hashlib.sha256("".join(sorted(c.config_hash for c in cells)).encode()).hexdigest()[:16]


def _run_meta(config: Config, cells: list[Cell], out: Path, previous: dict[str, Any], *, suite: str, profile: str,
              data_root, device: str, sets: tuple[str, ...], invocation: dict[str, Any] | None,
              resume: bool) -> dict[str, Any]:
    """The manifest's run-level fields. A resumed run keeps its start time and the commit it started on, and adds
    to its lists of resumptions: when (`resumed`) and on which commit (`resumed_on`), so a run continued on other
    code says so."""
    commit = git_commit()
    now = utc_now()
    started_on = {k: previous.get(k, v) for k, v in commit.items()} if resume else commit
    return {"run_id": out.name, "suite": suite, "profile": profile, "config_file": str(config.path),
            "config_files": [str(config.path), *map(str, config.overlays)],
            "config_hash": _grid_hash(cells), "set": list(sets),
            # what the suite's cells should reach (its `targets`, overlays included), for the pivoted table
            "targets": config.suites.get(suite, {}).get("targets") or {}, **started_on,
            "environment": environment(device), "provenance": provenance(),
            "data_root": str(datasets.data_root(data_root)),
            "invocation": invocation or {}, "started": previous.get("started", now),
            "resumed": previous.get("resumed", []) + ([now] if resume else []),
            "resumed_on": previous.get("resumed_on", []) + ([{"at": now, **commit}] if resume else []),
            "finished": None}


def run_grid(config: Config, cells: list[Cell], out: Path, *, suite: str, profile: str, data_root=None,
             device: str = "cpu", executor=None, progress: bool = True, sets: tuple[str, ...] = (),
             on_result: Callable[[CellResult], None] | None = None, invocation: dict[str, Any] | None = None,
             resume: bool = False, reuse: list[Path] = (), notes: Callable[[str], None] | None = None
             ) -> list[CellResult]:
    """Run every cell through `executor` and keep the run folder current after each finished cell.

    Each finished cell is also kept as cells/<key>.json, so `resume=True` skips finished cells (matched by
    their config hash) and unfinished ones continue from their last checkpoint. Cells finished in a `reuse`
    folder (same config hash, clean commit: bench.reuse) are taken from it, not run. The CSVs list cells in
    grid order whatever order they finish in, so every executor writes the same files.
    """
    executor = executor or LocalExecutor()
    run = RunDir(out).open_for_writing()
    try:
        previous = run.read_manifest() if resume else {}
        results = finished_results(run, cells) if resume else {}
        meta = _run_meta(config, cells, out, previous, suite=suite, profile=profile, data_root=data_root,
                         device=device, sets=sets, invocation=invocation, resume=resume)
        order = {c.key: i for i, c in enumerate(cells)}

        def ordered() -> list[CellResult]:
            return sorted(results.values(), key=lambda r: order[r.cell.key])

        taken, problems = reused_results([c for c in cells if c.key not in results], list(reuse))
        for line in problems + [f"reuse: {k} from {copied_from(r.reused_from)}" for k, r in taken.items()]:
            if notes:
                notes(line)
        for result in taken.values():
            results[result.cell.key] = result
            _keep_cell(run, result)
        if taken:
            write_results(run, ordered())
        run.write_manifest(manifest(cells, ordered(), meta, STREAMS))
        todo = [c for c in cells if c.key not in results]
        for result in executor.run(run_cell, todo, data_root=data_root, device=device,
                                   checkpoint_dir=run.checkpoints, progress=progress):
            results[result.cell.key] = result
            _keep_cell(run, result)
            write_results(run, ordered())
            run.write_manifest(manifest(cells, ordered(), meta, STREAMS))
            if on_result:
                on_result(result)
        write_results(run, ordered())
        meta["finished"] = utc_now()
        run.write_manifest(manifest(cells, ordered(), meta, STREAMS))
    finally:
        run.close()
    return ordered()
