"""The one place the tools parse the JSON and CSV files of run folders (and other files they did not write in
this process): any defect — missing, unreadable, not UTF-8, truncated, malformed, the wrong shape, a missing
column — becomes one RunDirError line naming the file and what is wrong, never a parser's traceback.

Why one reader: run folders are copied between machines, edited by hand, cut short by full disks and killed
processes; every command that reads them (run --resume, report, compare, verify, figures, db) must fail the
same clear way, and a fix made here reaches all of them.
"""
from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from bench import resources
from bench.errors import RunDirError


def _text(path: Path, what: str) -> str:
    path = Path(path)
    if not path.exists():
        raise RunDirError(f"{path}: {what} is missing")
    if not path.is_file():
        raise RunDirError(f"{path}: {what} is not a file")
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RunDirError(f"{path}: {what} is not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset "
                          f"{exc.start}); the file is damaged") from None
    except OSError as exc:
        raise RunDirError(f"{path}: {what} cannot be read ({exc.strerror or exc})") from None


def read_json(path: Path, what: str, expect: type = dict) -> Any:
    """The parsed JSON of `path` (a `what`, e.g. "run manifest"), which must be an `expect` (dict by default)."""
    text = _text(path, what)
    if not text.strip():
        raise RunDirError(f"{path}: {what} is empty (a run killed while writing it, or a truncated copy)")
    try:
        # NaN/Infinity are what json.dumps writes for non-finite floats; anything else non-standard is damage
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        cut = " (truncated?)" if exc.pos >= len(text.rstrip()) else ""
        raise RunDirError(f"{path}: {what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
                          f"{cut}") from None
    except RecursionError:
        raise RunDirError(f"{path}: {what} is nested too deeply to be a metabench file") from None
    if expect is not None and not isinstance(data, expect):
        raise RunDirError(f"{path}: {what} should hold a JSON {'object' if expect is dict else expect.__name__}, "
                          f"found {type(data).__name__}")
    return data


def read_csv(path: Path, required_columns: Iterable[str] = (), what: str = "table", **pandas_kwargs) -> pd.DataFrame:
    """The CSV at `path` as a DataFrame with at least `required_columns`; empty cells are NaN, the text 'NA' is
    kept as text (a benchmark or algorithm could be called that)."""
    text = _text(path, what)
    pandas_kwargs.setdefault("keep_default_na", False)
    pandas_kwargs.setdefault("na_values", [""])
    if not text.strip():
        raise RunDirError(f"{path}: {what} is empty (not even a header line)")
    try:
        frame = pd.read_csv(io.StringIO(text), **pandas_kwargs)
    except (pd.errors.ParserError, csv.Error, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RunDirError(f"{path}: {what} is not a well-formed CSV ({first})") from None
    missing = [c for c in required_columns if c not in frame.columns]
    if missing:
        raise RunDirError(f"{path}: {what} lacks the column(s) {', '.join(missing)} (found: "
                          f"{', '.join(map(str, frame.columns)) or 'none'}); it is damaged or not a metabench file")
    return frame


def numeric_column(frame: pd.DataFrame, column: str, path: Path, what: str = "table",
                   key_columns: Iterable[str] = ()) -> pd.Series:
    """`frame[column]` as floats; a value that is not a number is an error naming its row (1-based, after the
    header) and, where given, the row's key columns — never a silent NaN."""
    values = pd.to_numeric(frame[column], errors="coerce")
    bad = values.isna() & frame[column].notna()
    if bad.any():
        i = int(bad.to_numpy().nonzero()[0][0])
        keys = ", ".join(f"{k}={frame[k].iloc[i]}" for k in key_columns if k in frame.columns)
        raise RunDirError(f"{path}: {what} row {i + 2} ({keys or 'no key columns'}): {column} "
                          f"{frame[column].iloc[i]!r} is not a number; the file is damaged")
    return values


# ---------------------------------------------------------------------------------------------------------
# the cell a row belongs to, and the published numbers

CELL = ("benchmark", "algorithm", "seed")  # the columns naming a cell, first in every per-cell CSV row
PUBLISHED_COLUMNS = ["paper", "table", "method", "algorithm", "benchmark", "setting", "metric", "value", "ci95",
                     "notes", "primary"]


def cell_key(benchmark, algorithm, seed) -> str:
    """`benchmark/algorithm/seedS`: how manifests, messages and --cell name one cell."""
    return f"{benchmark}/{algorithm}/seed{seed}"


def cell_row(benchmark, algorithm, seed, **rest) -> dict:
    """A row dict that starts with the cell's columns (CELL), then `rest` in the order given."""
    return {"benchmark": benchmark, "algorithm": algorithm, "seed": seed, **rest}


def read_published(path: Path | None = None, primary_only: bool = True) -> pd.DataFrame:
    """results/published.csv (the checkout's, or the wheel's copy): one row per published number. Only an empty
    cell is missing (the text 'NA' stays text, as in read_csv); `primary_only` keeps the rows the suite compares
    against (alternative protocols and papers have primary=0, so (algorithm, benchmark, metric) is a key).
    No file: an empty table with the columns, so a run or a report never fails for want of published numbers."""
    if path is None:
        try:
            path = resources.published_csv()
        except FileNotFoundError:
            path = None
    if path is None or not Path(path).is_file():
        return pd.DataFrame(columns=PUBLISHED_COLUMNS)
    table = read_csv(Path(path), ("algorithm", "benchmark", "metric", "value"), "published numbers")
    if primary_only and "primary" in table:
        table = table[table["primary"] == 1]
    return table
