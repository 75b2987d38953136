"""A run folder on disk: atomic writes, the manifest, and reading a finished run back.

Layout (DESIGN.md "Outputs"): manifest.json, episodes.csv, summary.csv, curves.csv, fits.csv (regression fit
plots), figures/, checkpoints/. Every file is replaced atomically (write a temp file, then rename), so a crash
never leaves a half-written CSV and every finished cell is on disk before the next one starts.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

EPISODE_COLUMNS = ["benchmark", "algorithm", "seed", "episode", "metric", "value"]
CURVE_COLUMNS = ["benchmark", "algorithm", "seed", "iteration", "split", "metric", "value"]
FIT_COLUMNS = ["benchmark", "algorithm", "seed", "task", "steps", "series", "x", "y"]
SUMMARY_COLUMNS = ["benchmark", "algorithm", "seed", "metric", "mean", "ci95", "n", "ci_method", "seeds",
                   "train_seconds", "eval_seconds", "meta_iters", "status", "error", "paper_value",
                   "paper_ci95", "delta"]


class RunDirError(RuntimeError):
    """The output folder cannot be used (unwritable, locked by another run, not a run folder)."""


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_csv(path: Path, frame: pd.DataFrame) -> None:
    # repr-exact floats so that the same run twice gives byte-identical files
    atomic_write_text(path, frame.to_csv(index=False, float_format="%.10g", lineterminator="\n"))


def new_run_id(label: str) -> str:
    return datetime.now().strftime("%Y%m%d-%H%M%S") + f"-{label}"


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def git_commit(repo: Path | None = None) -> dict[str, Any]:
    """The checkout's commit, its date, and whether (and in which tracked files) the working tree differs from it."""
    repo = repo or Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=10).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        # tracked files only: a run's own output folder or a scratch file must not mark the code as changed
        changed = git("diff", "--name-only", "HEAD").splitlines()
        date = git("show", "-s", "--format=%cI", "HEAD")
    except (OSError, subprocess.SubprocessError):
        commit = ""
    if not commit:  # an installed wheel, or no git: say so rather than guess
        return {"commit": None, "dirty": None, "dirty_files": None, "commit_date": None}
    return {"commit": commit, "dirty": bool(changed), "dirty_files": changed, "commit_date": date or None}


# environment variables that change speed or float results: thread pools, their wait policy, malloc tuning
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "OMP_PROC_BIND", "OMP_PLACES", "MKL_NUM_THREADS",
                    "OPENBLAS_NUM_THREADS", "OPENBLAS_CORETYPE", "KMP_AFFINITY", "KMP_BLOCKTIME", "GOMP_SPINCOUNT",
                    "METABENCH_MALLOC", "METABENCH_NATIVE")


def environment(device: str) -> dict[str, Any]:
    import torch

    env = {"python": platform.python_version(), "platform": platform.platform(), "torch": torch.__version__,
           "cuda": torch.version.cuda, "device": device, "cpu_threads": torch.get_num_threads(),
           "cpu": platform.processor() or platform.machine()}
    if device.startswith("cuda") and torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(0)
    return env


def provenance() -> dict[str, Any]:
    """What besides the code and the configuration decides a run's numbers or speed (DESIGN.md "Results are
    data"): the machine, thread settings, the malloc tuning, the native kernel's build, and plugins."""
    import algorithms
    import torch
    from algorithms import native
    from bench import allocator

    return {"hostname": platform.node(), "cpu_model": _cpu_model(), "logical_cpus": os.cpu_count(),
            "threads": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads(),
            "thread_env": {name: os.environ[name] for name in THREAD_VARIABLES if name in os.environ},
            "malloc_tuned": allocator.keep_freed_memory(), "native_kernel": native.build_info(),
            "plugins": algorithms.plugin_info()}


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        return platform.processor()


class RunDir:
    """The folder a run writes into; holds an exclusive lock file while a run is active."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock: Path | None = None

    # -- lifecycle -----------------------------------------------------------------------------------------
    def open_for_writing(self) -> "RunDir":
        """Create the folder, prove it is writable and take the lock, before any training starts."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            probe = self.path / ".write-test"
            probe.write_text("ok")
            probe.unlink()
        except OSError as exc:
            raise RunDirError(f"output folder {self.path} is not writable ({exc.strerror}); "
                              f"pass a writable --out DIR") from None
        lock = self.path / ".lock"
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            owner = lock.read_text().strip() if lock.exists() else "?"
            if owner.isdigit() and not pid_alive(int(owner)):
                lock.unlink(missing_ok=True)  # left behind by a killed run
                return self.open_for_writing()
            raise RunDirError(f"output folder {self.path} is in use by another run (pid {owner}, lock file "
                              f"{lock}); wait for it, pick another --out, or delete the lock if that run is gone") from None
        with os.fdopen(fd, "w") as handle:
            handle.write(str(os.getpid()))
        self._lock = lock
        return self

    def close(self) -> None:
        if self._lock is not None:
            self._lock.unlink(missing_ok=True)
            self._lock = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- files ---------------------------------------------------------------------------------------------
    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def figures(self) -> Path:
        return self.path / "figures"

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        atomic_write_text(self.path / "manifest.json", json.dumps(manifest, indent=2, default=str) + "\n")

    def read_manifest(self) -> dict[str, Any]:
        path = self.path / "manifest.json"
        if not path.is_file():
            raise RunDirError(f"{self.path} is not a run folder: {path.name} is missing; "
                              f"pass the folder a `metabench run --out DIR` wrote")
        return json.loads(path.read_text())

    def write_table(self, name: str, frame: pd.DataFrame) -> None:
        atomic_write_csv(self.path / name, frame)

    def read_table(self, name: str, required: bool = True) -> pd.DataFrame:
        path = self.path / name
        if not path.is_file():
            if required:
                raise RunDirError(f"{path} is missing; the run did not finish any cell or the folder is not a "
                                  f"run folder")
            return pd.DataFrame()
        return pd.read_csv(path, keep_default_na=False, na_values=[""])


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
