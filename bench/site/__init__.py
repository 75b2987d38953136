"""`metabench leaderboard --out DIR`: a self-contained static leaderboard site built from the results database.

No server and no CDN: HTML, one CSS file, a little JavaScript (column sorting) and SVG charts drawn here, so the
folder works from file:// and from any static host. results.json beside it carries the same numbers for
programs (schema: docs/leaderboard.md). The parser lives here; the generator is bench.site.build.
"""
from __future__ import annotations

import sys
from pathlib import Path

from bench.db import _check_thresholds, add_db_argument
from bench.db.backend import Database
from bench.site.build import build


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("leaderboard", help="write the static leaderboard site from the results database")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder to write the site into")
    p.add_argument("--alpha", type=float, default=0.05, help="significance level of the regression markers")
    p.add_argument("--min-delta", type=float, default=None,
                   help="smallest drop marked as a regression (default as in compare)")
    add_db_argument(p)


def command(args) -> int:
    _check_thresholds(args)
    with Database(args.db) as db:
        index = build(db, args.out, alpha=args.alpha, min_delta=args.min_delta)
    if not getattr(args, "quiet", False):
        print(f"metabench: wrote {index}", file=sys.stderr)
    return 0
