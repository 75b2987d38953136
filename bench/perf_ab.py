"""`metabench perf --against REV`: time the baseline's own code and this code in alternating fresh processes.

Why: the committed speed baseline (results/baseline-perf/) was timed on another occasion. Ratios to the in-run
reference workload cancel the machine's speed, but not everything that changes between occasions: on this 2-core
machine the steps dominated by per-operator dispatch (the black-box LSTM, MANN, SNAIL) moved 6-14% against the conv
reference between a quiet afternoon and a CI run after the test suite, on unchanged code, twice in a row
(docs/performance.md). Re-measuring against the stored numbers cannot tell that drift from a slower commit; timing
the baseline commit's code now, on the same machine and under the same load, can. The two sides alternate in an
ABBA order (A B B A A B ...), so a load that rises or falls during the measurement falls on both sides alike.

The baseline's code comes from `git archive REV` (the packages and the files `python -m bench` reads) unpacked
into a temporary folder and run with `python -m bench perf` from there: nothing in the checkout or its .git is
touched. An injected slowdown (METABENCH_PERF_SLOWDOWN, which stands for a change in the new code) is kept out of
the baseline's processes.

Output: OUT/baseline/run-1..N and OUT/new/run-1..N, each a `metabench perf` folder, and OUT/ab.json saying what
ran. `metabench compare --perf OUT/baseline OUT/new` then gates on them like on any pair of perf folders.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from bench.resources import checkout_root

# what `python -m bench perf` needs from a checkout: the packages, the configuration, the published numbers and
# the project file by which bench.resources recognises a checkout
ARCHIVE_PATHS = ("bench", "algorithms", "benchmarks.yaml", "pyproject.toml", "results/published.csv")
SLOWDOWN_ENV = "METABENCH_PERF_SLOWDOWN"
DEFAULT_ROUNDS = 3


class ABError(RuntimeError):
    """The baseline's code cannot be run here (no checkout, unknown commit, or its perf command failed)."""


def baseline_revision(against: str) -> str:
    """A git revision: given as one, or the commit recorded in a perf folder's manifest (or its first run's)."""
    path = Path(against)
    if path.is_dir():
        if (path / "manifest.json").is_file():
            manifests = [path / "manifest.json"]
        else:
            manifests = sorted(path.glob("*/manifest.json"))
        if not manifests:
            raise ABError(
                f"{path} has no manifest.json (nor run-*/manifest.json); pass a perf folder or a git revision"
            )
        try:
            manifest = json.loads(manifests[0].read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ABError(f"{manifests[0]} is unreadable ({type(exc).__name__}); pass a git revision instead") from None
        commit = manifest.get("commit")
        if not commit or commit == "unknown":
            raise ABError(f"{manifests[0]} records no commit; pass the baseline's git revision instead")
        if manifest.get("dirty"):
            raise ABError(f"{manifests[0]} was made from a tree with uncommitted changes, which git cannot "
                          f"reproduce; remake the baseline on a clean commit or pass a git revision")
        return commit
    return against


def unpack(revision: str, root: Path, into: Path) -> str:
    """Extract the revision's code into `into`; returns the full commit hash."""
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}"],
                                capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        raise ABError(f"git revision {revision!r} is not in {root} (a shallow clone? fetch it with "
                      f"`git fetch --unshallow`)") from None
    present = subprocess.run(["git", "-C", str(root), "ls-tree", "--name-only", commit, *ARCHIVE_PATHS],
                             capture_output=True, text=True).stdout.split()
    archive = into / "code.tar"
    with archive.open("wb") as sink:
        done = subprocess.run(["git", "-C", str(root), "archive", "--format=tar", commit, *present], stdout=sink)
    if done.returncode != 0:
        raise ABError(f"`git archive {commit}` failed in {root}")
    with tarfile.open(archive) as tar:
        tar.extractall(into / "code", filter="data")
    archive.unlink()
    return commit


def _perf(code: Path, out: Path, size: str, steps: list[str], env: dict) -> None:
    command = [sys.executable, "-m", "bench", "perf", "--size", size, "--out", str(out)]
    for step in steps:
        command += ["--step", step]
    done = subprocess.run(command, cwd=code, env=env)
    if done.returncode != 0:
        raise ABError(f"`{' '.join(command)}` (in {code}) exited {done.returncode}")


def run(against: str, out: Path, steps: list[str], size: str = "quick", rounds: int = DEFAULT_ROUNDS) -> dict:
    root = checkout_root()
    if root is None:
        raise ABError("--against needs a git checkout of metabench (this one is an installed wheel)")
    revision = baseline_revision(against)
    if (out / "baseline").exists() or (out / "new").exists():
        raise ABError(f"{out} already holds an A/B measurement; pass a new --out folder")
    with tempfile.TemporaryDirectory(prefix="metabench-ab-") as scratch:
        scratch = Path(scratch)
        commit = unpack(revision, root, scratch)
        # PYTHONPATH first: the baseline's packages, not this checkout's editable install, must be imported
        env_new = dict(os.environ)
        env_base = {k: v for k, v in os.environ.items() if k != SLOWDOWN_ENV}
        env_base["PYTHONPATH"] = os.pathsep.join([str(scratch / "code"), *filter(None, [os.environ.get("PYTHONPATH")])])
        sides = {"baseline": (scratch / "code", env_base), "new": (root, env_new)}
        order = []
        for i in range(rounds):  # A B B A A B ...: a linear drift in load lands on both sides equally
            order += [("baseline", i), ("new", i)] if i % 2 == 0 else [("new", i), ("baseline", i)]
        for side, i in order:
            code, env = sides[side]
            print(f"metabench perf --against: {side} ({commit[:10] if side == 'baseline' else 'this checkout'}), "
                  f"round {i + 1} of {rounds}", file=sys.stderr)
            _perf(code, out / side / f"run-{i + 1}", size, steps, env)
    info = {"baseline_commit": commit, "against": against, "rounds": rounds, "size": size, "steps": steps,
            "order": [f"{side}/run-{i + 1}" for side, i in order],
            "injected_slowdown_in_new": os.environ.get(SLOWDOWN_ENV) or None}
    out.mkdir(parents=True, exist_ok=True)
    (out / "ab.json").write_text(json.dumps(info, indent=2) + "\n")
    print(f"metabench: wrote {out}/baseline and {out}/new; gate with `metabench compare --perf {out}/baseline "
          f"{out}/new`", file=sys.stderr)
    return info
