"""Hyper-parameter defaults live in one place, the algorithms' Hparams dataclasses; the shipped benchmarks.yaml holds
only values that differ per benchmark or per profile (see the comment above its `algorithms:` section). These tests
keep the two from drifting apart again: a default restated in the YAML, an override that changes no cell, or a
key that no algorithm has fails here, naming the entry."""
from __future__ import annotations

import fnmatch

import pytest
import yaml

import algorithms
from algorithms.base import hparam_fields
from bench.config import DEFAULT_CONFIG, Config

SHIPPED = yaml.safe_load(DEFAULT_CONFIG.read_text())


@pytest.fixture(scope="module")
def config():
    return Config.load()


def test_the_shipped_file_restates_no_dataclass_default():
    restated = [f"algorithms.{name}.defaults" for name, entry in SHIPPED["algorithms"].items()
                if (entry or {}).get("defaults")]
    assert not restated, (f"{restated}: a default belongs in the algorithm's Hparams dataclass (its one place); "
                          "the shipped benchmarks.yaml holds per-benchmark and per-profile overrides only")


def blanket_overrides(config: Config) -> list[str]:
    """Override entries that match every benchmark their algorithm runs on: defaults in disguise."""
    found = []
    for name, entry in config.algorithm_entries.items():
        supported = {b for b in config.benchmarks if config.supports(name, b)}
        for pattern, values in (entry.get("overrides") or {}).items():
            if values and supported and supported <= set(fnmatch.filter(config.benchmarks, pattern)):
                found.append(f"algorithms.{name}.overrides.{pattern}")
    return found


def test_no_override_is_a_default_in_disguise(config):
    """An override may restate a default's value for some benchmarks: it pins a paper's protocol there (MAML's
    one inner step on Omniglot 5-way stays one if the default changes). One that covers every benchmark of its
    algorithm pins nothing; it is a default, and belongs in the dataclass."""
    found = blanket_overrides(config)
    assert not found, f"{found}: these cover every benchmark of the algorithm; move the values to its dataclass"


def test_every_profile_hparam_key_belongs_to_a_matching_algorithm(config):
    """Config validation skips keys that only some of a rule's algorithms have (a '*' rule); a key that none of
    them has is a typo that would otherwise be ignored."""
    unknown = []
    for profile, spec in config.profiles.items():
        for i, rule in enumerate(spec.get("overrides") or []):
            fields = set().union(*(hparam_fields(algorithms.get(a))
                                   for a in algorithms.names(rule.get("algorithm", "*"))))
            unknown += [f"profiles.{profile}.overrides[{i}].hparams.{k}" for k in rule.get("hparams") or {}
                        if k not in fields]
    assert not unknown, f"no matching algorithm has these hyper-parameters: {unknown}"


def test_the_checks_catch_the_drift_they_are_for(config, monkeypatch):
    """A default copied back into the shipped file, or an override for every benchmark, is flagged."""
    monkeypatch.setitem(SHIPPED["algorithms"]["protonet"], "defaults", {"lr": 0.001})
    with pytest.raises(AssertionError, match=r"algorithms\.protonet\.defaults"):
        test_the_shipped_file_restates_no_dataclass_default()
    entry = config.algorithm_entries["protonet"]
    monkeypatch.setitem(entry["overrides"], "*", {"lr": 0.002})
    assert "algorithms.protonet.overrides.*" in blanket_overrides(config)
