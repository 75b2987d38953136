"""What users of other ML command lines expect: --version, `list` with no argument, seed ranges, --quiet,
--format json, ordinary file modes, no writing over foreign folders, figures outside the run folder,
shell completion, and a clear error when another package's `algorithms` shadows ours."""
import argparse
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

import bench
from bench.cli import main
from bench.run_command import _seed_list
from bench.rundir import FILE_MODE, _umask

REPO = Path(__file__).resolve().parent.parent
TINY = ["run", "--benchmark", "sine-k5", "--algorithm", "pretrain", "--profile", "smoke", "--set",
        "budget.meta_iters=5", "--set", "budget.test_episodes=5", "--set", "budget.validation_tasks=2", "--no-progress"]


def metabench(*args, cwd=None, env=None):
    return subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True, text=True, timeout=300,
                          cwd=cwd, env=env)


def test_version():
    proc = metabench("--version")
    assert proc.returncode == 0 and proc.stdout.startswith(f"metabench {bench.__version__} from ")


def test_list_without_argument_lists_everything_and_formats(capsys):
    def listed(*args):
        code = main(["list", *args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    code, out, _ = listed()
    assert code == 0
    for heading in ("# algorithms", "# benchmarks", "# suites", "# profiles", "# figures"):
        assert heading in out
    assert "gate" in out and "maml" in out and "sine-k5" in out
    data = json.loads(listed("--format", "json")[1])
    assert {"maml", "protonet"} <= {row["algorithm"] for row in data["algorithms"]}
    assert next(r for r in data["suites"] if r["suite"] == "smoke")["algorithms"] == ["*"]
    rows = json.loads(listed("benchmarks", "sine-*", "--format", "json")[1])
    assert [r["benchmark"] for r in rows] == ["sine-k5", "sine-k10", "sine-k20"]
    assert listed("profiles", "--format", "names")[1].split()[:3] == ["smoke", "cpu", "gate"]
    assert "protonet" in listed("proto*")[1]
    code, _, err = listed("algoritms")
    assert code == 2 and "did you mean 'algorithms'" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("text,seeds", [("3", [3]), ("0-4", [0, 1, 2, 3, 4]), ("0,2", [0, 2]), ("0-1,5", [0, 1, 5])])
def test_seed_ranges_and_lists(text, seeds):
    assert _seed_list(text) == seeds


@pytest.mark.parametrize("text", ["4-2", "a", "1,,2", "-1", "0-"])
def test_bad_seeds_are_one_line_errors(text, capsys):
    with pytest.raises(argparse.ArgumentTypeError, match="e.g. 3, 0-4 or 0,2,5"):
        _seed_list(text)
    with pytest.raises(SystemExit) as exited:
        main(["run", "smoke", "--seed", text])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and len(err.strip().splitlines()) == 1 and "--seed" in err


def _modes(root: Path) -> set[tuple[str, int]]:
    return {("dir" if p.is_dir() else "file", stat.S_IMODE(p.stat().st_mode)) for p in root.rglob("*")}


def test_run_seeds_modes_quiet_and_out_rules(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["-q", *TINY, "--seed", "0-1", "--seed", "1,2", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""  # --quiet: nothing unless something fails
    manifest = json.loads((out / "manifest.json").read_text())
    assert [c["seed"] for c in manifest["cells"]] == [0, 1, 2]
    # files as open() would make them (0644 under umask 022), not mkstemp's 0600; folders 0755
    modes = _modes(out)
    assert {m for kind, m in modes if kind == "file"} == {FILE_MODE} == {0o666 & ~_umask()}
    assert {m for kind, m in modes if kind == "dir"} == {0o777 & ~_umask()}
    assert (out / "figures").is_dir()

    # the same cells again: allowed, and the earlier files are moved aside, not mixed with the new ones
    assert main([*TINY, "--seed", "0-2", "--no-figures", "--out", str(out)]) == 0
    assert not (out / "figures").exists()  # no stale figures beside a --no-figures run
    old = [p for p in tmp_path.iterdir() if p.name.startswith("run.old-")]
    assert len(old) == 1 and (old[0] / "figures").is_dir()
    capsys.readouterr()

    # another configuration into it: refused in one line, nothing touched
    before = sorted(p.name for p in out.iterdir())
    assert main([*TINY, "--seed", "5", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--force" in err and str(out) in err
    assert sorted(p.name for p in out.iterdir()) == before
    # a folder of somebody's files: refused; --force moves them aside
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    assert main([*TINY, "--out", str(mine)]) == 2
    assert "not a metabench run folder" in capsys.readouterr().err
    assert main([*TINY, "--no-figures", "--force", "--out", str(mine)]) == 0
    assert not (mine / "notes.txt").exists()
    assert [p.read_text() for p in tmp_path.glob("mine.old-*/notes.txt")] == ["keep me"]


def test_figures_default_to_the_working_folder_never_the_run(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    assert main([*TINY, "--no-figures", "--out", str(out)]) == 0
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert main(["figures", "training-curves", "--from", str(out)]) == 0
    run_id = json.loads((out / "manifest.json").read_text())["run_id"]
    assert (work / "figures" / run_id / "training-curves.png").is_file()
    assert not (out / "figures").exists()
    capsys.readouterr()
    assert main(["figures", "training-curves", "--from", str(out), "--out", str(out / "figures")]) == 2
    assert "inside the input run folder" in capsys.readouterr().err


def test_bash_completion_script():
    if shutil.which("bash") is None:
        pytest.skip("no bash")
    proc = metabench("completion", "bash")
    assert proc.returncode == 0 and "complete -F _metabench metabench" in proc.stdout
    assert " run " in proc.stdout and "--seed" in proc.stdout and "--algorithm)" in proc.stdout
    check = subprocess.run(["bash", "-n"], input=proc.stdout, capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


def test_a_foreign_algorithms_package_is_reported(tmp_path):
    (tmp_path / "algorithms").mkdir()
    (tmp_path / "algorithms" / "__init__.py").write_text("# a user's own package called algorithms\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    # `python -m` puts the current folder first on sys.path: the user's folder shadows ours
    proc = metabench("list", "algorithms", cwd=tmp_path, env=env)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert str(tmp_path / "algorithms") in proc.stderr and "shadows" in proc.stderr
