"""Test accuracy of a cell's latest training checkpoint on the cell's own frozen test episodes.

A progress probe for long experiment runs (not a result: the finished cell's episodes.csv is): it rebuilds the
cell from the packaged benchmarks.yaml plus any --set overrides given after the cell, loads the checkpoint's
learner state and evaluates it exactly as the harness does after training. Run from the repository root with
METABENCH_DATA set:

    python experiments/siamese-lake-wide-embedding/probe_checkpoint.py CHECKPOINT BENCHMARK ALGORITHM [KEY=VALUE ...]
"""
import statistics
import sys
from pathlib import Path

import torch

from bench import cell as cells
from bench.config import Config
from bench.evaluate import evaluate
from bench.stats import ci95_normal


def main(checkpoint: str, benchmark: str, algorithm: str, *sets: str) -> None:
    torch.set_num_threads(1)
    cell = Config.load(sets=list(sets)).cell(benchmark, algorithm, 0, "cpu")
    source = cells.task_source(cell.spec, None)
    learner, generators = cells.build_learner(cell, source, torch.device("cpu"))
    state = cells.load_checkpoint(Path(checkpoint))
    learner.load_state_dict(state["learner"])
    rows = evaluate(cell, learner, source, torch.device("cpu")).episodes
    for metric in sorted({row["metric"] for row in rows}):
        values = [row["value"] for row in rows if row["metric"] == metric]
        print(f"{state['iteration']},{metric},{statistics.mean(values):.2f},{ci95_normal(values):.2f}")


if __name__ == "__main__":
    main(*sys.argv[1:])
