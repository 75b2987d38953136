"""The speed gate's false-alarm rate and detection power on this machine, through the public CLI only.

1. False alarms: RERUNS reruns of `metabench perf --quick` on the unchanged tree, each compared with the committed
   results/baseline-perf/ by `metabench compare --perf` on both clocks (cpu, wall). Any exit 1 is a false alarm.
2. Detection: `metabench perf --quick` restricted to a few steps, with METABENCH_PERF_SLOWDOWN making MAML's
   Omniglot meta-training step do 10%, 20% or 30% more work, compared with the baseline restricted to the same
   steps. Exit 1 naming train/maml/omniglot-5w1s is a detection.

    python experiments/perf-gate/false_alarms.py [--first 4] [--reruns 10] [--work /tmp/perf-gate] \
        [--out experiments/perf-gate]

A flagged rerun is confirmed as .ci/perf-gate.sh does it: the flagged steps timed side by side with the baseline
commit's code (`metabench perf --against`). Reruns are numbered from --first (reruns 0-3 of the measurement in
docs/performance.md became the baseline's runs 2-5, so the reruns compared here are 4-13); a rerun folder already in
--work is compared, not remeasured.

Writes false_alarms.csv (one row per rerun and clock: exit code, regressed steps, the largest change) and
detection.csv (one row per injected slowdown and run) into --out, and prints both.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
BASELINE = ROOT / "results" / "baseline-perf"
SLOWED = "train/maml/omniglot-5w1s"
DETECTION_STEPS = ["train/maml/omniglot-5w1s", "train/protonet/omniglot-5w1s", "reference/*"]


def metabench(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=ROOT, capture_output=True, text=True, check=False,
                          env={**os.environ, **(env or {})})


def gate(baseline: Path, new: Path, clock: str, *extra: str) -> dict:
    done = metabench("compare", "--perf", str(baseline), str(new), "--clock", clock, "--format", "json", *extra)
    if done.returncode == 2:
        raise SystemExit(f"compare --perf could not compare: {done.stderr.strip()}")
    report = json.loads(done.stdout)
    rows = pd.DataFrame(report["rows"])
    worst = rows.loc[rows["change"].idxmax()]
    return {"clock": clock, "exit": done.returncode, "regressions": " ".join(report["regressions"]),
            "max_change": round(float(worst["change"]), 4), "max_change_step": worst["step"],
            "max_change_p": float(worst["p"]), "steps_over_10pct": int((rows["change"] > 0.10).sum())}


def confirm(baseline: Path, first: dict, folder: Path, env: dict | None = None) -> dict:
    """What .ci/perf-gate.sh does after an exit 1: time only the flagged steps side by side with the baseline
    commit's code (`metabench perf --against results/baseline-perf`, alternating fresh processes) and gate on that
    pair (cpu clock, the default). An injected slowdown in `env` reaches the new side only."""
    if first["exit"] != 1:
        return {"confirmed_exit": first["exit"], "confirmed": ""}
    steps = [a for s in first["regressions"].split() for a in ("--step", s)]
    if not (folder / "ab.json").is_file():
        done = metabench("perf", "--quick", "--against", str(BASELINE), "--out", str(folder), *steps, env=env)
        if done.returncode:
            raise SystemExit(f"metabench perf --against failed: {done.stderr[-2000:]}")
    again = gate(folder / "baseline", folder / "new", "cpu", *steps)
    return {"confirmed_exit": again["exit"], "confirmed": again["regressions"],
            "confirmed_max_change": again["max_change"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reruns", type=int, default=10)
    p.add_argument("--first", type=int, default=0, help="number of the first rerun (earlier ones are not compared)")
    p.add_argument("--work", type=Path, default=Path("/tmp/perf-gate"))
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    p.add_argument("--detection-runs", type=int, default=3)
    p.add_argument("--fractions", type=float, nargs="+", default=[0.1, 0.2, 0.3],
                   help="injected slowdowns of MAML's Omniglot step (fractions of its own time)")
    args = p.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)

    rows = []
    for i in range(args.first, args.first + args.reruns):
        run = args.work / f"rerun-{i}"
        tic = time.time()
        if not (run / "perf.csv").is_file():  # an existing rerun is compared again, not remeasured
            done = metabench("perf", "--quick", "--out", str(run))
            if done.returncode:
                raise SystemExit(f"metabench perf failed: {done.stderr[-2000:]}")
        load = os.getloadavg()[0]
        for clock in ("cpu", "wall"):
            first = gate(BASELINE, run, clock)
            checked = confirm(BASELINE, first, args.work / f"rerun-{i}-confirm") if clock == "cpu" else {}
            rows.append({"rerun": i, "seconds": round(time.time() - tic), "load1": round(load, 2), **first, **checked})
            print(rows[-1], flush=True)
        pd.DataFrame(rows).to_csv(args.out / "false_alarms.csv", index=False)

    # detection: the baseline (each of its runs) restricted to the steps the slowed runs time
    if not args.detection_runs:
        args.fractions = []
    import fnmatch
    subset = args.work / "baseline-subset"
    for csv in sorted(BASELINE.glob("*/perf.csv")) or [BASELINE / "perf.csv"]:
        base = pd.read_csv(csv)
        keep = base["step"].map(lambda s: any(fnmatch.fnmatchcase(s, g) for g in DETECTION_STEPS))
        (subset / csv.parent.name).mkdir(parents=True, exist_ok=True)
        base[keep].to_csv(subset / csv.parent.name / "perf.csv", index=False)
    found = []
    for fraction in args.fractions:
        for i in range(args.detection_runs):
            run = args.work / f"slowed-{fraction}-{i}"
            steps = [a for g in DETECTION_STEPS for a in ("--step", g)]
            if not (run / "perf.csv").is_file():
                done = metabench("perf", "--quick", "--out", str(run), *steps,
                                 env={"METABENCH_PERF_SLOWDOWN": f"{SLOWED}={fraction}"})
                if done.returncode:
                    raise SystemExit(f"metabench perf failed: {done.stderr[-2000:]}")
            for clock in ("cpu", "wall"):
                result = gate(subset, run, clock)
                checked = {}
                if clock == "cpu":
                    checked = confirm(subset, result, args.work / f"slowed-{fraction}-{i}-confirm",
                                      {"METABENCH_PERF_SLOWDOWN": f"{SLOWED}={fraction}"})
                found.append({"injected": fraction, "run": i, **result, **checked,
                              "detected": result["exit"] == 1 and SLOWED in result["regressions"].split(),
                              "detected_confirmed": checked.get("confirmed_exit") == 1
                              and SLOWED in checked.get("confirmed", "").split()})
                print(found[-1], flush=True)
            pd.DataFrame(found).to_csv(args.out / "detection.csv", index=False)

    table = pd.DataFrame(rows)
    if table.empty:
        print(pd.DataFrame(found).to_string(index=False))
        return
    print(table.to_string(index=False))
    for clock, g in table.groupby("clock"):
        print(f"false alarms ({clock} clock): {int((g['exit'] == 1).sum())} of {len(g)} reruns")
    cpu = table[table["clock"] == "cpu"]
    print(f"false alarms (cpu clock, confirmed side by side with the baseline's code as .ci/perf-gate.sh does): "
          f"{int((cpu['confirmed_exit'] == 1).sum())} of {len(cpu)} reruns")
    found = pd.DataFrame(found)
    if not found.empty:
        print(found.groupby(["injected", "clock"])[["detected", "detected_confirmed"]].sum().to_string())


if __name__ == "__main__":
    main()
