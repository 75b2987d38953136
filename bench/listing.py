"""`metabench list`: the registry's algorithms and the configuration's benchmarks, suites, profiles, plus the
figure names, as a table, JSON, or bare names (what shell completion reads)."""
from __future__ import annotations

import fnmatch
import json

import algorithms
from bench import plots
from bench.config import Config
from bench.errors import CONFIG_HELP, EXIT_OK, UserError

LIST_KINDS = ("algorithms", "benchmarks", "suites", "profiles", "figures")


def add_arguments(parser) -> None:
    parser.add_argument("what", nargs="?", metavar="|".join(LIST_KINDS),
                        help="what to list (default: everything); any other word is a pattern over every list")
    parser.add_argument("pattern", nargs="?", default="*")
    parser.add_argument("--config", action="append", default=[], metavar="FILE", help=CONFIG_HELP)
    parser.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                        help="import MODULE first so the algorithms it registers are listed too")
    parser.add_argument("--format", choices=["table", "json", "names"], default="table",
                        help="table (default), json, or names (one per line, for scripts and shell completion)")


def print_table(rows: list[tuple], header: tuple) -> None:
    """Left-aligned columns as wide as their widest cell (shared by `list`, `run` and `figures`)."""
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    for row in [header, *rows]:
        print("  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip())


def _algorithm_rows(pattern: str, config) -> list[tuple]:
    plugins = {p["name"]: p for p in algorithms.plugin_info()}
    rows = []
    for name in algorithms.names(pattern):
        cls = algorithms.get(name)
        desc = (config.algorithm_entries.get(name) or {}).get("description") or (cls.__doc__ or "").split("\n")[0]
        info = plugins.get(name)
        origin = "built-in" if info is None else \
            f"plugin {info['distribution'] or info['module']}{' ' + info['version'] if info['version'] else ''}"
        rows.append((name, ",".join(cls.kinds), origin, desc))
    return rows


def _list_rows(what: str, pattern: str, config) -> tuple[tuple, list[tuple]]:
    """(header, rows) of one list; the first column is always the name."""
    match = lambda name: fnmatch.fnmatchcase(name, pattern)  # noqa: E731
    if what == "algorithms":
        return ("algorithm", "kinds", "from", "description"), _algorithm_rows(pattern, config)
    if what == "figures":
        return ("figure", "description"), [(n, d) for n, (_, d) in plots.FIGURES.items() if match(n)]
    if what == "benchmarks":
        return ("benchmark", "kind", "description"), [
            (n, s["kind"], s.get("description", "")) for n, s in config.benchmarks.items() if match(n)]
    if what == "suites":
        return ("suite", "profile", "benchmarks", "algorithms", "description"), [
            (n, s.get("profile", "cpu"), s["benchmarks"], s["algorithms"], s.get("description", ""))
            for n, s in config.suites.items() if match(n)]
    return ("profile", "meta_iters", "description"), [
        (n, p.get("meta_iters"), p.get("description", "")) for n, p in config.profiles.items() if match(n)]


def command(args) -> int:
    # installed plugins (entry points) and --plugin modules, so that what `list` shows is what `run` accepts
    algorithms.load_plugins(args.plugin)
    what, pattern = args.what, args.pattern
    if what is not None and what not in LIST_KINDS:
        if args.pattern != "*":
            raise UserError(f"metabench list {what!r}: expected one of {', '.join(LIST_KINDS)}"
                            f"{algorithms.suggest(what, LIST_KINDS)}")
        what, pattern = None, args.what  # `metabench list 'proto*'`: the pattern over every list
    config = Config.load(args.config)
    kinds = [what] if what else list(LIST_KINDS)
    tables = {kind: _list_rows(kind, pattern, config) for kind in kinds}
    if what is None and pattern != "*" and not any(rows for _, rows in tables.values()):
        raise UserError(f"nothing is named like {pattern!r}{algorithms.suggest(pattern, LIST_KINDS)}; "
                        f"`metabench list` shows everything")
    _print_tables(tables, what, pattern, args.format)
    return EXIT_OK


def _print_tables(tables: dict, what: str | None, pattern: str, fmt: str) -> None:
    if fmt == "json":
        data = {kind: [dict(zip(header, row)) for row in rows] for kind, (header, rows) in tables.items()}
        print(json.dumps(data[what] if what else data, indent=2, default=str))
    elif fmt == "names":
        for _, rows in tables.values():
            for row in rows:
                print(row[0])
    else:
        if what is None and pattern != "*":
            tables = {kind: table for kind, table in tables.items() if table[1]}
        for i, (kind, (header, rows)) in enumerate(tables.items()):
            if what is None:
                print(("\n" if i else "") + f"# {kind}")
            print_table([tuple(" ".join(x) if isinstance(x, list) else x for x in row) for row in rows], header)
