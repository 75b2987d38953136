"""How far a result is along the published protocol: the fraction of the paper's training budget a cell used, and
the meta-iteration at which its validation curve (curves.csv, split "validation": the budget keys curve_points /
curve_tasks) first reached the published value. Together they tell a reader whether the gap to a paper is one of
budget (the curve still climbing when the budget ran out) or of method (flat below the published value).

Torch-free, for `metabench report` and the `budget-curves` figure.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.leaderboard import Runs
from bench.profiles import packaged_config, paper_meta_iters
from bench.rundir import RunDir

CURVE_KEY = ["benchmark", "algorithm", "metric", "iteration"]


def validation_curves(paths: list[Path]) -> pd.DataFrame:
    """The validation-curve rows of the folders' curves.csv, averaged over seeds per (benchmark, algorithm, metric,
    iteration); for a cell in several folders the last folder's curve wins, as in bench.leaderboard.merge_runs."""
    frames = []
    for path in paths:
        run = RunDir(path)
        if (run.path / "curves.csv").is_file():
            curves = run.read_table("curves.csv")
            frames.append(curves[curves["split"] == "validation"].assign(_order=len(frames)))
    if not frames:
        return pd.DataFrame(columns=[*CURVE_KEY, "value"])
    rows = pd.concat(frames, ignore_index=True)
    last = rows.groupby(["benchmark", "algorithm"])["_order"].transform("max")
    rows = rows[rows["_order"] == last]
    return rows.groupby(CURVE_KEY, as_index=False)["value"].mean()


def reached_at(curve: pd.DataFrame, target: float, higher_is_better: bool) -> int | None:
    """The first iteration whose value is at least as good as `target`, or None."""
    good = curve["value"] >= target if higher_is_better else curve["value"] <= target
    hits = curve.loc[good, "iteration"]
    return int(hits.min()) if len(hits) else None


def progress(board: pd.DataFrame, runs: Runs, config: dict | None = None) -> pd.DataFrame:
    """Per board row: `paper_meta_iters`, `budget_fraction` (ours / the paper's) and `reached_at` (text: the
    iteration, 'not in N' when the curve never got there, '' without a curve or a published value)."""
    config = packaged_config() if config is None else config
    curves = validation_curves([Path(m["path"]) for m in runs.manifests])
    paper, fraction, reached = [], [], []
    for row in board.itertuples():
        iters = paper_meta_iters(row.benchmark, row.algorithm, config)
        paper.append(iters)
        fraction.append(row.meta_iters / iters if iters and pd.notna(row.meta_iters) else float("nan"))
        curve = curves[(curves["benchmark"] == row.benchmark) & (curves["algorithm"] == row.algorithm)
                       & (curves["metric"] == row.metric)]
        if curve.empty or pd.isna(row.paper_value):
            reached.append("")
            continue
        higher = runs.headlines.higher_is_better(row.benchmark)
        at = reached_at(curve, float(row.paper_value), True if higher is None else higher)
        reached.append(f"{at:,}" if at is not None else f"not in {int(curve['iteration'].max()):,}")
    return pd.DataFrame({"paper_meta_iters": paper, "budget_fraction": fraction, "reached_at": reached},
                        index=board.index)
