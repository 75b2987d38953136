"""`metabench compare`: the paired regression gate. Exit 0 for reruns, 1 for a real drop (naming the cell),
2 for folders that cannot be compared."""
import functools
import json
import shutil

import numpy as np
import pytest
from test_report import accuracy, make_run

from bench import compare
from bench.cli import main

# the smoke budget (150 meta-iterations): with fewer, 10 steps of an untrained MAML overshoot and inner_lr=0 "wins"
FAST = ["--set", "budget.test_episodes=60", "--set", "budget.validation_tasks=5",
        "--no-progress", "--no-figures"]
CELLS = ["--benchmark", "sine-k10", "--algorithm", "maml", "--algorithm", "pretrain", "--profile", "smoke"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    made = {}
    for name, extra in {"base": [], "rerun": [], "lr0": ["--set", "maml.inner_lr=0"],
                        "other-episodes": ["--set", "sine-k10.eval_seed=7"]}.items():
        assert main(["run", *CELLS, *FAST, *extra, "--out", str(root / name)]) == 0
        made[name] = root / name
    return made


def test_reruns_compare_clean(runs, capsys):
    assert main(["compare", str(runs["base"]), str(runs["rerun"])]) == 0
    out = capsys.readouterr().out
    assert "REGRESSION" not in out and "same *" in out
    assert "mse@0" in out and "mse@10" in out  # every metric is printed, the headline one gated


def test_zero_inner_lr_is_a_regression_naming_the_cell(runs, capsys):
    assert main(["compare", str(runs["base"]), str(runs["lr0"])]) == 1
    captured = capsys.readouterr()
    assert "sine-k10/maml/seed0" in captured.err and "mse@10" in captured.err
    assert "pretrain" not in captured.err
    # the other way round it is an improvement, not a regression
    assert main(["compare", str(runs["lr0"]), str(runs["base"])]) == 0
    assert "better *" in capsys.readouterr().out


def test_markdown_and_json_for_a_pull_request(runs, capsys):
    assert main(["compare", str(runs["base"]), str(runs["lr0"]), "--format", "md"]) == 1
    text = capsys.readouterr().out
    assert text.startswith("**metabench compare**: ") and "**1 regression(s)**" in text
    gated = text.split("<details>")[0]
    assert "| sine-k10 | maml | 0 | mse@10 |" in gated and "REGRESSION *" in gated and "mse@0" not in gated
    assert main(["compare", str(runs["base"]), str(runs["rerun"]), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["regressions"] == 0 and data["gated"] == 2 and {r["metric"] for r in data["rows"]} >= {"mse@10"}


def test_a_large_min_delta_accepts_the_drop(runs):
    assert main(["compare", str(runs["base"]), str(runs["lr0"]), "--min-delta", "100"]) == 0


def test_different_test_episodes_are_not_comparable(runs, capsys):
    assert main(["compare", str(runs["base"]), str(runs["other-episodes"])]) == 2
    err = capsys.readouterr().err.strip()
    assert "different test episodes" in err and "sine-k10/maml/seed0" in err and len(err.splitlines()) == 1


def test_missing_cells_are_listed(runs, tmp_path, capsys):
    partial = tmp_path / "partial"
    shutil.copytree(runs["rerun"], partial)
    manifest = json.loads((partial / "manifest.json").read_text())
    manifest["cells"] = [c for c in manifest["cells"] if c["algorithm"] != "maml"]
    (partial / "manifest.json").write_text(json.dumps(manifest))
    assert main(["compare", str(runs["base"]), str(partial)]) == 2
    assert "missing in NEW" in capsys.readouterr().err
    assert main(["compare", str(partial), str(runs["base"])]) == 2
    assert "missing in BASELINE" in capsys.readouterr().err


def test_unreadable_folders(runs, tmp_path, capsys):
    assert main(["compare", str(tmp_path / "nope"), str(runs["base"])]) == 2
    broken = tmp_path / "broken"
    shutil.copytree(runs["base"], broken)
    (broken / "episodes.csv").write_text("not,a\nrun")
    assert main(["compare", str(runs["base"]), str(broken)]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and all(e.startswith("metabench: error:") for e in errors)


# ---------------------------------------------------------------------------------------------------------


def test_verdicts_of_single_comparisons():
    rng = np.random.default_rng(0)
    acc = rng.normal(90, 5, 200)
    higher = functools.partial(compare.compare_values, higher_is_better=True)  # as omniglot-* declare
    lower = functools.partial(compare.compare_values, higher_is_better=False)  # as sine-* declare (mse@10)
    assert higher(acc, acc, 0.05, None)["verdict"] == "same"
    assert higher(acc, acc - 3 + rng.normal(0, 1, 200), 0.05, None)["verdict"] == "worse"
    assert higher(acc, acc - 0.5 + rng.normal(0, 0.1, 200), 0.05, None)["verdict"] == "small"
    assert higher(acc, acc + 3 + rng.normal(0, 1, 200), 0.05, None)["verdict"] == "better"
    noisy = higher(acc, acc + rng.normal(0, 5, 200), 0.05, None)
    assert noisy["verdict"] in ("ok", "small") and noisy["p"] > 0.001
    mse = rng.gamma(2.0, 1.0, 200)
    assert lower(mse, mse * 1.2, 0.05, None)["verdict"] == "worse"     # lower is better
    assert lower(mse, mse * 1.03, 0.05, None)["verdict"] == "small"    # under 5%
    assert lower(mse, mse * 1.03, 0.05, 0.0)["verdict"] == "worse"     # --min-delta 0
    diverged = mse.copy()
    diverged[3] = np.inf
    assert lower(mse, diverged, 0.05, None)["verdict"] == "worse"
    undeclared = compare.compare_values(acc, acc + 3, 0.05, None, higher_is_better=None)
    assert undeclared["verdict"] == "n/a"  # no direction declared: no verdict either way


def test_across_seed_row_is_the_gated_one(tmp_path, capsys):
    cells = lambda shift: {("omniglot-5w1s", "protonet", s): {
                               "accuracy": accuracy(95, n=100, seed=s)["accuracy"] + shift}
                           for s in (0, 1)}
    base, new = make_run(tmp_path / "base", cells(0)), make_run(tmp_path / "new", cells(-2))
    table = compare.compare_runs(compare.load_side(base), compare.load_side(new), 0.05, None)
    assert table.loc[table["gate"], "seed"].tolist() == ["all"]
    assert table["verdict"].eq("worse").all()
    assert main(["compare", str(base), str(new)]) == 1
    assert "omniglot-5w1s/protonet/seedall" in capsys.readouterr().err


def test_a_cell_that_fails_only_in_new_is_a_regression(tmp_path, capsys):
    base = make_run(tmp_path / "base",
                    {("omniglot-5w1s", "maml", 0): accuracy(95), ("omniglot-5w1s", "protonet", 0): accuracy(96)})
    new = make_run(tmp_path / "new", {("omniglot-5w1s", "protonet", 0): accuracy(96)},
                   failed=[("omniglot-5w1s", "maml", 0)])
    assert main(["compare", str(base), str(new)]) == 1
    assert "omniglot-5w1s/maml/seed0 failed" in capsys.readouterr().err
    assert main(["compare", str(new), str(base)]) == 2  # a failed baseline cell cannot be compared
    assert "failed in BASELINE" in capsys.readouterr().err


def test_diverged_episodes_in_new_are_a_regression(tmp_path, capsys):
    values = np.random.default_rng(0).gamma(2.0, 1.0, 50)
    diverged = values.copy()
    diverged[7] = np.inf
    base = make_run(tmp_path / "base", {("sine-k5", "maml", 0): {"mse@10": values}})
    new = make_run(tmp_path / "new", {("sine-k5", "maml", 0): {"mse@10": diverged}})
    assert main(["compare", str(base), str(new)]) == 1
    assert "sine-k5/maml/seed0" in capsys.readouterr().err
    assert main(["report", str(new)]) == 0
    assert "inf" in capsys.readouterr().out
