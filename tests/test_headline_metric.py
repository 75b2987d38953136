"""Each benchmark's headline metric and direction come from its declaration (benchmarks.yaml, as recorded in a
run's manifest), never from the metric's name: bench.metrics, and the report and compare that use it."""
import json

import pytest
from test_report import accuracy, make_run, sine

from bench import compare, leaderboard, metrics
from bench.config import Config, ConfigError


def test_every_shipped_benchmark_declares_its_metric():
    config = Config.load()
    for name, spec in config.benchmarks.items():
        declared = metrics.Headlines().metric(name)
        assert declared == metrics.Metric(spec["metric"]["name"], spec["metric"]["higher_is_better"]), name
    assert metrics.Headlines().metric("sine-k20") == metrics.Metric("mse@10", False)
    assert metrics.Headlines().metric("omniglot-20w5s") == metrics.Metric("accuracy", True)
    assert metrics.Headlines().metric("mnist-relu") == metrics.Metric("final_loss", False)


def test_manifest_declaration_wins_then_shipped_then_kind_default():
    run_spec = {"kind": "regression", "eval_steps": 10, "metric": {"name": "mse@5", "higher_is_better": False}}
    headlines = metrics.Headlines({"sine-k5": run_spec, "sine-k3": {"kind": "regression", "eval_steps": 4},
                                   "odd": {"kind": "nope"}})
    assert headlines.headline("sine-k5") == "mse@5"  # the run's own (an overlay or --set chose it)
    assert headlines.headline("sine-k10") == "mse@10"  # not in the run: the shipped file
    assert headlines.headline("sine-k3") == "mse@4"  # an overlay's benchmark without `metric`: its kind's default
    assert headlines.metric("odd") is None and headlines.higher_is_better("odd") is None
    assert headlines.headline("sine-k5", present=["mse@0", "mse@1"]) is None  # declared but never measured


def _declare(run, benchmark, name, higher):
    path = run / "manifest.json"
    manifest = json.loads(path.read_text())
    for cell in manifest["cells"]:
        if cell["benchmark"] == benchmark:
            cell["config"]["spec"]["metric"] = {"name": name, "higher_is_better": higher}
    path.write_text(json.dumps(manifest))


def test_report_ranks_by_the_declared_direction(tmp_path):
    run = make_run(tmp_path / "run", {("omniglot-5w1s", "maml", 0): accuracy(90.0),
                                      ("omniglot-5w1s", "protonet", 0): accuracy(60.0)})
    board = leaderboard.leaderboard(leaderboard.merge_runs([run]))
    assert list(board["algorithm"]) == ["maml", "protonet"]
    # the manifest says lower is better (say, an error rate under the same name): the order follows it
    _declare(run, "omniglot-5w1s", "accuracy", False)
    board = leaderboard.leaderboard(leaderboard.merge_runs([run]))
    assert list(board["algorithm"]) == ["protonet", "maml"]


def test_compare_gates_the_baselines_declared_metric(tmp_path):
    cells = {("sine-k5", "maml", 0): sine(0.5)}
    base, new = make_run(tmp_path / "base", cells), make_run(tmp_path / "new", cells)
    side_b, side_n = compare.load_side(base), compare.load_side(new)
    table = compare.compare_runs(side_b, side_n, 0.05, None)
    assert list(table.loc[table["gate"], "metric"]) == ["mse@10"]
    _declare(base, "sine-k5", "mse@5", False)
    table = compare.compare_runs(compare.load_side(base), side_n, 0.05, None)
    assert list(table.loc[table["gate"], "metric"]) == ["mse@5"]


@pytest.mark.parametrize("value, message", [
    ("{name: accuracy}", "higher_is_better: missing"),
    ("{name: mse@20, higher_is_better: false}", "mse@20 is never measured"),
    ("{name: mse@10, higher_is_better: 'no'}", "expected true or false"),
    ("{name: mse@10, higher_is_better: false, unit: x}", "unknown metric key"),
])
def test_config_refuses_a_bad_metric_declaration(value, message):
    with pytest.raises(ConfigError, match=message):
        Config.load(None, [f"sine-k5.metric={value}"])
