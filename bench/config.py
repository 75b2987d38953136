"""Load and validate benchmarks.yaml, apply `--set KEY=VALUE`, and resolve cells.

Every error is a ConfigError whose one-line message names the file, the YAML key path and the fix.
Resolution order for a cell's hyper-parameters (later wins): the algorithm's dataclass defaults <
algorithms.<A>.defaults < algorithms.<A>.overrides[<benchmark glob>] (in file order) < the profile's matching
`overrides[].hparams` < `--set <A>.<key>=...`. Budgets: profile keys < matching profile overrides <
`--set budget.<key>=...`.
"""
from __future__ import annotations

import copy
import dataclasses
import fnmatch
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

import algorithms
from algorithms.base import KINDS, hparam_fields

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "benchmarks.yaml"

BUDGET_KEYS = {
    "meta_iters": "int",          # meta-training iterations (the budget unit: not wall time)
    "test_episodes": "int|null",  # frozen test episodes to evaluate (null: the benchmark's own number)
    "validation_tasks": "int",    # tasks handed to Learner.tune() after training
    "log_every": "int",           # curve points: mean training loss every N iterations
    "checkpoint_every": "int",    # write a resumable checkpoint every N iterations (0: only at the end)
    "eval_batch": "int",          # frozen episodes stacked per evaluation batch
    "cpus": "int",                # intra-op threads per cell (results can depend on it), and Ray's CPU request
    "gpus": "int|float",          # Ray's GPU request per cell
    "autocast": "str|null",       # null: float32; bf16: training and evaluation under torch.autocast(bfloat16)
}
AUTOCAST_CHOICES = (None, "bf16")   # the precisions bench.runner.precision() sets up
PROFILE_KEYS = {"description": "str", "overrides": "list", **BUDGET_KEYS}
OVERRIDE_KEYS = {"benchmark": "str", "algorithm": "str", "hparams": "dict", **BUDGET_KEYS}
SUITE_KEYS = {"description": "str", "benchmarks": "list[str]", "algorithms": "list[str]", "seeds": "list[int]",
              "profile": "str"}
ALGORITHM_KEYS = {"description": "str", "defaults": "dict", "overrides": "dict"}
TOP_KEYS = {"version": "int", "benchmarks": "dict", "algorithms": "dict", "profiles": "dict", "suites": "dict"}

# Fields every benchmark has; datasets add their own (DATASET_FIELDS).
BENCHMARK_KEYS = {"kind": "str", "dataset": "str", "description": "str", "eval_seed": "int",
                  "test_episodes": "int", "backbone": "str", "paper": "str"}
# Episodic image benchmarks: N-way K-shot with Q queries per class; training episodes may differ
# (ProtoNets trains 60-way on Omniglot); null train_* means "same as the test setting".
CLASSIFICATION_FIELDS = {"ways": "int", "shots": "int", "test_query": "int", "train_ways": "int|null",
                         "train_shots": "int|null", "train_query": "int", "split": "str", "image_size": "int"}
DATASET_FIELDS: dict[str, dict[str, str]] = {
    "sine": {"shots": "int", "train_query": "int", "test_query": "int", "amplitude": "list[float]",
             "phase": "list[float]", "x_range": "list[float]", "eval_steps": "int"},
    # rotations: extra classes made by rotating every character by these angles (degrees)
    "omniglot": {**CLASSIFICATION_FIELDS, "rotations": "list[int]"},
    "miniimagenet": {**CLASSIFICATION_FIELDS},
    # learned-optimizer benchmarks: the optimizee MLP (hidden sizes, activation), minibatch size, steps per run,
    # θ_0 std; train_problem: the same keys for the base problem optimizers are meta-trained on; test_images:
    # the MNIST split ("test" or "train") the frozen test runs draw minibatches from
    "mnist": {"hidden": "list[int]", "activation": "str", "batch_size": "int", "horizon": "int",
              "init_std": "float", "train_problem": "dict", "test_images": "str"},
}
REQUIRED_BENCHMARK_KEYS = ("kind", "dataset", "eval_seed", "test_episodes", "backbone")


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads `1e-3` as a float (YAML 1.1 insists on `1.0e-3`, a classic trap)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                  |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                  |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                  |[-+]?\.(?:inf|Inf|INF)
                  |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))


def safe_load(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # a SafeLoader: no arbitrary objects


class ConfigError(ValueError):
    """A user error in benchmarks.yaml, a --set value or a command-line name; the message is one line."""


@dataclass
class Cell:
    """One (benchmark, algorithm, seed, profile) run with everything resolved."""

    benchmark: str
    algorithm: str
    seed: int
    profile: str
    spec: dict[str, Any]
    hparams: dict[str, Any]
    budget: dict[str, Any]

    @property
    def key(self) -> str:
        return f"{self.benchmark}/{self.algorithm}/seed{self.seed}"

    def resolved(self) -> dict[str, Any]:
        return {"benchmark": self.benchmark, "algorithm": self.algorithm, "seed": self.seed,
                "profile": self.profile, "spec": self.spec, "hparams": self.hparams, "budget": self.budget}

    @property
    def config_hash(self) -> str:
        text = json.dumps(self.resolved(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------------------
# value checking


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _matches(value: Any, typ: str) -> bool:
    typ = typ.replace(" ", "")
    if "|" in typ:
        return any(_matches(value, t) for t in typ.split("|"))
    if typ in ("None", "null"):
        return value is None
    if typ == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if typ == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if typ == "bool":
        return isinstance(value, bool)
    if typ == "str":
        return isinstance(value, str)
    if typ == "dict":
        return isinstance(value, dict)
    if typ in ("list", "tuple"):
        return isinstance(value, list)
    m = re.fullmatch(r"(?:list|tuple)\[(.+?)(?:,\.\.\.)?\]", typ)
    if m:
        return isinstance(value, list) and all(_matches(v, m.group(1)) for v in value)
    if typ in ("Any", "object"):
        return True
    raise AssertionError(f"unsupported type annotation {typ!r} in the config schema")


def _describe(typ: str) -> str:
    words = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string",
             "dict": "a mapping", "list": "a list", "None": "null", "null": "null"}
    parts = [words.get(t, t) for t in typ.replace(" ", "").split("|")]
    return " or ".join(parts)


class _Checker:
    def __init__(self, path: Path):
        self.path = path

    def fail(self, keypath: str, message: str) -> None:
        raise ConfigError(f"{self.path.name}: {keypath}: {message}")

    def keys(self, mapping: Any, schema: dict[str, str], keypath: str, what: str = "key") -> None:
        if not isinstance(mapping, dict):
            self.fail(keypath, f"expected a mapping, got {_type_name(mapping)} {mapping!r}")
        for key, value in mapping.items():
            sub = f"{keypath}.{key}" if keypath else str(key)
            if key not in schema:
                self.fail(sub, f"unknown {what}{algorithms.suggest(str(key), list(schema))}; "
                               f"allowed here: {', '.join(schema)}")
            self.value(value, schema[key], sub)

    def value(self, value: Any, typ: str, keypath: str) -> None:
        if not _matches(value, typ):
            self.fail(keypath, f"expected {_describe(typ)}, got {_type_name(value)} {value!r}; fix the value")

    def name(self, name: str, known: list[str], keypath: str, what: str) -> None:
        if name not in known:
            self.fail(keypath, f"unknown {what} {name!r}{algorithms.suggest(name, known)}; "
                               f"`metabench list {what}s` shows the known ones")


def _annotation_text(annotation: Any) -> str:
    """A dataclass field's type as text ('float | None'), whether or not its module uses
    `from __future__ import annotations` (then the annotation already is text)."""
    if isinstance(annotation, str):
        return annotation
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "").replace("NoneType", "None")


def _unaliased(node: Any) -> Any:
    """A copy in which no two places share a dict or list (YAML anchors alias them; --set must not edit two
    entries at once)."""
    if isinstance(node, dict):
        return {k: _unaliased(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_unaliased(v) for v in node]
    return node


def parse_value(text: str) -> Any:
    """A --set value as a YAML scalar or flow collection (never evaluated as code)."""
    try:
        return safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set value {text!r} is not valid YAML ({exc.problem}); quote it or fix it") from None


# ---------------------------------------------------------------------------------------------------------


class Config:
    """A validated benchmarks.yaml with --set overrides applied."""

    def __init__(self, raw: dict[str, Any], path: Path, sets: list[str] | tuple[str, ...] = ()):
        self.path = Path(path)
        self.raw = _unaliased(raw)
        self.algorithm_sets: dict[str, dict[str, Any]] = {}
        self.budget_sets: dict[str, Any] = {}
        self._apply_sets(sets)
        self._validate()

    # -- loading ------------------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path | None = None, sets: list[str] | tuple[str, ...] = ()) -> "Config":
        path = Path(path) if path else DEFAULT_CONFIG
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found; pass --config FILE, or install the checkout "
                              f"editable (pip install -e .) so the repository's benchmarks.yaml is found")
        try:
            raw = safe_load(path.read_text())
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" line {mark.line + 1}" if mark else ""
            raise ConfigError(f"{path.name}:{where}: invalid YAML ({getattr(exc, 'problem', exc)}); "
                              f"fix the syntax") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path.name}: the top level must be a mapping with keys {', '.join(TOP_KEYS)}")
        return cls(raw, path, sets)

    @property
    def benchmarks(self) -> dict[str, dict[str, Any]]:
        return self.raw.get("benchmarks", {})

    @property
    def profiles(self) -> dict[str, dict[str, Any]]:
        return self.raw.get("profiles", {})

    @property
    def suites(self) -> dict[str, dict[str, Any]]:
        return self.raw.get("suites", {})

    @property
    def algorithm_entries(self) -> dict[str, dict[str, Any]]:
        return self.raw.get("algorithms", {}) or {}

    # -- --set ---------------------------------------------------------------------------------------------
    def _apply_sets(self, sets) -> None:
        for item in sets:
            if "=" not in item:
                raise ConfigError(f"--set {item!r}: expected KEY=VALUE with a dotted KEY, "
                                  f"e.g. --set maml.inner_lr=0.1")
            key, text = item.split("=", 1)
            parts = key.strip().split(".")
            value = parse_value(text)
            head = parts[0]
            if head in TOP_KEYS:
                self._set_path(parts, value, key)
            elif head == "budget" and len(parts) == 2:
                if parts[1] not in BUDGET_KEYS:
                    raise ConfigError(f"--set {key}: unknown budget key{algorithms.suggest(parts[1], list(BUDGET_KEYS))}"
                                      f"; budget keys: {', '.join(BUDGET_KEYS)}")
                self.budget_sets[parts[1]] = value
            elif head in algorithms.names() and len(parts) == 2:
                self.algorithm_sets.setdefault(head, {})[parts[1]] = value
            elif head in self.raw.get("benchmarks", {}) and len(parts) >= 2:
                self._set_path(["benchmarks", *parts], value, key)
            else:
                known = algorithms.names() + list(self.raw.get("benchmarks", {})) + list(TOP_KEYS) + ["budget"]
                raise ConfigError(f"--set {key}: {head!r} is not an algorithm, benchmark, 'budget' or top-level "
                                  f"section{algorithms.suggest(head, known)}; use e.g. maml.inner_lr=0.1, "
                                  f"omniglot-5w1s.query=5 or budget.meta_iters=100")

    def _set_path(self, parts: list[str], value: Any, key: str) -> None:
        node = self.raw
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                if part in node:
                    raise ConfigError(f"--set {key}: {part!r} is not a mapping in {self.path.name}")
                node[part] = {}
            node = node[part]
        node[parts[-1]] = value

    # -- validation ------------------------------------------------------------------------------------
    def _validate(self) -> None:
        c = _Checker(self.path)
        c.keys(self.raw, TOP_KEYS, "", "top-level section")
        for section in ("benchmarks", "profiles", "suites"):
            if not self.raw.get(section):
                c.fail(section, "missing or empty; every config needs at least one entry")
        for name, spec in self.benchmarks.items():
            self._validate_benchmark(c, name, spec)
        known_algorithms = algorithms.names()
        for name, entry in self.algorithm_entries.items():
            c.name(name, known_algorithms, f"algorithms.{name}", "algorithm")
            c.keys(entry, ALGORITHM_KEYS, f"algorithms.{name}")
            self._validate_hparams(c, name, entry.get("defaults") or {}, f"algorithms.{name}.defaults")
            for pattern, values in (entry.get("overrides") or {}).items():
                where = f"algorithms.{name}.overrides.{pattern}"
                if not fnmatch.filter(self.benchmarks, pattern):
                    c.fail(where, f"matches no benchmark{algorithms.suggest(pattern, list(self.benchmarks))}; "
                                  f"use a benchmark name or a wildcard like 'sine-*'")
                self._validate_hparams(c, name, values or {}, where)
        for name, values in self.algorithm_sets.items():
            self._validate_hparams(c, name, values, f"--set {name}", from_cli=True)
        for name, profile in self.profiles.items():
            c.keys(profile, PROFILE_KEYS, f"profiles.{name}")
            for key in ("meta_iters", "test_episodes"):
                if key not in profile:
                    c.fail(f"profiles.{name}.{key}", "missing; every profile sets meta_iters and test_episodes")
            for i, rule in enumerate(profile.get("overrides") or []):
                where = f"profiles.{name}.overrides[{i}]"
                c.keys(rule, OVERRIDE_KEYS, where)
                for hname in self._matching_algorithms(rule.get("algorithm", "*")):
                    self._validate_hparams(c, hname, rule.get("hparams") or {}, f"{where}.hparams", partial=True)
        c.keys(self.budget_sets, BUDGET_KEYS, "--set budget")
        budgets = {"--set budget": self.budget_sets}
        for name, profile in self.profiles.items():
            budgets[f"profiles.{name}"] = profile
            budgets.update({f"profiles.{name}.overrides[{i}]": rule
                            for i, rule in enumerate(profile.get("overrides") or [])})
        for where, budget in budgets.items():
            if isinstance(budget, dict) and budget.get("autocast") not in AUTOCAST_CHOICES:
                c.fail(f"{where}.autocast", f"{budget['autocast']!r} is not a precision this suite runs; "
                                            "use null (float32) or bf16")
        for name, suite in self.suites.items():
            self._validate_suite(c, name, suite)

    def _validate_benchmark(self, c: _Checker, name: str, spec: Any) -> None:
        where = f"benchmarks.{name}"
        if not isinstance(spec, dict):
            c.fail(where, f"expected a mapping, got {_type_name(spec)}")
        dataset = spec.get("dataset")
        if dataset not in DATASET_FIELDS:
            c.fail(f"{where}.dataset", f"unknown dataset {dataset!r}{algorithms.suggest(str(dataset), list(DATASET_FIELDS))}"
                                       f"; known: {', '.join(DATASET_FIELDS)}")
        c.keys(spec, {**BENCHMARK_KEYS, **DATASET_FIELDS[dataset]}, where, "benchmark field")
        for key in REQUIRED_BENCHMARK_KEYS:
            if key not in spec:
                c.fail(f"{where}.{key}", "missing; every benchmark needs " + ", ".join(REQUIRED_BENCHMARK_KEYS))
        if spec["kind"] not in KINDS:
            c.fail(f"{where}.kind", f"unknown kind {spec['kind']!r}; one of {', '.join(KINDS)}")
        from algorithms import nets
        c.name(spec["backbone"], nets.names(), f"{where}.backbone", "backbone")

    def _validate_hparams(self, c: _Checker, algorithm: str, values: Any, where: str, partial: bool = False,
                          from_cli: bool = False) -> None:
        fields = hparam_fields(algorithms.get(algorithm))
        schema = {name: _annotation_text(f.type) for name, f in fields.items()}
        if not isinstance(values, dict):
            c.fail(where, f"expected a mapping of hyper-parameters, got {_type_name(values)}")
        for key, value in values.items():
            sub = f"{where}.{key}" if not from_cli else f"{where}.{key}"
            if key not in schema:
                if partial:
                    continue  # a profile rule for '*' sets keys only some algorithms have
                c.fail(sub, f"unknown hyper-parameter of {algorithm}{algorithms.suggest(str(key), list(schema))}; "
                            f"known: {', '.join(schema) or '(none)'}")
            c.value(value, schema[key], sub)

    def _matching_algorithms(self, pattern: str) -> list[str]:
        return [a for a in algorithms.names(pattern)]

    def _validate_suite(self, c: _Checker, name: str, suite: Any) -> None:
        where = f"suites.{name}"
        c.keys(suite, SUITE_KEYS, where)
        for key in ("benchmarks", "algorithms"):
            if not suite.get(key):
                c.fail(f"{where}.{key}", "missing or empty; list names or wildcards")
        for pattern in suite["benchmarks"]:
            if not fnmatch.filter(self.benchmarks, pattern):
                c.fail(f"{where}.benchmarks", f"{pattern!r} matches no benchmark"
                                              f"{algorithms.suggest(pattern, list(self.benchmarks))}")
        for pattern in suite["algorithms"]:
            if not algorithms.names(pattern):
                c.fail(f"{where}.algorithms", f"{pattern!r} matches no algorithm"
                                              f"{algorithms.suggest(pattern, algorithms.names())}")
        if "profile" in suite and suite["profile"] not in self.profiles:
            c.name(suite["profile"], list(self.profiles), f"{where}.profile", "profile")
        benches = self.expand_benchmarks(suite["benchmarks"])
        for pattern in suite["algorithms"]:
            if any(ch in pattern for ch in "*?["):
                continue
            kinds = set(algorithms.get(pattern).kinds)
            if not any(self.benchmarks[b]["kind"] in kinds for b in benches):
                c.fail(f"{where}.algorithms", f"{pattern!r} supports {', '.join(sorted(kinds))} benchmarks but the "
                                              f"suite has none of those; remove it or add such a benchmark")

    # -- resolution ----------------------------------------------------------------------------------------
    def expand_benchmarks(self, patterns: list[str]) -> list[str]:
        out: list[str] = []
        for pattern in patterns:
            matched = fnmatch.filter(list(self.benchmarks), pattern)
            if not matched:
                raise ConfigError(f"unknown benchmark {pattern!r}{algorithms.suggest(pattern, list(self.benchmarks))}"
                                  f"; `metabench list benchmarks` shows all")
            out += [m for m in matched if m not in out]
        return out

    def expand_algorithms(self, patterns: list[str]) -> list[str]:
        out: list[str] = []
        for pattern in patterns:
            matched = algorithms.names(pattern)
            if not matched:
                algorithms.get(pattern)  # raises the "did you mean" error
            out += [m for m in matched if m not in out]
        return out

    def check_profile(self, profile: str) -> None:
        if profile not in self.profiles:
            raise ConfigError(f"unknown profile {profile!r}{algorithms.suggest(profile, list(self.profiles))}; "
                              f"profiles: {', '.join(self.profiles)}")

    def supports(self, algorithm: str, benchmark: str) -> bool:
        return self.benchmarks[benchmark]["kind"] in algorithms.get(algorithm).kinds

    def hparams(self, algorithm: str, benchmark: str, profile: str) -> dict[str, Any]:
        cls = algorithms.get(algorithm)
        fields = hparam_fields(cls)
        values: dict[str, Any] = {}
        for name, f in fields.items():
            if f.default is not dataclasses.MISSING:
                values[name] = f.default
            elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
                values[name] = f.default_factory()  # type: ignore[misc]
        entry = self.algorithm_entries.get(algorithm) or {}
        values.update(entry.get("defaults") or {})
        for pattern, override in (entry.get("overrides") or {}).items():
            if fnmatch.fnmatchcase(benchmark, pattern):
                values.update(override or {})
        for rule in self._profile_rules(profile, benchmark, algorithm):
            values.update({k: v for k, v in (rule.get("hparams") or {}).items() if k in fields})
        values.update(self.algorithm_sets.get(algorithm, {}))
        missing = [n for n in fields if n not in values]
        if missing:
            raise ConfigError(f"{self.path.name}: algorithms.{algorithm}.defaults: no value for {', '.join(missing)}; "
                              f"add them")
        return values

    def _profile_rules(self, profile: str, benchmark: str, algorithm: str) -> list[dict[str, Any]]:
        return [rule for rule in self.profiles[profile].get("overrides") or []
                if fnmatch.fnmatchcase(benchmark, rule.get("benchmark", "*"))
                and fnmatch.fnmatchcase(algorithm, rule.get("algorithm", "*"))]

    def budget(self, algorithm: str, benchmark: str, profile: str) -> dict[str, Any]:
        base = self.profiles[profile]
        budget = {"validation_tasks": 100, "log_every": 50, "checkpoint_every": 0, "eval_batch": 50, "cpus": 2,
                  "gpus": 0}
        budget.update({k: v for k, v in base.items() if k in BUDGET_KEYS})
        for rule in self._profile_rules(profile, benchmark, algorithm):
            budget.update({k: v for k, v in rule.items() if k in BUDGET_KEYS})
        budget.update(self.budget_sets)
        if budget.get("test_episodes") is None:
            budget["test_episodes"] = self.benchmarks[benchmark]["test_episodes"]
        return budget

    def cell(self, benchmark: str, algorithm: str, seed: int, profile: str) -> Cell:
        if not self.supports(algorithm, benchmark):
            kinds = ", ".join(algorithms.get(algorithm).kinds)
            raise ConfigError(f"algorithm {algorithm!r} supports {kinds} benchmarks, but {benchmark!r} is "
                              f"{self.benchmarks[benchmark]['kind']}; pick a matching pair "
                              f"(`metabench list algorithms` shows each one's kinds)")
        return Cell(benchmark, algorithm, int(seed), profile, copy.deepcopy(self.benchmarks[benchmark]),
                    self.hparams(algorithm, benchmark, profile), self.budget(algorithm, benchmark, profile))

    def grid(self, suite: str | None, benchmarks: list[str], algorithms_: list[str], seeds: list[int],
             profile: str | None) -> tuple[list[Cell], str, str]:
        """Cells to run, the profile and a label. Explicit --benchmark/--algorithm narrow or replace the suite;
        incompatible pairs from wildcards are skipped, an explicit incompatible pair is an error."""
        suite_name = suite or ("default" if not benchmarks else "custom")
        if suite and suite not in self.suites:
            raise ConfigError(f"unknown suite {suite!r}{algorithms.suggest(suite, list(self.suites))}; "
                              f"`metabench list suites` shows all")
        spec = self.suites.get(suite_name, {}) if (suite or not benchmarks) else {}
        if not spec and not benchmarks:
            raise ConfigError(f"{self.path.name}: suites.default: missing; define it or pass --benchmark")
        bench_patterns = benchmarks or spec.get("benchmarks", [])
        algo_patterns = algorithms_ or spec.get("algorithms", ["*"])
        seeds = seeds or spec.get("seeds", [0])
        profile = profile or spec.get("profile") or "cpu"
        self.check_profile(profile)
        benches = self.expand_benchmarks(bench_patterns)
        algos = self.expand_algorithms(algo_patterns)
        explicit = {a for a in algo_patterns if not any(ch in a for ch in "*?[")}
        cells: list[Cell] = []
        for b in benches:
            for a in algos:
                if not self.supports(a, b):
                    if a in explicit and len(benches) == 1:
                        self.cell(b, a, 0, profile)  # raises the explanatory error
                    continue
                for s in seeds:
                    cells.append(self.cell(b, a, s, profile))
        if not cells:
            raise ConfigError(f"no runnable (benchmark, algorithm) pair in {bench_patterns} x {algo_patterns}: "
                              f"check each algorithm's kinds with `metabench list algorithms`")
        return cells, profile, suite_name
