"""How far along the paper's training a result is (bench.budget_progress, bench.pivot): the paper profile's
budget for a cell, where a validation curve first reached the published value, the report's two columns and the
pivoted table with its notes on cells below their suite's target."""
import io

import pandas as pd
import pytest
from conftest import real_omniglot_available

from bench.budget_progress import reached_at
from bench.cli import main
from bench.profiles import paper_meta_iters

SUITE = """\
suites:
  tiny-table:
    description: two cells and a target one of them misses
    benchmarks: [omniglot-5w1s]
    algorithms: [protonet, maml]
    profile: smoke
    targets:
      omniglot-5w1s: {maml: 99.5}
"""


def test_the_paper_budget_is_only_what_a_paper_profile_rule_names():
    assert paper_meta_iters("omniglot-5w1s", "maml") == 60000
    assert paper_meta_iters("omniglot-20w1s", "reptile") == 200000
    assert paper_meta_iters("sine-k5", "maml") == 70000
    assert paper_meta_iters("omniglot-5w1s", "protonet") is None  # the profile's fallback is not a published fact


def test_reached_at_is_the_first_iteration_at_least_as_good():
    curve = pd.DataFrame({"iteration": [10, 20, 30, 40], "value": [50.0, 80.0, 79.0, 90.0]})
    assert reached_at(curve, 80.0, True) == 20
    assert reached_at(curve, 95.0, True) is None
    assert reached_at(curve, 60.0, False) == 10


@pytest.mark.skipif(not real_omniglot_available(), reason="needs the real Omniglot images (set METABENCH_DATA)")
def test_report_columns_and_the_pivoted_table(tmp_path, capsys):
    overlay = tmp_path / "suite.yaml"
    overlay.write_text(SUITE)
    out = tmp_path / "run"
    assert main(["run", "tiny-table", "--config", str(overlay), "--out", str(out), "--set", "budget.meta_iters=6",
                 "--set", "budget.test_episodes=5", "--set", "budget.curve_points=3", "--set", "budget.curve_tasks=3",
                 "--no-progress", "--no-figures", "-q"]) == 0
    capsys.readouterr()
    assert main(["report", str(out)]) == 0
    rows = {line.split("|")[1].strip(): line.split("|") for line in capsys.readouterr().out.splitlines()
            if line.startswith("| maml") or line.startswith("| protonet")}
    header = ["algorithm", "metric", "ours", "over", "published", "delta", "inside", "iters", "budget", "reached"]
    maml = dict(zip(header, (c.strip() for c in rows["maml"][1:])))
    protonet = dict(zip(header, (c.strip() for c in rows["protonet"][1:])))
    assert maml["budget"] == "0.01% of 60,000" and maml["reached"] == "not in 6"
    assert protonet["budget"] == "" and protonet["reached"] == "not in 6"  # no paper budget, but a curve
    assert main(["report", str(out), "--pivot"]) == 0
    table = capsys.readouterr().out
    assert "| MAML | " in table and " / 98.7 ± 0.4 | Omniglot 5-way 1-shot: " in table  # below its 99.5 target
    assert "< target 99.5 at 6 meta-iterations; the paper profile: 60,000" in table


@pytest.mark.skipif(not real_omniglot_available(), reason="needs the real Omniglot images (set METABENCH_DATA)")
def test_a_run_without_recorded_targets_takes_its_suites_from_the_packaged_config(tmp_path, capsys, monkeypatch):
    import json

    import bench.pivot
    import bench.profiles

    config = bench.profiles.packaged_config()
    config["suites"]["tiny-table"] = {"targets": {"omniglot-5w1s": {"maml": 99.5}}}
    monkeypatch.setattr(bench.pivot, "packaged_config", lambda: config)
    overlay = tmp_path / "suite.yaml"
    overlay.write_text(SUITE.replace("maml: 99.5", "maml: 1"))
    out = tmp_path / "run"
    assert main(["run", "tiny-table", "--config", str(overlay), "--out", str(out), "--set", "budget.meta_iters=4",
                 "--set", "budget.test_episodes=3", "--no-progress", "--no-figures", "-q"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest.pop("targets") == {"omniglot-5w1s": {"maml": 1}}  # as older runs: no targets recorded
    (out / "manifest.json").write_text(json.dumps(manifest))
    capsys.readouterr()
    assert main(["report", str(out), "--pivot", "--format", "csv"]) == 0
    table = pd.read_csv(io.StringIO(capsys.readouterr().out))
    notes = dict(zip(table["algorithm"], table["notes"].fillna("")))
    assert notes["MAML"].startswith("Omniglot 5-way 1-shot: ") and \
        "< target 99.5 at 4 meta-iterations; the paper profile: 60,000" in notes["MAML"]
    assert notes["ProtoNet"] == ""
