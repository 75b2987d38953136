"""`metabench report RUN_DIR...`: leaderboards from run folders' CSVs, with the published numbers beside ours.

One table per benchmark, ranked by its headline metric (declared in benchmarks.yaml, read from the runs'
manifests: bench.metrics): our mean ± 95% CI (over test episodes for one seed, a t-interval over seeds when
several ran; bench.stats), the published value ± CI from results/published.csv (primary rows), the difference,
whether our mean lies inside the published interval, meta-iterations and train time. Several folders merge cell
by cell (bench.leaderboard); `--trend` draws each cell over the runs' commits instead (bench.plots).

Reads CSVs and manifests only (never algorithms/), so a leaderboard can be rebuilt anywhere.
"""
from __future__ import annotations

import fnmatch
import html
import sys
from pathlib import Path

import pandas as pd

from bench import resources, stats
from bench.budget_progress import progress
from bench.leaderboard import (  # noqa: F401
    SETTING_ORDER,
    SINE_SHOWN,
    Runs,
    benchmark_kinds,
    few,
    grid_problems,
    leaderboard,
    load_published,
    merge_runs,
    plus_minus,
    read_run,
    shown_metrics,
    with_seed_rows,
)
from bench.leaderboard import duration as _duration  # noqa: F401  (older names)
from bench.leaderboard import sources as _sources
from bench.metrics import Headlines
from bench.pivot import pivot_table
from bench.rundir import RunDirError, atomic_write_csv, atomic_write_text, provenance_differences

PUBLISHED_CSV = resources.published_csv()  # the checkout's results/published.csv, or the wheel's copy


class IncompleteGridError(RunDirError):
    """--strict and some (benchmark, algorithm, seed) cell is missing or failed."""


# ---------------------------------------------------------------------------------------------------------
# rendering


def _budget_used(fraction: float, paper_iters) -> str:
    if pd.isna(fraction):
        return ""
    share = f"{100 * fraction:.2g}%" if fraction < 0.1 else f"{100 * fraction:.0f}%"
    return f"{share} of {int(paper_iters):,}"


def _display(board: pd.DataFrame, runs: Runs) -> pd.DataFrame:
    over = [f"{int(n)} seeds" if m == "t-seeds" else f"{int(n)} episodes"
            for n, m in zip(board["n"], board["ci_method"])]
    done = progress(board, runs)
    inside = board["inside_paper_ci"].map(lambda v: "–" if v is None or pd.isna(v) else ("yes" if v else "no"))
    return pd.DataFrame({
        "algorithm": board["algorithm"], "metric": board["metric"],
        "ours (mean ± 95% CI)": [plus_minus(m, c) for m, c in zip(board["mean"], board["ci95"])], "over": over,
        "published": [plus_minus(v, c, measured=False) if pd.notna(v) else ""
                      for v, c in zip(board["paper_value"], board["paper_ci95"])],
        "Δ": board["delta"].map(lambda d: "" if pd.isna(d) else f"{d:+.3g}"),
        "inside published CI": inside.where(board["paper_value"].notna(), ""),
        "meta-iters": board["meta_iters"].map(lambda x: "" if pd.isna(x) else str(int(x))),
        "paper's budget used": [_budget_used(f, p) for f, p in zip(done["budget_fraction"], done["paper_meta_iters"])],
        "published reached at": done["reached_at"],
        "train time": board["train_seconds"].map(_duration)})


def _markdown_table(frame: pd.DataFrame) -> str:
    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "|".join("---" for _ in frame.columns) + "|"]
    lines += ["| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |"
              for row in frame.itertuples(index=False)]
    return "\n".join(lines)


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
        out += [f"**{bench}**" if embed else f"## {bench}", "", _markdown_table(_display(group, runs)), ""]
        cited = _sources(group)
        if cited:
            out += ["Published numbers:", "", *[f"- {s}" for s in cited], ""]
    return "\n".join(out)


def render_html(board: pd.DataFrame, runs: Runs) -> str:
    parts = ["<!doctype html><meta charset='utf-8'><title>metabench leaderboard</title>",
             "<h1>metabench leaderboard</h1><ul>", *[f"<li>{html.escape(line)}</li>" for line in _header(runs)],
             "</ul>"]
    for bench, group in board.groupby("benchmark", sort=False):
        parts += [f"<h2>{html.escape(str(bench))}</h2>",
                  _display(group, runs).to_html(index=False, escape=True, border=0)]
        cited = _sources(group)
        if cited:
            parts += ["<p>Published numbers:</p><ul>", *[f"<li>{html.escape(s)}</li>" for s in cited], "</ul>"]
    return "\n".join(parts) + "\n"


# ---------------------------------------------------------------------------------------------------------
# trend over commits


def trend_table(paths: list[Path]) -> pd.DataFrame:
    """Headline mean ± CI of every (benchmark, algorithm) in every run, with the run's commit and date."""
    frames = []
    for path in paths:
        manifest, summary = read_run(path)
        headlines = Headlines.from_manifests([manifest])
        rows = stats.headline(with_seed_rows(summary[summary["seed"] != "all"]))
        for bench, group in rows.groupby("benchmark", sort=False):
            head = headlines.headline(bench, group["metric"])
            commit = (manifest.get("commit") or "unknown")[:7] + ("+" if manifest.get("dirty") else "")
            frames.append(group[group["metric"] == head].assign(
                run=str(path), commit=commit, commit_date=manifest.get("commit_date") or "",
                started=manifest.get("started") or ""))
    if not frames:
        raise RunDirError(f"no finished cells in {', '.join(map(str, paths))}; nothing to draw a trend from")
    table = pd.concat(frames, ignore_index=True)
    order = table.drop_duplicates("run").sort_values(["commit_date", "started"], kind="stable")["run"].tolist()
    table["position"] = table["run"].map(order.index)
    return table.sort_values("position", kind="stable").reset_index(drop=True)


def draw_trend(table: pd.DataFrame, out: Path) -> list[Path]:
    # lazy: bench.plots loads matplotlib and switches it to the Agg backend, which importing bench.report (say,
    # in a notebook that reads leaderboards) must not do; only `report --trend` draws
    from bench import plots

    return plots.draw_trend(table, out)


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
    p.add_argument("--pivot", action="store_true",
                   help="the papers' layout: a row per algorithm, a column per benchmark, each cell 'ours ± CI / "
                        "published', with notes on cells below their suite's targets (md and csv)")
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


def _notes(runs: Runs, trend: bool) -> None:
    """Say on stderr which cells came from which folder and how the folders' provenance differs."""
    if len(runs.replaced) > 10 or (trend and runs.replaced):  # a trend's folders repeat every cell
        print(f"metabench: note: {len(runs.replaced)} cells appear in several folders; each is taken from the last "
              f"folder on the command line that has it", file=sys.stderr)
    else:
        for line in runs.replaced:
            print(f"metabench: note: {line} (the later folder wins)", file=sys.stderr)
    notes = [line for other in runs.manifests[1:] for line in
             provenance_differences(runs.manifests[0], other, runs.manifests[0]["path"], other["path"])]
    for line in dict.fromkeys(notes):  # folders made on different machines or settings: say so, once each
        print(f"metabench: note: {line}", file=sys.stderr)


def _check_grid(runs: Runs, paths: list[Path], strict: bool) -> None:
    """Warn about missing or failed cells; with `strict`, refuse them."""
    missing, failed = grid_problems(runs)
    if not (missing or failed):
        return
    message = "; ".join(part for part in (
        f"{len(missing)} cell(s) missing: {few(missing)}" if missing else "",
        f"{len(failed)} cell(s) failed: {few(failed)}" if failed else "") if part)
    if strict:
        raise IncompleteGridError(f"incomplete grid in {', '.join(map(str, paths))}: {message}; run those cells "
                                  f"(metabench run ... --out DIR, then pass DIR too) or drop --strict")
    print(f"metabench: warning: incomplete grid: {message}", file=sys.stderr)


def _selected(board: pd.DataFrame, args) -> pd.DataFrame:
    if getattr(args, "benchmark", None):
        board = board[[any(fnmatch.fnmatchcase(b, p) for p in args.benchmark) for b in board["benchmark"]]]
    if getattr(args, "metric", None):
        board = board[board["metric"].isin(args.metric)]
    if board.empty:
        raise RunDirError(f"no finished cells in {', '.join(map(str, args.runs))}; nothing to report")
    return board


def render_pivot(board: pd.DataFrame, runs: Runs, args) -> str:
    table = pivot_table(board, runs)
    if args.format == "csv":
        return table.to_csv(index=False, lineterminator="\n")
    out = [] if getattr(args, "embed", False) else ["# metabench table", ""]
    out += [*[f"- {line}" for line in _header(runs)], "",
            "Accuracy % (the benchmarks' headline metric): ours, mean ± 95% CI / published; notes: cells below the "
            "suite's target, with the meta-iterations they trained for and the `paper` profile's.", "",
            _markdown_table(table), ""]
    return "\n".join(out)


def _render(board: pd.DataFrame, runs: Runs, args) -> str:
    if getattr(args, "pivot", False):
        if args.format == "html":
            raise RunDirError("--pivot: --format md or csv")
        return render_pivot(board, runs, args)
    if args.format == "csv":
        return board.to_csv(index=False, float_format="%.10g", lineterminator="\n")
    if args.format == "md":
        return render_markdown(board, runs, getattr(args, "embed", False))
    return render_html(board, runs)


def command(args) -> int:
    args.runs = run_folders(list(args.runs))
    runs = merge_runs(list(args.runs))
    _notes(runs, args.trend)
    _check_grid(runs, args.runs, args.strict)
    board = _selected(leaderboard(runs, every_metric=args.format == "csv"), args)
    report_file, figure_dir = _destination(args.out, args.format)
    text = _render(board, runs, args)
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
