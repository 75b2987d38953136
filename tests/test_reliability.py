"""Faults and what the suite does about them: crashes, interrupts, bad inputs, other executors.

Each test drives the real command line (a subprocess where a process must die) and checks both the one-line
message and that no finished work is lost.
"""
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import real_omniglot_available

QUICK = ["--no-progress", "--no-figures"]
SINE_MAML = ["run", "--benchmark", "sine-k5", "--algorithm", "maml", "--profile", "smoke",
             "--set", "budget.meta_iters=400", "--set", "budget.checkpoint_every=20", "--set", "budget.log_every=20",
             "--set", "budget.test_episodes=40", *QUICK]


def metabench(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True, text=True, timeout=600,
                          **kwargs)


def start(*args):
    return subprocess.Popen([sys.executable, "-m", "bench", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def wait_for(path: Path, proc, timeout=300):
    """Poll until the subprocess has written `path` (a hang guard, not a speed check: 5 minutes is generous)."""
    polls = int(timeout / 0.05)
    for _ in range(polls):
        if path.exists():
            return
        assert proc.poll() is None, proc.communicate()[1]
        time.sleep(0.05)
    pytest.fail(f"{path} never appeared within {timeout} s (the subprocess hung)")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("whole") / "run"
    proc = metabench(*SINE_MAML, "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    return out


def test_sigkill_mid_cell_then_resume_gives_identical_episodes(tmp_path, uninterrupted):
    out = tmp_path / "run"
    proc = start(*SINE_MAML, "--out", str(out))
    wait_for(out / "checkpoints" / "sine-k5__maml__seed0.pt", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "episodes.csv").exists() or pd.read_csv(out / "episodes.csv").empty
    resumed = metabench("run", "--resume", str(out), *QUICK)
    assert resumed.returncode == 0, resumed.stderr
    assert (out / "episodes.csv").read_bytes() == (uninterrupted / "episodes.csv").read_bytes()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["cells"][0]["resumed_from_iteration"] > 0 and manifest["resumed"]


def test_ctrl_c_stops_cleanly_and_resume_continues(tmp_path, uninterrupted):
    out = tmp_path / "run"
    proc = start(*SINE_MAML, "--out", str(out))
    wait_for(out / "checkpoints" / "sine-k5__maml__seed0.pt", proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "--resume" in err and "Traceback" not in err
    assert not (out / ".lock").exists()
    resumed = metabench("run", "--resume", str(out), *QUICK)
    assert resumed.returncode == 0, resumed.stderr
    assert (out / "episodes.csv").read_bytes() == (uninterrupted / "episodes.csv").read_bytes()


def test_finished_cells_are_not_rerun_on_resume(tmp_path):
    out = tmp_path / "run"
    args = ["run", "--benchmark", "sine-k5", "--algorithm", "pretrain", "--algorithm", "maml", "--profile", "smoke",
            "--set", "budget.meta_iters=5", "--set", "budget.test_episodes=5", *QUICK, "--out", str(out)]
    assert metabench(*args).returncode == 0
    before = (out / "cells" / "sine-k5__pretrain__seed0.json").stat().st_mtime_ns
    (out / "cells" / "sine-k5__maml__seed0.json").unlink()  # as if the run had died during the maml cell
    resumed = metabench("run", "--resume", str(out), *QUICK)
    assert resumed.returncode == 0, resumed.stderr
    assert (out / "cells" / "sine-k5__pretrain__seed0.json").stat().st_mtime_ns == before
    assert (out / "cells" / "sine-k5__maml__seed0.json").exists()


def test_resume_with_changed_config_is_refused_naming_the_keys(tmp_path):
    from bench.config import DEFAULT_CONFIG

    config = tmp_path / "benchmarks.yaml"
    config.write_text(DEFAULT_CONFIG.read_text())
    out = tmp_path / "run"
    assert metabench("run", "--benchmark", "sine-k5", "--algorithm", "maml", "--profile", "smoke", "--config",
                     str(config), "--set", "budget.meta_iters=5", "--set", "budget.test_episodes=5", *QUICK,
                     "--out", str(out)).returncode == 0
    config.write_text(config.read_text().replace(
        "defaults: {inner_lr: 0.01, inner_steps: 1, test_inner_steps: 10, meta_batch: 25, meta_lr: 0.001}",
        "defaults: {inner_lr: 0.02, inner_steps: 1, test_inner_steps: 10, meta_batch: 25, meta_lr: 0.001}", 1))
    proc = metabench("run", "--resume", str(out), *QUICK)
    assert proc.returncode == 2
    assert "hparams.inner_lr: 0.01 -> 0.02" in proc.stderr and "sine-k5/maml/seed0" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_crafted_pickle_checkpoint_is_refused(tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "sine-k5__maml__seed0.pt").write_bytes(pickle.dumps(Exploit()))
    proc = metabench("run", "--benchmark", "sine-k5", "--algorithm", "maml", "--profile", "smoke", "--set",
                     "budget.meta_iters=5", "--set", "budget.test_episodes=5", *QUICK, "--out", str(out))
    assert not marker.exists()
    assert proc.returncode == 1
    summary = pd.read_csv(out / "summary.csv", keep_default_na=False)
    assert "cannot be loaded safely" in summary["error"].iloc[0] and "delete it" in summary["error"].iloc[0]


def test_unwritable_output_folder_is_refused_before_training(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    proc = metabench("run", "smoke", "--out", str(blocker / "run"), *QUICK)
    assert proc.returncode == 2 and "not writable" in proc.stderr and str(blocker / "run") in proc.stderr
    assert "cell(s)" in proc.stderr.splitlines()[0] or len(proc.stderr.strip().splitlines()) <= 2


def test_two_runs_into_one_folder_are_refused(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / ".lock").write_text(str(os.getpid()))  # a live process holds it
    proc = metabench("run", "smoke", "--out", str(out), *QUICK)
    assert proc.returncode == 2 and "in use by another run" in proc.stderr and "Traceback" not in proc.stderr


def test_stale_lock_of_a_dead_run_is_taken_over(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    dead = subprocess.Popen(["true"])
    dead.wait()
    (out / ".lock").write_text(str(dead.pid))
    proc = metabench("run", "--benchmark", "sine-k5", "--algorithm", "pretrain", "--profile", "smoke", "--set",
                     "budget.meta_iters=3", "--set", "budget.test_episodes=3", *QUICK, "--out", str(out))
    assert proc.returncode == 0, proc.stderr


def test_missing_data_root_is_refused_naming_the_path(tmp_path):
    missing = tmp_path / "no-such-folder"
    proc = metabench("run", "--benchmark", "omniglot-5w1s", "--algorithm", "protonet", "--profile", "smoke",
                     "--data-root", str(missing), *QUICK, "--out", str(tmp_path / "run"))
    assert proc.returncode == 2 and str(missing) in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.skipif(not real_omniglot_available(), reason="needs the Omniglot images (set METABENCH_DATA)")
@pytest.mark.parametrize("setting,expected", [
    ("omniglot-5w1s.ways=5000", "5000-way episodes need 5000 classes"),
    ("omniglot-5w1s.test_query=30", "exceed the 20 examples per class"),
])
def test_impossible_episode_shapes_fail_the_cell_with_the_fix(tmp_path, setting, expected):
    out = tmp_path / "run"
    proc = metabench("run", "--benchmark", "omniglot-5w1s", "--algorithm", "protonet", "--profile", "smoke",
                     "--set", setting, *QUICK, "--out", str(out))
    assert proc.returncode == 1
    error = pd.read_csv(out / "summary.csv", keep_default_na=False)["error"].iloc[0]
    assert expected in error


def test_process_pool_gives_the_local_results(tmp_path):
    args = ["run", "--benchmark", "sine-k5", "--algorithm", "maml", "--algorithm", "reptile", "--algorithm",
            "pretrain", "--profile", "smoke", "--set", "budget.meta_iters=30", "--set", "budget.test_episodes=30",
            "--set", "budget.cpus=1", *QUICK]
    assert metabench(*args, "--out", str(tmp_path / "local")).returncode == 0
    pooled = metabench(*args, "--jobs", "2", "--out", str(tmp_path / "pool"))
    assert pooled.returncode == 0, pooled.stderr
    assert (tmp_path / "local" / "episodes.csv").read_bytes() == (tmp_path / "pool" / "episodes.csv").read_bytes()


def test_ray_executor_gives_the_local_results(tmp_path):
    pytest.importorskip("ray", reason="the Ray executor is optional: pip install -e '.[ray]'")
    args = ["run", "smoke", "--set", "budget.meta_iters=30", "--set", "budget.test_episodes=30", *QUICK]
    assert metabench(*args, "--out", str(tmp_path / "local")).returncode == 0
    env = {**os.environ, "RAY_ADDRESS": ""}  # never join someone else's cluster from a test
    proc = subprocess.run([sys.executable, "-m", "bench", *args, "--executor", "ray", "--out",
                           str(tmp_path / "ray")], capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr
    for name in ("episodes.csv", "summary.csv"):
        local = pd.read_csv(tmp_path / "local" / name)
        remote = pd.read_csv(tmp_path / "ray" / name)
        drop = [c for c in ("train_seconds", "eval_seconds") if c in local.columns]
        pd.testing.assert_frame_equal(local.drop(columns=drop), remote.drop(columns=drop))
