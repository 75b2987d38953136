"""Bring your own algorithm: a package that declares an entry point in group `metabench.algorithms` is listed
and runs beside the built-in algorithms without touching the suite (tests/plugin_fixture is that package).

The package is really built and installed by pip, but with `--target` into a temporary folder put on
PYTHONPATH of the `metabench` subprocesses rather than into this environment: the environment is shared with
whatever else runs at the same time, and a plugin left behind by an interrupted teardown would join every
`metabench run smoke` (whose algorithms are '*'). importlib.metadata finds the .dist-info and its
entry_points.txt on PYTHONPATH exactly as in site-packages.
"""
import importlib.util
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

FIXTURE = Path(__file__).resolve().parent / "plugin_fixture"
REPO = Path(__file__).resolve().parent.parent
FAST = ["--set", "budget.meta_iters=20", "--set", "budget.test_episodes=30", "--set", "budget.validation_tasks=5",
        "--no-progress", "--no-figures"]


def metabench(*args, pythonpath: Path | None = None):
    env = dict(os.environ)
    # the repository first: a subprocess must import this checkout's bench/ and algorithms/
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in (REPO, pythonpath) if p)
    return subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True, text=True, timeout=600, env=env)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    if importlib.util.find_spec("pip") is None or importlib.util.find_spec("setuptools") is None:
        pytest.skip("pip and setuptools are needed to build the plugin fixture offline (--no-build-isolation)")
    root = tmp_path_factory.mktemp("plugin")
    source = shutil.copytree(FIXTURE, root / "src")  # pip builds in the source tree; keep tests/ clean
    site = root / "site"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                           "--no-index", "--target", str(site), str(source)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert list(site.glob("metabench_kernel-*.dist-info/entry_points.txt"))
    return site


def test_installed_plugin_is_listed(installed):
    proc = metabench("list", "algorithms", pythonpath=installed)
    assert proc.returncode == 0, proc.stderr
    line = next(line for line in proc.stdout.splitlines() if line.startswith("kernel "))
    assert "regression" in line and "meta-learned bandwidth" in line
    assert "maml" in proc.stdout  # beside the built-in ones
    assert "kernel" not in metabench("list", "algorithms").stdout  # and only when installed


def test_installed_plugin_runs_in_a_smoke_cell_and_reports(installed, tmp_path):
    out = tmp_path / "run"
    proc = metabench("run", "--benchmark", "sine-k5", "--algorithm", "kernel", "--algorithm", "maml", "--profile",
                     "smoke", "--set", "kernel.lr=0.1", "--out", str(out), *FAST, pythonpath=installed)
    assert proc.returncode == 0, proc.stderr
    summary = pd.read_csv(out / "summary.csv")
    kernel = summary[(summary["algorithm"] == "kernel") & (summary["seed"].astype(str) == "0")].set_index("metric")
    assert (kernel["status"] == "ok").all() and kernel.loc["mse@10", "n"] == 30
    manifest = json.loads((out / "manifest.json").read_text())
    assert next(c for c in manifest["cells"] if c["algorithm"] == "kernel")["config"]["hparams"]["lr"] == 0.1
    # the leaderboard ranks it against the classics (it needs no import of the plugin)
    board = metabench("report", str(out), "--format", "csv")
    assert board.returncode == 0 and {"kernel", "maml"} <= set(pd.read_csv(io.StringIO(board.stdout))["algorithm"])


def test_plugin_module_on_the_path(tmp_path):
    shutil.copytree(FIXTURE / "metabench_kernel", tmp_path / "metabench_kernel")
    proc = metabench("list", "algorithms", "--plugin", "metabench_kernel", pythonpath=tmp_path)
    assert proc.returncode == 0 and "kernel" in proc.stdout, proc.stderr
    bad = metabench("list", "algorithms", "--plugin", "no_such_module")
    assert bad.returncode == 2 and "no_such_module" in bad.stderr and "Traceback" not in bad.stderr
