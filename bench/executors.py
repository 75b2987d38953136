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

import os
import signal
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

from bench.allocator import keep_freed_memory
from bench.config import Cell

CellFunction = Callable[..., Any]   # run_cell(cell, data_root=, device=, checkpoint_dir=, progress=) -> CellResult


class LocalExecutor:
    """Sequential, in this process."""

    name = "local"

    def run(self, run_cell: CellFunction, cells: list[Cell], *, data_root=None, device: str = "cpu",
            checkpoint_dir: Path | None = None, progress: bool = True) -> Iterator:
        for cell in cells:
            yield run_cell(cell, data_root=data_root, device=device, checkpoint_dir=checkpoint_dir,
                           progress=progress)


def _ignore_sigint() -> None:
    # Ctrl-C is the driver's business: it stops handing out cells and shuts the pool down.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _run_in_worker(run_cell: CellFunction, cell: Cell, data_root, device: str, checkpoint_dir, threads: int):
    keep_freed_memory()
    cell.budget["cpus"] = min(int(cell.budget.get("cpus") or threads), threads)
    return run_cell(cell, data_root=data_root, device=device, checkpoint_dir=checkpoint_dir, progress=False)


class ProcessPoolCellExecutor:
    """A pool of `jobs` processes, one cell each at a time."""

    name = "pool"

    def __init__(self, jobs: int):
        self.jobs = max(1, int(jobs))

    def run(self, run_cell: CellFunction, cells, *, data_root=None, device="cpu", checkpoint_dir=None,
            progress=True):
        threads = max(1, (os.cpu_count() or 1) // self.jobs)
        with ProcessPoolExecutor(self.jobs, initializer=_ignore_sigint) as pool:
            pending = {pool.submit(_run_in_worker, run_cell, cell, data_root, device, checkpoint_dir, threads)
                       for cell in cells}
            try:
                while pending:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        yield future.result()
            except BaseException:
                for future in pending:
                    future.cancel()
                raise


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
                done, _ = ray.wait(list(refs), num_returns=1)
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
