"""`metabench report RUN... --pivot`: the papers' table layout. One row per algorithm, one column per benchmark,
each cell "ours ± 95% CI / published"; a failed cell shows its error and a cell not yet run says so.

The last column holds the row's notes: for every cell below the target its suite declares (`suites.<name>.targets`,
recorded in the run's manifest), the meta-iterations it trained for and the `paper` profile's for the same cell, so
a reader sees whether the gap is one of budget. The paper's budget is read from the packaged benchmarks.yaml as
plain YAML (bench.profiles resolves the rules), so this stays on the torch-free reading side.
"""
from __future__ import annotations

from typing import Any

import pandas as pd

from bench import style
from bench.leaderboard import Runs, cell_statuses, plus_minus
from bench.profiles import packaged_config, paper_meta_iters


def _grid_order(runs: Runs) -> tuple[list[str], list[str]]:
    """Benchmarks and algorithms in the order the runs' grids list them."""
    benches, algos = [], []
    for manifest in runs.manifests:
        for cell in manifest.get("cells", []):
            benches.append(cell["benchmark"])
            algos.append(cell["algorithm"])
    return list(dict.fromkeys(benches)), list(dict.fromkeys(algos))


def _targets(runs: Runs, config: dict[str, Any]) -> dict[tuple[str, str], float]:
    """The targets each run's manifest recorded for its suite (overlays included); for a run made before
    manifests recorded them, its suite's targets in the packaged benchmarks.yaml."""
    suites = config.get("suites") or {}
    out = {}
    for manifest in runs.manifests:
        targets = manifest["targets"] if "targets" in manifest else \
            (suites.get(manifest.get("suite")) or {}).get("targets") or {}
        for bench, per_algorithm in targets.items():
            out.update({(bench, algorithm): float(v) for algorithm, v in per_algorithm.items()})
    return out


def _errors(runs: Runs) -> dict[tuple[str, str], str]:
    rows = runs.per_seed
    if "error" not in rows:
        return {}
    failed = rows[rows["status"] != "ok"]
    return {(r.benchmark, r.algorithm): str(r.error) for r in failed.itertuples()}


def _note(bench: str, algorithm: str, mean: float, target: float, iters, config: dict[str, Any]) -> str:
    paper_iters = paper_meta_iters(bench, algorithm, config)
    ours = f"{int(iters):,}" if pd.notna(iters) else "?"
    theirs = f"; the paper profile: {int(paper_iters):,}" if paper_iters else ""
    return f"{style.benchmark_display(bench)}: {mean:.1f} < target {target:g} at {ours} meta-iterations{theirs}"


def pivot_table(board: pd.DataFrame, runs: Runs, config: dict[str, Any] | None = None) -> pd.DataFrame:
    """The table as text cells: `board` is bench.leaderboard.leaderboard(runs) (headline metric rows)."""
    config = packaged_config() if config is None else config
    benches, algos = _grid_order(runs)
    head = {b: runs.headlines.headline(b, list(board.loc[board["benchmark"] == b, "metric"].unique()))
            for b in benches}
    rows = {(r.benchmark, r.algorithm): r for r in board.itertuples() if r.metric == head.get(r.benchmark)}
    statuses = {(b, a): s for (b, a, _), s in cell_statuses(runs).items()}
    errors, targets = _errors(runs), _targets(runs, config)
    table = []
    for algorithm in algos:
        line, notes = {"algorithm": style.display(algorithm)}, []
        for bench in benches:
            r = rows.get((bench, algorithm))
            if r is None:
                status = statuses.get((bench, algorithm))
                line[bench] = f"failed: {errors.get((bench, algorithm), status)}" if status not in (
                    None, "pending", "ok") else "not run yet" if status == "pending" else "–"
                continue
            published = plus_minus(r.paper_value, r.paper_ci95, measured=False) if pd.notna(r.paper_value) else "–"
            line[bench] = f"{plus_minus(r.mean, r.ci95)} / {published}"
            target = targets.get((bench, algorithm))
            if target is not None and r.mean < target:
                notes.append(_note(bench, algorithm, r.mean, target, r.meta_iters, config))
        line["notes"] = "; ".join(notes)
        table.append(line)
    frame = pd.DataFrame(table, columns=["algorithm", *benches, "notes"])
    return frame.rename(columns={b: style.benchmark_display(b) for b in benches})
