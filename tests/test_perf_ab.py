"""`metabench perf --against REV` (bench/perf_ab.py): the speed gate's confirmation times the baseline commit's
code and this code in alternating fresh processes, so a drift between occasions cannot pass for a regression.
One test runs it for real: against HEAD with a slowdown injected into the new side only, the gate exits 1."""
import json
import subprocess
import sys

import pytest

from bench import perf_ab
from bench.cli import main
from bench.resources import checkout_root

ROOT = checkout_root()
needs_git = pytest.mark.skipif(
    ROOT is None
    or subprocess.run(["git", "-C", str(ROOT or "."), "rev-parse", "HEAD"], capture_output=True).returncode,
    reason="needs a git checkout of metabench (the A/B confirmation runs a commit's code)")


def test_the_baseline_revision_is_the_commit_its_manifest_records(tmp_path):
    run = tmp_path / "baseline-perf" / "run-1"
    run.mkdir(parents=True)
    (run / "manifest.json").write_text(json.dumps({"commit": "abc123", "dirty": False}))
    assert perf_ab.baseline_revision(str(tmp_path / "baseline-perf")) == "abc123"
    assert perf_ab.baseline_revision("v1.2") == "v1.2"  # not a folder: a git revision as given
    (run / "manifest.json").write_text(json.dumps({"commit": "abc123", "dirty": True}))
    with pytest.raises(perf_ab.ABError, match="uncommitted changes"):
        perf_ab.baseline_revision(str(run))
    (run / "manifest.json").write_text("{not json")
    with pytest.raises(perf_ab.ABError, match="manifest.json is unreadable"):
        perf_ab.baseline_revision(str(run))


@needs_git
def test_sides_alternate_abba_and_an_injected_slowdown_stays_out_of_the_baseline(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(perf_ab, "_perf", lambda code, out, size, steps, env: calls.append(
        (code, out, env, (code / "bench" / "perf.py").is_file())))  # the unpacked code is gone after the run
    monkeypatch.setenv(perf_ab.SLOWDOWN_ENV, "train/maml/*=0.3")
    info = perf_ab.run("HEAD", tmp_path / "ab", ["train/maml/*"], rounds=3)
    sides = [out.parent.name + "/" + out.name for _, out, _, _ in calls]
    assert sides == ["baseline/run-1", "new/run-1", "new/run-2", "baseline/run-2", "baseline/run-3", "new/run-3"]
    for code, out, env, unpacked in calls:
        if out.parent.name == "baseline":
            assert perf_ab.SLOWDOWN_ENV not in env and env["PYTHONPATH"].split(":")[0] == str(code)
            assert unpacked and code != ROOT
        else:
            assert env[perf_ab.SLOWDOWN_ENV] == "train/maml/*=0.3" and code == ROOT
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert info["baseline_commit"] == head
    assert json.loads((tmp_path / "ab" / "ab.json").read_text())["order"] == sides


@needs_git
def test_an_unknown_revision_or_a_used_folder_is_one_line_exit_2(tmp_path, capsys):
    assert main(["perf", "--quick", "--against", "no-such-revision-0123", "--out", str(tmp_path / "ab")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no-such-revision-0123" in err and "fetch" in err
    (tmp_path / "ab" / "new").mkdir(parents=True)
    assert main(["perf", "--quick", "--against", "HEAD", "--out", str(tmp_path / "ab")]) == 2
    assert "already holds" in capsys.readouterr().err
    assert main(["perf", "--quick", "--against", "HEAD", "--rounds", "1", "--out", str(tmp_path / "x")]) == 2


@needs_git
@pytest.mark.slow
def test_a_slowdown_in_the_new_code_is_confirmed_side_by_side(tmp_path):
    """For real, on a step that takes milliseconds: HEAD's code against this code with 60% more work injected
    into this side only. The side-by-side comparison exits 1 naming the step."""
    step = "sample/train/sine-k5"
    env = {**__import__("os").environ, perf_ab.SLOWDOWN_ENV: f"{step}=0.6"}
    done = subprocess.run([sys.executable, "-m", "bench", "perf", "--quick", "--against", "HEAD", "--rounds", "2",
                           "--step", step, "--out", str(tmp_path / "ab")], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    gate = subprocess.run([sys.executable, "-m", "bench", "compare", "--perf", str(tmp_path / "ab" / "baseline"),
                           str(tmp_path / "ab" / "new")], capture_output=True, text=True)
    assert gate.returncode == 1, gate.stdout + gate.stderr
    assert f"regression: {step}" in gate.stderr
