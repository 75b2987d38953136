"""Which of a profile's `overrides` rules apply to a cell, and the value a rule chain gives a budget key.

Shared by bench.config (which also records where each value came from) and the torch-free reading side, which
needs the `paper` profile's meta-iterations to say how much of the published training a result used.
"""
from __future__ import annotations

import fnmatch
from typing import Any

import yaml

from bench import resources


def rule_applies(rule: dict[str, Any], benchmark: str, algorithm: str) -> bool:
    """A rule applies when its benchmark and algorithm patterns (default '*') both match."""
    return fnmatch.fnmatchcase(benchmark, rule.get("benchmark", "*")) and \
        fnmatch.fnmatchcase(algorithm, rule.get("algorithm", "*"))


def profile_value(profile: dict[str, Any], key: str, benchmark: str, algorithm: str, default: Any = None) -> Any:
    """`key` of a profile for one cell: the profile's own value, then every applying rule in order (last wins)."""
    value = profile.get(key, default)
    for rule in profile.get("overrides") or []:
        if key in rule and rule_applies(rule, benchmark, algorithm):
            value = rule[key]
    return value


def packaged_config() -> dict[str, Any]:
    """The packaged benchmarks.yaml as plain data (the checkout's own when running from one): the reading side's
    view of targets and of the `paper` profile, without loading the registry (and torch) as bench.config does."""
    return yaml.safe_load(resources.config_file().read_text(encoding="utf-8")) or {}


def paper_meta_iters(benchmark: str, algorithm: str, config: dict[str, Any] | None = None) -> int | None:
    """The published protocol's training length for a cell: the meta-iterations of the last `paper`-profile rule
    that names it. The profile's own value is only a fallback that lets every cell run, not a published fact
    (ProtoNets' Omniglot count, say, is not in the paper), so a cell no rule names has None."""
    config = packaged_config() if config is None else config
    paper = (config.get("profiles") or {}).get("paper") or {}
    value = profile_value({"overrides": paper.get("overrides")}, "meta_iters", benchmark, algorithm)
    return int(value) if value else None
