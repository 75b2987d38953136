"""Which of a profile's `overrides` rules apply to a cell, and the value a rule chain gives a budget key.

Shared by bench.config (which also records where each value came from) and the torch-free reading side, which
needs the `paper` profile's meta-iterations to say how much of the published training a result used.
"""
from __future__ import annotations

import fnmatch
from typing import Any


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
