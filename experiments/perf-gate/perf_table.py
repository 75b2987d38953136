"""Print a `metabench perf` folder's per-step medians as the markdown table in docs/performance.md (a baseline of
several runs: the medians over all their repeats).

    python experiments/perf-gate/perf_table.py results/baseline-perf
"""
import json
import sys
from pathlib import Path

import pandas as pd

from bench import perf

folder = Path(sys.argv[1] if len(sys.argv) > 1 else "results/baseline-perf")

runs = sorted(p.parent for p in folder.glob("*/perf.csv")) or [folder]
table = perf.summary(pd.concat([pd.read_csv(run / "perf.csv") for run in runs], ignore_index=True))
manifest = json.loads((runs[0] / "manifest.json").read_text())
print("| step | reference | median ratio (CPU) | median ratio (wall) | ratio IQR (wall) | ms per call | step peak MB |")
print("|---|---|---|---|---|---|---|")
for r in table.to_dict("records"):
    print(f"| {r['step']} | {r['reference']} | {r['median_cpu_ratio']:.3g} | {r['median_ratio']:.3g} | "
          f"{r['ratio_iqr'] / r['median_ratio']:.0%} | {r['median_seconds'] * 1e3:.3g} | {r['step_peak_mb']:.0f} |")
env, prov = manifest["environment"], manifest["provenance"]
print(f"\n{len(runs)} run(s) of size {manifest['size']}, {manifest['repeats']} repeats each, "
      f"{manifest['threads']} thread, torch {env['torch']}, "
      f"{prov['cpu_model']} ({prov['logical_cpus']} logical CPUs), made {manifest['started']}")
