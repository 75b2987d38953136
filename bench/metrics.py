"""Which metric ranks and gates a benchmark, and which way is better.

A benchmark declares it in benchmarks.yaml (`metric: {name: accuracy, higher_is_better: true}`; the direction
holds for every metric the benchmark reports: mse@S, loss@T and auc are all errors, acc@... all accuracies).
The reading side (report, compare, plots, db, site) takes the declaration from a run's manifest, which records
the resolved benchmark spec each cell ran with (overlays and --set included); a run made before the key existed
falls back to the shipped benchmarks.yaml, and a benchmark neither knows (an overlay's, a plugin's) to its kind's
default (KIND_DEFAULTS). Never from the metric's name: "auc" is an error here, an accuracy elsewhere.

Reads YAML and JSON only, never bench.config (which imports algorithms, hence torch): a leaderboard must build
where no model can be loaded.
"""
from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import yaml

from bench import resources

# what a benchmark of each kind is ranked by when its spec does not say (a regression's steps come from the spec)
KIND_DEFAULTS = {"classification": ("accuracy", True), "regression": ("mse@{eval_steps}", False),
                 "optimizer": ("final_loss", False)}


@dataclass(frozen=True)
class Metric:
    """A benchmark's headline metric and whether a larger value is better (for all of its metrics)."""

    name: str
    higher_is_better: bool


def steps_of(metric: str) -> int | None:
    """S of mse@S / T of loss@T (the adaptation or optimizee steps a metric is measured after)."""
    m = re.fullmatch(r"(?:mse|loss)@(\d+)", str(metric))
    return int(m.group(1)) if m else None


def declared(spec: Any) -> Metric | None:
    """The metric a resolved benchmark spec declares, else its kind's default; None when neither is known."""
    if not isinstance(spec, dict):
        return None
    entry = spec.get("metric")
    if isinstance(entry, dict) and isinstance(entry.get("name"), str) \
            and isinstance(entry.get("higher_is_better"), bool):
        return Metric(entry["name"], entry["higher_is_better"])
    default = KIND_DEFAULTS.get(spec.get("kind"))
    if default is None:
        return None
    name, higher = default
    if "{eval_steps}" in name:
        if spec.get("eval_steps") is None:
            return None
        name = name.format(eval_steps=spec["eval_steps"])
    return Metric(name, higher)


@functools.lru_cache(maxsize=1)
def shipped_specs() -> dict[str, dict]:
    """The benchmarks of the shipped benchmarks.yaml (checkout or wheel copy); {} when it cannot be read, so a
    leaderboard of run folders that record their own specs still builds."""
    try:
        raw = yaml.safe_load(resources.config_file().read_text(encoding="utf-8"))
    except (OSError, FileNotFoundError, yaml.YAMLError, UnicodeDecodeError):
        return {}
    benchmarks = raw.get("benchmarks") if isinstance(raw, dict) else None
    return {str(k): v for k, v in benchmarks.items() if isinstance(v, dict)} if isinstance(benchmarks, dict) else {}


def manifest_specs(manifests: Iterable[dict]) -> dict[str, dict]:
    """benchmark -> the resolved spec its cells ran with (the last manifest naming it wins, as in merge_runs)."""
    specs: dict[str, dict] = {}
    for manifest in manifests:
        for cell in manifest.get("cells", []) if isinstance(manifest, dict) else []:
            spec = ((cell.get("config") or {}).get("spec")) if isinstance(cell, dict) else None
            if isinstance(spec, dict) and "benchmark" in cell:
                specs[str(cell["benchmark"])] = spec
    return specs


class Headlines:
    """Each benchmark's declared metric: from run specs first, then the shipped benchmarks.yaml."""

    def __init__(self, specs: dict[str, dict] | None = None):
        self.specs = dict(specs or {})

    @classmethod
    def from_manifests(cls, manifests: Iterable[dict]) -> Headlines:
        return cls(manifest_specs(manifests))

    def metric(self, benchmark: str) -> Metric | None:
        benchmark = str(benchmark)
        run_spec, shipped = self.specs.get(benchmark), shipped_specs().get(benchmark)
        if isinstance(run_spec, dict) and isinstance(run_spec.get("metric"), dict):
            return declared(run_spec)
        # a run made before `metric` existed: the shipped declaration of the same benchmark, else the run's kind
        if isinstance(shipped, dict) and isinstance(shipped.get("metric"), dict):
            return declared(shipped)
        return declared(run_spec) or declared(shipped)

    def headline(self, benchmark: str, present: Iterable[str] | None = None) -> str | None:
        """The declared headline metric; None when unknown or (given `present`) not among the measured ones."""
        metric = self.metric(benchmark)
        if metric is None:
            return None
        if present is not None and metric.name not in set(map(str, present)):
            return None
        return metric.name

    def higher_is_better(self, benchmark: str) -> bool | None:
        metric = self.metric(benchmark)
        return None if metric is None else metric.higher_is_better


def direction_word(higher_is_better: bool | None) -> str:
    if higher_is_better is None:
        return ""
    return "higher is better" if higher_is_better else "lower is better"
