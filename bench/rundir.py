"""A run folder on disk: atomic writes, the manifest, and reading a finished run back.

Layout (DESIGN.md "Outputs"): manifest.json, episodes.csv, summary.csv, curves.csv, fits.csv (regression fit
plots), figures/, checkpoints/. Every file is replaced atomically (write a temp file, then rename), so a crash
never leaves a half-written CSV and every finished cell is on disk before the next one starts.
"""
from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from bench import allocator, resources
from bench.errors import RunDirError  # also importable from here
from bench.readers import numeric_column, read_csv, read_json

EPISODE_COLUMNS = ["benchmark", "algorithm", "seed", "episode", "metric", "value"]
CURVE_COLUMNS = ["benchmark", "algorithm", "seed", "iteration", "split", "metric", "value"]
FIT_COLUMNS = ["benchmark", "algorithm", "seed", "task", "steps", "series", "x", "y"]
SUMMARY_COLUMNS = ["benchmark", "algorithm", "seed", "metric", "mean", "ci95", "n", "ci_method", "seeds",
                   "train_seconds", "eval_seconds", "meta_iters", "status", "error", "paper_value",
                   "paper_ci95", "delta"]

# what a reader of each table relies on (bench.readers refuses a file without them, naming the file)
REQUIRED_COLUMNS = {"episodes.csv": EPISODE_COLUMNS, "curves.csv": CURVE_COLUMNS,
                    "summary.csv": ["benchmark", "algorithm", "seed", "metric", "mean", "ci95", "n"]}

# columns that must hold numbers: text there once became NaN and a "REGRESSION +0" naming no row
NUMERIC_COLUMNS = {"episodes.csv": ["episode", "value"], "curves.csv": ["iteration", "value"],
                   "summary.csv": ["mean", "ci95", "n"]}


def _umask() -> int:
    """The process umask, read without changing it where Linux allows (os.umask can only be read by setting it,
    which would briefly affect files other threads create)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# what open() would give a new file (0644 under the usual umask 022). mkstemp creates 0600 whatever the umask,
# which made every result file private and broke shared lab storage and web hosting; folders come from mkdir and
# already follow the umask (0755).
FILE_MODE = 0o666 & ~_umask()


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, FILE_MODE)
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
    return datetime.now(UTC).isoformat(timespec="seconds")


def git_commit(repo: Path | None = None) -> dict[str, Any]:
    """The checkout's commit, its date, and whether (and in which tracked files) the working tree differs from it."""
    if repo is None:
        # an installed wheel has no checkout; git run from site-packages would report whatever project the user's
        # virtual environment sits in
        repo = resources.checkout_root()
        if repo is None:
            return {"commit": None, "dirty": None, "dirty_files": None, "commit_date": None}

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
    import torch  # lazy: rundir is on the torch-free reading side

    env = {"python": platform.python_version(), "platform": platform.platform(), "torch": torch.__version__,
           "cuda": torch.version.cuda, "device": device, "cpu_threads": torch.get_num_threads(),
           "cpu": platform.processor() or platform.machine()}
    if device.startswith("cuda") and torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(0)
    return env


def provenance() -> dict[str, Any]:
    """What besides the code and the configuration decides a run's numbers or speed (DESIGN.md "Results are
    data"): the machine, thread settings, the malloc tuning, the native kernel's build, and plugins."""
    import torch  # lazy, like the algorithms: rundir is on the torch-free reading side

    import algorithms
    from algorithms import native

    return {"hostname": platform.node(), "cpu_model": _cpu_model(), "logical_cpus": os.cpu_count(),
            "threads": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads(),
            "thread_env": {name: os.environ[name] for name in THREAD_VARIABLES if name in os.environ},
            "malloc_tuned": allocator.keep_freed_memory(), "native_kernel": native.build_info(),
            "plugins": algorithms.plugin_info()}


def provenance_differences(a: dict[str, Any], b: dict[str, Any], name_a: str = "baseline",
                           name_b: str = "new") -> list[str]:
    """What differs between two manifests' provenance that can move numbers (float rounding) or speed: one line
    each. `compare`, `report` and `verify` print these as notes, so that a difference is never a mystery."""
    lines = []
    for side, m in ((name_a, a), (name_b, b)):
        if m.get("dirty"):
            files = m.get("dirty_files") or []
            lines.append(f"{side} was made on a checkout with uncommitted changes"
                         + (f" ({', '.join(files[:5])}{' ...' if len(files) > 5 else ''})" if files else ""))
    pa, pb = a.get("provenance"), b.get("provenance")
    if not pa or not pb:
        missing = [side for side, p in ((name_a, pa), (name_b, pb)) if not p]
        lines.append(f"{' and '.join(missing)} {'do' if len(missing) > 1 else 'does'} not record provenance (made "
                     f"before it was recorded): kernel, threads and plugins cannot be compared")
        pa, pb = pa or {}, pb or {}
    ea, eb = a.get("environment") or {}, b.get("environment") or {}

    def differ(label: str, x: Any, y: Any) -> None:
        if x is not None and y is not None and x != y:
            lines.append(f"{label} differs: {name_a} {x!r}, {name_b} {y!r}")

    differ("torch", ea.get("torch"), eb.get("torch"))
    differ("device", ea.get("device"), eb.get("device"))
    differ("CPU", pa.get("cpu_model"), pb.get("cpu_model"))
    differ("threads", pa.get("threads"), pb.get("threads"))
    differ("thread settings", pa.get("thread_env"), pb.get("thread_env"))
    ka, kb = pa.get("native_kernel") or {}, pb.get("native_kernel") or {}
    differ("native kernel available", ka.get("available"), kb.get("available"))
    used_a, used_b = _kernel_used(a), _kernel_used(b)
    differ("native kernel used by some cell", used_a, used_b)
    plugins = [{k: p.get(k) for k in ("name", "distribution", "version")} for p in pa.get("plugins") or []], \
        [{k: p.get(k) for k in ("name", "distribution", "version")} for p in pb.get("plugins") or []]
    if pa and pb:
        differ("plugins", plugins[0], plugins[1])
    return lines


def _kernel_used(manifest: dict[str, Any]) -> bool | None:
    flags = [c.get("native_kernel_used") for c in manifest.get("cells", []) if c.get("native_kernel_used") is not None]
    return any(flags) if flags else None


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
    def claim(self, config_hashes: set[str], force: bool = False, cells=None) -> Path | None:
        """Make the folder ready for a new (not resumed) run of cells with these config hashes, before anything
        is trained. An empty or missing folder is used as it is. A non-empty one is refused unless it holds a
        run of the same cells or `force` is given; then its contents are moved aside to <DIR>.old-<time> (never
        deleted), so no figure or table of the earlier run survives beside the new one. Returns where the old
        contents went, or None."""
        if self.path.exists() and not self.path.is_dir():
            raise RunDirError(f"--out {self.path} is a file, not a folder; pass a folder path")
        if not self.path.is_dir():
            return None
        lock = self.path / ".lock"
        state, who = lock_state(lock)
        if state in ("live", "foreign", "starting") and who != _me():
            raise RunDirError(_locked_message(self.path, lock, state, who))
        contents = [p for p in self.path.iterdir() if p.name != ".lock"]
        if not contents:
            return None
        if not force:
            why = self._differs_from(config_hashes, cells)
            if why:
                raise RunDirError(f"--out {self.path} is not empty and {why}; nothing was changed: pick a new "
                                  f"folder, or pass --force to move its contents aside to {self.path.name}.old-<time>")
        return self._move_aside()

    def _differs_from(self, config_hashes: set[str], cells=None) -> str:
        """'' when the folder holds a run of exactly these cells, else why not (naming the differing cells and
        keys where the manifest allows), for the refusal message."""
        path = self.path / "manifest.json"
        if not path.is_file():
            return "is not a metabench run folder (no manifest.json)"
        try:
            before = self.read_manifest().get("cells") or []
        except RunDirError as exc:
            return f"holds a damaged run ({str(exc).removeprefix(f'{path}: ')})"
        if before and {c.get("config_hash") for c in before} == set(config_hashes):
            return ""
        if cells is None:
            return "holds a run of a different configuration"
        old = {c.get("key"): c for c in before}
        new = {c.key: c for c in cells}
        parts = [f"{k} only there" for k in old if k not in new][:3]
        parts += [f"{k} only in this run" for k in new if k not in old][:3]
        for key in [k for k in new if k in old and old[k].get("config_hash") != new[k].config_hash][:3]:
            now = json.loads(json.dumps(new[key].resolved(), default=str))
            keys = _differing_keys(old[key].get("config") or {}, now)[:4]
            parts.append(f"{key} differs in {', '.join(keys) or 'its configuration'}")
        return f"holds a run of other cells ({'; '.join(parts) or 'different configuration'})"

    def _move_aside(self) -> Path:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        target = self.path.with_name(f"{self.path.name}.old-{stamp}")
        n = 1
        while target.exists():
            target = self.path.with_name(f"{self.path.name}.old-{stamp}-{n}")
            n += 1
        try:
            target.mkdir()
            # entries one by one rather than renaming the folder itself: DIR may be a mount point or the shell's cwd
            for entry in sorted(self.path.iterdir()):
                entry.rename(target / entry.name)
        except OSError as exc:
            raise RunDirError(f"--force: could not move the contents of {self.path} to {target} ({exc.strerror}); "
                              f"move or delete them yourself, or pick another --out") from None
        return target

    def open_for_writing(self) -> RunDir:
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
        for _ in range(3):  # a stale lock is removed and the exclusive create tried again
            try:
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)  # default 0o777: not executable
                break
            except FileExistsError:
                state, who = lock_state(lock)
                if state != "stale":
                    raise RunDirError(_locked_message(self.path, lock, state, who)) from None
                lock.unlink(missing_ok=True)  # left behind by a killed run on this machine
        else:
            raise RunDirError(f"output folder {self.path}: could not take the lock {lock} (another run keeps "
                              f"taking it); pick another --out") from None
        with os.fdopen(fd, "w") as handle:
            # host and pid: on shared storage a pid alone says nothing about a run on another machine
            handle.write(f"{_me()}\n")
        self._lock = lock
        return self

    def break_lock(self) -> str | None:
        """`--break-lock`: remove a lock left by a run on another host (or a dead one here); a lock of a live
        process on this machine is never broken. Returns the owner that was removed, or None."""
        lock = self.path / ".lock"
        state, who = lock_state(lock)
        if state == "absent":
            return None
        if state == "live" and who != _me():
            raise RunDirError(_locked_message(self.path, lock, state, who) + "; --break-lock does not break the "
                              "lock of a live process on this machine")
        lock.unlink(missing_ok=True)
        return who

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
        if not self.path.is_dir():
            raise RunDirError(f"{self.path} is not a run folder: "
                              f"{'no such folder' if not self.path.exists() else 'it is a file'}; "
                              f"pass the folder a `metabench run --out DIR` wrote")
        if not path.is_file():
            raise RunDirError(f"{self.path} is not a run folder: {path.name} is missing; "
                              f"pass the folder a `metabench run --out DIR` wrote")
        manifest = read_json(path, "run manifest")
        if not isinstance(manifest.get("cells", []), list) or \
                not all(isinstance(c, dict) for c in manifest.get("cells", [])):
            raise RunDirError(f"{path}: run manifest has a malformed 'cells' list; the file is damaged")
        return manifest

    def finished_cell_files(self) -> tuple[list[Path], list[tuple[Path, str]]]:
        """The cells/*.json records of finished cells: (readable ones, [(damaged one, what is wrong)])."""
        good, bad = [], []
        for path in sorted((self.path / "cells").glob("*.json")):
            try:
                data = read_json(path, "finished-cell record")
                if not isinstance(data.get("config_hash"), str):
                    raise RunDirError(f"{path}: finished-cell record has no config_hash")
                good.append(path)
            except RunDirError as exc:
                bad.append((path, str(exc).removeprefix(f"{path}: ")))
        return good, bad

    def check_resumable(self) -> None:
        """Before --resume: every cells/*.json readable, else one line naming the damaged records, the finished
        cells that are safe to keep, and the fix (a cell whose record is deleted is simply run again)."""
        good, bad = self.finished_cell_files()
        if bad:
            names = "; ".join(f"{p.relative_to(self.path)} ({why})" for p, why in bad[:5])
            more = f"; and {len(bad) - 5} more" if len(bad) > 5 else ""
            safe = ", ".join(p.stem for p in good[:10]) + (" ..." if len(good) > 10 else "")
            raise RunDirError(f"cannot resume {self.path}: damaged finished-cell record(s): {names}{more}; the "
                              f"{len(good)} other finished cell(s) are safe to keep"
                              f"{' (' + safe + ')' if good else ''}; delete the damaged file(s) and resume again "
                              f"to re-run just those cells")

    def write_table(self, name: str, frame: pd.DataFrame) -> None:
        atomic_write_csv(self.path / name, frame)

    def read_table(self, name: str, required: bool = True) -> pd.DataFrame:
        path = self.path / name
        if not path.is_file():
            if required:
                raise RunDirError(f"{path} is missing; the run did not finish any cell or the folder is not a "
                                  f"run folder")
            return pd.DataFrame()
        frame = read_csv(path, REQUIRED_COLUMNS.get(name, ()), what=name)
        for column in NUMERIC_COLUMNS.get(name, ()):
            if column in frame and not pd.api.types.is_numeric_dtype(frame[column]):  # text in a number column
                numeric_column(frame, column, path, name, ("benchmark", "algorithm", "seed", "episode", "metric"))
        return frame


def _me() -> str:
    return f"{socket.gethostname()} {os.getpid()}"


def lock_state(lock: Path) -> tuple[str, str]:
    """(state, owner) of a run folder's lock file. state: 'absent'; 'live' (a running process on this host);
    'stale' (its process on this host is gone, or an empty lock older than a minute: a crash while writing it);
    'starting' (empty and new: being written this instant); 'foreign' (another host: whether it is alive cannot
    be told from here). Older metabench wrote only the pid: that is read as this host."""
    try:
        text = lock.read_text(errors="replace").strip()
        age = time.time() - lock.stat().st_mtime
    except FileNotFoundError:
        return "absent", ""
    except OSError:
        return "foreign", "an unreadable lock"
    parts = text.split()
    if len(parts) == 1 and parts[0].isdigit():
        parts = [socket.gethostname(), parts[0]]
    if len(parts) != 2 or not parts[1].isdigit():
        return ("starting" if age < 60 else "stale"), text or "nobody (empty lock)"
    host, pid = parts[0], int(parts[1])
    if host != socket.gethostname():
        return "foreign", f"{host} {pid}"
    return ("live" if pid_alive(pid) else "stale"), f"{host} {pid}"


def _locked_message(path: Path, lock: Path, state: str, who: str) -> str:
    host, _, pid = who.partition(" ")
    if state == "foreign":
        return (f"output folder {path} is locked by a run on another host ({host}, pid {pid}; lock file {lock}); "
                f"its state cannot be checked from here: wait for it, pick another --out, or pass --break-lock "
                f"if that run is gone")
    if state == "starting":
        return f"output folder {path} is being claimed by another run this instant ({lock}); pick another --out"
    return (f"output folder {path} is in use by another run (pid {pid} on this host, lock file {lock}); wait for "
            f"it or pick another --out")


def _differing_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for k in sorted(set(a) | set(b), key=str):
            out += _differing_keys(a.get(k), b.get(k), f"{prefix}.{k}" if prefix else str(k))
        return out
    return [] if a == b else [f"{prefix}: {a!r} -> {b!r}"]


def pid_alive(pid: int) -> bool:
    if pid <= 0:  # os.kill(0, ...) would signal our own process group: never a lock owner
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError, ValueError):  # gone, or not a pid this system can have
        return False
    except PermissionError:
        return True
    return True
