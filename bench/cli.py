"""The `metabench` command (also `python -m bench`): build the parser, dispatch, report user errors.

Dispatch only: each subcommand's arguments and its `command(args) -> exit code` live beside its implementation
(SUBCOMMANDS names the modules). User errors (bad names, bad config, unusable folders, missing data) print one
line `metabench: error: ...` and exit 2; a run whose cells failed exits 1 after writing every finished cell.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
from pathlib import Path

import bench
from bench.allocator import keep_freed_memory
from bench.errors import CONFIG_HELP, EXIT_FAILED_CELLS, EXIT_OK, EXIT_USAGE, ConfigError, RunDirError, UserError

# re-exported: the exit codes, CONFIG_HELP and UserError live in bench.errors (importable without the CLI)
__all__ = ["CONFIG_HELP", "EXIT_FAILED_CELLS", "EXIT_OK", "EXIT_USAGE", "SUBCOMMANDS", "UserError", "main"]

# (name, module, help, accepts -q after the name) in `metabench --help` order. cli.py creates these subparsers
# and the module's add_arguments(parser) fills them; help None: the module's add_parser(subparsers) names and
# describes its own (possibly nested) parser. Every module exposes command(args) -> exit code.
SUBCOMMANDS = (
    ("list", "bench.listing", "list algorithms, benchmarks, suites, profiles or figures (all of them with no "
                              "argument; wildcards allowed)", True),
    ("run", "bench.run_command", "train and evaluate a suite or a grid of cells", True),
    ("data", "bench.datacheck", "check, locate or prepare datasets", False),
    ("report", "bench.report", "leaderboards from run folders, with the published numbers beside ours", False),
    ("compare", "bench.compare", "paired, episode-by-episode regression test of NEW against BASELINE", False),
    ("perf", "bench.perf", "speed benchmarks with ratios to a reference measured in the same run", False),
    ("figures", "bench.figures_command", "draw figures by name from run folders' CSVs", True),
    ("config", "bench.config", "print the resolved configuration and where each value came from", True),
    ("completion", "bench.completion", "print a shell completion script: eval \"$(metabench completion bash)\" "
                                       "(bash; zsh with bashcompinit)", False),
    ("db", "bench.db", None, False),  # the results database
    ("leaderboard", "bench.site", None, False),  # the static leaderboard site
    ("verify", "bench.verify", None, False),  # re-running cells of a run folder
    ("docs", "bench.docs_tables", None, False),  # regenerating the docs' tables
)


class _Parser(argparse.ArgumentParser):
    """argparse, but its errors are one line like every other user error (no usage block), exit code 2."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}; see `{self.prog} --help`\n")


def _version_line() -> str:
    where = Path(bench.__file__).resolve().parent.parent
    return f"metabench {bench.__version__} from {where} (python {sys.version.split()[0]})"


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="metabench", description="Meta-learning benchmark and reproduction suite.")
    p.add_argument("--version", action="version", version=_version_line())
    p.add_argument("-q", "--quiet", action="store_true", help="print only errors and failed cells")
    # the same flag after the subcommand (`metabench run -q ...`); SUPPRESS keeps a global -q from being reset
    quiet = argparse.ArgumentParser(add_help=False)
    quiet.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                       help="print only errors and failed cells")
    sub = p.add_subparsers(dest="command", required=True)
    for name, module, help_, takes_quiet in SUBCOMMANDS:
        # the modules keep their heavy imports inside command(): importing one here only defines its parser
        implementation = importlib.import_module(module)
        if help_ is None:
            implementation.add_parser(sub)
        else:
            implementation.add_arguments(sub.add_parser(name, parents=[quiet] if takes_quiet else [], help=help_))
    return p


def _delegate(module: str):
    """The handler of a subcommand: imports its module (and whatever that loads, torch included) only when the
    subcommand runs."""

    def handler(args) -> int:
        return importlib.import_module(module).command(args)

    return handler


def _check_install() -> None:
    """`bench` and `algorithms` are also names of other distributions on the package index, and a folder called
    `algorithms` is common in users' projects: make sure both names resolve to this installation of metabench.
    find_spec only locates `algorithms` (importing it would pull in torch for commands that must not)."""
    here = Path(bench.__file__).resolve().parent
    if not getattr(bench, "__metabench__", False):
        raise UserError(f"`import bench` found {here}, which is not metabench's harness (another package named "
                        f"'bench' shadows it); uninstall that package or remove it from PYTHONPATH")
    spec = importlib.util.find_spec("algorithms")
    origin = Path(spec.origin).resolve() if spec is not None and spec.origin else None
    if origin != here.parent / "algorithms" / "__init__.py":
        raise UserError(f"`import algorithms` found {origin or 'nothing'} instead of metabench's "
                        f"{here.parent / 'algorithms'} (another package or a folder named 'algorithms' in the "
                        f"current folder or on PYTHONPATH shadows it); rename it, or run from another folder")


def _passive_openmp() -> None:
    """OMP_WAIT_POLICY=passive unless the user set a policy: OpenMP worker threads then sleep instead of spinning
    between parallel regions. On a busy shared machine spinning threads take the cores that the descheduled
    thread everyone waits for needs: a 2-thread sine MAML smoke cell took 99 s with the default (active) and 35 s
    passive beside other jobs, and the lead saw 145 s against 9 s for a `pretrain` cell; on a quiet machine
    passive cost about 10% on such a cell (docs/performance.md). The OpenMP runtime reads it once, when torch
    loads, so it is set before anything imports torch; the manifest records it (provenance.thread_env)."""
    if "OMP_WAIT_POLICY" not in os.environ and "torch" not in sys.modules:
        os.environ["OMP_WAIT_POLICY"] = "passive"


def main(argv: list[str] | None = None) -> int:
    _passive_openmp()
    args = _parser().parse_args(argv)
    try:  # before anything imports `algorithms`: a shadowing package would fail there with a traceback
        _check_install()
    except UserError as exc:
        print(f"metabench: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    # after the check: a foreign `algorithms` package would fail this import with a traceback
    from algorithms import UnknownNameError

    keep_freed_memory()
    handlers = {name: _delegate(module) for name, module, _, _ in SUBCOMMANDS}
    try:
        return handlers[args.command](args)
    except (ConfigError, RunDirError, UnknownNameError, UserError, ImportError) as exc:
        print(f"metabench: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("metabench: interrupted; finished cells are saved (rerun with --resume to continue)", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `metabench list | head`: the reader left; not an error worth a traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except OSError as exc:  # a path that cannot be read or written (a file where a folder goes, a full disk...)
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"metabench: error: {where}{exc.strerror or exc}; check the path and its permissions",
              file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":  # `python -m bench.cli`: run the importable copy, whose UserError the modules raise
    sys.exit(importlib.import_module("bench.cli").main())
