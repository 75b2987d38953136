"""Estimate each omniglot-table cell's CPU seconds (one thread, as `--jobs 2` gives every cell) from the measured
step times in this folder, and the grid's total: how the cpu budgets of the new cells were sized.

    python experiments/omniglot-table-budgets/estimate.py

train = seconds per meta-iteration x meta_iters (MAML/FOMAML on 20-way measured at meta-batch 16 and scaled to
the budget's meta-batch); eval = seconds per test episode x 600. 5-way 1-shot cells are not estimated here: five
are reused from results/reference/omniglot-5w1s and the others keep the budgets (and costs) of their earlier runs.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.config import Config

HERE = Path(__file__).resolve().parent
MEASURED = {"steps-5w5s.csv": 20, "steps-20way.csv": 10}  # file: meta-iterations (= test episodes x 1) per cell


def measured() -> pd.DataFrame:
    frames = []
    for name, iters in MEASURED.items():
        s = pd.read_csv(HERE / name, dtype={"seed": str})
        s = s[(s["metric"] == "accuracy") & (s["seed"] == "0")].copy()
        s["step_seconds"] = s["train_seconds"] / s["meta_iters"]
        s["episode_seconds"] = s["eval_seconds"] / iters
        frames.append(s[["benchmark", "algorithm", "step_seconds", "episode_seconds"]])
    return pd.concat(frames).drop_duplicates(["benchmark", "algorithm"], keep="last").set_index(
        ["benchmark", "algorithm"])


def main() -> None:
    steps = measured()
    cells, _, _ = Config.load().grid("omniglot-table", [], [], [], None)
    rows = []
    for cell in cells:
        if cell.benchmark == "omniglot-5w1s":
            continue
        m = steps.loc[(cell.benchmark, cell.algorithm)]
        step = m["step_seconds"]
        if cell.algorithm in ("maml", "fomaml") and cell.benchmark.startswith("omniglot-20w"):
            step *= cell.hparams["meta_batch"] / 16
        train, test = step * cell.budget["meta_iters"], m["episode_seconds"] * cell.budget["test_episodes"]
        rows.append({"cell": cell.key, "meta_iters": cell.budget["meta_iters"], "s_per_step": round(step, 3),
                     "train_s": round(train), "eval_s": round(test), "total_s": round(train + test)})
    table = pd.DataFrame(rows)
    print(table.to_string(index=False))
    print(f"new cells: {table['total_s'].sum():,.0f} CPU-s = {table['total_s'].sum() / 3600:.1f} CPU-hours")


if __name__ == "__main__":
    main()
