"""`metabench db add|ls|history|regressions`: the results database (SQLite by default, PostgreSQL for a lab).

The parser lives here beside its implementation (bench.cli builds every parser at start-up); the PostgreSQL
driver loads only when a postgresql:// database is opened. See docs/leaderboard.md.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from bench.db.backend import Database, short
from bench.db.history import history, regressions
from bench.db.ingest import add
from bench.errors import UserError

EXIT_OK, EXIT_REGRESSION = 0, 1


def add_db_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", metavar="URL", help="sqlite:///PATH or postgresql://USER@HOST/DB (default: "
                                                    "$METABENCH_DB, else sqlite at $METABENCH_HOME/results.sqlite, "
                                                    "METABENCH_HOME defaulting to ~/.cache/metabench)")


def add_parser(subparsers) -> None:
    db = subparsers.add_parser("db", help="the results database: add runs, list them, history and regressions")
    sub = db.add_subparsers(dest="db_command", required=True)
    add = sub.add_parser("add", help="ingest run folders (and run folders below them); idempotent, atomic per run")
    add.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR")
    add.add_argument("--replace", action="store_true",
                     help="overwrite a stored run whose id matches but whose files changed (e.g. a resumed run)")
    ls = sub.add_parser("ls", help="list the stored runs")
    hist = sub.add_parser("history", help="the headline metric of (benchmark, algorithm) over commits")
    hist.add_argument("--benchmark", required=True, metavar="B")
    hist.add_argument("--algorithm", required=True, metavar="A")
    hist.add_argument("--profile", help="only this profile (default: every profile, each its own series)")
    reg = sub.add_parser("regressions", help="cells significantly worse than their previous commit (exit 1 if any)")
    reg.add_argument("--since", metavar="DATE|COMMIT",
                     help="only versions dated on or after DATE (YYYY-MM-DD), or after COMMIT (a hash prefix)")
    ls.add_argument("--format", choices=["table", "json"], default="table")
    for p in (hist, reg):
        p.add_argument("--format", choices=["table", "json"], default="table",
                       help="json: one object per version, for scripts and bots")
        p.add_argument("--alpha", type=float, default=0.05)
        p.add_argument("--min-delta", type=float, default=None,
                       help="smallest drop that counts (default as in compare: 1 accuracy point, 5%% relative)")
    for p in (add, ls, hist, reg):
        add_db_argument(p)


def _print_table(rows: list[tuple], header: tuple) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    for row in [header, *rows]:
        print("  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip())


def _fmt(x, spec: str) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def _print_json(points) -> None:
    """The fields of results.json's series points, plus the series they belong to."""
    def clean(x):
        return None if isinstance(x, float) and not math.isfinite(x) else x

    keys = ("benchmark", "algorithm", "profile", "metric", "commit", "dirty", "commit_date", "runs", "status",
            "mean", "ci95", "n", "ci_method", "meta_iters", "verdict", "p", "delta", "rel", "baseline_commit", "note")
    print(json.dumps([{k: clean(getattr(p, k)) for k in keys} for p in points], indent=1))


def _check_thresholds(args) -> None:
    if not 0 < args.alpha < 1:
        raise UserError(f"--alpha {args.alpha}: expected a probability between 0 and 1, e.g. 0.05")
    if args.min_delta is not None and args.min_delta < 0:
        raise UserError(f"--min-delta {args.min_delta}: expected a non-negative number in the metric's units")


def command(args) -> int:
    with Database(args.db) as db:
        commands = {"add": cmd_add, "ls": cmd_ls, "history": cmd_history, "regressions": cmd_regressions}
        return commands[args.db_command](db, args)


def cmd_add(db, args) -> int:
    quiet = getattr(args, "quiet", False)  # the global -q: print only errors
    counts = add(db, args.runs, replace=args.replace, echo=(lambda line: None) if quiet else print)
    if not quiet:
        print(f"metabench: db: {counts['added']} added, {counts['replaced']} replaced, {counts['unchanged']} "
              f"unchanged in {db.location}", file=sys.stderr)
    return EXIT_OK


def cmd_ls(db, args) -> int:
    rows = db.rows("SELECT r.run_id, r.suite, r.profile, r.commit_sha, r.dirty, r.commit_date, r.started, "
                   "r.source_path, (SELECT count(*) FROM cells c WHERE c.run = r.id) AS cells, "
                   "(SELECT count(*) FROM cells c WHERE c.run = r.id AND c.status = 'ok') AS ok "
                   "FROM runs r ORDER BY r.commit_date, r.started, r.run_id")
    if args.format == "json":
        print(json.dumps([{**r, "dirty": None if r["dirty"] is None else bool(r["dirty"])} for r in rows], indent=1))
        return EXIT_OK
    _print_table([(r["run_id"], r["suite"] or "", r["profile"] or "", short(r["commit_sha"], bool(r["dirty"])),
                   (r["commit_date"] or "")[:10], (r["started"] or "")[:19], f"{r['ok']}/{r['cells']}",
                   r["source_path"])
                  for r in rows], ("run", "suite", "profile", "commit", "commit date", "started", "ok", "from"))
    print(f"metabench: db: {len(rows)} run(s) in {db.location}", file=sys.stderr)
    return EXIT_OK


def cmd_history(db, args) -> int:
    _check_thresholds(args)
    series = {k: v for k, v in history(db, args.benchmark, args.algorithm, args.alpha, args.min_delta).items()
              if args.profile is None or k[2] == args.profile}
    if not series:
        known = db.rows("SELECT DISTINCT benchmark, algorithm FROM cells ORDER BY benchmark, algorithm")
        hint = ", ".join(f"{r['benchmark']}/{r['algorithm']}" for r in known[:12]) or \
            "none: run `metabench db add` first"
        raise UserError(f"no runs of {args.benchmark}/{args.algorithm}"
                        f"{' with profile ' + args.profile if args.profile else ''} in {db.location}; stored: {hint}")
    if args.format == "json":
        _print_json([p for points in series.values() for p in points])
        return EXIT_OK
    for (bench, algo, profile), points in series.items():
        print(f"{bench} / {algo} / profile {profile or '?'}: {points[0].metric} (mean ± 95% CI)")
        _print_table([(p.version, (p.commit_date or p.started)[:19], len(p.runs), p.n,
                       f"{_fmt(p.mean, '.4g')} ± {_fmt(p.ci95, '.2g')}" if p.status == "ok" else "failed",
                       _fmt(p.delta, "+.3g"), _fmt(p.p, ".2g"),
                       {"worse": "REGRESSION", "failed": "FAILED"}.get(p.verdict, p.verdict),
                       p.baseline_commit or "", p.note) for p in points],
                     ("commit", "date", "runs", "n", "mean ± ci95", "delta", "p", "verdict", "vs", "note"))
        print()
    return EXIT_OK


def cmd_regressions(db, args) -> int:
    _check_thresholds(args)
    bad, compared = regressions(db, args.since, args.alpha, args.min_delta)
    if args.format == "json":
        _print_json(bad)
    elif bad:
        _print_table([(p.benchmark, p.algorithm, p.profile, p.metric, p.baseline_commit or "", p.version,
                       _fmt(p.mean, ".4g"), _fmt(p.delta, "+.3g"), _fmt(p.rel, "+.1%"), _fmt(p.p, ".2g"),
                       "FAILED" if p.verdict == "failed" else "REGRESSION") for p in bad],
                     ("benchmark", "algorithm", "profile", "metric", "from", "to", "mean", "delta", "rel", "p",
                      "verdict"))
    for p in bad:
        change = "failed" if p.verdict == "failed" else f"{p.delta:+.3g} ({p.rel:+.1%}), p={p.p:.2g}"
        print(f"metabench: regression: {p.benchmark}/{p.algorithm} (profile {p.profile}) {p.metric} at {p.version} "
              f"vs {p.baseline_commit}: {change}", file=sys.stderr)
    if not getattr(args, "quiet", False):
        print(f"metabench: db regressions: {compared} paired comparison(s) with the previous version, {len(bad)} "
              f"regression(s){' since ' + args.since if args.since else ''}", file=sys.stderr)
    return EXIT_REGRESSION if bad else EXIT_OK
