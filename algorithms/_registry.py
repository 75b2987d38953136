"""The algorithm registry (timm's `_registry.py` pattern): `@register("name")` on a Learner subclass, `get(name)`,
`names(pattern)` with wildcards, plugins from entry points or `--plugin` modules, and the helpful errors.

Its own module so that algorithm files import it without importing the package that imports them.
"""
from __future__ import annotations

import difflib
import fnmatch
import importlib
from collections.abc import Callable
from typing import TypeVar

from algorithms.base import Learner

_REGISTRY: dict[str, type[Learner]] = {}
T = TypeVar("T", bound=type[Learner])
# modules named with --plugin: their algorithms join wildcard suites ('*'); algorithms that merely arrived through
# an installed entry point do not (see expand)
_REQUESTED: set[str] = set()


class UnknownNameError(KeyError):
    """An unknown algorithm, backbone or figure name; the message suggests close matches."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it verbatim
        return str(self.args[0])



def register(name: str) -> Callable[[T], T]:
    """Class decorator: make a Learner subclass available under `name` (unique)."""

    def decorator(cls: T) -> T:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            other = _REGISTRY[name]
            raise ValueError(f"algorithm name {name!r} is already registered by {other.__module__}."
                             f"{other.__qualname__}; pick another name for {cls.__module__}.{cls.__qualname__}")
        if not (isinstance(cls, type) and issubclass(cls, Learner)):
            raise TypeError(f"@register({name!r}) expects a subclass of algorithms.base.Learner, got {cls!r}")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorator


def suggest(name: str, candidates: list[str] | tuple[str, ...]) -> str:
    """' (did you mean 'maml'?)' or '' — shared by every 'unknown name' error."""
    close = difflib.get_close_matches(name, list(candidates), n=3, cutoff=0.6)
    if not close:
        return ""
    return " (did you mean " + " or ".join(repr(c) for c in close) + "?)"


def get(name: str) -> type[Learner]:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownNameError(
            f"unknown algorithm {name!r}{suggest(name, names())}; `metabench list algorithms` shows all"
        ) from None


def names(pattern: str = "*") -> list[str]:
    """Registered names matching a shell-style wildcard, in registration order."""
    return [n for n in _REGISTRY if fnmatch.fnmatchcase(n, pattern)]


def is_builtin(name: str) -> bool:
    module = get(name).__module__
    return module == "algorithms" or module.startswith("algorithms.")


def requested(name: str) -> bool:
    """Built in, or registered by a module asked for with --plugin (or a submodule of one)."""
    module = get(name).__module__
    return is_builtin(name) or any(module == m or module.startswith(m + ".") for m in _REQUESTED)


def expand(pattern: str) -> list[str]:
    """The algorithms a suite or --algorithm pattern means. An exact name: that algorithm, whoever registered
    it. A wildcard: only built-in algorithms and those of --plugin modules, so that installing a package never
    silently adds cells to a suite like `smoke` ('*') and makes two runs of it incomparable."""
    if not any(ch in pattern for ch in "*?["):
        return [pattern] if pattern in _REGISTRY else []
    return [n for n in names(pattern) if requested(n)]


def plugin_info() -> list[dict[str, str | None]]:
    """Registered algorithms that are not built in: name, module, and the installed distribution providing it
    with its version (None for a module on PYTHONPATH that no distribution owns). Recorded in every manifest,
    because a plugin's version changes results as much as the suite's own commit does."""
    from importlib.metadata import packages_distributions, version

    owners = packages_distributions()
    info = []
    for name, cls in _REGISTRY.items():
        module = cls.__module__
        if module == "algorithms" or module.startswith("algorithms."):
            continue
        dists = owners.get(module.split(".")[0], [])
        dist = dists[0] if dists else None
        info.append({"name": name, "module": module, "distribution": dist,
                     "version": version(dist) if dist else None})
    return info


def load_plugins(modules: list[str] | tuple[str, ...] = ()) -> None:
    """Import entry points of group `metabench.algorithms` and the given modules; each registers itself."""
    from importlib.metadata import entry_points

    for ep in entry_points(group="metabench.algorithms"):
        try:
            ep.load()
        except Exception as exc:  # a broken plugin must not hide the built-in algorithms
            raise ImportError(f"plugin entry point {ep.name!r} ({ep.value}) failed to import: {exc}; "
                              f"fix or uninstall that package") from exc
    for module in modules:
        _REQUESTED.add(module)
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ImportError(f"--plugin {module!r} could not be imported ({exc}); "
                              f"check the module name and that it is on PYTHONPATH") from exc
