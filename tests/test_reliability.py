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


def test_ctrl_c_reaches_the_cells_of_a_process_pool(tmp_path, uninterrupted):
    """With --jobs the cells run in workers that ignore SIGINT (here it reaches the driver only, as `kill -INT`
    does): the driver must still stop them at their next meta-iteration, not let them run their cells out."""
    out = tmp_path / "run"
    proc = start(*SINE_MAML, "--jobs", "2", "--out", str(out))
    wait_for(out / "checkpoints" / "sine-k5__maml__seed0.pt", proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "--resume" in err and "Traceback" not in err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["finished"] is None and manifest["cells"][0]["status"] == "pending"
    resumed = metabench("run", "--resume", str(out), "--jobs", "2", *QUICK)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((out / "manifest.json").read_text())["cells"][0]["resumed_from_iteration"] > 0
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
    # the manifest keeps the commit the run started on and records the one each resumption ran on
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["resumed"]) == len(manifest["resumed_on"]) == 1
    assert manifest["resumed_on"][0]["commit"] == manifest["commit"] and "at" in manifest["resumed_on"][0]


def test_resume_with_changed_config_is_refused_naming_the_keys(tmp_path):
    from bench.config import DEFAULT_CONFIG

    config = tmp_path / "benchmarks.yaml"
    config.write_text(DEFAULT_CONFIG.read_text())
    out = tmp_path / "run"
    assert metabench("run", "--benchmark", "sine-k5", "--algorithm", "maml", "--profile", "smoke", "--config",
                     str(config), "--set", "budget.meta_iters=5", "--set", "budget.test_episodes=5", *QUICK,
                     "--out", str(out)).returncode == 0
    config.write_text(config.read_text().replace(  # maml's inner_lr 0.01 is its dataclass default
        "    description: second-order MAML (Finn et al. 2017)\n",
        "    description: second-order MAML (Finn et al. 2017)\n    defaults: {inner_lr: 0.02}\n", 1))
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
    # a run folder whose cell looks interrupted (no cells/*.json), its checkpoint swapped for a crafted pickle;
    # only --resume loads checkpoints (a new run refuses a folder it did not write)
    assert metabench("run", "--benchmark", "sine-k5", "--algorithm", "maml", "--profile", "smoke", "--set",
                     "budget.meta_iters=5", "--set", "budget.test_episodes=5", *QUICK,
                     "--out", str(out)).returncode == 0
    for path in (out / "cells").glob("*.json"):
        path.unlink()
    (out / "checkpoints" / "sine-k5__maml__seed0.pt").write_bytes(pickle.dumps(Exploit()))
    proc = metabench("run", "--resume", str(out), *QUICK)
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


@pytest.mark.parametrize("sets,expected", [
    (["mann.train_query=0"], "mann.train_query: 0 leaves the 'sequence' protocol nothing to predict"),
    (["mann.curriculum_ways=2", "mann.curriculum_from=0.8", "mann.curriculum_until=0.5"],
     "mann.curriculum_from (0.8) must be below curriculum_until (0.5)"),
])
def test_hyper_parameters_that_do_not_go_together_are_refused_before_any_cell(tmp_path, sets, expected):
    out = tmp_path / "run"
    proc = metabench("run", "--benchmark", "omniglot-5w1s", "--algorithm", "mann", "--profile", "smoke",
                     *[a for s in sets for a in ("--set", s)], *QUICK, "--out", str(out))
    assert proc.returncode == 2 and expected in proc.stderr and "omniglot-5w1s/mann/seed0" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not out.exists() and "Traceback" not in proc.stderr


@pytest.mark.parametrize("setting,expected", [
    ("omniglot-5w1s.ways=5000", "5000-way episodes need 5000 classes but the test split"),
    ("omniglot-5w1s.test_query=30", "exceed the 20 examples per class"),
    ("protonet.train_ways=5000", "the train split of omniglot-5w1s has 4112 (ways from --set protonet.train_ways)"),
])
def test_impossible_episode_shapes_are_refused_before_any_cell(tmp_path, setting, expected):
    """Checked from the committed split files alone (no image is read), so this needs no dataset."""
    out = tmp_path / "run"
    proc = metabench("run", "--benchmark", "omniglot-5w1s", "--algorithm", "protonet", "--profile", "smoke",
                     "--set", setting, *QUICK, "--out", str(out))
    assert proc.returncode == 2 and expected in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not out.exists()


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


def test_ctrl_c_stops_a_ray_run_and_resume_continues(tmp_path, uninterrupted):
    """Ray tasks cannot be asked to checkpoint: Ctrl-C cancels them and resume starts from the last periodic
    checkpoint, which must still give the uninterrupted episodes."""
    pytest.importorskip("ray", reason="the Ray executor is optional: pip install -e '.[ray]'")
    out = tmp_path / "run"
    env = {**os.environ, "RAY_ADDRESS": ""}
    proc = subprocess.Popen([sys.executable, "-m", "bench", *SINE_MAML, "--executor", "ray", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    wait_for(out / "checkpoints" / "sine-k5__maml__seed0.pt", proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "--resume" in err and "Traceback" not in err
    assert json.loads((out / "manifest.json").read_text())["finished"] is None
    resumed = metabench("run", "--resume", str(out), *QUICK)
    assert resumed.returncode == 0, resumed.stderr
    assert (out / "episodes.csv").read_bytes() == (uninterrupted / "episodes.csv").read_bytes()


# -- issue 26: nothing lost, nothing silently wrong, no traceback for bad input ----------------------------------
# In-process (bench.cli.main) where no process must die: the same code path as the command, ten times faster.

TINY = ["run", "--benchmark", "sine-k5", "--algorithm", "pretrain", "--profile", "smoke", "--set",
        "budget.meta_iters=3", "--set", "budget.test_episodes=3", "--set", "budget.validation_tasks=2", *QUICK]


def cli(capsys, *args):
    """(exit code, stderr) of `metabench ARGS`, asserting the error contract: no traceback."""
    from bench.cli import main

    try:
        code = main(list(map(str, args)))
    except SystemExit as exc:  # argparse
        code = exc.code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def files_of(folder: Path) -> dict:
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def finished(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli(capsys, *TINY, "--out", out)[0] == 0
    return out


def test_a_second_run_of_other_cells_into_the_same_out_is_refused(finished, capsys):
    before = files_of(finished)
    code, err = cli(capsys, "run", "--benchmark", "sine-k10", "--algorithm", "maml", "--profile", "smoke", *QUICK,
                    "--out", finished)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "sine-k5/pretrain/seed0 only there" in err and "sine-k10/maml/seed0 only in this run" in err
    code, err = cli(capsys, *TINY, "--set", "budget.meta_iters=4", "--out", finished)
    assert code == 2 and "sine-k5/pretrain/seed0 differs in budget.meta_iters: 3 -> 4" in err
    assert files_of(finished) == before


def test_out_into_a_folder_holding_a_users_summary_is_refused(tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "summary.csv").write_text("my,own\n1,2\n")
    code, err = cli(capsys, *TINY, "--out", mine)
    assert code == 2 and "not a metabench run folder" in err
    assert files_of(mine) == {Path("summary.csv"): b"my,own\n1,2\n"}


@pytest.mark.parametrize("args,expected", [
    (["--set", "budget.meta_iters=-5"], "--set budget.meta_iters: -5 is out of range; allowed: >= 0"),
    (["--set", "budget.test_episodes=0"], "--set budget.test_episodes: 0 is out of range"),
    (["--set", "budget.cpus=-1"], "--set budget.cpus: -1 is out of range"),
    (["--set", "sine-k5.shots=0"], "benchmarks.sine-k5.shots: 0 is out of range"),
    (["--set", "sine-k5.dataset=[sine]"], "benchmarks.sine-k5.dataset: expected a string"),
    (["--jobs", "0"], "argument --jobs: expected a whole number >= 1, got 0"),
    (["--device", "tpu"], "--device 'tpu'"),
    (["--seed", "0-99999999"], "at most 10000 at once"),
])
def test_bad_numbers_are_refused_before_any_cell_starts(tmp_path, capsys, args, expected):
    out = tmp_path / "run"
    code, err = cli(capsys, *TINY, *args, "--out", out)
    assert code == 2 and expected in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_cuda_without_a_gpu_is_one_refusal_up_front(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    code, err = cli(capsys, *TINY, "--device", "cuda", "--out", tmp_path / "run")
    assert code == 2 and "no CUDA GPU is available" in err and not (tmp_path / "run").exists()


def test_resume_with_grid_flags_is_refused_naming_them(finished, capsys):
    code, err = cli(capsys, "run", "--resume", finished, "--profile", "cpu", "--set", "budget.meta_iters=9")
    assert code == 2 and "remove --profile, --set" in err


def test_damaged_run_files_are_one_line_errors_everywhere(finished, tmp_path, capsys):
    cells = sorted((finished / "cells").glob("*.json"))
    cells[0].write_text('{"config_hash": "ab')  # cut short
    code, err = cli(capsys, "run", "--resume", finished, "--no-progress")
    assert code == 2 and f"cells/{cells[0].name} (finished-cell record is not valid JSON" in err
    assert "0 other finished cell(s) are safe to keep" in err and "delete the damaged file(s)" in err
    (finished / "manifest.json").write_text('{"run_id": ')
    for args in (["run", "--resume", finished], ["report", finished], ["compare", finished, finished],
                 ["verify", finished]):
        code, err = cli(capsys, *args)
        assert code == 2 and "manifest.json: run manifest is not valid JSON" in err, args
        assert len(err.strip().splitlines()) == 1


def test_text_in_a_number_column_names_the_row(tmp_path, capsys):
    base = Path(__file__).resolve().parent.parent / "results" / "baseline"
    new = tmp_path / "new"
    import shutil
    shutil.copytree(base, new)
    lines = (new / "episodes.csv").read_text().splitlines()
    lines[3] = lines[3].rsplit(",", 1)[0] + ",abc"
    (new / "episodes.csv").write_text("\n".join(lines) + "\n")
    code, err = cli(capsys, "compare", base, new)
    assert code == 2 and "episodes.csv row 4 (" in err and "value 'abc' is not a number" in err


def test_a_lock_from_another_host_is_taken_over_only_with_break_lock(finished, capsys):
    lock = finished / ".lock"
    lock.write_text("some-other-host 4242\n")
    code, err = cli(capsys, "run", "--resume", finished, "--no-progress")
    assert code == 2 and "locked by a run on another host (some-other-host, pid 4242" in err and "--break-lock" in err
    assert cli(capsys, "run", "--resume", finished, "--no-progress", "--break-lock")[0] == 0
    assert not lock.exists()


def test_break_lock_never_breaks_a_live_run_on_this_host(finished, capsys):
    import socket

    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (finished / ".lock").write_text(f"{socket.gethostname()} {sleeper.pid}\n")
        code, err = cli(capsys, "run", "--resume", finished, "--no-progress", "--break-lock")
        assert code == 2 and f"pid {sleeper.pid} on this host" in err
    finally:
        sleeper.kill()
        sleeper.wait()
    # the same lock once its process is gone: stale, taken over without being asked
    assert cli(capsys, "run", "--resume", finished, "--no-progress")[0] == 0


def test_figures_and_report_into_unusable_paths(finished, tmp_path, capsys):
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    assert cli(capsys, "figures", "all", "--from", finished, "--out", a_file)[0] == 2
    assert cli(capsys, "report", finished, "--out", a_file)[0] == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    code, err = cli(capsys, "figures", "all", "--from", empty, "--out", tmp_path / "figs")
    assert code == 2 and "no figure could be drawn" in err


def _mnist_copy(tmp_path) -> Path:
    from bench.data import data_root
    from bench.data.mnist import find_mnist

    real = find_mnist(data_root())
    if not (real / "t10k-images-idx3-ubyte").is_file():
        pytest.skip("needs the uncompressed MNIST IDX files (set METABENCH_DATA)")
    raw = tmp_path / "data" / "mnist" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for f in real.iterdir():
        (raw / f.name).symlink_to(f)
    return raw


def test_mnist_with_flipped_bytes_is_refused_by_run(tmp_path, capsys, monkeypatch):
    raw = _mnist_copy(tmp_path)
    target = raw / "t10k-images-idx3-ubyte"
    data = bytearray(target.read_bytes())
    target.unlink()
    data[5000:5016] = bytes(255 - b for b in data[5000:5016])  # same size, valid header
    target.write_bytes(bytes(data))
    monkeypatch.setenv("METABENCH_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    code, err = cli(capsys, "run", "--benchmark", "mnist-base", "--algorithm", "sgd", "--profile", "smoke", *QUICK,
                    "--data-root", tmp_path / "data", "--out", out)
    assert code == 1
    error = pd.read_csv(out / "summary.csv", keep_default_na=False)["error"].iloc[0]
    assert f"{target} (md5 " in error and "expected 2646ac647ad5339dbf082846283269ea" in error
    assert "metabench data prepare mnist --download" in error
    assert not pd.read_csv(out / "episodes.csv").shape[0]  # nothing was evaluated on the damaged bytes


def test_data_checksums_are_verified_once_per_file_version(tmp_path, monkeypatch):
    from bench.data import _files, mnist

    raw = _mnist_copy(tmp_path)
    hashed = []
    real_md5 = _files.md5sum
    monkeypatch.setattr(_files, "md5sum", lambda path, *a: hashed.append(Path(path).name) or real_md5(path, *a))
    cache = tmp_path / "cache"
    mnist._LOADED.clear()
    mnist.load_mnist(tmp_path / "data", cache)
    assert len(hashed) == 4 and len(list((cache / "verified").glob("*.json"))) == 4
    mnist._LOADED.clear()
    mnist.load_mnist(tmp_path / "data", cache)
    assert len(hashed) == 4  # remembered by (path, size, mtime_ns): a stat per file, no hashing
    labels = raw / "t10k-labels-idx1-ubyte"
    content = labels.read_bytes()
    labels.unlink()
    labels.write_bytes(content)  # same bytes, new mtime: hashed again, then remembered again
    mnist._LOADED.clear()
    mnist.load_mnist(tmp_path / "data", cache)
    assert hashed[4:] == ["t10k-labels-idx1-ubyte"]
    mnist._LOADED.clear()
