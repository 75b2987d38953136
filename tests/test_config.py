import copy

import pytest
import yaml

from bench.config import DEFAULT_CONFIG, Config, ConfigError

RAW = yaml.safe_load(DEFAULT_CONFIG.read_text())


def load_mutated(tmp_path, mutate, sets=()):
    raw = copy.deepcopy(RAW)
    mutate(raw)
    path = tmp_path / "benchmarks.yaml"
    path.write_text(yaml.safe_dump(raw))
    return Config.load(path, sets)


def error_of(tmp_path, mutate, sets=()):
    with pytest.raises(ConfigError) as err:
        load_mutated(tmp_path, mutate, sets)
    message = str(err.value)
    assert "\n" not in message
    return message


def test_repository_config_is_valid(config):
    assert {"smoke", "default"} <= set(config.suites)
    assert {"smoke", "cpu", "paper"} <= set(config.profiles)
    assert {"sine-k5", "sine-k10", "sine-k20"} <= set(config.benchmarks)


def test_unknown_benchmark_key_names_path(tmp_path):
    msg = error_of(tmp_path, lambda r: r["benchmarks"]["sine-k5"].update(shotz=3))
    assert "benchmarks.sine-k5.shotz" in msg and "did you mean 'shots'" in msg and "benchmarks.yaml" in msg


def test_unknown_hparam_names_path(tmp_path):
    msg = error_of(tmp_path, lambda r: r["algorithms"]["maml"]["defaults"].update(inner_rl=0.1))
    assert "algorithms.maml.defaults.inner_rl" in msg and "inner_lr" in msg


def test_wrong_type(tmp_path):
    msg = error_of(tmp_path, lambda r: r["algorithms"]["maml"]["defaults"].update(meta_batch="many"))
    assert "algorithms.maml.defaults.meta_batch" in msg and "expected an integer" in msg and "'many'" in msg


def test_unknown_top_level_section(tmp_path):
    msg = error_of(tmp_path, lambda r: r.update(benchmarkz={}))
    assert "benchmarkz" in msg and "did you mean 'benchmarks'" in msg


def test_suite_with_unknown_benchmark(tmp_path):
    msg = error_of(tmp_path, lambda r: r["suites"]["smoke"].update(benchmarks=["sine-k50"]))
    assert "suites.smoke.benchmarks" in msg and "sine-k50" in msg and "did you mean" in msg


def test_suite_with_unknown_algorithm(tmp_path):
    msg = error_of(tmp_path, lambda r: r["suites"]["smoke"].update(algorithms=["mamll"]))
    assert "suites.smoke.algorithms" in msg and "did you mean 'maml'" in msg


def test_override_pattern_matching_nothing(tmp_path):
    def mutate(raw):
        maml = raw["algorithms"]["maml"]
        maml["overrides"] = {**maml.get("overrides", {}), "sinus-*": {"inner_lr": 0.1}}

    msg = error_of(tmp_path, mutate)
    assert "algorithms.maml.overrides.sinus-*" in msg and "matches no benchmark" in msg


def test_algorithm_not_supporting_kind(config, monkeypatch):
    import algorithms
    from algorithms.base import Learner

    class ClassifierOnly(Learner):
        kinds = ("classification",)

    monkeypatch.setitem(algorithms._REGISTRY, "test-classifier-only", ClassifierOnly)
    with pytest.raises(ConfigError, match="supports classification benchmarks, but 'sine-k5' is regression"):
        config.cell("sine-k5", "test-classifier-only", 0, "smoke")


def test_set_dotted_paths_parse_yaml_scalars(tmp_path):
    config = load_mutated(tmp_path, lambda r: None,
                          ["maml.inner_lr=0.5", "sine-k5.test_query=7", "budget.meta_iters=3",
                           "maml.grad_clip=null", "reptile.inner_optimizer=adam"])
    cell = config.cell("sine-k5", "maml", 0, "cpu")
    assert cell.hparams["inner_lr"] == 0.5 and cell.hparams["grad_clip"] is None
    assert cell.spec["test_query"] == 7 and cell.budget["meta_iters"] == 3
    assert config.cell("sine-k5", "reptile", 0, "cpu").hparams["inner_optimizer"] == "adam"


def test_set_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"--set maml.inner_lr.*expected a number"):
        load_mutated(tmp_path, lambda r: None, ["maml.inner_lr=fast"])
    with pytest.raises(ConfigError, match="did you mean 'maml'"):
        load_mutated(tmp_path, lambda r: None, ["mamll.inner_lr=0.1"])
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        load_mutated(tmp_path, lambda r: None, ["maml.inner_lr"])
    with pytest.raises(ConfigError, match="benchmarks.sine-k5.shots"):
        load_mutated(tmp_path, lambda r: None, ["sine-k5.shots=five"])


def test_set_value_is_never_evaluated(tmp_path):
    with pytest.raises(ConfigError):
        load_mutated(tmp_path, lambda r: None, ["maml.inner_lr=!!python/object/apply:os.system ['true']"])


def test_resolution_order(tmp_path):
    def mutate(raw):
        raw["algorithms"]["maml"]["overrides"] = {"sine-k5": {"inner_lr": 0.2}}
        raw["profiles"]["smoke"]["overrides"] = [{"algorithm": "maml", "benchmark": "sine-*",
                                                  "hparams": {"meta_batch": 3}, "meta_iters": 7}]

    config = load_mutated(tmp_path, mutate)
    assert config.cell("sine-k5", "maml", 0, "smoke").hparams["inner_lr"] == 0.2
    assert config.cell("sine-k10", "maml", 0, "smoke").hparams["inner_lr"] == 0.01
    cell = config.cell("sine-k10", "maml", 0, "smoke")
    assert cell.hparams["meta_batch"] == 3 and cell.budget["meta_iters"] == 7
    assert config.cell("sine-k10", "maml", 0, "cpu").hparams["meta_batch"] == 25
    assert load_mutated(tmp_path, mutate, ["maml.inner_lr=0.3"]).cell(
        "sine-k5", "maml", 0, "smoke").hparams["inner_lr"] == 0.3


def test_grid_defaults_and_unknown_names(config):
    cells, profile, label = config.grid(None, [], [], [], None)
    assert label == "default" and profile == config.suites["default"].get("profile", "cpu")
    with pytest.raises(ConfigError, match="did you mean 'sine-k10'"):
        config.grid(None, ["sine-k100"], ["maml"], [0], "smoke")
    with pytest.raises(ConfigError, match="unknown profile"):
        config.grid(None, ["sine-k10"], ["maml"], [0], "fast")
    cells, _, _ = config.grid(None, ["sine-*"], ["maml"], [0, 1], "smoke")
    assert len(cells) == 6 and len({c.config_hash for c in cells}) == 6


def test_autocast_accepts_bf16_and_refuses_other_precisions(tmp_path):
    config = load_mutated(tmp_path, lambda r: None, ["budget.autocast=bf16"])
    assert config.cell("sine-k5", "maml", 0, "cpu").budget["autocast"] == "bf16"
    assert "autocast" not in Config.load().cell("sine-k5", "maml", 0, "cpu").budget  # float32 cells keep their hash
    message = error_of(tmp_path, lambda r: None, ["budget.autocast=fp16"])
    assert "--set budget.autocast" in message and "'fp16'" in message and "bf16" in message
    message = error_of(tmp_path, lambda r: r["profiles"]["cpu"].update(autocast="int8"))
    assert "profiles.cpu.autocast" in message
