"""Cells a suite takes from earlier run folders instead of running them again (a suite's `reuse:` list).

A grid such as `omniglot-table` contains cells that an earlier, committed run already finished (the 5-way 1-shot
cells of results/reference/omniglot-5w1s). Re-running them would cost CPU-hours and give the same configuration
again, so a cell of the grid whose configuration hash equals an ok cell of a listed folder is rebuilt from that
folder's tables and written into the new run as finished; its manifest entry says where it came from (folder, run
id, commit of the run that trained it; `via`, the folders a cell copied more than once passed through). Only
folders made on a clean commit are used: a dirty run is not a reference for anything.

Rebuilt from the CSVs (committed folders do not keep cells/*.json): the cell's episode, curve and diagnostic rows
are the folder's own, byte for byte (read back from their 10-significant-digit text, written in the same format);
its summary rows are recomputed from those rows, so a CI can differ from the folder's in the 10th digit.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from bench.cell import CellResult
from bench.errors import RunDirError
from bench.readers import read_csv
from bench.rundir import CURVE_COLUMNS, EPISODE_COLUMNS, FIT_COLUMNS, RunDir

if TYPE_CHECKING:
    from bench.config import Cell

STANDARD_TABLES = {"episodes.csv", "curves.csv", "fits.csv", "summary.csv"}


def resolve_folders(folders: list[str], base: Path | None) -> list[Path]:
    """A suite's `reuse:` entries as paths: relative ones against the folder of the config file that defines
    the suite (the repository root for the shipped benchmarks.yaml), else against the working directory."""
    out = []
    for entry in folders:
        path = Path(entry)
        if not path.is_absolute() and base is not None and (base / path).exists():
            path = base / path
        out.append(path)
    return out


def reused_results(cells: list[Cell], folders: list[Path]) -> tuple[dict[str, CellResult], list[str]]:
    """The grid's cells found finished (status ok, same config hash) in `folders`, keyed by cell key, and one
    note per folder that could not be used (missing, dirty, unreadable) — a note, not an error: those cells run."""
    found: dict[str, CellResult] = {}
    notes: list[str] = []
    wanted = {c.key: c for c in cells}
    for folder in folders:
        if not (folder / "manifest.json").is_file():
            notes.append(f"reuse: {folder} holds no run (no manifest.json); its cells will be run")
            continue
        try:
            manifest = RunDir(folder).read_manifest()
            if manifest.get("dirty", True):
                notes.append(f"reuse: {folder} was made on a dirty checkout (or records none); its cells will be run")
                continue
            for entry in manifest.get("cells", []):
                cell = wanted.get(entry.get("key"))
                if cell is None or cell.key in found or entry.get("status") != "ok" \
                        or entry.get("config_hash") != cell.config_hash:
                    continue
                found[cell.key] = _rebuild(cell, entry, folder, manifest)
        except RunDirError as exc:
            notes.append(f"reuse: {exc}; its cells will be run")
    return found, notes


def _rows(folder: Path, name: str, columns: list[str], cell: Cell) -> list[dict[str, Any]]:
    path = folder / name
    if not path.is_file():
        return []
    return _of_cell(read_csv(path, columns, what=name), cell).reindex(columns=columns).to_dict("records")


def _of_cell(frame: pd.DataFrame, cell: Cell) -> pd.DataFrame:
    """The rows of one cell (seed compared as text: summary.csv also has seed 'all')."""
    return frame[(frame["benchmark"] == cell.benchmark) & (frame["algorithm"] == cell.algorithm)
                 & (frame["seed"].astype(str) == str(cell.seed))]


def _rebuild(cell: Cell, entry: dict[str, Any], folder: Path, manifest: dict[str, Any]) -> CellResult:
    summary = read_csv(folder / "summary.csv", ["benchmark", "algorithm", "seed", "train_seconds",
                                                "eval_seconds", "meta_iters"], what="summary.csv")
    row = _of_cell(summary, cell)
    if row.empty:
        raise RunDirError(f"{folder / 'summary.csv'}: no row for {cell.key}, which its manifest lists as ok")
    episodes = _rows(folder, "episodes.csv", EPISODE_COLUMNS, cell)
    if not episodes:
        raise RunDirError(f"{folder / 'episodes.csv'}: no rows for {cell.key}, which its manifest lists as ok")
    tables = {}
    for path in sorted(folder.glob("*.csv")):
        if path.name not in STANDARD_TABLES:
            header = read_csv(path, what=path.name, nrows=0).columns
            if {"benchmark", "algorithm", "seed"} <= set(header):
                rows = _rows(folder, path.name, list(header), cell)
                if rows:
                    tables[path.stem] = rows
    first = row.iloc[0]
    return CellResult(
        cell=cell, status="ok", episodes=episodes, curves=_rows(folder, "curves.csv", CURVE_COLUMNS, cell),
        fits=_rows(folder, "fits.csv", FIT_COLUMNS, cell), train_seconds=float(first["train_seconds"]),
        eval_seconds=float(first["eval_seconds"]), meta_iters=int(pd.to_numeric(first["meta_iters"])),
        digest=entry.get("test_episode_digest", ""), tuned=entry.get("tuned", {}),
        resumed_from=entry.get("resumed_from_iteration", 0), tables=tables,
        native_kernel_used=bool(entry.get("native_kernel_used")),
        reused_from=_origin(entry, folder, manifest))


def _origin(entry: dict[str, Any], folder: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Where the cell was trained: a cell the folder had itself taken from an earlier run keeps that run as its
    origin (a grid restarted over several sessions chains reuse; the commit that trained the cell must not be
    replaced by the commit of a run that only copied it), with the folder it was copied from this time."""
    here = {"folder": str(folder), "run_id": manifest.get("run_id", ""), "commit": manifest.get("commit", ""),
            "started": manifest.get("started", "")}
    earlier = entry.get("reused_from")
    if not earlier:
        return here
    return {**earlier, "via": [*earlier.get("via", []), {"folder": here["folder"], "run_id": here["run_id"],
                                                          "commit": here["commit"]}]}


def copied_from(reused_from: dict[str, Any]) -> str:
    """The folder this run took the cell from (the origin's own folder when it was not copied in between)."""
    via = reused_from.get("via") or []
    return via[-1]["folder"] if via else reused_from.get("folder", "")
