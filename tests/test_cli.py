"""The command line end to end: files a run writes, determinism, and one-line errors for user mistakes."""
import json
import subprocess
import sys

import pandas as pd
import pytest

from bench.cli import main

FAST = ["--set", "budget.meta_iters=20", "--set", "budget.test_episodes=30", "--set", "budget.validation_tasks=5",
        "--no-progress"]


def metabench(*args):
    return subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True, text=True, timeout=600)


def test_smoke_suite_writes_every_file_and_figure(tmp_path):
    out = tmp_path / "run"
    proc = metabench("run", "smoke", "--out", str(out), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    for name in ("manifest.json", "episodes.csv", "summary.csv", "curves.csv"):
        assert (out / name).is_file(), name
    for name in ("maml-sine-steps", "maml-sine-fits", "training-curves"):
        assert (out / "figures" / f"{name}.png").is_file() and (out / "figures" / f"{name}.pdf").is_file()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["profile"] == "smoke" and manifest["finished"]
    assert len({c["test_episode_digest"] for c in manifest["cells"]}) == 1
    assert all(c["config_hash"] and c["config"]["hparams"] for c in manifest["cells"])
    summary = pd.read_csv(out / "summary.csv")
    assert {"benchmark", "algorithm", "seed", "metric", "mean", "ci95", "n"} <= set(summary.columns)
    assert set(summary["seed"].astype(str)) == {"0", "all"}
    episodes = pd.read_csv(out / "episodes.csv")
    assert list(episodes.columns) == ["benchmark", "algorithm", "seed", "episode", "metric", "value"]
    # learning moved off the untrained starting point: one MAML step beats zero steps
    maml = summary[(summary["algorithm"] == "maml") & (summary["seed"].astype(str) == "0")].set_index("metric")
    assert maml.loc["mse@1", "mean"] < maml.loc["mse@0", "mean"]


def test_same_seed_twice_gives_byte_identical_episodes(tmp_path):
    args = ["run", "--benchmark", "sine-k5", "--algorithm", "maml", "--algorithm", "reptile", "--algorithm",
            "pretrain", "--profile", "smoke", "--no-figures", *FAST]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    assert (tmp_path / "a" / "episodes.csv").read_bytes() == (tmp_path / "b" / "episodes.csv").read_bytes()
    assert main([*args, "--seed", "1", "--out", str(tmp_path / "c")]) == 0
    assert (tmp_path / "a" / "episodes.csv").read_bytes() != (tmp_path / "c" / "episodes.csv").read_bytes()


@pytest.mark.parametrize("argv,expected", [
    (["run", "--algorithm", "mamll", "--benchmark", "sine-k10", "--profile", "smoke"], "did you mean 'maml'"),
    (["run", "--benchmark", "sine-k11", "--profile", "smoke"], "did you mean 'sine-k10'"),
    (["run", "--benchmark", "sine-k10", "--profile", "fast"], "unknown profile 'fast'"),
    (["run", "smok"], "unknown suite 'smok'"),
    (["run", "smoke", "--set", "maml.inner_lr=quick"], "expected a number"),
    (["run", "--benchmark", "omniglot-lake-20w1s", "--algorithm", "siamese", "--profile", "smoke", "--set",
      "siamese.sigmoid_features=-1"], "siamese.sigmoid_features: -1 is negative; set 0"),
    (["figures", "nope", "--from", "."], "unknown figure"),
])
def test_user_errors_are_one_line_without_traceback(argv, expected):
    proc = metabench(*argv)
    assert proc.returncode == 2
    assert expected in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_config_with_unknown_key_is_refused(tmp_path):
    bad = tmp_path / "bad.yaml"
    text = open(__import__("bench.config", fromlist=["x"]).DEFAULT_CONFIG).read()
    bad.write_text(text.replace("    shots: 5\n", "    shots: 5\n    shotz: 5\n", 1))
    proc = metabench("run", "smoke", "--config", str(bad))
    assert proc.returncode == 2 and "benchmarks.sine-k5.shotz" in proc.stderr and "Traceback" not in proc.stderr


def test_list_commands():
    proc = metabench("list", "algorithms")
    assert proc.returncode == 0
    for name in ("pretrain", "maml", "fomaml", "reptile"):
        assert name in proc.stdout
    assert "fomaml" in metabench("list", "algorithms", "*maml").stdout
    assert "reptile" not in metabench("list", "algorithms", "*maml").stdout
    assert "sine-k20" in metabench("list", "benchmarks", "sine-*").stdout
    assert "default" in metabench("list", "suites").stdout
    assert "maml-sine-fits" in metabench("figures", "--list").stdout


def test_failing_cell_is_recorded_and_others_still_run(tmp_path):
    out = tmp_path / "run"
    code = main(["run", "--benchmark", "sine-k5", "--algorithm", "maml", "--algorithm", "pretrain",
                 "--profile", "smoke", "--set", "maml.inner_lr=1e30", "--no-figures", "--out", str(out), *FAST])
    assert code == 1
    summary = pd.read_csv(out / "summary.csv", keep_default_na=False)
    failed = summary[summary["algorithm"] == "maml"]
    assert set(failed["status"]) == {"failed"} and "FloatingPointError" in failed["error"].iloc[0]
    assert set(summary[summary["algorithm"] == "pretrain"]["status"]) == {"ok"}
