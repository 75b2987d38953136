"""The leaderboard as data: run folders' summary.csv merged cell by cell and ranked per benchmark by its declared
headline metric (bench.metrics), with the published numbers beside ours, and the number formats every table uses.

`metabench report` prints it (bench.report), the paper tables draw it (bench.plots) and the static site shows it
(bench.site); they all import this module and none of them each other, so no import circle can form between the
printing and the drawing side. Reads CSVs and manifests only (never algorithms/, never torch).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from bench import stats
from bench.metrics import Headlines
from bench.readers import CELL, cell_key, read_published
from bench.rundir import RunDir, RunDirError

SINE_SHOWN = ("mse@1", "mse@5", "mse@10")  # the MAML paper's table columns; csv has every step
SETTING_ORDER = ("omniglot-5w1s", "omniglot-5w5s", "omniglot-20w1s", "omniglot-20w5s", "miniimagenet-5w1s",
                 "miniimagenet-5w5s")  # the papers' column order
BOARD_COLUMNS = ["benchmark", "algorithm", "metric", "mean", "ci95", "n", "ci_method", "seeds", "paper_value",
                 "paper_ci95", "delta", "inside_paper_ci", "meta_iters", "train_seconds", "eval_seconds", "paper",
                 "table", "notes"]
PUBLISHED_SHOWN = ["algorithm", "benchmark", "metric", "value", "ci95", "paper", "table", "notes"]
SUMMARY_REQUIRED = ("benchmark", "algorithm", "seed", "metric", "mean", "ci95", "n", "status")


# ---------------------------------------------------------------------------------------------------------
# reading and merging run folders


@dataclass
class Runs:
    """Per-seed summary rows of several run folders merged cell by cell (a later folder wins), and each
    benchmark's headline metric as the folders' manifests declare it."""

    per_seed: pd.DataFrame
    manifests: list[dict] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    headlines: Headlines | None = None

    def __post_init__(self) -> None:
        if self.headlines is None:
            self.headlines = Headlines.from_manifests(self.manifests)


def read_run(path: Path) -> tuple[dict, pd.DataFrame]:
    """(manifest, summary.csv with seed as text) of one run folder; RunDirError when it is not one."""
    run = RunDir(path)
    if not run.path.is_dir():
        raise RunDirError(f"{path} is not a folder; pass a folder written by `metabench run --out DIR`")
    manifest = run.read_manifest()
    summary = run.read_table("summary.csv")  # damaged files: one-line RunDirError from bench.readers.read_csv
    missing = [c for c in SUMMARY_REQUIRED if c not in summary.columns]
    if missing:
        raise RunDirError(f"{path / 'summary.csv'} lacks column(s) {', '.join(missing)}; it was not written by "
                          f"`metabench run` (or by an older version: rerun it)")
    summary["seed"] = summary["seed"].astype(str)
    summary["metric"] = summary["metric"].fillna("").astype(str)
    for column in ("mean", "ci95", "n", "train_seconds", "eval_seconds", "meta_iters"):
        if column in summary:  # 'inf' of a diverged cell stays a number
            summary[column] = pd.to_numeric(summary[column], errors="coerce")
    manifest["path"] = str(path)
    return manifest, summary


def _cells(rows: pd.DataFrame) -> list[tuple]:
    return list(map(tuple, rows[list(CELL)].to_numpy()))


def merge_runs(paths: list[Path]) -> Runs:
    paths = list(dict.fromkeys(Path(p) for p in paths))  # a folder named twice is one folder
    frames, manifests, replaced = [], [], []
    owner: dict[tuple, str] = {}
    for path in paths:
        manifest, summary = read_run(path)
        manifests.append(manifest)
        rows = summary[summary["seed"] != "all"].assign(run=str(path))
        for key in dict.fromkeys(_cells(rows)):
            if key in owner:
                replaced.append(f"{cell_key(*key)}: {path} replaces {owner[key]}")
            owner[key] = str(path)
        frames.append(rows)
    # the same cell in several folders: keep the rows of the folder that came last on the command line
    kept = [rows[[owner[k] == path for k in _cells(rows)]] for rows, path in zip(frames, map(str, paths))]
    per_seed = pd.concat(kept, ignore_index=True) if kept else pd.DataFrame(columns=list(CELL))
    return Runs(per_seed, manifests, replaced)


def with_seed_rows(per_seed: pd.DataFrame) -> pd.DataFrame:
    """Per-seed rows plus recomputed seed 'all' rows (seeds may come from different folders)."""
    ok = per_seed[(per_seed["status"] == "ok") & (per_seed["metric"] != "")]
    if ok.empty:
        return per_seed
    keys = ["benchmark", "algorithm", "metric"]
    overall = stats.across_seeds(ok)
    timing = ok.groupby(keys, sort=False).agg(train_seconds=("train_seconds", "sum"),
                                              eval_seconds=("eval_seconds", "sum"),
                                              meta_iters=("meta_iters", "max")).reset_index()
    overall = overall.merge(timing, on=keys, how="left").assign(status="ok", error="")
    return pd.concat([per_seed, overall], ignore_index=True)


def benchmark_kinds(manifests: list[dict]) -> dict[str, str]:
    kinds = {}
    for manifest in manifests:
        for cell in manifest.get("cells", []):
            kind = ((cell.get("config") or {}).get("spec") or {}).get("kind")
            if kind:
                kinds[cell["benchmark"]] = kind
    return kinds


def cell_statuses(runs: Runs) -> dict[tuple, str]:
    """(benchmark, algorithm, seed) -> status of every cell the folders have rows or manifest entries for."""
    present: dict[tuple, str] = {}
    for row in runs.per_seed.itertuples():
        present[(row.benchmark, row.algorithm, row.seed)] = row.status
    for manifest in runs.manifests:  # cells an interrupted run never reached
        for cell in manifest.get("cells", []):
            present.setdefault((cell["benchmark"], cell["algorithm"], str(cell["seed"])), cell.get("status", "pending"))
    return present


def grid_problems(runs: Runs) -> tuple[list[str], list[str]]:
    """(missing, failed) cell keys. Expected cells: every seed that appears × every (benchmark, algorithm)
    where the algorithm appears on some benchmark of that benchmark's kind."""
    kinds = benchmark_kinds(runs.manifests)
    present = cell_statuses(runs)
    benches = list(dict.fromkeys(k[0] for k in present))
    seeds = list(dict.fromkeys(k[2] for k in present))
    by_kind: dict[str, list[str]] = {}
    for b, a, _ in present:
        algos = by_kind.setdefault(kinds.get(b, b), [])
        if a not in algos:
            algos.append(a)
    missing, failed = [], []
    for b in benches:
        for a in by_kind[kinds.get(b, b)]:
            for s in seeds:
                status = present.get((b, a, s))
                if status is None or status == "pending":
                    missing.append(cell_key(b, a, s))
                elif status != "ok":
                    failed.append(cell_key(b, a, s))
    return missing, failed


# ---------------------------------------------------------------------------------------------------------
# the leaderboard


def load_published(path: Path | None = None, primary_only: bool = True) -> pd.DataFrame:
    """results/published.csv through the one reader (bench.readers.read_published)."""
    return read_published(path, primary_only)


def shown_metrics(benchmark_metrics: list[str], published: set[str], head: str | None) -> list[str]:
    """The metrics a markdown/html leaderboard shows for one benchmark ranked by `head`."""
    if head and head.startswith("mse@"):
        return [m for m in SINE_SHOWN if m in benchmark_metrics] or [head]
    return [m for m in benchmark_metrics if m == head or m in published]


def _with_published(rows: pd.DataFrame, published: pd.DataFrame) -> pd.DataFrame:
    """Our rows with the published value, CI, source, difference and whether we lie inside its interval."""
    pub = published[PUBLISHED_SHOWN].rename(columns={"value": "paper_value", "ci95": "paper_ci95"})
    table = rows.drop(columns=[c for c in ("paper_value", "paper_ci95", "delta") if c in rows]).merge(
        pub, on=["algorithm", "benchmark", "metric"], how="left")
    table["delta"] = table["mean"] - table["paper_value"]
    low, high = table["paper_value"] - table["paper_ci95"], table["paper_value"] + table["paper_ci95"]
    table["inside_paper_ci"] = np.where(table["paper_ci95"].isna(), None,
                                        (table["mean"] >= low) & (table["mean"] <= high))
    return table


def leaderboard(runs: Runs, published: pd.DataFrame | None = None, every_metric: bool = False) -> pd.DataFrame:
    """One row per (benchmark, algorithm, metric), ranked within each benchmark by its headline metric."""
    rows = stats.headline(with_seed_rows(runs.per_seed))
    if rows.empty:
        return rows
    table = _with_published(rows, load_published() if published is None else published)
    parts = []
    for bench, group in table.groupby("benchmark", sort=False):
        metrics = list(dict.fromkeys(group["metric"]))
        head = runs.headlines.headline(bench, metrics)
        keep = metrics if every_metric else \
            shown_metrics(metrics, set(group.loc[group["paper_value"].notna(), "metric"]), head)
        group = group[group["metric"].isin(keep)]
        parts.append(_ranked(group, head, keep, runs.headlines.higher_is_better(bench)))
    return pd.concat(parts, ignore_index=True).reindex(columns=BOARD_COLUMNS)


def _ranked(group: pd.DataFrame, head: str | None, metric_order: list[str], higher: bool | None) -> pd.DataFrame:
    """Algorithms best-first by the headline metric; within an algorithm, metrics in their natural order."""
    score = group[group["metric"] == head].set_index("algorithm")["mean"] if head else pd.Series(dtype=float)
    sign = -1.0 if head and higher else 1.0
    rank = {a: sign * score.get(a, np.nan) for a in group["algorithm"].unique()}
    order = sorted(rank, key=lambda a: (np.isnan(rank[a]), rank[a]))
    group = group.assign(_a=group["algorithm"].map(order.index), _m=group["metric"].map(metric_order.index))
    return group.sort_values(["_a", "_m"]).drop(columns=["_a", "_m"])


# ---------------------------------------------------------------------------------------------------------
# number formats shared by every table (report, paper tables, site)


def _num(x, digits: int = 4, keep_zeros: bool = False) -> str:
    """Significant digits; measured values keep trailing zeros (3.000, not 3), published ones print as printed."""
    if x is None or pd.isna(x):
        return ""
    text = f"{x:#.{digits}g}".rstrip(".") if keep_zeros and abs(x) < 10 ** digits else f"{x:.{digits}g}"
    return text


def plus_minus(mean, ci, measured: bool = True) -> str:
    if mean is None or pd.isna(mean):
        return "–"
    text = _num(mean, keep_zeros=measured)
    return text if pd.isna(ci) else f"{text} ± {_num(ci, 2, keep_zeros=measured)}"


def duration(seconds) -> str:
    if seconds is None or pd.isna(seconds):
        return ""
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def sources(group: pd.DataFrame) -> list[str]:
    """'algorithm: paper, table — notes' of every published number a leaderboard group cites."""
    cited = group[group["paper_value"].notna()].drop_duplicates(["algorithm", "paper", "table"])
    return [f"{r.algorithm}: {r.paper}, {r.table}" + (f" — {r.notes}" if isinstance(r.notes, str) and r.notes else "")
            for r in cited.itertuples()]


def few(keys: list[str], limit: int = 8) -> str:
    return ", ".join(keys[:limit]) + (f" and {len(keys) - limit} more" if len(keys) > limit else "")
