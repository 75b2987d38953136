"""Configuration overlays (`--config FILE`, repeatable) over the packaged benchmarks.yaml, the sources they leave
for `metabench config show`, and suites whose wildcards do not move when a plugin is installed."""
import json
import subprocess
import sys

import pytest

import algorithms
from algorithms.base import Learner
from bench.config import Config, ConfigError

CI_SUITE = """\
# a lab's CI suite: ten lines, no fork of benchmarks.yaml
suites:
  ci:
    description: our pull-request gate
    benchmarks: [sine-k5]
    algorithms: [maml, reptile]
    seeds: [0, 1]
    profile: smoke
algorithms:
  maml:
    defaults: {inner_lr: 0.02}
"""


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def one_line_error(*args, **kwargs) -> str:
    with pytest.raises(ConfigError) as err:
        Config.load(*args, **kwargs)
    message = str(err.value)
    assert "\n" not in message
    return message


def test_a_ten_line_overlay_adds_a_suite_and_changes_one_default(tmp_path):
    overlay = write(tmp_path, "ci.yaml", CI_SUITE)
    config = Config.load([overlay])
    base = Config.load()
    assert set(base.suites) < set(config.suites) and config.benchmarks == base.benchmarks
    cells, profile, label = config.grid("ci", [], [], [], None)
    assert label == "ci" and profile == "smoke" and [c.key for c in cells] == [
        "sine-k5/maml/seed0", "sine-k5/maml/seed1", "sine-k5/reptile/seed0", "sine-k5/reptile/seed1"]
    assert cells[0].hparams["inner_lr"] == 0.02
    # the rest of maml's defaults still come from its dataclass
    assert cells[0].hparams["meta_batch"] == base.hparams("maml", "sine-k5", "smoke")["meta_batch"]
    assert config.source_of("suites.ci.benchmarks") == str(overlay)
    assert config.source_of("algorithms.maml.defaults.inner_lr") == str(overlay)


def test_later_overlays_win_and_set_wins_over_all(tmp_path):
    a = write(tmp_path, "a.yaml", "benchmarks:\n  sine-k5: {test_query: 7, shots: 3}\n")
    b = write(tmp_path, "b.yaml", "benchmarks:\n  sine-k5: {test_query: 9}\n")
    config = Config.load([a, b])
    spec = config.benchmarks["sine-k5"]
    assert spec["test_query"] == 9 and spec["shots"] == 3 and spec["kind"] == "regression"
    assert config.source_of("benchmarks.sine-k5.test_query") == str(b)
    assert config.source_of("benchmarks.sine-k5.shots") == str(a)
    config = Config.load([a, b], ["sine-k5.test_query=11"])
    assert config.benchmarks["sine-k5"]["test_query"] == 11
    assert config.source_of("benchmarks.sine-k5.test_query") == "--set sine-k5.test_query=11"


def test_overlay_adds_a_benchmark_and_a_profile(tmp_path):
    overlay = write(tmp_path, "new.yaml", """\
benchmarks:
  sine-k3:
    kind: regression
    dataset: sine
    shots: 3
    train_query: 10
    test_query: 50
    amplitude: [0.1, 5.0]
    phase: [0.0, 3.14159]
    x_range: [-5.0, 5.0]
    eval_steps: 10
    eval_seed: 7
    test_episodes: 100
    backbone: mlp-40-40
profiles:
  tiny: {meta_iters: 5, test_episodes: 10}
""")
    config = Config.load(overlay)
    cell = config.cell("sine-k3", "maml", 0, "tiny")
    assert cell.spec["shots"] == 3 and cell.budget["meta_iters"] == 5 and cell.budget["test_episodes"] == 10


def test_explain_cell_names_every_source(tmp_path):
    overlay = write(tmp_path, "ci.yaml", CI_SUITE)
    explained = Config.load([overlay], ["budget.meta_iters=3"]).explain_cell("sine-k5", "maml", 0, "smoke")
    assert explained["hparams"]["inner_lr"] == {"value": 0.02,
                                                "from": f"{overlay}: algorithms.maml.defaults.inner_lr"}
    assert explained["hparams"]["meta_lr"]["from"] == "algorithms.maml.MAMLHparams default"
    assert explained["budget"]["meta_iters"] == {"value": 3, "from": "--set budget.meta_iters"}
    assert explained["spec"]["shots"]["from"] == "benchmarks.yaml: benchmarks.sine-k5.shots"


@pytest.mark.parametrize("text,expected", [
    ("suitez:\n  x: {}\n", ["suitez", "unknown top-level section", "did you mean 'suites'"]),
    ("benchmarks:\n  sine-k5: {shotz: 3}\n", ["benchmarks.sine-k5.shotz", "did you mean 'shots'"]),
    ("algorithms:\n  maml:\n    defaults: {inner_rl: 0.1}\n", ["algorithms.maml.defaults.inner_rl", "inner_lr"]),
    ("suites: [smoke]\n", ["suites", "expected a mapping"]),
    ("suites:\n  ci: {benchmarks: [sine-k50], algorithms: [maml]}\n", ["suites.ci.benchmarks", "sine-k50"]),
    ("suites:\n  ci: {benchmarks: [sine-k5], algorithms: [mamll]}\n", ["suites.ci.algorithms", "did you mean 'maml'"]),
    ("profiles:\n  tiny: {meta_iters: 5}\n", ["profiles.tiny.test_episodes", "missing"]),
    ("benchmarks: {sine-k5: {shots: [}\n", ["invalid YAML"]),
    ("- just\n- a list\n", ["top level must be a mapping"]),
])
def test_bad_overlays_name_the_file_and_the_key(tmp_path, text, expected):
    overlay = write(tmp_path, "mine.yaml", text)
    message = one_line_error([overlay])
    assert str(overlay) in message
    for part in expected:
        assert part in message


def test_missing_overlay_file(tmp_path):
    assert "no-such.yaml: config file not found" in one_line_error([tmp_path / "no-such.yaml"])


def test_an_empty_overlay_changes_nothing(tmp_path):
    assert Config.load(write(tmp_path, "empty.yaml", "")).raw == Config.load().raw


def test_wildcards_take_only_built_in_and_requested_plugins(monkeypatch):
    class Installed(Learner):
        kinds = ("regression",)

    Installed.__module__ = "some_installed_plugin"
    monkeypatch.setitem(algorithms._REGISTRY, "zz-installed", Installed)
    monkeypatch.setattr(algorithms._registry, "_REQUESTED", set())
    config = Config.load()
    cells, _, _ = config.grid("smoke", [], [], [], None)  # smoke is algorithms: ["*"]
    assert "zz-installed" not in {c.algorithm for c in cells}
    assert algorithms.expand("zz-installed") == ["zz-installed"]  # named explicitly: fine
    cells, _, _ = config.grid(None, ["sine-k5"], ["zz-installed"], [0], "smoke")
    assert [c.algorithm for c in cells] == ["zz-installed"]
    algorithms._registry._REQUESTED.add("some_installed_plugin")  # what --plugin some_installed_plugin does
    assert "zz-installed" in {c.algorithm for c in config.grid("smoke", [], [], [], None)[0]}


def metabench(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True, text=True, timeout=300,
                          cwd=cwd)


def test_config_show_marks_overlay_values(tmp_path):
    overlay = write(tmp_path, "ci.yaml", CI_SUITE)
    proc = metabench("config", "show", "--config", str(overlay))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert any(line.strip().startswith("ci:") and f"# from {overlay}" in line for line in lines)
    # the shipped file has no maml `defaults` (its dataclass holds them): the overlay adds the whole mapping
    assert any(line.strip().startswith("defaults:") and f"# from {overlay}" in line for line in lines)
    assert any(line.strip().startswith("inner_lr: 0.02") for line in lines)
    assert not any("# from" in line for line in lines if line.strip().startswith("sine-k10:"))
    proc = metabench("config", "show", "--config", str(overlay), "--cell", "sine-k5/maml/0", "--profile", "smoke",
                     "--format", "json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["hparams"]["inner_lr"]["from"].startswith(str(overlay))
    bad = metabench("config", "show", "--cell", "sine-k5/maml")
    assert bad.returncode == 2 and "BENCHMARK/ALGORITHM/SEED" in bad.stderr and len(bad.stderr.splitlines()) == 1


@pytest.mark.parametrize("targets, message", [
    ("{sine-k10: {maml: 1}}", "suites.ci.targets.sine-k10: not a benchmark of this suite; use one of sine-k5"),
    ("{sine-k5: {mamll: 1}}", "suites.ci.targets.sine-k5.mamll: unknown algorithm (did you mean 'maml'"),
    ("{sine-k5: {maml: low}}", "suites.ci.targets.sine-k5.maml: expected a number, got str 'low'"),
    ("{sine-k5: 3}", "suites.ci.targets.sine-k5: expected a mapping {algorithm: number}"),
])
def test_bad_suite_targets_are_one_line_errors_naming_the_key(tmp_path, targets, message):
    text = CI_SUITE.replace("    profile: smoke\n", f"    profile: smoke\n    targets: {targets}\n")
    overlay = write(tmp_path, "ci.yaml", text)
    assert message in one_line_error([overlay])
