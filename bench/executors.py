"""Where cells run. Every executor yields CellResults as cells finish; only the driver writes the run folder.

An executor is handed the cell function (bench.cell.run_cell, by bench.grid) with the cells, so this module
never imports the harness back; worker processes receive it by reference (a module-level function pickles as
its qualified name), so they run the same code as the driver.

- local:   sequential, in this process (the default).
- --jobs N: a process pool, one cell per process; each cell keeps its budget's thread count (`cpus`), capped
            at this machine's cores divided by N so the processes do not oversubscribe them.
- ray:     each cell a Ray task asking for the CPUs/GPUs its budget declares (`cpus`, `gpus`), on a local Ray
            instance or an existing cluster (`--address auto` or HOST:PORT). Results stream back to the driver.
"""
from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

from bench.allocator import keep_freed_memory
from bench.config import Cell
from bench.stop import STOP, RunInterrupted

CellFunction = Callable[..., Any]   # run_cell(cell, data_root=, device=, checkpoint_dir=, progress=) -> CellResult


class LocalExecutor:
    """Sequential, in this process."""

    name = "local"

    def run(self, run_cell: CellFunction, cells: list[Cell], *, data_root=None, device: str = "cpu",
            checkpoint_dir: Path | None = None, progress: bool = True) -> Iterator:
        for cell in cells:
            yield run_cell(cell, data_root=data_root, device=device, checkpoint_dir=checkpoint_dir,
                           progress=progress)


def _init_worker(stop) -> None:
    """A pool worker ignores Ctrl-C (the terminal sends it to every process of the group; stopping is the driver's
    call) and relays the driver's stop request to its own STOP, so its cell checkpoints at the next meta-iteration
    instead of running to the end."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=lambda: (stop.wait(), STOP.set()), daemon=True, name="metabench-stop").start()


def _run_in_worker(run_cell: CellFunction, cell: Cell, data_root, device: str, checkpoint_dir, threads: int):
    keep_freed_memory()
    cell.budget["cpus"] = min(int(cell.budget.get("cpus") or threads), threads)
    return run_cell(cell, data_root=data_root, device=device, checkpoint_dir=checkpoint_dir, progress=False)


class ProcessPoolCellExecutor:
    """A pool of `jobs` processes, one cell each at a time.

    Ctrl-C (the driver's STOP) reaches the workers through a process-shared event: cells not started are
    cancelled, running ones checkpoint at their next meta-iteration, cells that finish meanwhile are still
    yielded, and then RunInterrupted is raised, as the in-process executor does."""

    name = "pool"
    poll_seconds = 0.2   # how often the driver looks at STOP while it waits for cells

    def __init__(self, jobs: int):
        self.jobs = max(1, int(jobs))

    def run(self, run_cell: CellFunction, cells, *, data_root=None, device="cpu", checkpoint_dir=None,
            progress=True):
        threads = max(1, (os.cpu_count() or 1) // self.jobs)
        context = multiprocessing.get_context()
        stop = context.Event()
        with ProcessPoolExecutor(self.jobs, mp_context=context, initializer=_init_worker,
                                 initargs=(stop,)) as pool:
            pending = {pool.submit(_run_in_worker, run_cell, cell, data_root, device, checkpoint_dir, threads)
                       for cell in cells}
            interrupted: RunInterrupted | None = None
            try:
                while pending:
                    done, pending = wait(pending, timeout=self.poll_seconds, return_when=FIRST_COMPLETED)
                    if STOP.is_set() and not stop.is_set():
                        stop.set()
                        interrupted = RunInterrupted("stopped by request")
                        pending = {f for f in pending if not f.cancel()}
                    for future in done:
                        if future.cancelled():
                            continue
                        try:
                            yield future.result()
                        except RunInterrupted as exc:
                            interrupted = exc
            except BaseException:
                for future in pending:
                    future.cancel()
                raise
            if interrupted is not None:
                raise interrupted


def _ray():
    try:
        import ray  # optional dependency (the [ray] extra)
    except ImportError:
        raise ImportError("the Ray executor needs Ray: pip install -e '.[ray]' (or pip install ray)") from None
    return ray


class RayExecutor:
    """Each cell a Ray task; `address` None starts a local instance, 'auto' or HOST:PORT joins a cluster."""

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None):
        self.address, self.num_cpus = address, num_cpus

    def run(self, run_cell: CellFunction, cells, *, data_root=None, device="cpu", checkpoint_dir=None,
            progress=True):
        ray = _ray()
        started_here = not ray.is_initialized()
        if started_here:
            kwargs = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
            if self.address:
                ray.init(address=self.address, **kwargs)
            else:
                # Ray starts workers at nice 15, so on a busy machine a cell would crawl behind everything else;
                # a local instance exists only to run our cells, at normal priority.
                os.environ.setdefault("RAY_worker_niceness", "0")
                ray.init(num_cpus=self.num_cpus, _node_ip_address="127.0.0.1", **kwargs)
        try:
            task = ray.remote(_run_in_ray)
            refs = {}
            for cell in cells:
                options = {"num_cpus": int(cell.budget.get("cpus") or 1),
                           "num_gpus": float(cell.budget.get("gpus") or 0)}
                refs[task.options(**options).remote(run_cell, cell, data_root, device, checkpoint_dir)] = cell
            while refs:
                # Ray tasks cannot be asked to checkpoint: on Ctrl-C they are cancelled (the except below) and
                # resume from their last periodic checkpoint.
                done, _ = ray.wait(list(refs), num_returns=1, timeout=ProcessPoolCellExecutor.poll_seconds)
                if STOP.is_set():
                    raise RunInterrupted("stopped by request")
                for ref in done:
                    refs.pop(ref)
                    yield ray.get(ref)
        except BaseException:
            for ref in list(locals().get("refs", {})):
                ray.cancel(ref, force=True)
            raise
        finally:
            if started_here:
                ray.shutdown()


def _run_in_ray(run_cell: CellFunction, cell: Cell, data_root, device: str, checkpoint_dir):
    keep_freed_memory()
    return run_cell(cell, data_root=data_root, device=device, checkpoint_dir=checkpoint_dir, progress=False)


def make_executor(name: str, jobs: int = 1, address: str | None = None):
    if name == "ray":
        return RayExecutor(address)
    if name != "local":
        raise ValueError(f"unknown executor {name!r}; use local or ray")
    return ProcessPoolCellExecutor(jobs) if jobs > 1 else LocalExecutor()
