"""History and regressions from the results database.

A *series* is one (benchmark, algorithm, profile): profiles have different budgets, so their numbers are not
comparable. A *point* of a series is one code version: a commit, with runs made from a modified working tree
(dirty) kept apart from the clean commit's. Several runs of one version are aggregated into one point (the
per-seed rows pooled, a t-interval over them as across seeds; bench.stats), so a commit run three times is one
x position, not three. Points are ordered by commit date, then by when their first run started.

Each point is compared with the latest earlier point that holds per-episode values on the same frozen test
episodes (same test_episode_digest), by the very test `metabench compare` applies to the across-seed row: the
per-episode mean over the point's cells, paired episode by episode (bench.compare.compare_values).
Runs stored without episodes.csv still appear in the history; they are just not tested.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from bench import stats
from bench.compare import compare_values
from bench.db.backend import Database, short
from bench.errors import UserError
from bench.metrics import Headlines, direction_word  # noqa: F401  (bench.site words directions through here)

ALPHA = 0.05


@dataclass
class Point:
    benchmark: str
    algorithm: str
    profile: str
    metric: str
    commit: str | None
    dirty: bool
    commit_date: str
    started: str
    runs: list[str]
    status: str                       # ok | failed (no cell of this version finished)
    mean: float = math.nan
    ci95: float = math.nan
    n: int = 0                        # episodes for one cell, else the number of pooled (run, seed) cells
    ci_method: str = ""
    meta_iters: int | None = None
    train_seconds: float = math.nan
    cells: list[int] = field(default_factory=list)     # database ids of the ok cells
    digests: list[str] = field(default_factory=list)
    # filled by compare_series
    verdict: str = ""                 # '' (first point) | same | ok | small | better | worse | failed | untested
    p: float = math.nan
    delta: float = math.nan
    rel: float = math.nan
    baseline_commit: str | None = None
    note: str = ""
    higher_is_better: bool | None = None  # the benchmark's declaration (bench.metrics), for the verdict

    @property
    def version(self) -> str:
        return short(self.commit, self.dirty)

    @property
    def regression(self) -> bool:
        return self.verdict in ("worse", "failed")


def _text(x) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else str(x)


def summary_frame(db: Database, benchmark: str | None = None, algorithm: str | None = None) -> pd.DataFrame:
    """Per-seed summary rows joined with their run's version and their cell's id and digest."""
    where, params = ["s.seed <> 'all'"], []
    for column, value in (("benchmark", benchmark), ("algorithm", algorithm)):
        if value:
            where.append(f"s.{column} = ?")
            params.append(value)
    rows = db.rows(
        "SELECT r.run_id, r.profile, r.commit_sha, r.dirty, r.commit_date, r.started, c.id AS cell, "
        "c.test_episode_digest AS digest, c.reused_from_run, s.benchmark, s.algorithm, s.seed, s.metric, s.mean, "
        "s.ci95, s.n, s.ci_method, s.seeds, s.train_seconds, s.eval_seconds, s.meta_iters, s.status, s.error "
        "FROM summaries s JOIN runs r ON r.id = s.run "
        "LEFT JOIN cells c ON c.run = s.run AND c.benchmark = s.benchmark AND c.algorithm = s.algorithm "
        "AND c.seed = s.seed WHERE " + " AND ".join(where), params)
    frame = pd.DataFrame(rows, columns=["run_id", "profile", "commit_sha", "dirty", "commit_date", "started", "cell",
                                        "digest", "reused_from_run", "benchmark", "algorithm", "seed", "metric",
                                        "mean", "ci95", "n",
                                        "ci_method", "seeds", "train_seconds", "eval_seconds", "meta_iters",
                                        "status", "error"])
    for column in ("mean", "ci95", "train_seconds", "eval_seconds"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(float)  # NULL was NaN
    frame["dirty"] = frame["dirty"].fillna(0).astype(int).astype(bool)
    for column in ("profile", "commit_date", "started", "digest", "metric", "status"):
        frame[column] = frame[column].map(_text)
    return frame


def stored_headlines(db: Database) -> Headlines:
    """Each benchmark's declared metric from the specs its stored cells ran with (the latest stored cell wins),
    falling back to the shipped benchmarks.yaml for runs stored before specs declared one."""
    specs = {}
    for row in db.rows("SELECT benchmark, config FROM cells ORDER BY id"):
        try:
            spec = (json.loads(row["config"] or "null") or {}).get("spec")
        except (ValueError, AttributeError):
            spec = None  # a cell stored without a readable configuration: the shipped one decides
        if isinstance(spec, dict):
            specs[row["benchmark"]] = spec
    return Headlines(specs)


def headline_by_benchmark(frame: pd.DataFrame, headlines: Headlines | None = None) -> dict[str, str | None]:
    headlines = headlines or Headlines()
    return {b: headlines.headline(b, g["metric"].unique()) for b, g in frame.groupby("benchmark", sort=False)}


def series_points(frame: pd.DataFrame, headlines: Headlines | None = None) -> dict[tuple[str, str, str], list[Point]]:
    """(benchmark, algorithm, profile) -> its points in commit order, each aggregated over its runs.

    A cell a suite's `reuse` copied from a run that is also in the database is left out: it was measured once,
    at that run's commit, not again at the copying run's."""
    headlines = headlines or Headlines()
    heads = headline_by_benchmark(frame, headlines)
    if "reused_from_run" in frame:
        frame = frame[~frame["reused_from_run"].isin(set(frame["run_id"]))]
    out: dict[tuple, list[Point]] = {}
    for (bench, algo, profile), group in frame.groupby(["benchmark", "algorithm", "profile"], sort=True):
        head = heads.get(bench)
        points = []
        for (commit, dirty), version in group.groupby([group["commit_sha"].fillna(""), "dirty"], sort=False):
            ok = version[(version["status"] == "ok") & (version["metric"] == head)]
            point = Point(bench, algo, profile, head or "", commit or None, bool(dirty),
                          commit_date=min(version["commit_date"]) if (version["commit_date"] != "").any() else "",
                          started=min(version["started"]), runs=sorted(version["run_id"].unique()),
                          status="ok" if len(ok) else "failed", higher_is_better=headlines.higher_is_better(bench))
            if len(ok) == 1:
                row = ok.iloc[0]
                point.mean, point.ci95 = row["mean"], row["ci95"]
                point.n, point.ci_method = int(row["n"] or 0), row["ci_method"]
            elif len(ok) > 1:
                pooled = stats.across_seeds(ok.assign(seed=ok["run_id"] + ":" + ok["seed"])).iloc[0]
                point.mean, point.ci95 = pooled["mean"], pooled["ci95"]
                point.n, point.ci_method = int(pooled["n"]), "t-seeds"
            if len(ok):
                point.meta_iters = int(ok["meta_iters"].max()) if ok["meta_iters"].notna().any() else None
                point.train_seconds = float(ok["train_seconds"].mean())
                point.cells = [int(c) for c in ok["cell"].dropna()]
                point.digests = [d for d in ok["digest"] if d]
            points.append(point)
        points.sort(key=lambda p: (p.commit_date or p.started, p.started))
        out[(bench, algo, profile)] = points
    return out


def _episode_values(db: Database, cells: list[int], metric: str) -> pd.DataFrame:
    """cell, episode, value of the given cells' metric (NULL, a NaN that SQLite cannot store, reads as NaN)."""
    if not cells:
        return pd.DataFrame(columns=["cell", "episode", "value"])
    marks = ", ".join("?" * len(cells))
    rows = db.rows(f"SELECT cell, episode, value FROM episodes WHERE metric = ? AND cell IN ({marks})",
                   [metric, *cells])
    frame = pd.DataFrame(rows, columns=["cell", "episode", "value"])
    frame["value"] = pd.to_numeric(frame["value"], errors="coerce").astype(float)
    return frame


def _paired_means(db: Database, point: Point, digest: str, digest_of: dict[int, str]) -> pd.Series | None:
    """Per-episode mean over the point's cells on `digest` (the across-seed pairing of bench.compare)."""
    cells = [c for c in point.cells if digest_of.get(c) == digest]
    values = _episode_values(db, cells, point.metric)
    if values.empty:
        return None
    table = values.pivot(index="episode", columns="cell", values="value")
    if table.isna().any().any() and values.groupby("cell").size().nunique() > 1:
        return None  # cells scored different episode lists although their digests match: not pairable
    return table.mean(axis=1, skipna=False)


def compare_series(db: Database, points: list[Point], alpha: float = ALPHA, min_delta: float | None = None) -> None:
    """Fill each point's verdict against the latest earlier point it can be paired with."""
    digest_of: dict[int, str] = {}
    for p in points:
        rows = db.rows(f"SELECT id, test_episode_digest FROM cells WHERE id IN ({', '.join('?' * len(p.cells))})",
                       p.cells) if p.cells else []
        digest_of.update({int(r["id"]): r["test_episode_digest"] or "" for r in rows})
    means: dict[tuple[int, str], pd.Series | None] = {}

    def paired(i: int, digest: str):
        if (i, digest) not in means:
            means[(i, digest)] = _paired_means(db, points[i], digest, digest_of)
        return means[(i, digest)]

    for i, point in enumerate(points):
        if i == 0:
            continue
        previous = points[i - 1]
        if point.status == "failed":
            point.verdict = "failed" if any(p.status == "ok" for p in points[:i]) else "untested"
            point.baseline_commit = previous.version
            point.note = "no cell of this version finished"
            continue
        point.verdict, point.note = "untested", "no earlier version with episodes.csv on these test episodes"
        for digest in sorted(set(point.digests), key=point.digests.count, reverse=True):
            new = paired(i, digest)
            if new is None:
                point.note = "stored without episodes.csv"
                continue
            for j in range(i - 1, -1, -1):
                if points[j].status != "ok" or digest not in points[j].digests:
                    continue
                base = paired(j, digest)
                if base is None or not base.index.equals(new.index):
                    continue
                result = compare_values(base.to_numpy(float), new.to_numpy(float), alpha, min_delta,
                                        higher_is_better=point.higher_is_better)
                point.verdict, point.p = result["verdict"], result["p"]
                point.delta, point.rel = result["delta"], result["rel"]
                point.baseline_commit, point.note = points[j].version, ""
                break
            if point.verdict != "untested":
                break


def history(db: Database, benchmark: str | None = None, algorithm: str | None = None,
            alpha: float = ALPHA, min_delta: float | None = None) -> dict[tuple[str, str, str], list[Point]]:
    series = series_points(summary_frame(db, benchmark, algorithm), stored_headlines(db))
    for points in series.values():
        compare_series(db, points, alpha, min_delta)
    return series


def _when(text: str) -> datetime | None:
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def since_filter(db: Database, since: str | None):
    """A predicate on points for --since DATE|COMMIT (a commit: only versions dated after it)."""
    if not since:
        return lambda p: True
    date = _when(since)
    if date is None:
        found = db.rows("SELECT DISTINCT commit_sha, commit_date FROM runs WHERE commit_sha LIKE ?",
                        (since.lower() + "%",))
        if not found:
            raise UserError(f"--since {since}: neither a date (YYYY-MM-DD) nor a commit of a run in {db.location}; "
                            f"see `metabench db ls`")
        if len({r["commit_sha"] for r in found}) > 1:
            raise UserError(f"--since {since}: the prefix matches several commits; give more characters")
        date = _when(found[0]["commit_date"] or "")
        if date is None:
            raise UserError(f"--since {since}: that commit's runs record no commit date; pass a date instead")
        return lambda p: (_when(p.commit_date or p.started) or date) > date
    return lambda p: (_when(p.commit_date or p.started) or date) >= date


def regressions(db: Database, since: str | None = None, alpha: float = ALPHA,
                min_delta: float | None = None) -> tuple[list[Point], int]:
    """(points that regressed against their previous version, number of comparisons made)."""
    keep = since_filter(db, since)
    bad, compared = [], 0
    for points in history(db, alpha=alpha, min_delta=min_delta).values():
        for point in points[1:]:
            if not keep(point) or point.verdict in ("", "untested"):
                continue
            compared += 1
            if point.regression:
                bad.append(point)
    return bad, compared


def finite(x) -> float | None:
    return float(x) if x is not None and isinstance(x, (int, float, np.floating)) and math.isfinite(x) else None
