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
    msg = error_of(tmp_path, lambda r: r["algorithms"]["maml"].update(defaults={"inner_rl": 0.1}))
    assert "algorithms.maml.defaults.inner_rl" in msg and "inner_lr" in msg


def test_wrong_type(tmp_path):
    msg = error_of(tmp_path, lambda r: r["algorithms"]["maml"].update(defaults={"meta_batch": "many"}))
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


# -- one schema of ranges and types for every number and name (issue 26) ---------------------------------------


@pytest.mark.parametrize("sets,expected", [
    (["budget.meta_iters=-5"], "--set budget.meta_iters: -5 is out of range; allowed: >= 0"),
    (["budget.test_episodes=0"], "--set budget.test_episodes: 0 is out of range; allowed: >= 1"),
    (["budget.cpus=-1"], "--set budget.cpus: -1 is out of range; allowed: 1 to 1024"),
    (["maml.meta_batch=0"], "--set maml.meta_batch: 0 is out of range; allowed: >= 1"),
    (["maml.inner_lr=-0.1"], "--set maml.inner_lr: -0.1 is out of range; allowed: >= 0"),
    (["maml.inner_lr=.nan"], "--set maml.inner_lr: got NaN"),
    (["sine-k5.shots=0"], "benchmarks.sine-k5.shots: 0 is out of range; allowed: >= 1"),
    (["omniglot-5w1s.ways=1"], "benchmarks.omniglot-5w1s.ways: 1 is out of range; allowed: >= 2"),
    (["sine-k5.dataset=[sine]"], "benchmarks.sine-k5.dataset: expected a string, got list ['sine']"),
    (["sine-k5.amplitude=[5, 1]"], "expected [low, high] with finite low <= high"),
    (["mnist-base.hidden=[20, 0]"], "0 (in [20, 0]) is out of range"),
    (["mnist-base.activation=swish"], "'swish' is not one of sigmoid, relu, tanh"),
])
def test_out_of_range_values_name_key_value_range_and_source(sets, expected):
    with pytest.raises(ConfigError) as err:
        Config.load(None, sets)
    message = str(err.value)
    assert expected in message and "\n" not in message
    assert message.startswith("--set")  # where the value came from


def test_ranges_in_a_config_file_name_the_file(tmp_path):
    overlay = tmp_path / "mine.yaml"
    overlay.write_text("profiles:\n  smoke:\n    meta_iters: -1\n")
    with pytest.raises(ConfigError, match=r"mine.yaml: profiles.smoke.meta_iters: -1 is out of range; allowed: >= 0"):
        Config.load([overlay])


def test_plugin_hyper_parameters_can_declare_their_own_range(monkeypatch):
    import dataclasses

    from bench.config import hparam_range

    field = dataclasses.field(default=3, metadata={"range": (1, 5)})
    field.name = "depth"
    assert hparam_range("depth", field) == (1, 5)
    assert hparam_range("meta_batch", dataclasses.field(default=1)) == (1, 2**31 - 1)


def test_episode_shapes_the_split_cannot_hold_are_refused_before_any_cell(config):
    with pytest.raises(ConfigError, match=r"5000-way episodes need 5000 classes but the train split of "
                                          r"omniglot-5w1s has 4112 \(ways from --set protonet.train_ways\)"):
        Config.load(None, ["protonet.train_ways=5000"]).grid(None, ["omniglot-5w1s"], ["protonet"], [0], "smoke")
    cells, _, _ = config.grid(None, ["omniglot-5w1s"], ["protonet"], [0], "smoke")  # the shipped one is fine
    assert cells


@pytest.mark.parametrize("text,expected", [
    ("profiles:\n  smoke:\n    meta_iters: 1\n    meta_iters: 2\n", "duplicate key 'meta_iters' (first at line 3)"),
    ("a: &a [*a]\n", "invalid YAML"),
    ("[" * 3000 + "]" * 3000, "nested too deeply"),
    ("\n".join(["a0: &a0 [x,x,x,x,x,x,x,x,x,x]"] + [f"a{i}: &a{i} [" + ",".join([f"*a{i-1}"] * 10) + "]"
                                                   for i in range(1, 9)]), "possible alias bomb"),
    ("x: !!python/object/apply:os.system ['true']\n", "invalid YAML"),
])
def test_hostile_yaml_is_refused_in_one_line(tmp_path, text, expected):
    path = tmp_path / "evil.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        Config.load([path])
    assert expected in str(err.value) and "\n" not in str(err.value) and str(path) in str(err.value)


def test_merge_keys_may_override_what_they_merge(tmp_path):
    from bench.config import safe_load

    assert safe_load("x: &x {a: 1}\ny: {<<: *x, a: 2}\n") == {"x": {"a": 1}, "y": {"a": 2}}


def test_config_file_that_is_not_utf8(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("suites:\n  caf\xe9: {}\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1.yaml: not UTF-8 text \(byte 0xe9 at offset 13\); save the file"):
        Config.load([path])
    with pytest.raises(ConfigError, match="is a folder, not a file"):
        Config.load([tmp_path])


def test_a_hash_neutral_hyper_parameter_at_its_default_leaves_the_config_hash_alone():
    """Fields added after results were committed (metadata hash_neutral, e.g. the sequence learners' curriculum)
    are left out of the hash at their default, so committed cells keep their identity; set, they count."""
    import dataclasses

    from bench.config import Cell, Config, neutral_defaults
    config = Config.load()
    cell = config.cell("omniglot-5w1s", "mann", 0, "cpu")
    assert neutral_defaults("mann") == {"curriculum_ways": 0, "curriculum_from": 0.0, "curriculum_until": 0.5,
                                        "curriculum_spread": True, "curriculum_mask": False}
    without = {k: v for k, v in cell.hparams.items() if not k.startswith("curriculum_")}
    assert dataclasses.replace(cell, hparams=without).config_hash == cell.config_hash
    curriculum = Config.load(sets=["mann.curriculum_ways=5"]).cell("omniglot-5w1s", "mann", 0, "cpu")
    assert curriculum.config_hash != cell.config_hash
    assert neutral_defaults("no-such-algorithm") == {} and isinstance(cell, Cell)
