"""The import graph DESIGN.md fixes: the reading side (report, plots, compare, site, db) never loads torch or the
algorithms, algorithms/ never imports bench, and bench's modules import each other without cycles.

Why: a leaderboard or a regression gate must run where no model can be loaded (a CI box without torch, a
laptop reading a colleague's run folders), and a cycle makes what a module can use depend on who imported first.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
READING_SIDE = ["bench.report", "bench.plots", "bench.compare", "bench.site.build", "bench.db"]
FORBIDDEN = ("torch", "algorithms")



@pytest.mark.parametrize("module", READING_SIDE)
def test_reading_side_never_loads_torch_or_algorithms(module):
    # a fresh interpreter: this test process has long imported torch through other tests
    code = (f"import sys, {module}\n"
            f"loaded = sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})\n"
            "print('\\n'.join(loaded))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    loaded = done.stdout.split()
    assert not loaded, f"importing {module} loads {', '.join(loaded[:5])}"


def _modules(package: str) -> dict[str, Path]:
    """Dotted name -> file of every module of a top-level package in the repository."""
    root = REPO / package
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imported(node: ast.AST, module: str, is_package: bool) -> list[str]:
    """Dotted names an import statement refers to (for `from X import y`: X.y when that is a module, else X)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:  # relative: resolve against the importing module's package
        package = module.split(".") if is_package else module.split(".")[:-1]
        package = package[:len(package) - node.level + 1]
        base = ".".join(package + ([base] if base else []))
    return [base] + [f"{base}.{alias.name}" for alias in node.names]


def _module_level_imports(tree: ast.Module):
    """Import statements that run when the module is imported: not inside a function or class body."""
    stack = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, (ast.If, ast.Try, ast.With)):
            for field in ("body", "orelse", "finalbody", "handlers"):
                stack.extend(getattr(node, field, []))
        elif isinstance(node, ast.ExceptHandler):
            stack.extend(node.body)


def _graph(package: str) -> dict[str, set[str]]:
    modules = _modules(package)
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in _module_level_imports(tree):
            for name in _imported(node, module, path.name == "__init__.py"):
                # importing a.b.c runs a/b/__init__ first: an edge to every package on the way, except the
                # importer's own packages (already being imported when it runs)
                parts = name.split(".")
                for target in (".".join(parts[:i]) for i in range(1, len(parts) + 1)):
                    if target in modules and target != module and not module.startswith(target + "."):
                        graph[module].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component with more than one module (Tarjan), each as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _path_around(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """One concrete cycle inside a component, a -> b -> ... -> a, for the failure message."""
    members = set(component)
    start = component[0]
    path, seen = [start], {start}
    while True:
        step = sorted(graph[path[-1]] & members)
        nxt = next((m for m in step if m == start), None) if len(path) > 1 else None
        if nxt or not step:
            return path + [start]
        unseen = [m for m in step if m not in seen]
        if not unseen:
            return path + [step[0]]
        path.append(unseen[0])
        seen.add(unseen[0])


def test_bench_has_no_import_cycles():
    graph = _graph("bench")
    cycles = _cycles(graph)
    assert not cycles, "import cycles in bench: " + "; ".join(" -> ".join(_path_around(graph, c)) for c in cycles)


def test_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _path_around(graph, ["a", "b", "c"]) == ["a", "b", "c", "a"]


def test_algorithms_never_import_bench():
    offenders = []
    for module, path in _modules("algorithms").items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):  # any import, even inside a function
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            if any(n == "bench" or n.startswith("bench.") for n in names):
                offenders.append(f"{module} (line {node.lineno})")
    assert not offenders, "algorithms/ imports bench (dependencies run bench -> algorithms): " + ", ".join(offenders)


# The only imports bench/ may run inside a function (issue 21): each (file, imported module) with its reason.
# Everything else goes at the top of its module; a new lazy import needs a reason and an entry here.
LAZY_IMPORTS = {
    # (a) optional dependencies: loaded only by the feature that needs them
    ("bench/executors.py", "ray"),  # the Ray executor (the [ray] extra)
    ("bench/db/backend.py", "psycopg"),  # a postgresql:// results database (the [db] extra)
    ("bench/data/mnist.py", "torchvision.datasets"),  # `data prepare mnist --download`
    ("bench/data/omniglot.py", "torchvision.datasets.utils"),  # `data prepare omniglot --download`
    # (b) bench.rundir is on the torch-free reading side; only a run's provenance needs torch and the algorithms
    ("bench/rundir.py", "torch"),
    ("bench/rundir.py", "algorithms"),
    # cli.main: `algorithms` may be another package that shadows ours; imported after _check_install reports that
    ("bench/cli.py", "algorithms"),
    # bench.plots sets matplotlib's Agg backend on import: importing bench.report must not, only `report --trend`
    ("bench/report.py", "bench"),
    # `metabench --help` builds perf's parser: the flop counter would load more of torch there than it did
    ("bench/perf.py", "torch.utils.flop_counter"),
}


def _function_level_imports(tree: ast.Module):
    """(import statement, imported module) for every import inside a function body, at any depth."""
    def visit(node: ast.AST, in_function: bool):
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if in_function and isinstance(child, ast.Import):
                yield from ((child, alias.name) for alias in child.names)
            elif in_function and isinstance(child, ast.ImportFrom):
                yield child, "." * child.level + (child.module or "")
            yield from visit(child, inside)
    yield from visit(tree, False)


def test_no_unexplained_function_level_imports():
    found, unexplained = set(), []
    for path in sorted((REPO / "bench").rglob("*.py")):
        where = path.relative_to(REPO).as_posix()
        for node, module in _function_level_imports(ast.parse(path.read_text(encoding="utf-8"))):
            found.add((where, module))
            if (where, module) not in LAZY_IMPORTS:
                unexplained.append(f"{where}:{node.lineno} imports {module}")
    assert not unexplained, ("imports inside functions without a reason (move them to the top of the module, or "
                             "add the pair with its reason to LAZY_IMPORTS): " + "; ".join(unexplained))
    stale = sorted(LAZY_IMPORTS - found)
    assert not stale, f"LAZY_IMPORTS names imports that no longer exist (remove them): {stale}"
