"""File helpers shared by the image dataset loaders: cache fingerprints, atomic cache writes, problem lists."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

# How many problems an error message spells out; the rest are counted ("... and 123 more") and `metabench data
# check` lists every one. 10 used to cut a list of 22 files short, the usual size of a partly copied folder.
SHOWN_PROBLEMS = 30


@dataclass(frozen=True)
class Problem:
    """One missing or corrupt file: its expected path and what is wrong with it."""

    path: Path | str  # a file, or 'archive.zip:member'
    what: str  # e.g. "missing", "not a readable image (...)", "pixel checksum 1a2b3c4d, expected 5e6f7a8b"

    def __str__(self) -> str:
        return f"{self.path} ({self.what})"


def problem_summary(dataset: str, problems: list[Problem], fix: str) -> str:
    """One line: how many files are missing/corrupt, the first few with their expected paths, and the fix."""
    shown = "; ".join(str(p) for p in problems[:SHOWN_PROBLEMS])
    more = (f"; ... and {len(problems) - SHOWN_PROBLEMS} more (`metabench data check {dataset}` lists every one)"
            if len(problems) > SHOWN_PROBLEMS else "")
    noun = "file" if len(problems) == 1 else "files"
    return f"{dataset}: {len(problems)} {noun} missing or corrupt: {shown}{more}. Fix: {fix}"


def stat_fingerprint(base: Path, relpaths: Iterable[str]) -> tuple[str, list[str]]:
    """sha256 over sorted (relative path, size, mtime) of the files under `base`, and those that do not exist.

    A cache key, not a content check: it notices replaced or touched files in milliseconds, while
    `metabench data check` does the full content checks. (Plain strings and os.stat: pathlib costs 10x here.)
    """
    h, missing, prefix = hashlib.sha256(), [], str(base) + os.sep
    for rel in sorted(relpaths):
        try:
            st = os.stat(prefix + rel)
        except OSError:
            missing.append(rel)
            continue
        h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest(), missing


def settings_key(*parts: Any) -> str:
    """A short digest of the preprocessing settings and the source fingerprint (the cache file's name)."""
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


def save_atomic(obj: dict[str, Any], path: Path) -> None:
    """torch.save through a temporary file in the same folder and os.replace, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a cache file is as private as any other file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def load_cached(path: Path) -> dict[str, Any] | None:
    """The cached dict, or None when absent or unreadable (a damaged cache is rebuilt, never trusted)."""
    if not path.is_file():
        return None
    try:
        return torch.load(path, weights_only=True)
    except Exception:  # noqa: BLE001 - any unreadable cache file just means "decode again"
        return None


def md5sum(path: Path, chunk: int = 1 << 20) -> str:
    """The md5 of a file (the checksum torchvision publishes for its archives)."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def verified_md5(path: Path, expected: str, cache: Path) -> str:
    """The md5 of `path`, computed on first use and then remembered per (path, size, mtime_ns) in the cache folder
    (the data root may be read-only), so every run verifies its files at the cost of a stat. Returns the actual
    digest; the caller compares it with `expected` and names the file in its error. Only a digest equal to
    `expected` is remembered: a damaged file is hashed again on every use, so repairing it needs no cache flush."""
    path = Path(path)
    st = path.stat()
    key = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:24]
    record = Path(cache) / "verified" / f"{key}.json"
    stamp = {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "md5": expected}
    try:
        if json.loads(record.read_text()) == stamp:
            return expected
    except (OSError, ValueError):
        pass  # absent or damaged: hash the file
    actual = md5sum(path)
    if actual == expected:
        try:
            record.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=record.name + ".", suffix=".tmp", dir=record.parent)
            with os.fdopen(fd, "w") as f:
                json.dump(stamp, f)
            os.replace(tmp, record)
        except OSError:
            pass  # an unwritable cache only costs hashing again next time
    return actual


def worker_count() -> int:
    """Threads for image decoding: PIL releases the GIL while decoding and resizing; capped for shared machines."""
    return max(1, min(4, os.cpu_count() or 1))
