"""`metabench compare BASELINE_DIR NEW_DIR`: a paired, episode-by-episode regression test.

Test episodes are frozen (the same digest in both manifests), so the baseline and the new run scored the very
same tasks: each cell is compared with a two-sided paired t-test (scipy.stats.ttest_rel) episode by episode —
per seed, and across seeds on the per-episode mean over the seeds. Episodes share a lot of difficulty, so
pairing removes most of the variance a two-sample test would carry. Accuracies are tested on their
differences; positive lower-is-better metrics (MSE, losses) on the differences of their logarithms (a test of
the geometric-mean ratio), because a task's MSE scales with its amplitude squared: a few large-amplitude sine
tasks dominate raw differences (measured on the smoke suite: MAML with inner_lr=0 is 30% worse on the geometric
mean and worse on 77% of the tasks, yet the raw t-test gives p=0.05 while the log test gives p=5e-8).

A cell is a regression when its headline metric (declared per benchmark in benchmarks.yaml and recorded in
the baseline's manifest, bench.metrics: accuracy; mse@10 for sine; final_loss for optimizer benchmarks) got
worse with p < alpha AND by more than min-delta (default: 1 accuracy point; 5% of the baseline for errors and
losses, which are lower-is-better). The verdict uses the across-seed row
when several seeds ran (like the leaderboard), else the single seed. Every metric is printed.

Exit codes: 0 nothing regressed, 1 some cell regressed (or failed in NEW only), 2 the inputs cannot be
compared (unreadable folders, cells missing on either side, different test episodes).
"""
from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as sps

from bench import perfgate
from bench.leaderboard import few
from bench.metrics import Headlines, steps_of
from bench.readers import cell_key, cell_row
from bench.rundir import RunDir, RunDirError, provenance_differences

EXIT_OK, EXIT_REGRESSION, EXIT_UNUSABLE = 0, 1, 2
DEFAULT_ACCURACY_POINTS = 1.0   # percentage points
DEFAULT_RELATIVE = 0.05         # of the baseline mean, for lower-is-better metrics


class IncomparableError(RunDirError):
    """The two folders do not hold the same cells on the same frozen test episodes."""


@dataclass
class Side:
    path: Path
    cells: dict[str, dict]        # key -> manifest entry
    episodes: pd.DataFrame
    manifest: dict = field(default_factory=dict)


def load_side(path: Path) -> Side:
    run = RunDir(path)
    if not run.path.is_dir():
        raise RunDirError(f"{path} is not a folder; pass folders written by `metabench run --out DIR`")
    manifest = run.read_manifest()
    episodes = run.read_table("episodes.csv")  # damaged files: one-line RunDirError from bench.readers.read_csv
    needed = {"benchmark", "algorithm", "seed", "episode", "metric", "value"}
    if not needed <= set(episodes.columns):
        raise RunDirError(f"{path / 'episodes.csv'} lacks column(s) {', '.join(sorted(needed - set(episodes.columns)))}"
                          f"; it was not written by `metabench run`")
    episodes["seed"] = episodes["seed"].astype(str)
    # a diverged episode is stored as nan/inf: keep it a number (compare_values counts it as worse)
    episodes["value"] = pd.to_numeric(episodes["value"], errors="coerce")
    cells = {cell_key(c["benchmark"], c["algorithm"], c["seed"]): c for c in manifest.get("cells", [])}
    return Side(Path(path), cells, episodes, manifest)


def check_comparable(base: Side, new: Side) -> None:
    """Raise IncomparableError listing every missing cell and every test-episode digest mismatch."""
    problems = []
    for label, have, other in (("NEW", new, base), ("BASELINE", base, new)):
        gone = [k for k, c in other.cells.items() if c.get("status") != "pending"
                and (k not in have.cells or have.cells[k].get("status") == "pending")]
        if gone:
            problems.append(f"missing in {label} {have.path}: {few(gone)}")
    broken = [k for k, c in base.cells.items() if c.get("status") not in ("ok", "pending")]
    if broken:
        problems.append(f"failed in BASELINE: {few(broken)} (regenerate the baseline)")
    differ = [k for k, c in base.cells.items() if k in new.cells and c.get("status") == "ok"
              and new.cells[k].get("status") == "ok"
              and (not c.get("test_episode_digest")
                   or c.get("test_episode_digest") != new.cells[k].get("test_episode_digest"))]
    if differ:
        problems.append(f"different test episodes (test_episode_digest in manifest.json): {few(differ)} — the "
                        f"benchmark spec, eval seed or test_episodes changed; regenerate the baseline with the same "
                        f"settings")
    if problems:
        raise IncomparableError(f"cannot compare {base.path} with {new.path}: " + "; ".join(problems))


# ---------------------------------------------------------------------------------------------------------


def threshold(higher_is_better: bool | None, baseline_mean: float, min_delta: float | None) -> float:
    if min_delta is not None:
        return float(min_delta)
    if higher_is_better:
        return DEFAULT_ACCURACY_POINTS
    return DEFAULT_RELATIVE * abs(baseline_mean)


def paired_test(base: np.ndarray, new: np.ndarray, log: bool = False) -> float:
    """Two-sided p-value of the paired t-test (on log values if `log`); exactly 1.0 for identical results and
    0.0 for a constant shift, where the t statistic is undefined."""
    if log:
        base, new = np.log(base), np.log(new)
    diff = new - base
    if np.all(diff == 0):
        return 1.0
    if np.std(diff) <= 1e-12 * np.max(np.abs(diff)):  # a shift constant up to rounding: t is infinite
        return 0.0
    return float(sps.ttest_rel(new, base).pvalue)


def compare_values(base: np.ndarray, new: np.ndarray, alpha: float, min_delta: float | None, *,
                   higher_is_better: bool | None) -> dict:
    """Means, delta, p-value and verdict (same | ok | small | better | worse) of one paired comparison of a
    metric whose benchmark declares `higher_is_better` (None: undeclared, so only 'same' or 'n/a')."""
    finite = np.isfinite(base) & np.isfinite(new)
    # an episode that diverged (NaN/inf) only in NEW is worse whatever the test says
    diverged = int(np.sum(np.isfinite(base) & ~np.isfinite(new)))
    b, n = base[finite], new[finite]
    mb, mn = (float(np.mean(b)), float(np.mean(n))) if len(b) else (math.nan, math.nan)
    direction = higher_is_better
    log = direction is False and bool(np.all(b > 0) and np.all(n > 0))
    p = paired_test(b, n, log) if len(b) > 1 else math.nan
    drop = (mb - mn) if direction else (mn - mb)
    limit = threshold(direction, mb, min_delta)
    if direction is None:
        verdict = "same" if np.array_equal(base, new, equal_nan=True) else "n/a"
    elif diverged:
        verdict = "worse"
    elif np.array_equal(base, new, equal_nan=True):
        verdict = "same"
    elif not (p < alpha):
        verdict = "ok"
    elif abs(drop) <= limit:
        verdict = "small"
    else:
        verdict = "worse" if drop > 0 else "better"
    return {"baseline": mb, "new": mn, "delta": mn - mb, "rel": (mn - mb) / abs(mb) if mb else math.nan,
            "p": p, "n": int(len(b)), "min_delta": limit, "diverged": diverged, "verdict": verdict}


def _paired(base: pd.DataFrame, new: pd.DataFrame, what: str) -> tuple[np.ndarray, np.ndarray]:
    if new.empty:
        raise IncomparableError(f"{what} is missing from NEW's episodes.csv; the metric was renamed or dropped, "
                                f"regenerate the baseline if that was intended")
    if base["episode"].duplicated().any() or new["episode"].duplicated().any():
        raise IncomparableError(f"{what}: an episode appears twice in episodes.csv; the file was edited or "
                                f"concatenated: rerun that suite")
    joined = base.merge(new, on="episode", how="outer", suffixes=("_b", "_n"), indicator=True)
    if (joined["_merge"] != "both").any():  # (NaN values are diverged episodes, not missing ones)
        raise IncomparableError(f"{what}: episode indices differ between the runs although the digests match; "
                                f"one episodes.csv is truncated: rerun it")
    return joined["value_b"].to_numpy(float), joined["value_n"].to_numpy(float)


def _groups(base: Side, new: Side) -> dict[tuple[str, str], list[str]]:
    """(benchmark, algorithm) -> the seeds finished in BASELINE that NEW also has, in manifest order."""
    groups: dict[tuple, list[str]] = {}
    for key, cell in base.cells.items():
        if cell.get("status") == "ok" and key in new.cells:
            groups.setdefault((cell["benchmark"], cell["algorithm"]), []).append(str(cell["seed"]))
    return groups


def _compare_pair(base: Side, new: Side, bench: str, algo: str, seeds: list[str], headlines: Headlines,
                  alpha: float, min_delta: float | None) -> list[dict]:
    """The rows of one (benchmark, algorithm): a 'failed' verdict per seed that failed in NEW, then every metric
    per seed and (several seeds) across seeds."""
    b_all = base.episodes[(base.episodes["benchmark"] == bench) & (base.episodes["algorithm"] == algo)]
    n_all = new.episodes[(new.episodes["benchmark"] == bench) & (new.episodes["algorithm"] == algo)]
    head = headlines.headline(bench, b_all["metric"].unique())
    higher = headlines.higher_is_better(bench)
    failed = [s for s in seeds if new.cells[cell_key(bench, algo, s)].get("status") != "ok"]
    rows = [cell_row(bench, algo, s, metric=head or "", verdict="failed", gate=True,
                     error=new.cells[cell_key(bench, algo, s)].get("error", "")) for s in failed]
    seeds = [s for s in seeds if s not in failed]
    metrics = sorted(b_all["metric"].unique(), key=lambda m: (steps_of(m) is None, steps_of(m) or 0, m))
    for metric in metrics:
        pairs = {}
        for s in seeds:
            def pick(t, s=s, metric=metric):  # bound now: called within this iteration only, but say so
                return t[(t["seed"] == s) & (t["metric"] == metric)][["episode", "value"]]
            pairs[s] = _paired(pick(b_all), pick(n_all), f"{cell_key(bench, algo, s)} {metric}")
            rows.append(cell_row(bench, algo, s, metric=metric, gate=metric == head and len(seeds) == 1 and not failed,
                                 **compare_values(*pairs[s], alpha, min_delta, higher_is_better=higher)))
        if len(seeds) > 1:
            # across seeds: the per-episode mean over seeds, still paired episode by episode
            mean_b = np.mean([pairs[s][0] for s in seeds], axis=0)
            mean_n = np.mean([pairs[s][1] for s in seeds], axis=0)
            rows.append(cell_row(bench, algo, "all", metric=metric, gate=metric == head,
                                 **compare_values(mean_b, mean_n, alpha, min_delta, higher_is_better=higher)))
    return rows


def compare_runs(base: Side, new: Side, alpha: float, min_delta: float | None) -> pd.DataFrame:
    """One row per (benchmark, algorithm, seed or 'all', metric), with `gate` marking the verdict rows."""
    # the baseline's declarations decide what is gated: a change under test cannot move its own goalposts
    headlines = Headlines.from_manifests([base.manifest])
    rows = []
    for (bench, algo), seeds in _groups(base, new).items():
        rows += _compare_pair(base, new, bench, algo, seeds, headlines, alpha, min_delta)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------------------


HEADER = ("benchmark", "algorithm", "seed", "metric", "baseline", "new", "delta", "rel", "p", "verdict")


def _rows(table: pd.DataFrame) -> list[tuple]:
    def num(x, fmt):
        return "" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)

    lines = []
    for r in table.to_dict("records"):
        verdict = r["verdict"]
        if r["gate"]:
            verdict = {"worse": "REGRESSION", "failed": "FAILED"}.get(verdict, verdict) + " *"
        lines.append((r["benchmark"], r["algorithm"], str(r["seed"]), r["metric"], num(r.get("baseline"), ".4g"),
                      num(r.get("new"), ".4g"), num(r.get("delta"), "+.3g"), num(r.get("rel"), "+.1%"),
                      num(r.get("p"), ".2g"), verdict))
    return lines


def _print_table(table: pd.DataFrame) -> None:
    lines = [HEADER, *_rows(table)]
    widths = [max(len(str(x)) for x in col) for col in zip(*lines)]
    for line in lines:
        print("  ".join(str(x).ljust(w) for x, w in zip(line, widths)).rstrip())


def markdown(table: pd.DataFrame, base: Path, new: Path, regressions: int, note: str) -> str:
    """The comparison as a pull-request comment: verdict first, then the gated rows, every row folded away."""
    gated = table[table["gate"]]
    head = f"**metabench compare**: {len(gated)} gated comparison(s), " + \
        (f"**{regressions} regression(s)**" if regressions else "no regression") + f" (`{base}` → `{new}`)"

    def md(rows: list[tuple]) -> list[str]:
        return ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER),
                *["| " + " | ".join(str(x).replace("|", "\\|") for x in row) + " |" for row in rows]]

    return "\n".join([head, "", *md(_rows(gated)), "", "<details><summary>every metric</summary>", "",
                      *md(_rows(table)), "", "</details>", "", note, ""])


def add_arguments(cmp_) -> None:
    """`metabench compare`'s arguments, the speed gate's (--perf, bench/perfgate.py) included."""
    cmp_.add_argument("baseline", type=Path, metavar="BASELINE_DIR")
    cmp_.add_argument("new", type=Path, metavar="NEW_DIR")
    cmp_.add_argument("--alpha", type=float, default=0.05)
    cmp_.add_argument("--format", choices=["text", "md", "json"], default="text",
                      help="md: a pull-request comment; json: every row, machine-readable")
    cmp_.add_argument("--min-delta", type=float, default=None,
                      help="smallest drop that counts (default per metric: 1 accuracy point, 5%% relative MSE/loss)")
    # the speed gate (bench/perfgate.py): the same folders-in, exit 0/1/2 contract over `metabench perf` folders
    cmp_.add_argument("--perf", action="store_true",
                      help="compare two `metabench perf` folders (speed gate: per-step ratios to the reference)")
    cmp_.add_argument("--max-slowdown", type=float, default=None, metavar="FRACTION",
                      help="with --perf: slowdown that counts when significant (default 0.10 = 10%%)")
    cmp_.add_argument("--clock", choices=["cpu", "wall"], default=None,
                      help="with --perf: which time's ratios to test (default cpu: process CPU time)")
    cmp_.add_argument("--step", action="append", default=[], metavar="GLOB",
                      help="with --perf: compare only the steps matching GLOB (repeatable), e.g. to confirm a "
                           "regression on a re-measurement of just those steps")


def command(args) -> int:
    if getattr(args, "perf", False):  # `metabench compare --perf`: the speed gate over `metabench perf` folders
        return perfgate.command(args)
    if not 0 < args.alpha < 1:
        raise IncomparableError(f"--alpha {args.alpha}: expected a probability between 0 and 1, e.g. 0.05")
    if args.min_delta is not None and args.min_delta < 0:
        raise IncomparableError(f"--min-delta {args.min_delta}: expected a non-negative number in the metric's units")
    base, new = load_side(args.baseline), load_side(args.new)
    check_comparable(base, new)
    # not an error: the gate's own baseline is made on another machine than most CI runs; but a reader of a
    # "worse" verdict should know the kernel or the thread count differed (float rounding differs with them)
    for line in provenance_differences(base.manifest, new.manifest):
        print(f"metabench: note: {line}", file=sys.stderr)
    table = compare_runs(base, new, args.alpha, args.min_delta)
    if table.empty:
        raise IncomparableError(f"no finished cells to compare in {args.baseline} and {args.new}")
    gated = table[table["gate"]]
    bad = gated[gated["verdict"].isin(["worse", "failed"])]
    default = "default (1 accuracy point; 5% relative for errors/losses)"
    note = (f"* = gated (headline metric). Paired t-test over frozen test episodes (log scale for errors/losses), "
            f"alpha {args.alpha}, min-delta {args.min_delta if args.min_delta is not None else default}.")
    fmt = getattr(args, "format", "text")
    if fmt == "md":
        sys.stdout.write(markdown(table, args.baseline, args.new, len(bad), note))
    elif fmt == "json":
        records = json.loads(table.to_json(orient="records"))
        print(json.dumps({"baseline": str(args.baseline), "new": str(args.new), "gated": int(len(gated)),
                          "regressions": int(len(bad)), "rows": records}, indent=2))
    else:
        _print_table(table)
        print(note)
    for r in bad.to_dict("records"):
        key = cell_key(r["benchmark"], r["algorithm"], r["seed"])
        if r["verdict"] == "failed":
            print(f"metabench: regression: {key} failed in {args.new}: {r.get('error', '')}", file=sys.stderr)
        else:
            print(f"metabench: regression: {key} {r['metric']} {r['baseline']:.4g} -> {r['new']:.4g} "
                  f"({r['delta']:+.3g}, {r['rel']:+.1%}, p={r['p']:.2g}; allowed {r['min_delta']:.3g})",
                  file=sys.stderr)
    print(f"metabench: compare: {len(gated)} gated comparison(s), {len(bad)} regression(s)", file=sys.stderr)
    return EXIT_REGRESSION if len(bad) else EXIT_OK

