"""One cell = (benchmark, algorithm, seed, profile): build the learner, meta-train it for the profile's budget
(with checkpoints, and shared training between cells that would train identically), tune, evaluate.

`run_cell` is pure computation (it writes only its own checkpoints) and returns a CellResult, so executors can
run it anywhere; only bench.grid writes the run folder.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import socket
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

import algorithms
from algorithms import native
from algorithms.base import LEARNER_PROTOCOLS, Learner
from bench import data as datasets
from bench.config import AUTOCAST_CHOICES, Cell
from bench.episodes import digest, named_generators
from bench.evaluate import evaluate, frozen_episodes
from bench.rundir import pid_alive
from bench.stop import STOP, RunInterrupted

STREAMS = ("init", "train_episodes", "validation", "algorithm")

# Budget keys that only change evaluation or tuning, never what meta-training produces.
EVALUATION_BUDGET_KEYS = ("test_episodes", "validation_tasks")


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
    reused_from: dict[str, Any] = field(default_factory=dict)  # the run that trained it, if copied (bench.reuse)

    def to_json(self) -> dict[str, Any]:
        """Everything but the cell itself (which the manifest holds), for cells/<key>.json."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "cell"}

    @classmethod
    def from_json(cls, cell: Cell, data: dict[str, Any]) -> CellResult:
        return cls(cell=cell, **data)


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
# sources and learners

_SOURCES: dict[str, Any] = {}  # task sources are shared by every cell of a process: data is read once


def task_source(spec: dict[str, Any], data_root: str | None):
    key = json.dumps([spec, str(data_root)], sort_keys=True, default=str)
    if key not in _SOURCES:
        _SOURCES[key] = datasets.open_source(spec, data_root)
    return _SOURCES[key]


def test_digest(cell: Cell, data_root: str | None = None) -> str:
    source = task_source(cell.spec, data_root)
    return digest(frozen_episodes(source, cell.spec["eval_seed"], cell.budget["test_episodes"]))


def build_learner(cell: Cell, source, device: torch.device) -> tuple[Learner, dict[str, torch.Generator]]:
    cls = algorithms.get(cell.algorithm)
    gens = named_generators(cell.seed, STREAMS)
    hparams = cls.Hparams(**cell.hparams)
    learner = cls(source.problem(), hparams, device, {"init": gens["init"], "algorithm": gens["algorithm"]})
    protocol = LEARNER_PROTOCOLS[cell.spec["kind"]]
    if not isinstance(learner, protocol):  # say so now, not after meta-training, when evaluation needs the hook
        raise TypeError(f"{cell.algorithm} does not implement {protocol.__name__} (algorithms.base), which "
                        f"{cell.spec['kind']} benchmarks need")
    learner.meta_iters = int(cell.budget["meta_iters"])
    return learner, gens


# ---------------------------------------------------------------------------------------------------------
# checkpoints


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


def _restore(state: dict[str, Any], learner: Learner, gens: dict[str, torch.Generator]) -> None:
    learner.load_state_dict(state["learner"])
    for name, g in gens.items():
        g.set_state(state["streams"][name])


def shared_training_path(checkpoint_dir: Path, cell: Cell, source) -> Path | None:
    """Where the finished meta-training of `cell` is kept for other cells that would train exactly the same.

    Optimizer benchmarks differ only at test time (the MNIST transfer benchmarks all meta-train on the same base
    problem): their task source says what meta-training sees with `training_key()` (bench.data.base.
    OptimizerTaskSource); cells with the same algorithm, hyper-parameters, seed, training budget and training key
    then train once per run folder and every other one loads the result. Training is deterministic per seed, so
    a loaded learner is the one the cell would have trained itself. Other kinds: None (each cell trains)."""
    if cell.spec["kind"] != "optimizer":
        return None
    budget = {k: v for k, v in cell.budget.items() if k not in EVALUATION_BUDGET_KEYS}
    identity = json.dumps({"data": source.training_key(), "problem": dataclasses.asdict(source.problem()),
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


# ---------------------------------------------------------------------------------------------------------
# training: generators that yield CellResult fields as soon as they are known, so that a cell failing later
# still reports what it got (run_cell keeps them)


@dataclass
class _Progress:
    """The training loop's state: what a checkpoint holds besides the learner and the RNG streams."""

    iteration: int = 0
    curves: list[dict] = field(default_factory=list)
    spent: float = 0.0                                       # train seconds of earlier processes (resume)
    sums: dict[str, float] = field(default_factory=dict)     # losses since the last logged curve point
    count: int = 0


def _tagged(cell: Cell, curves: list[dict]) -> list[dict]:
    return [{"benchmark": cell.benchmark, "algorithm": cell.algorithm, "seed": cell.seed, **row} for row in curves]


def train(cell: Cell, learner: Learner, gens, source, device, checkpoint_dir: Path | None,
          progress: bool) -> Iterator[dict[str, Any]]:
    """Meta-train `cell`, or load the training an identical cell already wrote (shared_training_path)."""
    shared = shared_training_path(checkpoint_dir, cell, source) if checkpoint_dir else None
    claim = claim_shared_training(shared) if shared is not None else None
    try:
        if shared is not None and shared.exists():
            state = load_checkpoint(shared)
            _restore(state, learner, gens)
            yield {"train_seconds": float(state["train_seconds"]), "meta_iters": int(state["iteration"]),
                   "trained_in": str(state.get("cell", "")), "curves": _tagged(cell, state["curves"])}
        else:
            yield from _train_loop(cell, learner, gens, source, device, checkpoint_dir, progress, shared)
    finally:
        if claim is not None:
            claim.unlink(missing_ok=True)


def _resume(ckpt: Path | None, cell: Cell, learner: Learner, gens) -> _Progress:
    """The state of the cell's own checkpoint when it was written for this configuration, else a fresh start."""
    if ckpt is None or not ckpt.exists():
        return _Progress()
    state = load_checkpoint(ckpt)
    if state.get("config_hash") != cell.config_hash:
        return _Progress()
    _restore(state, learner, gens)
    return _Progress(int(state["iteration"]), list(state["curves"]), float(state["train_seconds"]),
                     dict(state["pending"]["sums"]), int(state["pending"]["count"]))


def _train_loop(cell: Cell, learner: Learner, gens, source, device, checkpoint_dir: Path | None, progress: bool,
                shared: Path | None) -> Iterator[dict[str, Any]]:
    total, log_every = int(cell.budget["meta_iters"]), max(1, int(cell.budget["log_every"]))
    every = int(cell.budget.get("checkpoint_every") or 0)
    ckpt = checkpoint_path(checkpoint_dir, cell) if checkpoint_dir else None
    state = _resume(ckpt, cell, learner, gens)
    yield {"resumed_from": state.iteration}
    tic = time.perf_counter()

    def checkpoint(iteration: int) -> None:
        if ckpt is not None:
            save_checkpoint(ckpt, cell, learner, gens, iteration, state.curves,
                            state.spent + time.perf_counter() - tic, {"sums": state.sums, "count": state.count})

    bar = tqdm(total=total, initial=state.iteration, desc=cell.key, unit="it", disable=not progress,
               leave=False, mininterval=1.0, dynamic_ncols=True)
    points = curve_iterations(cell)
    for it in range(state.iteration, total):
        _meta_step(learner, source, gens, device, state, it + 1, log_every, total, bar)
        if it + 1 in points:  # before any checkpoint of this iteration, so a resumed run has the point too
            state.curves.append(validation_point(cell, learner, source, device, it + 1))
        if STOP.is_set() and it + 1 < total:
            checkpoint(it + 1)
            bar.close()
            raise RunInterrupted(f"stopped at meta-iteration {it + 1} of {total}")
        if every and (it + 1) % every == 0 and it + 1 < total:
            checkpoint(it + 1)
    bar.close()
    seconds = state.spent + time.perf_counter() - tic
    if ckpt is not None:
        checkpoint(total)
    if shared is not None:
        save_checkpoint(shared, cell, learner, gens, total, state.curves, seconds, extra={"cell": cell.key})
    yield {"train_seconds": seconds, "meta_iters": total, "curves": _tagged(cell, state.curves)}


def curve_iterations(cell: Cell) -> set[int]:
    """The meta-iterations at which the validation curve is measured: `curve_points` evenly spaced ones ending
    at the last (none for a kind other than classification, or when the budget asks for none)."""
    total, points = int(cell.budget["meta_iters"]), int(cell.budget.get("curve_points") or 0)
    if cell.spec.get("kind") != "classification" or not points or not total:
        return set()
    return {max(1, round(total * k / points)) for k in range(1, points + 1)}


@contextmanager
def _modes_kept(learner: Learner):
    """Whatever train/eval modes evaluating sets, training resumes with the modules' own."""
    modes = [(m, m.training) for module in learner.modules().values() for m in module.modules()]
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


def validation_point(cell: Cell, learner: Learner, source, device, iteration: int) -> dict[str, Any]:
    """Mean query accuracy (%) on `curve_tasks` validation tasks, the same tasks at every point (their own
    generator, so training's random streams are untouched)."""
    generator = named_generators(cell.seed, ("validation-curve",))["validation-curve"]
    batch = source.sample_validation(int(cell.budget.get("curve_tasks") or 25), generator).to(device)
    with _modes_kept(learner):
        scores = [float((learner.predict(task).argmax(-1) == task.query_y).float().mean()) for task in batch.tasks()]
    return {"iteration": iteration, "split": "validation", "metric": "accuracy",
            "value": 100.0 * sum(scores) / len(scores)}


def _meta_step(learner: Learner, source, gens, device, state: _Progress, done: int, log_every: int, total: int,
               bar) -> None:
    """One meta-iteration; every `log_every` iterations the mean of each loss becomes a curve point."""
    batch = source.sample_train(learner.batch_request(), gens["train_episodes"]).to(device)
    values = learner.meta_train_step(batch)
    for name, value in values.items():
        if not math.isfinite(value):
            raise FloatingPointError(f"training {name} became {value} at meta-iteration {done}; "
                                     f"lower the learning rate or check the data")
    for k, v in values.items():
        state.sums[k] = state.sums.get(k, 0.0) + float(v)
    state.count += 1
    if done % log_every == 0 or done == total:
        for k, v in state.sums.items():
            state.curves.append({"iteration": done, "split": "train", "metric": k, "value": v / state.count})
        bar.set_postfix({k: f"{v / state.count:.4g}" for k, v in state.sums.items()}, refresh=False)
        state.sums, state.count = {}, 0
    bar.update(1)


# ---------------------------------------------------------------------------------------------------------
# the cell


def run_cell(cell: Cell, data_root: str | None = None, device: str = "cpu", checkpoint_dir: Path | None = None,
             progress: bool = True) -> CellResult:
    """Train and evaluate one cell. Never raises for a failing cell: the error goes into the result."""
    result = CellResult(cell)
    kernel_calls = native.calls
    try:
        with cell_threads(cell.budget.get("cpus")):
            for outcome in _stages(cell, data_root, torch.device(device), checkpoint_dir, progress):
                result = dataclasses.replace(result, **outcome)
        result.native_kernel_used = native.calls > kernel_calls
    except (KeyboardInterrupt, RunInterrupted):
        raise
    except Exception as exc:  # the cell fails, the suite goes on; the reason is kept in summary.csv
        result = dataclasses.replace(result, status="failed", error=f"{type(exc).__name__}: {exc}".splitlines()[0],
                                     episodes=[], fits=[], tables={}, traceback=traceback.format_exc())
    return result


def _stages(cell: Cell, data_root, device: torch.device, checkpoint_dir: Path | None,
            progress: bool) -> Iterator[dict[str, Any]]:
    """Build, meta-train, tune, evaluate; yields CellResult fields after each stage."""
    # Deterministic kernels where PyTorch has a choice (a warning, not an error, where it has none).
    torch.use_deterministic_algorithms(True, warn_only=True)
    source = task_source(cell.spec, data_root)
    learner, gens = build_learner(cell, source, device)
    with precision(device, cell.budget.get("autocast")):
        yield from train(cell, learner, gens, source, device, checkpoint_dir, progress)
        validation = source.sample_validation(int(cell.budget["validation_tasks"]), gens["validation"])
        yield {"tuned": learner.tune(validation.to(device))}
        tic = time.perf_counter()
        evaluation = evaluate(cell, learner, source, device)
        yield {"episodes": evaluation.episodes, "fits": evaluation.fits, "tables": evaluation.tables,
               "digest": evaluation.digest, "eval_seconds": time.perf_counter() - tic}
