"""OpenMP's wait policy on a busy machine: OMP_WAIT_POLICY=active (spin while waiting for work, libgomp's default
behaviour for a while after each parallel region) against passive (sleep), for a few `metabench perf` steps with
two threads and for one whole smoke cell with two threads, in alternating runs (A B A B ...) so that drifting
load hits both policies alike. Absolute seconds, not ratios: the policy changes the reference workload too.

    python experiments/perf-gate/omp_wait_policy.py [--rounds 3] [--out experiments/perf-gate/omp_wait_policy.csv]

Each measurement is a fresh process (the policy is read when the OpenMP runtime loads). Records the 1-minute load
average beside every row: the result is only meaningful together with how busy the machine was.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
STEPS = ["train/maml/omniglot-5w1s", "train/protonet/omniglot-5w1s", "eval/protonet/omniglot-5w1s",
         "train/maml/sine-k5"]
CELL = ["run", "--benchmark", "sine-k5", "--algorithm", "maml", "--profile", "smoke", "--set", "budget.cpus=2",
        "--set", "budget.test_episodes=50", "--no-progress", "--no-figures", "--force"]


def metabench(args: list[str], policy: str) -> float:
    env = {**os.environ, "OMP_WAIT_POLICY": policy}
    tic = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "bench", *args], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode:
        raise SystemExit(f"metabench {' '.join(args)} failed: {done.stderr[-2000:]}")
    return time.perf_counter() - tic


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "omp_wait_policy.csv")
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for r in range(args.rounds):
            for policy in (("active", "passive") if r % 2 == 0 else ("passive", "active")):
                load = os.getloadavg()[0]
                out = Path(work) / f"perf-{policy}-{r}"
                steps = [a for s in STEPS for a in ("--step", s)]
                metabench(["perf", "--quick", "--threads", "2", "--repeats", "5", "--out", str(out), *steps], policy)
                table = pd.read_csv(out / "perf.csv")
                for step, g in table.groupby("step", sort=False):
                    rows.append({"round": r, "policy": policy, "what": step, "seconds": g["seconds"].median(),
                                 "load1_before": load})
                seconds = metabench([*CELL, "--out", str(Path(work) / f"cell-{policy}-{r}")], policy)
                rows.append({"round": r, "policy": policy, "what": "cell sine-k5/maml smoke, 2 threads (process)",
                             "seconds": seconds, "load1_before": load})
                print(rows[-1], flush=True)
                pd.DataFrame(rows).to_csv(args.out, index=False)
    table = pd.DataFrame(rows)
    wide = table.pivot_table(index="what", columns="policy", values="seconds", aggfunc="median", sort=False)
    wide["passive / active"] = wide["passive"] / wide["active"]
    print(wide.to_string(float_format=lambda x: f"{x:.4g}"))
    print(f"1-minute load average during the runs: {table['load1_before'].min():.1f}-{table['load1_before'].max():.1f} "
          f"on {os.cpu_count()} logical CPUs")


if __name__ == "__main__":
    main()
