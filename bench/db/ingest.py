"""`metabench db add`: read run folders and store each as one transaction.

A run is identified by its manifest's run_id and fingerprinted by a SHA-256 of the files stored (manifest.json,
summary.csv, episodes.csv): adding the same folder again is a no-op, and a different folder claiming an id
already stored is refused unless --replace says to overwrite it (a resumed run that finished more cells).
Each run is written inside one transaction, so a crash or SIGKILL mid-way leaves the database as it was.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench import readers
from bench.db.backend import Database, utc_now
from bench.errors import UserError

SUMMARY_FIELDS = ["benchmark", "algorithm", "seed", "metric", "mean", "ci95", "n", "ci_method", "seeds",
                  "train_seconds", "eval_seconds", "meta_iters", "status", "error"]
EPISODE_FIELDS = ["benchmark", "algorithm", "seed", "episode", "metric", "value"]
SKIPPED_FOLDERS = {"checkpoints", "figures", "__pycache__"}
# test hook: pause this many seconds half-way through the episodes of a run, inside its transaction, so that a
# test can SIGKILL the process at a known point and check that nothing of the run was kept
PAUSE_ENV = "METABENCH_DB_TEST_PAUSE"


@dataclass
class RunFolder:
    path: Path
    manifest: dict
    summary: pd.DataFrame
    episodes: pd.DataFrame | None
    content_hash: str

    @property
    def run_id(self) -> str:
        return self.manifest["run_id"]


def find_runs(paths: list[Path]) -> list[Path]:
    """Every folder holding a manifest.json at or below each path (a topic folder holds several runs)."""
    found: list[Path] = []
    empty: list[Path] = []
    for path in map(Path, paths):
        if not path.exists():
            raise UserError(f"{path} does not exist; pass run folders written by `metabench run --out DIR`")
        if path.is_file():
            raise UserError(f"{path} is a file; pass the run folder that holds manifest.json")
        here = [path] if (path / "manifest.json").is_file() else []
        for root, dirs, files in os.walk(path):
            dirs[:] = sorted(d for d in dirs if d not in SKIPPED_FOLDERS and not d.startswith("."))
            if "manifest.json" in files and Path(root) != path:
                here.append(Path(root))
        if not here:
            empty.append(path)
        found += here
    if not found:
        raise UserError(f"no manifest.json in or below {', '.join(map(str, paths))}; pass run folders written by "
                        f"`metabench run --out DIR`")
    for path in empty:  # e.g. a topic folder of perf.csv files beside the run folders a glob also names
        print(f"metabench: db: skipping {path}: no manifest.json in it or below it", file=sys.stderr)
    return list(dict.fromkeys(found))


def _need(value, where: str, kind: type, fix: str):
    if not isinstance(value, kind) or (kind is str and not value):
        raise UserError(f"{where} is {'missing' if value is None else f'not a {kind.__name__}: {value!r}'}; {fix}")
    return value


def read_manifest(path: Path) -> dict:
    file = path / "manifest.json"
    fix = "the manifest was not written by `metabench run` or was edited: restore it or rerun the suite"
    try:
        manifest = json.loads(file.read_text())
    except UnicodeDecodeError:
        raise UserError(f"{file} is not UTF-8 text; {fix}") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{file} is not valid JSON ({exc.msg} at line {exc.lineno}); {fix}") from None
    _need(manifest, str(file), dict, fix)
    _need(manifest.get("run_id"), f"{file}: key 'run_id'", str, fix)
    for i, cell in enumerate(_need(manifest.get("cells"), f"{file}: key 'cells'", list, fix)):
        _need(cell, f"{file}: cells[{i}]", dict, fix)
        for key in ("benchmark", "algorithm"):
            _need(cell.get(key), f"{file}: key 'cells[{i}].{key}'", str, fix)
        if not isinstance(cell.get("seed"), (int, str)) or isinstance(cell.get("seed"), bool):
            _need(None, f"{file}: key 'cells[{i}].seed'", int, fix)
    for key in ("commit", "commit_date", "started", "finished", "profile", "suite"):
        if manifest.get(key) is not None and not isinstance(manifest[key], str):
            raise UserError(f"{file}: key '{key}' is not text: {manifest[key]!r}; {fix}")
    return manifest


def _read_csv(file: Path, needed: list[str], required: bool) -> pd.DataFrame | None:
    if not file.is_file():
        if required:
            raise UserError(f"{file} is missing; the run finished no cell or the folder is not a run folder")
        return None
    # the suite's one reader: any defect becomes one line naming the file (bench/readers.py)
    return readers.read_csv(file, needed, what=file.name, dtype={"seed": str, "metric": str})


def read_folder(path: Path) -> RunFolder:
    lock = path / ".lock"
    owner = lock.read_text().strip() if lock.is_file() else ""
    if owner.isdigit() and _alive(int(owner)):  # half a run would be stored, then refused once it finishes
        raise UserError(f"{path} is still being written by `metabench run` (pid {owner}, lock file {lock}); add it "
                        f"when that run has finished")
    manifest = read_manifest(path)
    summary = _read_csv(path / "summary.csv", ["benchmark", "algorithm", "seed", "metric", "mean", "ci95", "n",
                                                "status"], required=True)
    summary = summary.reindex(columns=SUMMARY_FIELDS)
    summary["metric"] = summary["metric"].fillna("").astype(str)
    summary["seed"] = summary["seed"].astype(str)
    for column in ("mean", "ci95", "train_seconds", "eval_seconds"):
        summary[column] = pd.to_numeric(summary[column], errors="coerce")  # 'inf' of a diverged cell stays one
    for column in ("n", "meta_iters"):
        summary[column] = pd.to_numeric(summary[column], errors="coerce").round().astype("Int64")
    episodes = _read_csv(path / "episodes.csv", EPISODE_FIELDS, required=False)
    if episodes is not None:
        episodes = episodes[EPISODE_FIELDS].copy()
        episodes["seed"] = episodes["seed"].astype(str)
        episodes["value"] = pd.to_numeric(episodes["value"], errors="coerce")
        episodes["episode"] = pd.to_numeric(episodes["episode"], errors="coerce")
        if episodes["episode"].isna().any():
            raise UserError(f"{path / 'episodes.csv'} has a non-numeric episode index; the file was edited: "
                            f"rerun that suite")
        dup = episodes.duplicated(["benchmark", "algorithm", "seed", "metric", "episode"])
        if dup.any():
            r = episodes[dup].iloc[0]
            raise UserError(f"{path / 'episodes.csv'}: episode {int(r.episode)} of "
                            f"{readers.cell_key(r.benchmark, r.algorithm, r.seed)} {r.metric} appears twice; the "
                            f"file was edited or concatenated: rerun that suite")
    digest = hashlib.sha256()
    for name in ("manifest.json", "summary.csv", "episodes.csv"):
        if (path / name).is_file():
            digest.update(name.encode() + b"\0" + (path / name).read_bytes() + b"\0")
    return RunFolder(path, manifest, summary, episodes, digest.hexdigest())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _num(x):
    """A float for the database: NaN becomes NULL (SQLite cannot store NaN; NULL reads back as NaN)."""
    if x is None or x is pd.NA:
        return None
    x = float(x)
    return None if math.isnan(x) else x


def _int(x):
    return None if x is None or x is pd.NA or (isinstance(x, float) and math.isnan(x)) else int(x)


def _text(x):
    return None if x is None or x is pd.NA or (isinstance(x, float) and math.isnan(x)) else str(x)


def provenance(manifest: dict) -> dict:
    """The run-level columns; new manifest keys are read with .get() so that older manifests still ingest."""
    env = manifest.get("environment") or {}
    prov = manifest.get("provenance") or {}
    kernel = prov.get("native_kernel") or {}
    used = kernel.get("used")
    return {"hostname": prov.get("hostname") or env.get("hostname"), "device": env.get("device"),
            "torch": env.get("torch"), "python": env.get("python"), "platform": env.get("platform"),
            "threads": _int(prov.get("threads", env.get("cpu_threads"))),
            "kernel_used": None if used is None else int(bool(used))}


def store(db: Database, run: RunFolder, replace: bool = False) -> str:
    """Write one run in one transaction; returns 'added', 'replaced' or 'unchanged'."""
    m = run.manifest
    with db.transaction():
        existing = db.rows("SELECT id, content_hash, source_path FROM runs WHERE run_id = ?", (run.run_id,))
        if existing:
            if existing[0]["content_hash"] == run.content_hash:
                return "unchanged"
            if not replace:
                raise UserError(f"{run.path}: run id {run.run_id!r} is already in {db.location} with different "
                                f"content (added from {existing[0]['source_path']}); pass --replace to overwrite "
                                f"it, or give the new run its own id")
            db.execute("DELETE FROM runs WHERE id = ?", (existing[0]["id"],))  # cascades to its rows
        header = {k: v for k, v in m.items() if k != "cells"}
        run_pk = db.insert_returning_id(
            "INSERT INTO runs (run_id, content_hash, source_path, suite, profile, commit_sha, dirty, commit_date, "
            "started, finished, hostname, device, torch, python, platform, threads, kernel_used, manifest, added_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (run.run_id, run.content_hash, str(run.path), m.get("suite"), m.get("profile") or "",
             m.get("commit"), None if m.get("dirty") is None else int(bool(m.get("dirty"))), m.get("commit_date"),
             m.get("started"), m.get("finished"), *provenance(m).values(),
             json.dumps(header, sort_keys=True, default=str), utc_now()))
        cell_ids: dict[tuple, int] = {}
        for cell in m["cells"]:
            key = (cell["benchmark"], cell["algorithm"], str(cell["seed"]))
            if key in cell_ids:
                raise UserError(f"{run.path / 'manifest.json'}: cell {readers.cell_key(*key)} is listed twice; "
                                f"the manifest was edited: restore it or rerun the suite")
            cell_ids[key] = db.insert_returning_id(
                "INSERT INTO cells (run, cell_key, benchmark, algorithm, seed, status, error, config_hash, "
                "test_episode_digest, config, reused_from_run) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (run_pk, cell.get("key") or readers.cell_key(*key), *key, cell.get("status"),
                 cell.get("error") or "", cell.get("config_hash"), cell.get("test_episode_digest"),
                 json.dumps(cell.get("config"), sort_keys=True, default=str),
                 (cell.get("reused_from") or {}).get("run_id") or None))
        db.executemany(
            f"INSERT INTO summaries (run, {', '.join(SUMMARY_FIELDS)}) VALUES (?{', ?' * len(SUMMARY_FIELDS)})",
            [(run_pk, r.benchmark, r.algorithm, r.seed, r.metric, _num(r.mean), _num(r.ci95), _int(r.n),
              _text(r.ci_method), _text(r.seeds), _num(r.train_seconds), _num(r.eval_seconds), _int(r.meta_iters),
              _text(r.status), _text(r.error) or "") for r in run.summary.itertuples(index=False)])
        if run.episodes is not None and len(run.episodes):
            _store_episodes(db, run, cell_ids)
    return "replaced" if existing else "added"


def _store_episodes(db: Database, run: RunFolder, cell_ids: dict[tuple, int]) -> None:
    episodes = run.episodes
    keys = list(zip(episodes["benchmark"], episodes["algorithm"], episodes["seed"]))
    unknown = sorted({k for k in keys if k not in cell_ids})
    if unknown:
        b, a, s = unknown[0]
        raise UserError(f"{run.path / 'episodes.csv'} has rows for {readers.cell_key(b, a, s)}, a cell manifest.json "
                        f"does not list; the files come from different runs: rerun that suite")
    rows = [(cell_ids[k], m, int(e), _num(v)) for k, m, e, v in
            zip(keys, episodes["metric"], episodes["episode"], episodes["value"])]
    half = len(rows) // 2
    columns = ("cell", "metric", "episode", "value")
    db.bulk_insert("episodes", columns, rows[:half])
    pause = os.environ.get(PAUSE_ENV)
    if pause:
        print(f"metabench: db: paused mid-ingest of {run.run_id}", file=sys.stderr, flush=True)
        time.sleep(float(pause))
    db.bulk_insert("episodes", columns, rows[half:])


def add(db: Database, paths: list[Path], replace: bool = False, echo=print) -> dict[str, int]:
    """Ingest every run folder at or below `paths`; each run is its own transaction."""
    counts = {"added": 0, "replaced": 0, "unchanged": 0}
    for path in find_runs(paths):
        run = read_folder(path)
        outcome = store(db, run, replace)
        counts[outcome] += 1
        echo(f"{outcome:9} {run.run_id}  ({path})")
    return counts
