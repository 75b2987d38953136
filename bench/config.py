"""Load and validate benchmarks.yaml, merge overlays (`--config FILE`, repeatable), apply `--set KEY=VALUE`, and
resolve cells.

Every error is a ConfigError whose one-line message names the file, the YAML key path and the fix.
Overlays: the packaged benchmarks.yaml is always the base; each `--config FILE` is merged over it in order.
Mappings merge key by key (so a ten-line file can add a suite, change one benchmark field or one algorithm
default); any other value (a list, a scalar) replaces the one below it. Overlays add and change, they cannot
delete. Every value remembers the file (or --set) that put it there: errors name that file, and
`metabench config show` prints it.
Resolution order for a cell's hyper-parameters (later wins): the algorithm's dataclass defaults <
algorithms.<A>.defaults < algorithms.<A>.overrides[<benchmark glob>] (in file order) < the profile's matching
`overrides[].hparams` < `--set <A>.<key>=...`. The dataclass is a default's one place: the shipped benchmarks.yaml
sets no `defaults` (tests/test_hparam_defaults.py), which remain for overlays (a plugin's, a lab's own choice).
Budgets: profile keys < matching profile overrides <
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
from algorithms import nets
from algorithms.base import KINDS, hparam_fields
from bench import data, resources
from bench.errors import CONFIG_HELP, ConfigError  # ConfigError: also importable from here
from bench.profiles import rule_applies

# the base configuration: the checkout's benchmarks.yaml, or the copy packaged in the wheel (bench/resources.py)
try:
    DEFAULT_CONFIG = resources.config_file()
except FileNotFoundError:  # a broken install; Config.load() reports it as a ConfigError
    DEFAULT_CONFIG = Path(__file__).resolve().parent / resources.PACKAGED / resources.CONFIG_NAME

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
    # a validation curve during training (classification): accuracy on the same `curve_tasks` validation tasks at
    # `curve_points` evenly spaced meta-iterations, into curves.csv (split "validation"). Absent from a profile:
    # no curve, and the cell's config hash is what it was before these keys existed.
    "curve_points": "int",
    "curve_tasks": "int",
}
AUTOCAST_CHOICES = (None, "bf16")   # the precisions bench.cell.precision() sets up
PROFILE_KEYS = {"description": "str", "overrides": "list", **BUDGET_KEYS}
OVERRIDE_KEYS = {"benchmark": "str", "algorithm": "str", "hparams": "dict", **BUDGET_KEYS}
SUITE_KEYS = {"description": "str", "benchmarks": "list[str]", "algorithms": "list[str]", "seeds": "list[int]",
              "profile": "str", "reuse": "list[str]", "targets": "dict"}
ALGORITHM_KEYS = {"description": "str", "defaults": "dict", "overrides": "dict"}
TOP_KEYS = {"version": "int", "benchmarks": "dict", "algorithms": "dict", "profiles": "dict", "suites": "dict"}

# Fields every benchmark has; each dataset adds its own (bench.data: DATASET.fields, .required, .ranges, .validate).
BENCHMARK_KEYS = {"kind": "str", "dataset": "str", "description": "str", "eval_seed": "int",
                  "test_episodes": "int", "backbone": "str", "paper": "str", "metric": "dict"}
# metric: the headline metric that ranks and gates the benchmark and which way is better (for all its metrics);
# optional (an overlay's benchmark gets its kind's default, bench.metrics.KIND_DEFAULTS)
METRIC_KEYS = {"name": "str", "higher_is_better": "bool"}
REQUIRED_BENCHMARK_KEYS = ("kind", "dataset", "eval_seed", "test_episodes", "backbone")

# Allowed ranges (inclusive; None: unbounded) of the numbers that reach a run, beside the types above: one schema
# for benchmarks.yaml, overlays, --set and plugin hyper-parameters, checked on load so that a run never starts
# with, say, meta_iters=-5 (which "finished" with -5 in summary.csv) or cpus=-1 (an IndexError inside a cell).
# Integers are also capped where torch or numpy would overflow them.
INT_MAX = 2**31 - 1
BUDGET_RANGES = {"meta_iters": (0, INT_MAX), "test_episodes": (1, INT_MAX), "validation_tasks": (1, INT_MAX),
                 "log_every": (1, INT_MAX), "checkpoint_every": (0, INT_MAX), "eval_batch": (1, INT_MAX),
                 "cpus": (1, 1024), "gpus": (0, 1024), "curve_points": (0, 10_000), "curve_tasks": (1, 100_000)}
BENCHMARK_RANGES = {"eval_seed": (0, 2**63 - 1), "test_episodes": (1, INT_MAX)}  # + the dataset's own ranges
# Hyper-parameters by name, whichever algorithm (or plugin) declares them; a plugin may also give its own field
# a range with dataclasses.field(metadata={"range": (low, high)}).
HPARAM_RANGES = {
    **{k: (1, INT_MAX) for k in ("meta_batch", "train_shots", "shots", "hidden", "layers",
                                 "unroll", "task_threads", "tasks", "hidden_dim", "memory_slots", "memory_width",
                                 "read_heads", "batch_size", "inner_batch", "head_batch", "relation_hidden",
                                 "train_per_class", "tc_filters", "controller", "pixel_size", "noise_dim")},
    **{k: (2, INT_MAX) for k in ("ways", "train_ways")},
    # train_query 0: the sequence learners' stream protocol has no separate queries
    **{k: (0, INT_MAX) for k in ("train_query", "query", "inner_steps", "test_inner_steps", "lr_halve_every",
                                 "select_every", "imitate_iters", "updates", "test_updates", "fce_steps",
                                 "n_hallucinated", "record_runs", "record_episodes", "select_runs", "head_epochs",
                                 "curriculum_ways")},
    "curriculum_until": (0.001, 1.0),
    "curriculum_from": (0.0, 0.999),
}
LEARNING_RATE = re.compile(r"(^|_)lr($|_)")  # lr, inner_lr, meta_lr, lr_final...: never negative


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


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False):
    """A mapping whose own keys are unique: YAML says a repeated key is an error, PyYAML silently keeps the last,
    so `lr: 0.1` ... `lr: 0.001` further down would change a value without anyone noticing. Keys brought in by a
    merge (`<<: *base`) may be overridden: that is what merging is for."""
    seen: dict[Any, Any] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            first = seen.setdefault(key, key_node.start_mark)
        except TypeError:  # an unhashable key (a list): SafeConstructor reports it below
            continue
        if first is not key_node.start_mark:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first at line {first.line + 1}); keep one of them",
                key_node.start_mark)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_Loader.construct_mapping = _construct_mapping  # type: ignore[assignment]  # used by every mapping, merges too

# A YAML document's size once its aliases are expanded (every *alias is a copy once merged and deep-copied): a
# few lines of nested aliases ("billion laughs") would otherwise expand into gigabytes. The packaged
# benchmarks.yaml expands to a few thousand values.
MAX_YAML_VALUES = 200_000
MAX_YAML_ALIASES = 1_000


def _expanded_size(node: Any, limit: int) -> int:
    """How many values `node` holds once every shared (aliased) part is counted each time it appears; stops
    counting past `limit`. Raises ValueError for a document that contains itself (`&a [*a]`)."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(x: Any) -> int:
        if not isinstance(x, (dict, list)):
            return 1
        if id(x) in sizes:
            return sizes[id(x)]
        if id(x) in active:
            raise ValueError("the document contains itself through an alias")
        active.add(id(x))
        total = 1
        for item in (list(x.keys()) + list(x.values())) if isinstance(x, dict) else x:
            total += size(item)
            if total > limit:
                break
        active.discard(id(x))
        sizes[id(x)] = total
        return total

    return size(node)


def safe_load(text: str) -> Any:
    """YAML through a SafeLoader (no arbitrary objects), refusing duplicate keys, alias bombs and documents that
    contain themselves; every refusal is a yaml.YAMLError with a one-line `problem`."""
    loader = _Loader(text)
    try:
        aliases = 0
        # count aliases on the event stream before anything is constructed (construction shares them cheaply;
        # the expansion happens later, in deep copies)
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent):
                aliases += 1
                if aliases > MAX_YAML_ALIASES:
                    raise yaml.YAMLError(f"more than {MAX_YAML_ALIASES} aliases (*name); refused as a possible "
                                         f"alias bomb")
        data = loader.get_single_data()
    except RecursionError:
        raise yaml.YAMLError("nested too deeply") from None
    finally:
        loader.dispose()
    try:
        if _expanded_size(data, MAX_YAML_VALUES) > MAX_YAML_VALUES:
            raise yaml.YAMLError(f"expands to more than {MAX_YAML_VALUES} values through its aliases; refused as "
                                 f"a possible alias bomb")
    except ValueError as exc:
        raise yaml.YAMLError(str(exc)) from None
    except RecursionError:
        raise yaml.YAMLError("nested too deeply") from None
    return data


def _yaml_problem(exc: BaseException) -> str:
    """One line from a PyYAML error: its problem and line, without the multi-line context dump."""
    problem = getattr(exc, "problem", None) or str(exc).strip().splitlines()[0] if str(exc).strip() else "invalid"
    mark = getattr(exc, "problem_mark", None)
    return f"{problem} (line {mark.line + 1}, column {mark.column + 1})" if mark else str(problem)


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
        resolved = self.resolved()
        # The headline metric's declaration (name, direction) says how results are read, not how the cell trains
        # or what it measures: left out, so declaring it kept every committed run folder's hash (and --resume).
        resolved["spec"] = {k: v for k, v in self.spec.items() if k != "metric"}
        # A hyper-parameter added later with a default that keeps the old behaviour (field metadata
        # hash_neutral) is left out at that default, so adding it re-identifies no existing cell.
        neutral = neutral_defaults(self.algorithm)
        resolved["hparams"] = {k: v for k, v in self.hparams.items() if k not in neutral or neutral[k] != v}
        text = json.dumps(resolved, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def neutral_defaults(algorithm: str) -> dict[str, Any]:
    """{field: default} of an algorithm's hyper-parameters marked `metadata={"hash_neutral": True}`."""
    try:
        fields = hparam_fields(algorithms.get(algorithm))
    except KeyError:  # an algorithm no longer registered (a plugin not loaded): nothing to leave out
        return {}
    return {name: f.default for name, f in fields.items() if f.metadata.get("hash_neutral")}


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
    def __init__(self, source_of):
        self.source_of = source_of  # keypath -> the file (or --set) that set it, for the message

    def fail(self, keypath: str, message: str) -> None:
        if keypath.startswith("--set"):
            raise ConfigError(f"{keypath}: {message}")
        raise ConfigError(f"{self.source_of(keypath)}: {keypath}: {message}")

    def keys(self, mapping: Any, schema: dict[str, str], keypath: str, what: str = "key",
             ranges: dict[str, tuple] | None = None) -> None:
        if not isinstance(mapping, dict):
            self.fail(keypath, f"expected a mapping, got {_type_name(mapping)} {mapping!r}")
        for key, value in mapping.items():
            sub = f"{keypath}.{key}" if keypath else str(key)
            if not isinstance(key, str) or key not in schema:
                self.fail(sub, f"unknown {what}{algorithms.suggest(str(key), list(schema))}; "
                               f"allowed here: {', '.join(schema)}")
            self.value(value, schema[key], sub, (ranges or {}).get(key))

    def value(self, value: Any, typ: str, keypath: str, allowed: tuple | None = None) -> None:
        if not _matches(value, typ):
            self.fail(keypath, f"expected {_describe(typ)}, got {_type_name(value)} {value!r}; fix the value")
        numbers = value if isinstance(value, list) else [value]
        for number in numbers:
            if isinstance(number, float) and number != number:
                self.fail(keypath, "got NaN (.nan); give a number")
            if allowed is None or not isinstance(number, (int, float)) or isinstance(number, bool):
                continue
            low, high = allowed
            if (low is not None and number < low) or (high is not None and number > high):
                shown = value if not isinstance(value, list) else f"{number} (in {value!r})"
                self.fail(keypath, f"{shown} is out of range; allowed: {_range_text(low, high)}")

    def name(self, name: str, known: list[str], keypath: str, what: str) -> None:
        if name not in known:
            self.fail(keypath, f"unknown {what} {name!r}{algorithms.suggest(name, known)}; "
                               f"`metabench list {what}s` shows the known ones")


def _range_text(low: Any, high: Any) -> str:
    if high is None or high in (INT_MAX, 2**63 - 1):
        return f">= {low}"
    return f"{low} to {high}"


def hparam_range(name: str, field: dataclasses.Field) -> tuple | None:
    """The allowed range of a hyper-parameter: its own metadata, else by name (HPARAM_RANGES), else learning
    rates >= 0, else none."""
    if isinstance(field.metadata.get("range"), (tuple, list)):
        return tuple(field.metadata["range"])
    if name in HPARAM_RANGES:
        return HPARAM_RANGES[name]
    if LEARNING_RATE.search(name):
        return (0, None)
    return None


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


def _read_yaml(path: Path, label: str) -> dict[str, Any]:
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "config file not found"
        raise ConfigError(f"{label}: {what}; check the path given to --config")
    try:
        text = path.read_bytes().decode("utf-8")  # YAML is UTF-8, whatever the machine's locale says
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{label}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start}); "
                          f"save the file as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"{label}: cannot be read ({exc.strerror or exc}); check the path given to --config") \
            from None
    try:
        raw = safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{label}: invalid YAML: {_yaml_problem(exc)}; fix the file") from None
    if raw is None:
        return {}  # an empty overlay changes nothing
    if not isinstance(raw, dict):
        raise ConfigError(f"{label}: the top level must be a mapping with some of the keys {', '.join(TOP_KEYS)}")
    return raw


def _record(node: Any, label: str, sources: dict[str, str], keypath: str) -> None:
    """Note `label` as the source of `keypath` and of everything under it (lists count as one value)."""
    sources[keypath] = label
    if isinstance(node, dict):
        for key, value in node.items():
            _record(value, label, sources, f"{keypath}.{key}" if keypath else str(key))


def _forget(sources: dict[str, str], keypath: str) -> None:
    for key in [k for k in sources if k == keypath or k.startswith(keypath + ".")]:
        del sources[key]


def merge_overlay(base: dict[str, Any], overlay: dict[str, Any], label: str, sources: dict[str, str],
                  keypath: str = "") -> None:
    """Merge `overlay` into `base` in place: mappings key by key, anything else replaces (module docstring)."""
    for key, value in overlay.items():
        sub = f"{keypath}.{key}" if keypath else str(key)
        if not keypath and key not in TOP_KEYS:
            raise ConfigError(f"{label}: {sub}: unknown top-level section{algorithms.suggest(str(key), list(TOP_KEYS))}"
                              f"; allowed here: {', '.join(TOP_KEYS)}")
        old = base.get(key)
        if isinstance(old, dict) and isinstance(value, dict):
            merge_overlay(old, value, label, sources, sub)
            continue
        if isinstance(old, dict) and old:
            raise ConfigError(f"{label}: {sub}: expected a mapping to merge into the one from {sources.get(sub, '?')}, "
                              f"got {_type_name(value)} {value!r}; overlays add or change entries, they cannot "
                              f"remove them")
        base[key] = copy.deepcopy(value)
        _forget(sources, sub)
        _record(base[key], label, sources, sub)


def parse_value(text: str) -> Any:
    """A --set value as a YAML scalar or flow collection (never evaluated as code)."""
    try:
        return safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set value {text!r} is not valid YAML ({_yaml_problem(exc)}); quote it or fix it") \
            from None


# ---------------------------------------------------------------------------------------------------------


class Config:
    """A validated benchmarks.yaml with overlays merged and --set overrides applied."""

    def __init__(self, raw: dict[str, Any], path: Path, sets: list[str] | tuple[str, ...] = (),
                 sources: dict[str, str] | None = None, overlays: list[Path] | tuple[Path, ...] = ()):
        self.path = Path(path)                       # the base file
        self.overlays = [Path(p) for p in overlays]  # --config files, in merge order
        self.raw = _unaliased(raw)
        self.sources = dict(sources or {})           # dotted key path -> file or --set that set it
        if not self.sources:
            _record(self.raw, self.path.name, self.sources, "")
        self.algorithm_sets: dict[str, dict[str, Any]] = {}
        self.budget_sets: dict[str, Any] = {}
        self._apply_sets(sets)
        self._validate()

    # -- loading ------------------------------------------------------------------------------------------
    @classmethod
    def load(cls, overlays: str | Path | list | tuple | None = None,
             sets: list[str] | tuple[str, ...] = ()) -> Config:
        """The packaged benchmarks.yaml with each overlay file merged over it in order, then `sets`."""
        if overlays is None or isinstance(overlays, (str, Path)):
            overlays = [overlays] if overlays else []
        base = DEFAULT_CONFIG
        if not base.is_file():
            raise ConfigError(f"{base}: metabench's own benchmarks.yaml is missing (a broken install); reinstall "
                              f"the metabench wheel, or build it from a checkout with `pip wheel .`")
        raw = _read_yaml(base, base.name)
        sources: dict[str, str] = {}
        _record(raw, base.name, sources, "")
        paths = [Path(p) for p in overlays]
        for path in paths:
            merge_overlay(raw, _read_yaml(path, str(path)), str(path), sources)
        return cls(raw, base, sets, sources, paths)

    def source_of(self, keypath: str) -> str:
        """The file (or --set) that set `keypath`, or the nearest enclosing entry for a key nobody set."""
        key = keypath
        while key:
            if key in self.sources:
                return self.sources[key]
            cut = max(key.rfind("."), key.rfind("["))
            if cut <= 0:
                break
            key = key[:cut]
        return self.sources.get("", self.path.name)

    @property
    def benchmarks(self) -> dict[str, dict[str, Any]]:
        return self.raw.get("benchmarks", {})

    @property
    def profiles(self) -> dict[str, dict[str, Any]]:
        return self.raw.get("profiles", {})

    @property
    def suites(self) -> dict[str, dict[str, Any]]:
        return self.raw.get("suites", {})

    def suite_reuse(self, suite: str) -> list[Path]:
        """The run folders a suite takes finished cells from (bench.reuse): a relative entry of the shipped file
        is read against the checkout's root (or the working directory for an installed wheel), one of an overlay
        against the overlay's own folder."""
        entries = self.suites.get(suite, {}).get("reuse", [])
        source = self.source_of(f"suites.{suite}.reuse")
        base = Path(source).parent if source != self.path.name else resources.checkout_root() or Path.cwd()
        return [Path(e) if Path(e).is_absolute() else base / e for e in entries]

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
                _record(value, f"--set {item}", self.sources, ".".join(parts))
            elif head == "budget" and len(parts) == 2:
                if parts[1] not in BUDGET_KEYS:
                    hint = algorithms.suggest(parts[1], list(BUDGET_KEYS))
                    raise ConfigError(f"--set {key}: unknown budget key{hint}; budget keys: {', '.join(BUDGET_KEYS)}")
                self.budget_sets[parts[1]] = value
            elif head in algorithms.names() and len(parts) == 2:  # any registered one, plugins included
                self.algorithm_sets.setdefault(head, {})[parts[1]] = value
            elif head in self.raw.get("benchmarks", {}) and len(parts) >= 2:
                self._set_path(["benchmarks", *parts], value, key)
                _record(value, f"--set {item}", self.sources, ".".join(["benchmarks", *parts]))
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
                    raise ConfigError(f"--set {key}: {part!r} is not a mapping in {self.source_of('.'.join(parts))}")
                node[part] = {}
            node = node[part]
        node[parts[-1]] = value

    # -- validation ------------------------------------------------------------------------------------
    def _validate(self) -> None:
        c = _Checker(self.source_of)
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
            c.keys(profile, PROFILE_KEYS, f"profiles.{name}", ranges=BUDGET_RANGES)
            for key in ("meta_iters", "test_episodes"):
                if key not in profile:
                    c.fail(f"profiles.{name}.{key}", "missing; every profile sets meta_iters and test_episodes")
            for i, rule in enumerate(profile.get("overrides") or []):
                where = f"profiles.{name}.overrides[{i}]"
                c.keys(rule, OVERRIDE_KEYS, where, ranges=BUDGET_RANGES)
                for hname in self._matching_algorithms(rule.get("algorithm", "*")):
                    self._validate_hparams(c, hname, rule.get("hparams") or {}, f"{where}.hparams", partial=True)
        c.keys(self.budget_sets, BUDGET_KEYS, "--set budget", ranges=BUDGET_RANGES)
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
        c.value(dataset, "str", f"{where}.dataset")
        known = data.datasets()  # the registry: a dataset module brings its own fields, ranges and checks
        if dataset not in known:
            c.fail(f"{where}.dataset", f"unknown dataset {dataset!r}{algorithms.suggest(str(dataset), list(known))}"
                                       f"; known: {', '.join(known)}")
        ds = known[dataset]
        c.keys(spec, {**BENCHMARK_KEYS, **ds.fields}, where, "benchmark field", {**BENCHMARK_RANGES, **ds.ranges})
        if ds.validate is not None:
            ds.validate(c, where, spec)
        for key in REQUIRED_BENCHMARK_KEYS:
            if key not in spec:
                c.fail(f"{where}.{key}", "missing; every benchmark needs " + ", ".join(REQUIRED_BENCHMARK_KEYS))
        for key in ds.required:
            if spec.get(key) is None:
                c.fail(f"{where}.{key}", f"missing; every {dataset} benchmark needs " + ", ".join(ds.required))
        if spec["kind"] not in KINDS:
            c.fail(f"{where}.kind", f"unknown kind {spec['kind']!r}; one of {', '.join(KINDS)}")
        c.name(spec["backbone"], nets.names(), f"{where}.backbone", "backbone")
        if "metric" in spec:
            self._validate_metric(c, where, spec)

    def _validate_metric(self, c: _Checker, where: str, spec: dict) -> None:
        """`metric: {name, higher_is_better}`, both given, naming a metric the benchmark reports."""
        c.keys(spec["metric"], METRIC_KEYS, f"{where}.metric", "metric key")
        for key in METRIC_KEYS:
            if key not in spec["metric"]:
                c.fail(f"{where}.metric.{key}", "missing; write metric: {name: accuracy, higher_is_better: true}")
        steps = re.fullmatch(r"mse@(\d+)", spec["metric"]["name"])
        if spec["kind"] == "regression" and steps and int(steps.group(1)) > int(spec.get("eval_steps") or 0):
            c.fail(f"{where}.metric.name", f"{spec['metric']['name']} is never measured: eval_steps is "
                                           f"{spec.get('eval_steps')}; name mse@S with S <= eval_steps (e.g. "
                                           f"--set {where.split('.', 1)[1]}.metric.name=mse@{spec.get('eval_steps')})")

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
            c.value(value, schema[key], sub, hparam_range(key, fields[key]))

    def _matching_algorithms(self, pattern: str) -> list[str]:
        return [a for a in algorithms.names(pattern)]

    @staticmethod
    def _validate_targets(c: _Checker, where: str, targets: dict, benches: list[str]) -> None:
        """targets: {benchmark: {algorithm: number}}, the headline value a cell should reach (the docs' tables
        say where a cell falls short, with its budget and the paper's)."""
        for bench, per_algorithm in targets.items():
            if bench not in benches:
                c.fail(f"{where}.targets.{bench}", f"not a benchmark of this suite; use one of {', '.join(benches)}")
            elif not isinstance(per_algorithm, dict):
                c.fail(f"{where}.targets.{bench}", "expected a mapping {algorithm: number}")
            else:
                for algorithm, value in per_algorithm.items():
                    c.value(value, "float", f"{where}.targets.{bench}.{algorithm}", None)
                    if algorithm not in algorithms.names():
                        c.fail(f"{where}.targets.{bench}.{algorithm}",
                               f"unknown algorithm{algorithms.suggest(str(algorithm), algorithms.names())}")

    def _validate_suite(self, c: _Checker, name: str, suite: Any) -> None:
        where = f"suites.{name}"
        c.keys(suite, SUITE_KEYS, where, ranges={"seeds": (0, 2**63 - 1)})
        for key in ("benchmarks", "algorithms"):
            if not suite.get(key):
                c.fail(f"{where}.{key}", "missing or empty; list names or wildcards")
        for pattern in suite["benchmarks"]:
            if not fnmatch.filter(self.benchmarks, pattern):
                c.fail(f"{where}.benchmarks", f"{pattern!r} matches no benchmark"
                                              f"{algorithms.suggest(pattern, list(self.benchmarks))}")
        for pattern in suite["algorithms"]:
            if not algorithms.expand(pattern):
                c.fail(f"{where}.algorithms", f"{pattern!r} matches no algorithm"
                                              f"{algorithms.suggest(pattern, algorithms.names())}")
        if "profile" in suite and suite["profile"] not in self.profiles:
            c.name(suite["profile"], list(self.profiles), f"{where}.profile", "profile")
        benches = self.expand_benchmarks(suite["benchmarks"])
        self._validate_targets(c, where, suite.get("targets") or {}, benches)
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
        """Names for suite/--algorithm patterns. Wildcards cover the built-in algorithms and those of plugins
        asked for with --plugin, never merely installed ones, so installing a package cannot add cells to a
        suite behind its back (algorithms.expand); an exact name may be any registered algorithm."""
        out: list[str] = []
        for pattern in patterns:
            matched = algorithms.expand(pattern)
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
        return self._resolve_hparams(algorithm, benchmark, profile)[0]

    def _resolve_hparams(self, algorithm: str, benchmark: str, profile: str) -> tuple[dict[str, Any], dict[str, str]]:
        """The hyper-parameters and, for each, where its value came from (for `metabench config show --cell`)."""
        cls = algorithms.get(algorithm)
        fields = hparam_fields(cls)
        values: dict[str, Any] = {}
        origin: dict[str, str] = {}

        def layer(items: dict[str, Any], where: Any) -> None:
            for key, value in items.items():
                values[key] = value
                origin[key] = where(key) if callable(where) else where

        # the dataclass is where a default lives (the shipped file restates none), so name it, not the learner
        dataclass_default = f"{cls.Hparams.__module__}.{cls.Hparams.__qualname__} default"
        for name, f in fields.items():
            if f.default is not dataclasses.MISSING:
                layer({name: f.default}, dataclass_default)
            elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
                layer({name: f.default_factory()}, dataclass_default)  # type: ignore[misc]
        entry = self.algorithm_entries.get(algorithm) or {}
        at = f"algorithms.{algorithm}.defaults"
        layer(entry.get("defaults") or {}, lambda k: f"{self.source_of(f'{at}.{k}')}: {at}.{k}")
        for pattern, override in (entry.get("overrides") or {}).items():
            if fnmatch.fnmatchcase(benchmark, pattern):
                at_o = f"algorithms.{algorithm}.overrides.{pattern}"
                layer(override or {}, lambda k, at_o=at_o: f"{self.source_of(f'{at_o}.{k}')}: {at_o}.{k}")
        for i, rule in self._profile_rules(profile, benchmark, algorithm, numbered=True):
            at_r = f"profiles.{profile}.overrides[{i}]"
            layer({k: v for k, v in (rule.get("hparams") or {}).items() if k in fields},
                  f"{self.source_of(at_r)}: {at_r}.hparams")
        layer(self.algorithm_sets.get(algorithm, {}), lambda k: f"--set {algorithm}.{k}")
        missing = [n for n in fields if n not in values]
        if missing:
            raise ConfigError(f"{self.source_of(at)}: {at}: no value for {', '.join(missing)}; add them")
        return values, origin

    def _profile_rules(self, profile: str, benchmark: str, algorithm: str, numbered: bool = False) -> list:
        rules = [(i, rule) for i, rule in enumerate(self.profiles[profile].get("overrides") or [])
                 if rule_applies(rule, benchmark, algorithm)]
        return rules if numbered else [rule for _, rule in rules]

    def budget(self, algorithm: str, benchmark: str, profile: str) -> dict[str, Any]:
        return self._resolve_budget(algorithm, benchmark, profile)[0]

    def _resolve_budget(self, algorithm: str, benchmark: str, profile: str) -> tuple[dict[str, Any], dict[str, str]]:
        base = self.profiles[profile]
        budget = {"validation_tasks": 100, "log_every": 50, "checkpoint_every": 0, "eval_batch": 50, "cpus": 2,
                  "gpus": 0}
        origin = {k: "bench.config built-in default" for k in budget}
        at = f"profiles.{profile}"
        for k, v in base.items():
            if k in BUDGET_KEYS:
                budget[k], origin[k] = v, f"{self.source_of(f'{at}.{k}')}: {at}.{k}"
        for i, rule in self._profile_rules(profile, benchmark, algorithm, numbered=True):
            for k, v in rule.items():
                if k in BUDGET_KEYS:
                    budget[k], origin[k] = v, f"{self.source_of(f'{at}.overrides[{i}]')}: {at}.overrides[{i}]"
        for k, v in self.budget_sets.items():
            budget[k], origin[k] = v, f"--set budget.{k}"
        if budget.get("test_episodes") is None:
            key = f"benchmarks.{benchmark}.test_episodes"
            budget["test_episodes"] = self.benchmarks[benchmark]["test_episodes"]
            origin["test_episodes"] = f"{self.source_of(key)}: {key} (the profile says null: the benchmark's own)"
        return budget, origin

    def explain_cell(self, benchmark: str, algorithm: str, seed: int, profile: str) -> dict[str, Any]:
        """A cell's resolved spec, hyper-parameters and budget, each value with where it came from."""
        cell = self.cell(benchmark, algorithm, seed, profile)
        spec_origin = {k: f"{self.source_of(f'benchmarks.{benchmark}.{k}')}: benchmarks.{benchmark}.{k}"
                       for k in cell.spec}
        _, hparam_origin = self._resolve_hparams(algorithm, benchmark, profile)
        _, budget_origin = self._resolve_budget(algorithm, benchmark, profile)
        return {"cell": cell.key, "profile": profile, "config_hash": cell.config_hash,
                "spec": {k: {"value": v, "from": spec_origin[k]} for k, v in cell.spec.items()},
                "hparams": {k: {"value": v, "from": hparam_origin.get(k, "?")} for k, v in cell.hparams.items()},
                "budget": {k: {"value": v, "from": budget_origin.get(k, "?")} for k, v in cell.budget.items()}}

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
            raise ConfigError(f"{self.source_of('suites')}: suites.default: missing; define it or pass --benchmark")
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
        self.check_cells(cells)
        return cells, profile, suite_name

    def check_cells(self, cells: list[Cell]) -> None:
        """What only a resolved cell can show, checked before any cell starts: seeds in range, hyper-parameters
        that do not go together (each learner's check_hparams), and episode shapes
        the benchmark's split can hold (ways <= classes, shots + queries <= examples per class), with the hyper-
        parameters that override the benchmark's training episodes (e.g. protonet.train_ways) taken into account."""
        sizes: dict[str, Any] = {}
        for cell in cells:
            if not 0 <= cell.seed < 2**63:
                raise ConfigError(f"seed {cell.seed}: out of range; allowed: 0 to 2**63-1")
            h, learner = cell.hparams, algorithms.get(cell.algorithm)
            try:
                learner.check_hparams(h)
            except ValueError as exc:
                raise ConfigError(f"{cell.key}: {exc}") from None
            spec = cell.spec
            if cell.benchmark not in sizes:
                sizes[cell.benchmark] = data.split_sizes(spec) if spec.get("kind") == "classification" else None
            parts = sizes[cell.benchmark]
            if not parts:
                continue
            test = (spec["ways"], spec["shots"], spec["test_query"], f"benchmarks.{cell.benchmark}")
            asked = learner.training_episode(h)  # what its batch_request will ask for
            train_ways = asked["ways"] or spec.get("train_ways") or spec["ways"]
            train_shots = asked["shots"] or spec.get("train_shots") or spec["shots"]
            train_query = asked["query"]
            train_query = spec.get("train_query") or spec["test_query"] if train_query is None else train_query
            train_from = (f"--set {cell.algorithm}.train_ways" if "train_ways" in self.algorithm_sets.get(
                cell.algorithm, {}) else f"{cell.algorithm}'s train_ways" if asked["ways"] else
                f"benchmarks.{cell.benchmark}.train_ways")
            for part, (ways, shots, query, where) in (("test", test), ("val", test),
                                                      ("train", (train_ways, train_shots, train_query, train_from))):
                if part not in parts:
                    continue
                classes, per_class = parts[part]
                if ways > classes:
                    raise ConfigError(f"{cell.key}: {ways}-way episodes need {ways} classes but the {part} split of "
                                      f"{cell.benchmark} has {classes} (ways from {where}); allowed: 2 to {classes}")
                if shots + query > per_class:
                    raise ConfigError(f"{cell.key}: {shots} shots + {query} queries per class exceed the {per_class} "
                                      f"examples per class of the {part} split of {cell.benchmark}; lower shots or "
                                      f"query")


# ---------------------------------------------------------------------------------------------------------
# `metabench config show`


def _show_yaml(node: Any, keypath: str, parent_source: str, sources: dict[str, str], indent: int,
               lines: list[str]) -> None:
    """YAML of `node` with `# from <file>` wherever a value's source differs from its enclosing entry's, so the
    packaged defaults stay quiet and every overlay or --set value is marked."""
    pad = "  " * indent
    for key, value in node.items():
        sub = f"{keypath}.{key}" if keypath else str(key)
        source = sources.get(sub, parent_source)
        note = f"  # from {source}" if source != parent_source else ""
        name = yaml.safe_dump(key, default_flow_style=True).strip().removesuffix("\n...").strip()
        if isinstance(value, dict) and value:
            lines.append(f"{pad}{name}:{note}")
            _show_yaml(value, sub, source, sources, indent + 1, lines)
        else:
            text = yaml.safe_dump(value, default_flow_style=True, width=10**6, sort_keys=False).strip()
            lines.append(f"{pad}{name}: {text.removesuffix('...').strip()}{note}")


def _parse_cell(text: str) -> tuple[str, str, int]:
    parts = text.split("/")
    seed = parts[2].removeprefix("seed") if len(parts) == 3 else ""
    if len(parts) != 3 or not seed.isdigit():
        raise ConfigError(f"--cell {text!r}: expected BENCHMARK/ALGORITHM/SEED, e.g. sine-k5/maml/0")
    return parts[0], parts[1], int(seed)


def add_arguments(cfg) -> None:
    """`metabench config show`'s arguments."""
    cfg.add_argument("action", choices=["show"])
    cfg.add_argument("--cell", metavar="B/A/S", help="one cell (benchmark/algorithm/seed): its resolved benchmark "
                                                     "spec, hyper-parameters and budget")
    cfg.add_argument("--profile", help="with --cell: the profile (default cpu)")
    cfg.add_argument("--config", action="append", default=[], metavar="FILE", help=CONFIG_HELP)
    cfg.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="sets")
    cfg.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                     help="import MODULE first (an overlay may configure its algorithms)")
    cfg.add_argument("--format", choices=["yaml", "json"], default="yaml")


def command(args) -> int:
    """`metabench config show [--cell B/A/S]`: the merged configuration, or one cell, with sources."""
    algorithms.load_plugins(args.plugin)
    config = Config.load(args.config, args.sets)
    if args.cell:
        benchmark, algorithm, seed = _parse_cell(args.cell)
        config.expand_benchmarks([benchmark])
        algorithms.get(algorithm)
        profile = args.profile or "cpu"
        config.check_profile(profile)
        explained = config.explain_cell(benchmark, algorithm, seed, profile)
        if args.format == "json":
            print(json.dumps(explained, indent=2, default=str))
            return 0
        print(f"# cell {explained['cell']}, profile {profile}, config hash {explained['config_hash']}")
        for section in ("spec", "hparams", "budget"):
            print(f"{section}:")
            width = max((len(k) for k in explained[section]), default=0)
            for key, item in explained[section].items():
                text = yaml.safe_dump(item["value"], default_flow_style=True, width=10**6).strip()
                text = text.removesuffix("...").strip()
                print(f"  {key + ':':<{width + 1}} {text:<24} # {item['from']}")
        return 0
    if args.format == "json":
        print(json.dumps({"files": [str(config.path), *map(str, config.overlays)], "sets": list(args.sets),
                          "config": config.raw, "sources": config.sources}, indent=2, default=str))
        return 0
    files = [f"{config.path.name} ({config.path})", *map(str, config.overlays), *(f"--set {s}" for s in args.sets)]
    lines = [f"# resolved configuration: {' < '.join(files)} (later wins)",
             f"# unmarked values come from {config.path.name}"]
    _show_yaml(config.raw, "", config.path.name, config.sources, 0, lines)
    print("\n".join(lines))
    return 0
