"""The user errors, exit codes and shared help words of the command line, in a module that imports nothing from
bench: every module can import it at the top without pulling in the CLI (or torch), and without a cycle.

`metabench` reports each of these errors as one line `metabench: error: ...` and exits EXIT_USAGE. The classes
are also importable where they used to live (bench.cli.UserError, bench.config.ConfigError,
bench.rundir.RunDirError).
"""
from __future__ import annotations

EXIT_OK, EXIT_FAILED_CELLS, EXIT_USAGE = 0, 1, 2
# shared by `run`, `list` and `config`: the same words wherever an overlay is accepted
CONFIG_HELP = ("a configuration overlay merged over the packaged benchmarks.yaml (repeatable; later files win): "
               "new suites, benchmarks, profiles, algorithm defaults")


class UserError(Exception):
    """A mistake in the command line; reported as one line."""


class ConfigError(ValueError):
    """A user error in benchmarks.yaml, a --set value or a command-line name; the message is one line."""


class RunDirError(RuntimeError):
    """The output folder cannot be used (unwritable, locked by another run, not a run folder)."""
