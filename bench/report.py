"""`metabench report RUN_DIR...`: leaderboards from run folders' CSVs, with the published numbers beside ours.

One table per benchmark, ranked by its headline metric: our mean ± 95% CI (over test episodes for one seed, a
t-interval over seeds when several ran; bench.stats), the published value ± CI from results/published.csv
(primary rows), the difference, whether our mean lies inside the published interval, meta-iterations and train
time. Several folders merge cell by cell; `--trend` draws each cell over the runs' commits instead.

Reads CSVs and manifests only (never algorithms/), so a leaderboard can be rebuilt anywhere.
"""
from __future__ import annotations

import fnmatch

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from bench import resources, stats
from bench.rundir import RunDir, RunDirError, atomic_write_csv, atomic_write_text, provenance_differences

PUBLISHED_CSV = resources.published_csv()  # the checkout's results/published.csv, or the wheel's copy
CELL = ["benchmark", "algorithm", "seed"]
SINE_SHOWN = ("mse@1", "mse@5", "mse@10")  # the MAML paper's table columns; csv has every step
SETTING_ORDER = ("omniglot-5w1s", "omniglot-5w5s", "omniglot-20w1s", "omniglot-20w5s", "miniimagenet-5w1s",
                 "miniimagenet-5w5s")  # the papers' column order


class IncompleteGridError(RunDirError):
    """--strict and some (benchmark, algorithm, seed) cell is missing or failed."""


# ---------------------------------------------------------------------------------------------------------
# metrics: which one ranks a benchmark and which way is better (shared with bench.compare and bench.plots)


def steps_of(metric: str) -> int | None:
    m = re.fullmatch(r"(?:mse|loss)@(\d+)", str(metric))
    return int(m.group(1)) if m else None


def higher_is_better(metric: str) -> bool | None:
    """True for accuracies, False for errors and losses, None when the name does not say."""
    metric = str(metric)
    if metric.startswith("acc"):
        return True
    if metric.startswith(("mse", "loss", "final_loss", "auc")) or "loss" in metric:
        return False
    return None


def headline_metric(metrics) -> str | None:
    """accuracy; else mse@10 (or the largest mse@S); else final_loss — what a benchmark is ranked and gated by."""
    metrics = set(map(str, metrics))
    if "accuracy" in metrics:
        return "accuracy"
    mse = sorted((steps_of(m), m) for m in metrics if m.startswith("mse@") and steps_of(m) is not None)
    if mse:
        return "mse@10" if "mse@10" in metrics else mse[-1][1]
    return "final_loss" if "final_loss" in metrics else None


# ---------------------------------------------------------------------------------------------------------
# reading and merging run folders


@dataclass
class Runs:
    """Per-seed summary rows of several run folders merged cell by cell (a later folder wins)."""

    per_seed: pd.DataFrame
    manifests: list[dict] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)


def read_run(path: Path) -> tuple[dict, pd.DataFrame]:
    """(manifest, summary.csv with seed as text) of one run folder; RunDirError when it is not one."""
    run = RunDir(path)
    if not run.path.is_dir():
        raise RunDirError(f"{path} is not a folder; pass a folder written by `metabench run --out DIR`")
    manifest = run.read_manifest()
    try:
        summary = run.read_table("summary.csv")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise RunDirError(f"{path / 'summary.csv'} is unreadable ({type(exc).__name__}); rerun that suite") from None
    missing = [c for c in ("benchmark", "algorithm", "seed", "metric", "mean", "ci95", "n", "status")
               if c not in summary.columns]
    if missing:
        raise RunDirError(f"{path / 'summary.csv'} lacks column(s) {', '.join(missing)}; it was not written by "
                          f"`metabench run` (or by an older version: rerun it)")
    summary["seed"] = summary["seed"].astype(str)
    summary["metric"] = summary["metric"].fillna("").astype(str)
    for column in ("mean", "ci95", "n", "train_seconds", "eval_seconds", "meta_iters"):
        if column in summary:  # 'inf' of a diverged cell stays a number
            summary[column] = pd.to_numeric(summary[column], errors="coerce")
    manifest["path"] = str(path)
    return manifest, summary


def merge_runs(paths: list[Path]) -> Runs:
    paths = list(dict.fromkeys(Path(p) for p in paths))  # a folder named twice is one folder
    frames, manifests, replaced = [], [], []
    owner: dict[tuple, str] = {}
    for path in paths:
        manifest, summary = read_run(path)
        manifests.append(manifest)
        rows = summary[summary["seed"] != "all"].assign(run=str(path))
        for key in dict.fromkeys(map(tuple, rows[CELL].to_numpy())):
            if key in owner:
                replaced.append(f"{key[0]}/{key[1]}/seed{key[2]}: {path} replaces {owner[key]}")
            owner[key] = str(path)
        frames.append(rows)
    # the same cell in several folders: keep the rows of the folder that came last on the command line
    kept = [rows[[owner[k] == path for k in map(tuple, rows[CELL].to_numpy())]]
            for rows, path in zip(frames, map(str, paths))]
    per_seed = pd.concat(kept, ignore_index=True) if kept else pd.DataFrame(columns=CELL)
    return Runs(per_seed, manifests, replaced)


def with_seed_rows(per_seed: pd.DataFrame) -> pd.DataFrame:
    """Per-seed rows plus recomputed seed 'all' rows (seeds may come from different folders)."""
    ok = per_seed[(per_seed["status"] == "ok") & (per_seed["metric"] != "")]
    if ok.empty:
        return per_seed
    keys = ["benchmark", "algorithm", "metric"]
    overall = stats.across_seeds(ok)
    timing = ok.groupby(keys, sort=False).agg(train_seconds=("train_seconds", "sum"),
                                              eval_seconds=("eval_seconds", "sum"),
                                              meta_iters=("meta_iters", "max")).reset_index()
    overall = overall.merge(timing, on=keys, how="left").assign(status="ok", error="")
    return pd.concat([per_seed, overall], ignore_index=True)


def benchmark_kinds(manifests: list[dict]) -> dict[str, str]:
    kinds = {}
    for manifest in manifests:
        for cell in manifest.get("cells", []):
            kind = ((cell.get("config") or {}).get("spec") or {}).get("kind")
            if kind:
                kinds[cell["benchmark"]] = kind
    return kinds


def grid_problems(runs: Runs) -> tuple[list[str], list[str]]:
    """(missing, failed) cell keys. Expected cells: every seed that appears × every (benchmark, algorithm)
    where the algorithm appears on some benchmark of that benchmark's kind."""
    kinds = benchmark_kinds(runs.manifests)
    present: dict[tuple, str] = {}
    for row in runs.per_seed.itertuples():
        present[(row.benchmark, row.algorithm, row.seed)] = row.status
    for manifest in runs.manifests:  # cells an interrupted run never reached
        for cell in manifest.get("cells", []):
            present.setdefault((cell["benchmark"], cell["algorithm"], str(cell["seed"])), cell.get("status", "pending"))
    benches = list(dict.fromkeys(k[0] for k in present))
    seeds = list(dict.fromkeys(k[2] for k in present))
    by_kind: dict[str, list[str]] = {}
    for b, a, _ in present:
        algos = by_kind.setdefault(kinds.get(b, b), [])
        if a not in algos:
            algos.append(a)
    missing, failed = [], []
    for b in benches:
        for a in by_kind[kinds.get(b, b)]:
            for s in seeds:
                status = present.get((b, a, s))
                key = f"{b}/{a}/seed{s}"
                if status is None or status == "pending":
                    missing.append(key)
                elif status != "ok":
                    failed.append(key)
    return missing, failed


# ---------------------------------------------------------------------------------------------------------
# the leaderboard


def load_published(path: Path | None = None, primary_only: bool = True) -> pd.DataFrame:
    path = path or PUBLISHED_CSV
    if not path.is_file():
        return pd.DataFrame(columns=["algorithm", "benchmark", "metric", "value", "ci95", "paper", "table", "notes"])
    table = pd.read_csv(path, keep_default_na=False, na_values=[""])
    if primary_only and "primary" in table:
        table = table[table["primary"] == 1]
    return table


def shown_metrics(benchmark_metrics: list[str], published: set[str]) -> list[str]:
    """The metrics a markdown/html leaderboard shows for one benchmark."""
    head = headline_metric(benchmark_metrics)
    if head and head.startswith("mse@"):
        return [m for m in SINE_SHOWN if m in benchmark_metrics] or [head]
    return [m for m in benchmark_metrics if m == head or m in published]


def leaderboard(runs: Runs, published: pd.DataFrame | None = None, every_metric: bool = False) -> pd.DataFrame:
    """One row per (benchmark, algorithm, metric), ranked within each benchmark by its headline metric."""
    rows = stats.headline(with_seed_rows(runs.per_seed))
    if rows.empty:
        return rows
    published = load_published() if published is None else published
    pub = published[["algorithm", "benchmark", "metric", "value", "ci95", "paper", "table", "notes"]].rename(
        columns={"value": "paper_value", "ci95": "paper_ci95"})
    table = rows.drop(columns=[c for c in ("paper_value", "paper_ci95", "delta") if c in rows]).merge(
        pub, on=["algorithm", "benchmark", "metric"], how="left")
    table["delta"] = table["mean"] - table["paper_value"]
    low, high = table["paper_value"] - table["paper_ci95"], table["paper_value"] + table["paper_ci95"]
    table["inside_paper_ci"] = np.where(table["paper_ci95"].isna(), None, (table["mean"] >= low) & (table["mean"] <= high))
    parts = []
    for bench, group in table.groupby("benchmark", sort=False):
        metrics = list(dict.fromkeys(group["metric"]))
        keep = metrics if every_metric else shown_metrics(metrics, set(group.loc[group["paper_value"].notna(), "metric"]))
        group = group[group["metric"].isin(keep)]
        parts.append(_ranked(group, headline_metric(metrics), keep))
    columns = ["benchmark", "algorithm", "metric", "mean", "ci95", "n", "ci_method", "seeds", "paper_value",
               "paper_ci95", "delta", "inside_paper_ci", "meta_iters", "train_seconds", "eval_seconds", "paper",
               "table", "notes"]
    return pd.concat(parts, ignore_index=True).reindex(columns=columns)


def _ranked(group: pd.DataFrame, head: str | None, metric_order: list[str]) -> pd.DataFrame:
    """Algorithms best-first by the headline metric; within an algorithm, metrics in their natural order."""
    score = group[group["metric"] == head].set_index("algorithm")["mean"] if head else pd.Series(dtype=float)
    sign = -1.0 if head and higher_is_better(head) else 1.0
    rank = {a: sign * score.get(a, np.nan) for a in group["algorithm"].unique()}
    order = sorted(rank, key=lambda a: (np.isnan(rank[a]), rank[a]))
    group = group.assign(_a=group["algorithm"].map(order.index), _m=group["metric"].map(metric_order.index))
    return group.sort_values(["_a", "_m"]).drop(columns=["_a", "_m"])


# ---------------------------------------------------------------------------------------------------------
# rendering


def _num(x, digits: int = 4, keep_zeros: bool = False) -> str:
    """Significant digits; measured values keep trailing zeros (3.000, not 3), published ones print as printed."""
    if x is None or pd.isna(x):
        return ""
    text = f"{x:#.{digits}g}".rstrip(".") if keep_zeros and abs(x) < 10 ** digits else f"{x:.{digits}g}"
    return text


def plus_minus(mean, ci, measured: bool = True) -> str:
    if mean is None or pd.isna(mean):
        return "–"
    text = _num(mean, keep_zeros=measured)
    return text if pd.isna(ci) else f"{text} ± {_num(ci, 2, keep_zeros=measured)}"


def _duration(seconds) -> str:
    if seconds is None or pd.isna(seconds):
        return ""
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def _display(board: pd.DataFrame) -> pd.DataFrame:
    over = [f"{int(n)} seeds" if m == "t-seeds" else f"{int(n)} episodes" for n, m in zip(board["n"], board["ci_method"])]
    inside = board["inside_paper_ci"].map(lambda v: "–" if v is None or pd.isna(v) else ("yes" if v else "no"))
    return pd.DataFrame({
        "algorithm": board["algorithm"], "metric": board["metric"],
        "ours (mean ± 95% CI)": [plus_minus(m, c) for m, c in zip(board["mean"], board["ci95"])], "over": over,
        "published": [plus_minus(v, c, measured=False) if pd.notna(v) else ""
                      for v, c in zip(board["paper_value"], board["paper_ci95"])],
        "Δ": board["delta"].map(lambda d: "" if pd.isna(d) else f"{d:+.3g}"),
        "inside published CI": inside.where(board["paper_value"].notna(), ""),
        "meta-iters": board["meta_iters"].map(lambda x: "" if pd.isna(x) else str(int(x))),
        "train time": board["train_seconds"].map(_duration)})


def _markdown_table(frame: pd.DataFrame) -> str:
    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "|".join("---" for _ in frame.columns) + "|"]
    lines += ["| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def _sources(group: pd.DataFrame) -> list[str]:
    cited = group[group["paper_value"].notna()].drop_duplicates(["algorithm", "paper", "table"])
    return [f"{r.algorithm}: {r.paper}, {r.table}" + (f" — {r.notes}" if isinstance(r.notes, str) and r.notes else "")
            for r in cited.itertuples()]


def _header(runs: Runs) -> list[str]:
    lines = []
    for m in runs.manifests:
        commit = (m.get("commit") or "unknown")[:10] + ("+dirty" if m.get("dirty") else "")
        lines.append(f"{m['path']}: suite {m.get('suite')}, profile {m.get('profile')}, commit {commit}, "
                     f"started {m.get('started')}")
    if any(m.get("profile") != "paper" for m in runs.manifests):
        lines.append("Budgets other than the `paper` profile are far below the papers': expect gaps to the "
                     "published numbers.")
    return lines


def render_markdown(board: pd.DataFrame, runs: Runs, embed: bool = False) -> str:
    """A markdown leaderboard; `embed`: no document title and bold captions instead of headings, to sit inside
    another document (the generated tables of README.md and docs/, bench/docs_tables.py)."""
    out = [] if embed else ["# metabench leaderboard", ""]
    out += [*[f"- {line}" for line in _header(runs)], ""]
    for bench, group in board.groupby("benchmark", sort=False):
        out += [f"**{bench}**" if embed else f"## {bench}", "", _markdown_table(_display(group)), ""]
        sources = _sources(group)
        if sources:
            out += ["Published numbers:", "", *[f"- {s}" for s in sources], ""]
    return "\n".join(out)


def render_html(board: pd.DataFrame, runs: Runs) -> str:
    import html

    parts = ["<!doctype html><meta charset='utf-8'><title>metabench leaderboard</title>",
             "<h1>metabench leaderboard</h1><ul>", *[f"<li>{html.escape(line)}</li>" for line in _header(runs)], "</ul>"]
    for bench, group in board.groupby("benchmark", sort=False):
        parts += [f"<h2>{html.escape(str(bench))}</h2>", _display(group).to_html(index=False, escape=True, border=0)]
        sources = _sources(group)
        if sources:
            parts += ["<p>Published numbers:</p><ul>", *[f"<li>{html.escape(s)}</li>" for s in sources], "</ul>"]
    return "\n".join(parts) + "\n"


# ---------------------------------------------------------------------------------------------------------
# trend over commits


def trend_table(paths: list[Path]) -> pd.DataFrame:
    """Headline mean ± CI of every (benchmark, algorithm) in every run, with the run's commit and date."""
    frames = []
    for path in paths:
        manifest, summary = read_run(path)
        rows = stats.headline(with_seed_rows(summary[summary["seed"] != "all"]))
        for bench, group in rows.groupby("benchmark", sort=False):
            head = headline_metric(group["metric"])
            frames.append(group[group["metric"] == head].assign(
                run=str(path), commit=(manifest.get("commit") or "unknown")[:7] + ("+" if manifest.get("dirty") else ""),
                commit_date=manifest.get("commit_date") or "", started=manifest.get("started") or ""))
    if not frames:
        raise RunDirError(f"no finished cells in {', '.join(map(str, paths))}; nothing to draw a trend from")
    table = pd.concat(frames, ignore_index=True)
    order = table.drop_duplicates("run").sort_values(["commit_date", "started"], kind="stable")["run"].tolist()
    table["position"] = table["run"].map(order.index)
    return table.sort_values("position", kind="stable").reset_index(drop=True)


def draw_trend(table: pd.DataFrame, out: Path) -> list[Path]:
    from bench import plots  # matplotlib only when a figure is asked for

    from bench import style

    plt = plots.plt
    benchmarks = list(dict.fromkeys(table["benchmark"]))
    fig, axes = plt.subplots(len(benchmarks), 1, figsize=(max(6.0, 0.6 * table["position"].nunique() + 3), 3.2 * len(benchmarks)),
                             squeeze=False)
    ticks = table.drop_duplicates("position").sort_values("position")
    for ax, bench in zip(axes[:, 0], benchmarks):
        part = table[table["benchmark"] == bench]
        for algo, group in part.groupby("algorithm", sort=True):
            ax.errorbar(group["position"], group["mean"], yerr=group["ci95"].fillna(0), marker="o", ms=4, capsize=3,
                        label=style.display(algo), color=style.color(algo))
        ax.set_title(f"{bench}: {part['metric'].iloc[0]} (mean ± 95% CI)")
        ax.set_xticks(ticks["position"], [f"{c}\n{str(d)[:10]}" for c, d in zip(ticks["commit"], ticks["commit_date"])],
                      fontsize=7)
        ax.grid(alpha=0.3)
        ax.legend(frameon=False, fontsize=8, loc="best")
    axes[-1, 0].set_xlabel("commit (ordered by commit date)")
    fig.tight_layout()
    return plots.save(fig, out, "trend", runs=[RunDir(p) for p in dict.fromkeys(table["run"])])


# ---------------------------------------------------------------------------------------------------------


def _destination(out: Path | None, fmt: str) -> tuple[Path | None, Path]:
    """(report file or None for stdout, folder for the trend figure)."""
    if out is None:
        return None, Path("metabench-trend")
    if out.suffix:
        return out, out.parent
    return out / f"report.{fmt}", out


def add_arguments(p) -> None:
    """`metabench report`'s arguments (also parsed by the generated blocks of the docs, bench/docs_tables.py)."""
    p.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR",
                   help="run folders, or folders holding run folders (searched recursively)")
    p.add_argument("--format", choices=["md", "csv", "html"], default="md")
    p.add_argument("--strict", action="store_true", help="an incomplete grid is an error, not a warning")
    p.add_argument("--trend", action="store_true", help="draw each cell's mean ± CI across the runs' commits")
    p.add_argument("--out", type=Path, help="write the report (and trend figure) here instead of stdout")
    p.add_argument("--benchmark", action="append", default=[], metavar="PATTERN",
                   help="only these benchmarks (wildcards; repeatable)")
    p.add_argument("--metric", action="append", default=[], metavar="NAME", help="only these metrics (repeatable)")
    p.add_argument("--embed", action="store_true",
                   help="markdown without a title, with bold captions: for a table inside another document")


def run_folders(paths: list[Path]) -> list[Path]:
    """Each path itself when it is a run folder (has manifest.json), else the run folders below it, sorted."""
    found = []
    for path in map(Path, paths):
        if (path / "manifest.json").is_file() or not path.is_dir():
            found.append(path)  # a non-folder is reported by read_run with its fix
            continue
        below = sorted(m.parent for m in path.rglob("manifest.json"))
        if not below:
            raise RunDirError(f"{path} holds no run folder (no manifest.json in it or below it); pass folders "
                              f"written by `metabench run --out DIR`")
        found += below
    return found


def command(args) -> int:
    args.runs = run_folders(list(args.runs))
    runs = merge_runs(list(args.runs))
    if len(runs.replaced) > 10 or (args.trend and runs.replaced):  # a trend's folders repeat every cell
        print(f"metabench: note: {len(runs.replaced)} cells appear in several folders; each is taken from the last "
              f"folder on the command line that has it", file=sys.stderr)
    else:
        for line in runs.replaced:
            print(f"metabench: note: {line} (the later folder wins)", file=sys.stderr)
    notes = [line for other in runs.manifests[1:] for line in
             provenance_differences(runs.manifests[0], other, runs.manifests[0]["path"], other["path"])]
    for line in dict.fromkeys(notes):  # folders made on different machines or settings: say so, once each
        print(f"metabench: note: {line}", file=sys.stderr)
    missing, failed = grid_problems(runs)
    if missing or failed:
        message = "; ".join(part for part in (
            f"{len(missing)} cell(s) missing: {few(missing)}" if missing else "",
            f"{len(failed)} cell(s) failed: {few(failed)}" if failed else "") if part)
        if args.strict:
            raise IncompleteGridError(f"incomplete grid in {', '.join(map(str, args.runs))}: {message}; run those cells "
                                      f"(metabench run ... --out DIR, then pass DIR too) or drop --strict")
        print(f"metabench: warning: incomplete grid: {message}", file=sys.stderr)
    board = leaderboard(runs, every_metric=args.format == "csv")
    if getattr(args, "benchmark", None):
        board = board[[any(fnmatch.fnmatchcase(b, p) for p in args.benchmark) for b in board["benchmark"]]]
    if getattr(args, "metric", None):
        board = board[board["metric"].isin(args.metric)]
    if board.empty:
        raise RunDirError(f"no finished cells in {', '.join(map(str, args.runs))}; nothing to report")
    report_file, figure_dir = _destination(args.out, args.format)
    if args.format == "csv":
        text = board.to_csv(index=False, float_format="%.10g", lineterminator="\n")
    else:
        text = render_markdown(board, runs, getattr(args, "embed", False)) if args.format == "md" else \
            render_html(board, runs)
    if report_file is None:
        sys.stdout.write(text)
    else:
        atomic_write_text(report_file, text)
        print(f"metabench: wrote {report_file}", file=sys.stderr)
    if args.trend:
        table = trend_table(list(args.runs))
        atomic_write_csv(figure_dir / "trend.csv", table)
        for path in draw_trend(table, figure_dir):
            print(f"metabench: wrote {path}", file=sys.stderr)
    return 0


def few(keys: list[str], limit: int = 8) -> str:
    return ", ".join(keys[:limit]) + (f" and {len(keys) - limit} more" if len(keys) > limit else "")
