"""The run folder's tables from finished cells: summary.csv (with the published numbers beside ours, merged on
(algorithm, benchmark, metric)), the tidy CSVs, and the manifest's per-cell entries. Plain pandas: no torch.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

from bench import stats
from bench.readers import read_published
from bench.rundir import CURVE_COLUMNS, EPISODE_COLUMNS, FIT_COLUMNS, SUMMARY_COLUMNS, RunDir

if TYPE_CHECKING:  # annotations only: bench.cell and bench.config would pull torch into the report side
    from bench.cell import CellResult
    from bench.config import Cell


def _per_seed(ok: list[CellResult]) -> pd.DataFrame:
    """One row per (cell, metric): the mean and CI over test episodes, with the cell's timings."""
    episodes = pd.DataFrame([row for r in ok for row in r.episodes], columns=EPISODE_COLUMNS)
    per_seed = stats.summarize_episodes(episodes)
    per_seed["seed"] = per_seed["seed"].astype(object)
    timing = pd.DataFrame([{"benchmark": r.cell.benchmark, "algorithm": r.cell.algorithm, "seed": r.cell.seed,
                            "train_seconds": round(r.train_seconds, 3), "eval_seconds": round(r.eval_seconds, 3),
                            "meta_iters": r.meta_iters, "status": r.status, "error": r.error} for r in ok])
    timing["seed"] = timing["seed"].astype(object)
    per_seed = per_seed.merge(timing, on=["benchmark", "algorithm", "seed"], how="left")
    per_seed["seeds"] = per_seed["seed"].astype(str)
    return per_seed


def _across_seeds(per_seed: pd.DataFrame) -> pd.DataFrame:
    """Seed 'all' rows: a t-interval over the seeds' means, summed timings."""
    overall = stats.across_seeds(per_seed)
    sums = per_seed.groupby(["benchmark", "algorithm", "metric"], sort=False).agg(
        train_seconds=("train_seconds", "sum"), eval_seconds=("eval_seconds", "sum"),
        meta_iters=("meta_iters", "max")).reset_index()
    overall = overall.merge(sums, on=["benchmark", "algorithm", "metric"], how="left")
    overall["status"], overall["error"] = "ok", ""
    return overall


def _failed_rows(failed: list[CellResult]) -> pd.DataFrame:
    return pd.DataFrame([{"benchmark": r.cell.benchmark, "algorithm": r.cell.algorithm, "seed": r.cell.seed,
                          "metric": "", "n": 0, "seeds": str(r.cell.seed), "train_seconds": round(r.train_seconds, 3),
                          "eval_seconds": 0.0, "meta_iters": r.meta_iters, "status": r.status, "error": r.error}
                         for r in failed])


def summary_table(results: list[CellResult]) -> pd.DataFrame:
    """summary.csv: one row per (cell, metric), then seed 'all' rows across seeds, with published values."""
    ok = [r for r in results if r.status == "ok" and r.episodes]
    frames = []
    if ok:
        per_seed = _per_seed(ok)
        frames += [per_seed, _across_seeds(per_seed)]
    failed = [r for r in results if r.status != "ok"]
    if failed:
        frames.append(_failed_rows(failed))
    if not frames:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    table = pd.concat(frames, ignore_index=True).reindex(columns=SUMMARY_COLUMNS[:-3])
    # the one reader of results/published.csv (bench.readers): primary rows, one per (algorithm, benchmark, metric)
    published = read_published()[["algorithm", "benchmark", "metric", "value", "ci95"]]
    published = published.rename(columns={"value": "paper_value", "ci95": "paper_ci95"})
    table = table.merge(published, on=["algorithm", "benchmark", "metric"], how="left")
    table["delta"] = table["mean"] - table["paper_value"]
    return table.reindex(columns=SUMMARY_COLUMNS)


def write_results(run: RunDir, results: list[CellResult]) -> None:
    """episodes.csv, curves.csv, fits.csv, the learners' diagnostic tables and summary.csv, in `results` order.
    Curves of failed cells are kept (they show how training went wrong); their other rows are not."""
    ok = [r for r in results if r.status == "ok"]
    run.write_table("episodes.csv", pd.DataFrame([x for r in ok for x in r.episodes], columns=EPISODE_COLUMNS))
    run.write_table("curves.csv", pd.DataFrame([x for r in results for x in r.curves], columns=CURVE_COLUMNS))
    fits = [x for r in ok for x in r.fits]
    if fits:
        run.write_table("fits.csv", pd.DataFrame(fits, columns=FIT_COLUMNS))
    for name in sorted({name for r in ok for name in r.tables}):
        run.write_table(f"{name}.csv", pd.DataFrame([x for r in ok for x in r.tables.get(name, [])]))
    run.write_table("summary.csv", summary_table(results))


def manifest(cells: list[Cell], results: list[CellResult], meta: dict[str, Any],
             streams: tuple[str, ...]) -> dict[str, Any]:
    """manifest.json: the run's `meta` and one entry per cell of the grid (pending until it finished);
    `streams` names the RNG streams each cell derives from its seed (bench.cell.STREAMS)."""
    done = {r.cell.key: r for r in results}
    entries = []
    for cell in cells:
        r = done.get(cell.key)
        entries.append({"key": cell.key, "benchmark": cell.benchmark, "algorithm": cell.algorithm,
                        "seed": cell.seed, "config_hash": cell.config_hash, "config": cell.resolved(),
                        "status": r.status if r else "pending", "error": r.error if r else "",
                        "test_episode_digest": r.digest if r else "", "tuned": r.tuned if r else {},
                        "resumed_from_iteration": r.resumed_from if r else 0,
                        "native_kernel_used": r.native_kernel_used if r else None,
                        **({"reused_from": r.reused_from} if r and r.reused_from else {}),
                        "seed_streams": list(streams)})
    return {**meta, "cells": entries}
