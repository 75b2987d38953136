"""`metabench docs check|update [FILE...]`: the results tables in README.md and docs/ are generated, never typed.

A generated table sits between two HTML comments (invisible when the markdown is rendered):

    <!-- metabench: report results/reference/sine-default --format md -->
    ...the table, written by `metabench docs update`...
    <!-- /metabench -->

The opening comment holds a `metabench report` command line; `update` runs it (in-process, reading only the
committed CSVs and manifests) and writes its output between the comments; `check` does the same without writing
and fails on any difference, which is how CI keeps a hand-edited number out of the docs (tests/test_docs_tables.py).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
import sys
from pathlib import Path

from bench import report
from bench.rundir import RunDirError, atomic_write_text

BLOCK = re.compile(r"(<!-- metabench: (?P<command>.*?) -->\n)(?P<body>.*?)(<!-- /metabench -->)", re.DOTALL)
DEFAULT_FILES = ("README.md", "docs")


class DocsError(RunDirError):
    """A generated block that cannot be rendered (bad command, missing run folder)."""


def add_parser(sub) -> None:
    p = sub.add_parser("docs", help="regenerate (update) or check the results tables embedded in README.md and docs/")
    p.add_argument("action", choices=["check", "update"])
    p.add_argument("files", nargs="*", type=Path, metavar="FILE",
                   help="markdown files or folders (default: README.md and docs/ of the current folder)")


def markdown_files(paths: list[Path]) -> list[Path]:
    files = []
    for path in paths or [Path(p) for p in DEFAULT_FILES]:
        if path.is_dir():
            files += sorted(path.rglob("*.md"))
        elif path.is_file():
            files.append(path)
        elif paths:  # a default that does not exist (no docs/ yet) is fine; a named one is not
            raise DocsError(f"{path}: no such file or folder; pass markdown files or folders")
    return files


def render(command: str, where: str) -> str:
    """The text a block's command generates (ending in a newline)."""
    words = shlex.split(command)
    if not words or words[0] != "report":
        raise DocsError(f"{where}: generated block `metabench: {command}`: only `report ...` blocks are supported")
    parser = argparse.ArgumentParser(prog="metabench report", add_help=False, exit_on_error=False)
    report.add_arguments(parser)
    try:
        args = parser.parse_args(words[1:])
    except (argparse.ArgumentError, SystemExit) as exc:
        raise DocsError(f"{where}: generated block `metabench: {command}`: {exc}") from None
    if args.out or args.trend or args.format != "md":
        raise DocsError(f"{where}: generated block `metabench: {command}`: use --format md without --out/--trend")
    args.embed = True
    text, notes = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(text), contextlib.redirect_stderr(notes):
        try:
            report.command(args)
        except RunDirError as exc:
            raise DocsError(f"{where}: generated block `metabench: {command}`: {exc}") from None
    return text.getvalue() if text.getvalue().endswith("\n") else text.getvalue() + "\n"


def regenerate(path: Path) -> tuple[str, str]:
    """(current text, text with every block regenerated) of one markdown file."""
    original = path.read_text(encoding="utf-8")

    def fill(match: re.Match) -> str:
        line = original.count("\n", 0, match.start()) + 1
        return match.group(1) + render(match.group("command"), f"{path}:{line}") + match.group(4)

    return original, BLOCK.sub(fill, original)


def command(args) -> int:
    files = markdown_files(list(args.files))
    stale, blocks = [], 0
    for path in files:
        original, fresh = regenerate(path)
        blocks += len(BLOCK.findall(original))
        if fresh != original:
            stale.append(path)
            if args.action == "update":
                atomic_write_text(path, fresh)
                print(f"metabench: updated {path}", file=sys.stderr)
    if args.action == "check" and stale:
        print(f"metabench: docs check: {len(stale)} file(s) differ from what their run folders generate: "
              f"{', '.join(map(str, stale))}; run `metabench docs update` (and never edit a generated table by "
              f"hand)", file=sys.stderr)
        return 1
    print(f"metabench: docs {args.action}: {blocks} generated table(s) in {len(files)} file(s)"
          + (", all current" if not stale else ""), file=sys.stderr)
    return 0
