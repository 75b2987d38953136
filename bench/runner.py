"""Run cells: a cell = (benchmark, algorithm, seed, profile). Meta-train for the profile's budget, evaluate on the
frozen test episodes, and turn the results into the run folder's tidy CSVs.

`run_cell` is pure computation (it writes only its own checkpoints) so executors can run it anywhere;
`run_grid` drives a grid through an executor and alone writes the run folder, after every finished cell.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import socket
import threading
import time
import traceback
from contextlib import contextmanager
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import pandas as pd
import torch
from tqdm.auto import tqdm

import algorithms
from algorithms import native
from algorithms.base import Episode, Learner
from bench import data as datasets
from bench import resources, stats
from bench.config import AUTOCAST_CHOICES, Cell, Config
from bench.episodes import EpisodeDigest, digest, named_generators
from bench.readers import read_json
from bench.rundir import (CURVE_COLUMNS, EPISODE_COLUMNS, FIT_COLUMNS, SUMMARY_COLUMNS, RunDir, atomic_write_text,
                          environment, git_commit, new_run_id, provenance, pid_alive, utc_now)

STREAMS = ("init", "train_episodes", "validation", "algorithm")

# Set by the first Ctrl-C (bench.cli): the training loop stops at the next iteration boundary, writes a
# checkpoint and raises RunInterrupted, so `metabench run --resume` continues exactly where it stopped.
STOP = threading.Event()


class RunInterrupted(Exception):
    """Training was stopped on request after a checkpoint was written; the cell is unfinished, not failed."""


@contextmanager
def cell_threads(count: int | None):
    """Run a cell with a fixed number of intra-op threads: results can depend on the thread count, so every
    executor gives a cell the same count (its budget's `cpus`), which also keeps parallel cells from
    oversubscribing the cores."""
    before = torch.get_num_threads()
    if count:
        torch.set_num_threads(int(count))
    try:
        yield
    finally:
        torch.set_num_threads(before)
FIT_TASKS = 4              # test tasks whose full fitted curve is saved (regression fit figures)
FIT_STEPS = (0, 1, 10)     # adaptation steps drawn in the fit figures (MAML paper Fig. 2)


@dataclass
class CellResult:
    cell: Cell
    status: str = "ok"
    error: str = ""
    episodes: list[dict] = field(default_factory=list)
    curves: list[dict] = field(default_factory=list)
    fits: list[dict] = field(default_factory=list)
    train_seconds: float = 0.0
    eval_seconds: float = 0.0
    meta_iters: int = 0
    digest: str = ""
    tuned: dict[str, Any] = field(default_factory=dict)
    resumed_from: int = 0
    trained_in: str = ""   # the cell whose identical meta-training this cell loaded (see shared_training_path)
    tables: dict[str, list[dict]] = field(default_factory=dict)  # learner diagnostics -> <name>.csv
    traceback: str = ""
    native_kernel_used: bool = False  # the first-layer C kernel ran in this cell (float rounding differs without)

    def to_json(self) -> dict[str, Any]:
        """Everything but the cell itself (which the manifest holds), for cells/<key>.json."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "cell"}

    @classmethod
    def from_json(cls, cell: Cell, data: dict[str, Any]) -> "CellResult":
        return cls(cell=cell, **data)


# ---------------------------------------------------------------------------------------------------------
# sources and frozen episodes are shared by every cell of a process

_SOURCES: dict[str, Any] = {}


def task_source(spec: dict[str, Any], data_root: str | None):
    key = json.dumps([spec, str(data_root)], sort_keys=True, default=str)
    if key not in _SOURCES:
        _SOURCES[key] = datasets.open_source(spec, data_root)
    return _SOURCES[key]


def frozen_episodes(source, eval_seed: int, count: int) -> Iterator[Episode]:
    """Test episodes 0..count-1 of a benchmark, each a pure function of (spec, eval seed, index); drawn
    lazily so that hundreds of image episodes never sit in memory at once."""
    for index in range(count):
        yield source.test_episode(index, eval_seed)


def test_digest(cell: Cell, data_root: str | None = None) -> str:
    source = task_source(cell.spec, data_root)
    return digest(frozen_episodes(source, cell.spec["eval_seed"], cell.budget["test_episodes"]))


# ---------------------------------------------------------------------------------------------------------


def build_learner(cell: Cell, source, device: torch.device) -> tuple[Learner, dict[str, torch.Generator]]:
    cls = algorithms.get(cell.algorithm)
    gens = named_generators(cell.seed, STREAMS)
    hparams = cls.Hparams(**cell.hparams)
    learner = cls(source.problem(), hparams, device, {"init": gens["init"], "algorithm": gens["algorithm"]})
    learner.meta_iters = int(cell.budget["meta_iters"])
    return learner, gens


def checkpoint_path(checkpoint_dir: Path, cell: Cell) -> Path:
    return checkpoint_dir / f"{cell.benchmark}__{cell.algorithm}__seed{cell.seed}.pt"


def save_checkpoint(path: Path, cell: Cell, learner: Learner, gens, iteration: int, curves: list[dict],
                    train_seconds: float, pending: dict[str, Any] | None = None,
                    extra: dict[str, Any] | None = None) -> None:
    """Everything a resumed cell needs to continue bit for bit: learner (modules, optimizers, its own
    generators), the harness's RNG streams, the iteration, the curves and the not-yet-logged loss sums."""
    state = {"config_hash": cell.config_hash, "iteration": iteration, "learner": learner.state_dict(),
             "streams": {k: g.get_state() for k, g in gens.items()}, "curves": curves,
             "train_seconds": train_seconds, "pending": pending or {"sums": {}, "count": 0}, **(extra or {})}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    # weights_only: a checkpoint is data; a crafted pickle is refused instead of executed
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise RuntimeError(f"checkpoint {path} cannot be loaded safely ({type(exc).__name__}: "
                           f"{str(exc).splitlines()[0]}); delete it to retrain that cell") from None


def _finite_or_raise(values: dict[str, float], iteration: int) -> None:
    for name, value in values.items():
        if not math.isfinite(value):
            raise FloatingPointError(f"training {name} became {value} at meta-iteration {iteration}; "
                                     f"lower the learning rate or check the data")


# Budget keys that only change evaluation or tuning, never what meta-training produces.
EVALUATION_BUDGET_KEYS = ("test_episodes", "validation_tasks")


def shared_training_path(checkpoint_dir: Path, cell: Cell, source) -> Path | None:
    """Where the finished meta-training of `cell` is kept for other cells that would train exactly the same.

    A task source whose benchmarks differ only at test time (the MNIST transfer benchmarks all meta-train on the
    same base problem) says so with `training_key()`; cells with the same algorithm, hyper-parameters, seed,
    training budget and training key then train once per run folder and every other one loads the result.
    Training is deterministic per seed, so a loaded learner is the one the cell would have trained itself."""
    training_key = getattr(source, "training_key", None)
    if training_key is None:
        return None
    budget = {k: v for k, v in cell.budget.items() if k not in EVALUATION_BUDGET_KEYS}
    identity = json.dumps({"data": training_key(), "problem": dataclasses.asdict(source.problem()),
                           "algorithm": cell.algorithm, "hparams": cell.hparams, "seed": cell.seed,
                           "budget": budget}, sort_keys=True, default=str)
    digest_ = hashlib.sha256(identity.encode()).hexdigest()[:16]
    return checkpoint_dir / f"trained__{cell.algorithm}__seed{cell.seed}__{digest_}.pt"


def claim_shared_training(shared: Path, poll_seconds: float = 5.0) -> Path | None:
    """Before training a shareable cell: claim its training with a marker file (returned, to remove when done),
    or, when another live process on this machine holds the claim (parallel cells, --jobs), wait until that
    training is written. A claim whose process is gone (a crash) is ignored: this cell then trains itself."""
    marker = shared.with_name(shared.name + ".training")
    shared.parent.mkdir(parents=True, exist_ok=True)
    while not shared.exists() and not STOP.is_set():
        try:
            with open(marker, "x") as f:
                f.write(f"{socket.gethostname()} {os.getpid()}\n")
            return marker
        except FileExistsError:
            pass
        try:
            host, pid = marker.read_text().split()
            alive = host == socket.gethostname() and pid_alive(int(pid))
        except FileNotFoundError:
            continue  # released just now: look again
        except ValueError:  # being written this instant, or left empty by a crash: the latter once it is old
            try:
                alive = time.time() - marker.stat().st_mtime < 10 * poll_seconds
            except FileNotFoundError:
                continue
        if not alive:
            marker.unlink(missing_ok=True)
            continue
        time.sleep(poll_seconds)
    return None


def train(cell: Cell, learner: Learner, gens, source, device, checkpoint_dir: Path | None, progress: bool,
          result: CellResult) -> None:
    shared = shared_training_path(checkpoint_dir, cell, source) if checkpoint_dir else None
    claim = claim_shared_training(shared) if shared is not None else None
    try:
        _train_or_load(cell, learner, gens, source, device, checkpoint_dir, progress, result, shared)
    finally:
        if claim is not None:
            claim.unlink(missing_ok=True)


def _train_or_load(cell: Cell, learner: Learner, gens, source, device, checkpoint_dir: Path | None,
                   progress: bool, result: CellResult, shared: Path | None) -> None:
    if shared is not None and shared.exists():
        state = load_checkpoint(shared)
        learner.load_state_dict(state["learner"])
        for name, g in gens.items():
            g.set_state(state["streams"][name])
        result.train_seconds = float(state["train_seconds"])
        result.meta_iters = int(state["iteration"])
        result.trained_in = str(state.get("cell", ""))
        result.curves = [{"benchmark": cell.benchmark, "algorithm": cell.algorithm, "seed": cell.seed, **row}
                         for row in state["curves"]]
        return
    budget = cell.budget
    total, log_every = int(budget["meta_iters"]), max(1, int(budget["log_every"]))
    every = int(budget.get("checkpoint_every") or 0)
    start, curves, spent = 0, [], 0.0
    sums: dict[str, float] = {}
    count = 0
    ckpt = checkpoint_path(checkpoint_dir, cell) if checkpoint_dir else None
    if ckpt is not None and ckpt.exists():
        state = load_checkpoint(ckpt)
        if state.get("config_hash") == cell.config_hash:
            learner.load_state_dict(state["learner"])
            for name, g in gens.items():
                g.set_state(state["streams"][name])
            start, curves, spent = int(state["iteration"]), list(state["curves"]), float(state["train_seconds"])
            sums, count = dict(state["pending"]["sums"]), int(state["pending"]["count"])
            result.resumed_from = start
    tic = time.perf_counter()

    def checkpoint(iteration: int) -> None:
        if ckpt is not None:
            save_checkpoint(ckpt, cell, learner, gens, iteration, curves, spent + time.perf_counter() - tic,
                            {"sums": sums, "count": count})

    bar = tqdm(total=total, initial=start, desc=cell.key, unit="it", disable=not progress, leave=False,
               mininterval=1.0, dynamic_ncols=True)
    for it in range(start, total):
        batch = source.sample_train(learner.batch_request(), gens["train_episodes"]).to(device)
        values = learner.meta_train_step(batch)
        _finite_or_raise(values, it + 1)
        for k, v in values.items():
            sums[k] = sums.get(k, 0.0) + float(v)
        count += 1
        if (it + 1) % log_every == 0 or it + 1 == total:
            for k, v in sums.items():
                curves.append({"iteration": it + 1, "split": "train", "metric": k, "value": v / count})
            bar.set_postfix({k: f"{v / count:.4g}" for k, v in sums.items()}, refresh=False)
            sums, count = {}, 0
        bar.update(1)
        if STOP.is_set() and it + 1 < total:
            checkpoint(it + 1)
            bar.close()
            raise RunInterrupted(f"stopped at meta-iteration {it + 1} of {total}")
        if every and (it + 1) % every == 0 and it + 1 < total:
            checkpoint(it + 1)
    bar.close()
    result.train_seconds = spent + time.perf_counter() - tic
    result.meta_iters = total
    result.curves = [{"benchmark": cell.benchmark, "algorithm": cell.algorithm, "seed": cell.seed, **row}
                     for row in curves]
    if ckpt is not None:
        checkpoint(total)
    if shared is not None:
        save_checkpoint(shared, cell, learner, gens, total, curves, result.train_seconds, extra={"cell": cell.key})


def evaluate_regression(cell: Cell, learner: Learner, source, device, result: CellResult) -> str:
    """mse@S for S = 0..eval_steps on every frozen task, plus fitted curves of the first tasks for plots."""
    episodes = list(frozen_episodes(source, cell.spec["eval_seed"], cell.budget["test_episodes"]))
    base = {"benchmark": cell.benchmark, "algorithm": cell.algorithm, "seed": cell.seed}
    steps = list(range(int(cell.spec["eval_steps"]) + 1))
    for i, episode in enumerate(episodes):
        episode = episode.to(device)
        predictions = learner.predict_steps(episode, steps)
        for s in steps:
            mse = float(((predictions[s] - episode.query_y) ** 2).mean())
            result.episodes.append({**base, "episode": i, "metric": f"mse@{s}", "value": mse})
    for i, episode in enumerate(episodes[:FIT_TASKS]):
        curve = source.curve(episode).to(device)
        predictions = learner.predict_steps(curve, list(FIT_STEPS))
        x = curve.query_x.view(-1).tolist()
        for s in FIT_STEPS:
            for xi, yi in zip(x, predictions[s].view(-1).tolist()):
                result.fits.append({**base, "task": i, "steps": s, "series": "prediction", "x": xi, "y": yi})
        for xi, yi in zip(x, curve.query_y.view(-1).tolist()):
            result.fits.append({**base, "task": i, "steps": -1, "series": "truth", "x": xi, "y": yi})
        for xi, yi in zip(curve.support_x.view(-1).tolist(), curve.support_y.view(-1).tolist()):
            result.fits.append({**base, "task": i, "steps": -1, "series": "support", "x": xi, "y": yi})
    return digest(episodes)


def evaluate_classification(cell: Cell, learner: Learner, source, device, result: CellResult) -> str:
    """Query accuracy (%) on every frozen episode, plus whatever extra metrics the learner reports."""
    hasher = EpisodeDigest()
    base = {"benchmark": cell.benchmark, "algorithm": cell.algorithm, "seed": cell.seed}
    for i, episode in enumerate(frozen_episodes(source, cell.spec["eval_seed"], cell.budget["test_episodes"])):
        hasher.update(episode)
        episode = episode.to(device)
        logits = learner.predict(episode)
        accuracy = 100.0 * float((logits.argmax(-1) == episode.query_y).float().mean())
        result.episodes.append({**base, "episode": i, "metric": "accuracy", "value": accuracy})
        for metric, value in learner.extra_metrics(episode).items():
            result.episodes.append({**base, "episode": i, "metric": metric, "value": float(value)})
    return hasher.hexdigest()


# Evaluation by benchmark kind; a task source with its own `evaluate(cell, learner, device, result) -> digest`
# (e.g. the optimizer benchmarks, whose test "episodes" are optimisation runs) takes precedence.
EVALUATORS = {"regression": evaluate_regression, "classification": evaluate_classification}


def evaluate(cell: Cell, learner: Learner, source, device, result: CellResult) -> None:
    tic = time.perf_counter()
    if hasattr(source, "evaluate"):
        result.digest = source.evaluate(cell, learner, device, result)
    elif source.kind in EVALUATORS:
        result.digest = EVALUATORS[source.kind](cell, learner, source, device, result)
    else:
        raise NotImplementedError(f"no evaluation for {source.kind!r} benchmarks")
    base = {"benchmark": cell.benchmark, "algorithm": cell.algorithm, "seed": cell.seed}
    for name, rows in learner.diagnostics().items():
        result.tables.setdefault(name, []).extend({**base, **row} for row in rows)
    result.eval_seconds = time.perf_counter() - tic


def run_cell(cell: Cell, data_root: str | None = None, device: str = "cpu", checkpoint_dir: Path | None = None,
             progress: bool = True) -> CellResult:
    """Train and evaluate one cell. Never raises for a failing cell: the error goes into the result."""
    result = CellResult(cell)
    kernel_calls = native.calls
    try:
        with cell_threads(cell.budget.get("cpus")):
            _train_and_evaluate(cell, data_root, device, checkpoint_dir, progress, result)
        result.native_kernel_used = native.calls > kernel_calls
    except (KeyboardInterrupt, RunInterrupted):
        raise
    except Exception as exc:  # the cell fails, the suite goes on; the reason is kept in summary.csv
        result.status = "failed"
        result.error = f"{type(exc).__name__}: {exc}".splitlines()[0]
        result.episodes, result.fits, result.tables = [], [], {}
        result.traceback = traceback.format_exc()
    return result


def _train_and_evaluate(cell: Cell, data_root, device: str, checkpoint_dir, progress: bool,
                        result: CellResult) -> None:
    # Deterministic kernels where PyTorch has a choice (a warning, not an error, where it has none).
    torch.use_deterministic_algorithms(True, warn_only=True)
    dev = torch.device(device)
    source = task_source(cell.spec, data_root)
    learner, gens = build_learner(cell, source, dev)
    with precision(dev, cell.budget.get("autocast")):
        train(cell, learner, gens, source, dev, checkpoint_dir, progress, result)
        result.tuned = learner.tune(source.sample_validation(int(cell.budget["validation_tasks"]),
                                                             gens["validation"]).to(dev))
        evaluate(cell, learner, source, dev, result)


def precision(device: torch.device, autocast: str | None):
    """The numeric precision of a cell (budget key `autocast`): float32, or mixed precision where
    torch.autocast runs matrix products and convolutions in bfloat16 (parameters, optimizer state and losses
    stay float32, so no loss scaling is needed)."""
    if autocast not in AUTOCAST_CHOICES:
        raise ValueError(f"budget.autocast: {autocast!r} is not null or 'bf16'")
    if autocast is None:
        return contextlib.nullcontext()
    # no cast cache: it keeps the bfloat16 copy of each parameter for as long as the context is open, so the whole
    # of training would run on the initial weights' copies
    return torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=False)


# ---------------------------------------------------------------------------------------------------------
# the run folder


def published_values(path: Path | None = None) -> pd.DataFrame:
    path = path or resources.published_csv()  # the checkout's file, or the wheel's copy
    if not path.is_file():
        return pd.DataFrame(columns=["algorithm", "benchmark", "metric", "value", "ci95"])
    table = pd.read_csv(path)
    # alternative published numbers (other protocols, other papers) have primary=0: one row per merge key
    return table[table["primary"] == 1] if "primary" in table else table


def summary_table(results: list[CellResult]) -> pd.DataFrame:
    """summary.csv: one row per (cell, metric), then seed 'all' rows across seeds, with published values."""
    ok = [r for r in results if r.status == "ok" and r.episodes]
    frames = []
    if ok:
        episodes = pd.DataFrame([row for r in ok for row in r.episodes], columns=EPISODE_COLUMNS)
        per_seed = stats.summarize_episodes(episodes)
        per_seed["seed"] = per_seed["seed"].astype(object)
        timing = pd.DataFrame([{"benchmark": r.cell.benchmark, "algorithm": r.cell.algorithm, "seed": r.cell.seed,
                                "train_seconds": round(r.train_seconds, 3), "eval_seconds": round(r.eval_seconds, 3),
                                "meta_iters": r.meta_iters, "status": r.status, "error": r.error} for r in ok])
        timing["seed"] = timing["seed"].astype(object)
        per_seed = per_seed.merge(timing, on=["benchmark", "algorithm", "seed"], how="left")
        per_seed["seeds"] = per_seed["seed"].astype(str)
        frames.append(per_seed)
        overall = stats.across_seeds(per_seed)
        sums = per_seed.groupby(["benchmark", "algorithm", "metric"], sort=False).agg(
            train_seconds=("train_seconds", "sum"), eval_seconds=("eval_seconds", "sum"),
            meta_iters=("meta_iters", "max")).reset_index()
        overall = overall.merge(sums, on=["benchmark", "algorithm", "metric"], how="left")
        overall["status"], overall["error"] = "ok", ""
        frames.append(overall)
    failed = [r for r in results if r.status != "ok"]
    if failed:
        frames.append(pd.DataFrame([{"benchmark": r.cell.benchmark, "algorithm": r.cell.algorithm,
                                     "seed": r.cell.seed, "metric": "", "n": 0, "seeds": str(r.cell.seed),
                                     "train_seconds": round(r.train_seconds, 3), "eval_seconds": 0.0,
                                     "meta_iters": r.meta_iters, "status": r.status, "error": r.error}
                                    for r in failed]))
    if not frames:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    table = pd.concat(frames, ignore_index=True).reindex(columns=SUMMARY_COLUMNS[:-3])
    published = published_values()[["algorithm", "benchmark", "metric", "value", "ci95"]]
    published = published.rename(columns={"value": "paper_value", "ci95": "paper_ci95"})
    table = table.merge(published, on=["algorithm", "benchmark", "metric"], how="left")
    table["delta"] = table["mean"] - table["paper_value"]
    return table.reindex(columns=SUMMARY_COLUMNS)


def write_results(run: RunDir, results: list[CellResult]) -> None:
    ok = [r for r in results if r.status == "ok"]
    run.write_table("episodes.csv", pd.DataFrame([x for r in ok for x in r.episodes], columns=EPISODE_COLUMNS))
    run.write_table("curves.csv", pd.DataFrame([x for r in results for x in r.curves], columns=CURVE_COLUMNS))
    fits = [x for r in ok for x in r.fits]
    if fits:
        run.write_table("fits.csv", pd.DataFrame(fits, columns=FIT_COLUMNS))
    for name in sorted({name for r in ok for name in r.tables}):
        run.write_table(f"{name}.csv", pd.DataFrame([x for r in ok for x in r.tables.get(name, [])]))
    run.write_table("summary.csv", summary_table(results))


def manifest(cells: list[Cell], results: list[CellResult], meta: dict[str, Any]) -> dict[str, Any]:
    done = {r.cell.key: r for r in results}
    entries = []
    for cell in cells:
        r = done.get(cell.key)
        entries.append({"key": cell.key, "benchmark": cell.benchmark, "algorithm": cell.algorithm,
                        "seed": cell.seed, "config_hash": cell.config_hash, "config": cell.resolved(),
                        "status": r.status if r else "pending", "error": r.error if r else "",
                        "test_episode_digest": r.digest if r else "", "tuned": r.tuned if r else {},
                        "resumed_from_iteration": r.resumed_from if r else 0,
                        "native_kernel_used": r.native_kernel_used if r else None,
                        "seed_streams": list(STREAMS)})
    return {**meta, "cells": entries}


def cell_file(run: RunDir, cell: Cell) -> Path:
    return run.path / "cells" / f"{cell.benchmark}__{cell.algorithm}__seed{cell.seed}.json"


def finished_results(run: RunDir, cells: list[Cell]) -> dict[str, CellResult]:
    """Results of cells a previous run of this folder finished (ok or failed), keyed by cell key."""
    done = {}
    for cell in cells:
        path = cell_file(run, cell)
        if path.is_file():
            data = read_json(path, "finished-cell record")  # a damaged record: one line naming it (bench.readers)
            if data.pop("config_hash", None) == cell.config_hash:
                done[cell.key] = CellResult.from_json(cell, data)
    return done


def changed_cells(previous: dict[str, Any], cells: list[Cell]) -> list[str]:
    """For --resume: the cells whose resolved configuration differs from the manifest's, with the keys."""
    before = {c["key"]: c for c in previous.get("cells", [])}
    now = {c.key: c for c in cells}
    problems = []
    for key in sorted(set(before) | set(now)):
        if key not in now:
            problems.append(f"{key} (no longer in the grid)")
        elif key not in before:
            problems.append(f"{key} (not in the original grid)")
        elif before[key]["config_hash"] != now[key].config_hash:
            diff = _differing_keys(before[key]["config"], json.loads(json.dumps(now[key].resolved(), default=str)))
            problems.append(f"{key} ({', '.join(diff) or 'configuration'})")
    return problems


def _differing_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += _differing_keys(a.get(k), b.get(k), f"{prefix}.{k}" if prefix else str(k))
        return out
    return [] if a == b else [f"{prefix}: {a!r} -> {b!r}"]


def run_grid(config: Config, cells: list[Cell], out: Path, *, suite: str, profile: str, data_root=None,
             device: str = "cpu", executor=None, progress: bool = True, sets: tuple[str, ...] = (),
             on_result: Callable[[CellResult], None] | None = None, invocation: dict[str, Any] | None = None,
             resume: bool = False) -> list[CellResult]:
    """Run every cell through `executor` and keep the run folder current after each finished cell.

    Each finished cell is also kept as cells/<key>.json, so `resume=True` skips finished cells (matched by
    their config hash) and unfinished ones continue from their last checkpoint. The CSVs list cells in grid
    order whatever order they finish in, so every executor writes the same files.
    """
    from bench.executors import LocalExecutor

    executor = executor or LocalExecutor()
    run = RunDir(out).open_for_writing()
    try:
        previous = run.read_manifest() if resume else {}
        results = finished_results(run, cells) if resume else {}
        meta = {"run_id": out.name, "suite": suite, "profile": profile, "config_file": str(config.path),
                "config_files": [str(config.path), *map(str, config.overlays)],
                "config_hash": _grid_hash(cells), "set": list(sets), **git_commit(),
                "environment": environment(device), "provenance": provenance(), "data_root": str(datasets.data_root(data_root)),
                "invocation": invocation or {}, "started": previous.get("started", utc_now()),
                "resumed": previous.get("resumed", []) + ([utc_now()] if resume else []), "finished": None}
        order = {c.key: i for i, c in enumerate(cells)}

        def ordered() -> list[CellResult]:
            return sorted(results.values(), key=lambda r: order[r.cell.key])

        run.write_manifest(manifest(cells, ordered(), meta))
        todo = [c for c in cells if c.key not in results]
        for result in executor.run(todo, data_root=data_root, device=device, checkpoint_dir=run.checkpoints,
                                   progress=progress):
            results[result.cell.key] = result
            atomic_write_text(cell_file(run, result.cell),
                              json.dumps({"config_hash": result.cell.config_hash, **result.to_json()}) + "\n")
            write_results(run, ordered())
            run.write_manifest(manifest(cells, ordered(), meta))
            if on_result:
                on_result(result)
        write_results(run, ordered())
        meta["finished"] = utc_now()
        run.write_manifest(manifest(cells, ordered(), meta))
    finally:
        run.close()
    return ordered()


def _grid_hash(cells: list[Cell]) -> str:
    return hashlib.sha256("".join(sorted(c.config_hash for c in cells)).encode()).hexdigest()[:16]


def default_out(label: str) -> Path:
    """results/runs/<run-id> under the working directory."""
    return Path("results") / "runs" / new_run_id(label)
