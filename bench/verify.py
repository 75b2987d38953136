"""`metabench verify RUN_DIR [--cells N]`: re-run cells of a finished run folder on the current code and say
whether their per-episode values come out the same.

A committed result is only as good as its ability to be made again. Each cell is rebuilt from the configuration
its manifest recorded (not from today's benchmarks.yaml, which may have moved on), trained from scratch and
evaluated on its frozen test episodes; the values are compared with episodes.csv as written (10 significant
digits). `same` means byte-identical rows; otherwise the report says how many episodes moved and how far the
mean moved, and which provenance (kernel, threads, torch, CPU) differs between then and now, the usual reasons.
Exit 0: all same; 1: some cell differs; 2: the folder cannot be verified.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from bench import cell as runner
from bench.config import Cell
from bench.rundir import RunDir, RunDirError, environment, git_commit, provenance, provenance_differences


def add_parser(sub) -> None:
    p = sub.add_parser("verify", help="re-run cells of a run folder on the current code: `same` or the differences")
    p.add_argument("run", type=Path, metavar="RUN_DIR")
    p.add_argument("--cells", type=int, default=None, metavar="N",
                   help="verify the first N finished cells in grid order (default: all)")
    p.add_argument("--data-root", help="datasets folder (default: $METABENCH_DATA, else ~/.cache/metabench/data)")


def cells_to_verify(manifest: dict, count: int | None) -> list[dict]:
    if count is not None and count < 1:
        raise RunDirError(f"--cells {count}: must be at least 1")
    finished = [c for c in manifest.get("cells", []) if c.get("status") == "ok"]
    if not finished:
        raise RunDirError(f"{manifest.get('path', 'the run')} has no finished cell to verify")
    return finished if count is None else finished[:count]


def rebuild_cell(entry: dict):
    config = entry.get("config")
    if not isinstance(config, dict):
        raise RunDirError(f"manifest cell {entry.get('key')} has no recorded configuration; it cannot be re-run")
    cell = Cell(**config)
    if cell.config_hash != entry.get("config_hash"):
        raise RunDirError(f"manifest cell {entry.get('key')}: its recorded configuration does not hash to its "
                          f"config_hash; the manifest was edited by hand")
    return cell


def compare_episodes(recorded: pd.DataFrame, rerun: list[dict]) -> dict:
    """How the re-run's per-episode values differ from the recorded ones (both as written to CSV)."""
    new = pd.DataFrame(rerun, columns=["benchmark", "algorithm", "seed", "episode", "metric", "value"])
    new_values = np.array([float(f"{v:.10g}") for v in new["value"]])
    old = recorded.sort_values(["metric", "episode"], kind="stable")
    new = new.assign(value=new_values).sort_values(["metric", "episode"], kind="stable")
    if len(old) != len(new) or list(old["metric"]) != list(new["metric"]):
        return {"same": False, "detail": f"{len(new)} episode rows now against {len(old)} recorded"}
    a, b = old["value"].to_numpy(float), new["value"].to_numpy(float)
    moved = ~((a == b) | (np.isnan(a) & np.isnan(b)))
    if not moved.any():
        return {"same": True, "detail": "same"}
    parts = []
    for metric in dict.fromkeys(old["metric"]):
        mask = (old["metric"] == metric).to_numpy()
        if moved[mask].any():
            parts.append(f"{metric}: {int(moved[mask].sum())} of {int(mask.sum())} episodes differ, mean "
                         f"{np.nanmean(a[mask]):.6g} -> {np.nanmean(b[mask]):.6g}, largest |change| "
                         f"{np.nanmax(np.abs(a[mask] - b[mask])):.3g}")
    return {"same": False, "detail": "; ".join(parts)}


def verify(run_dir: Path, count: int | None = None, data_root: str | None = None, out=sys.stdout) -> bool:
    """Re-run the cells and print one line per cell; True when every one is the same."""
    run = RunDir(run_dir)
    manifest = run.read_manifest()
    manifest["path"] = str(run_dir)
    episodes = run.read_table("episodes.csv")
    entries = cells_to_verify(manifest, count)
    now = {**git_commit(), "environment": environment("cpu"), "provenance": provenance()}
    for line in provenance_differences(manifest, now, "recorded", "now"):
        print(f"metabench: note: {line}", file=sys.stderr)
    all_same = True
    with tempfile.TemporaryDirectory(prefix="metabench-verify-") as scratch:
        for entry in entries:
            cell = rebuild_cell(entry)
            result = runner.run_cell(cell, data_root=data_root, checkpoint_dir=Path(scratch), progress=False)
            if result.status != "ok":
                all_same = False
                print(f"{cell.key}: failed now: {result.error}", file=out)
                continue
            mine = episodes[(episodes["benchmark"] == cell.benchmark) & (episodes["algorithm"] == cell.algorithm)
                            & (episodes["seed"].astype(str) == str(cell.seed))]
            verdict = compare_episodes(mine, result.episodes)
            if result.digest and entry.get("test_episode_digest") and result.digest != entry["test_episode_digest"]:
                verdict = {"same": False, "detail": f"different test episodes (digest {entry['test_episode_digest']}"
                                                    f" -> {result.digest}); " + verdict["detail"]}
            kernel = "" if entry.get("native_kernel_used") in (None, result.native_kernel_used) else \
                f" (native kernel {'used' if entry['native_kernel_used'] else 'not used'} then, " \
                f"{'used' if result.native_kernel_used else 'not used'} now)"
            all_same &= verdict["same"]
            print(f"{cell.key}: {verdict['detail']}{kernel}", file=out)
    return all_same


def command(args) -> int:
    same = verify(args.run, args.cells, args.data_root)
    print(f"metabench: verify: {'same' if same else 'DIFFERENT'}", file=sys.stderr)
    return 0 if same else 1
