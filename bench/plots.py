"""Figures drawn from a run folder's CSVs only (never from models), in one visual identity (bench.style).

Each figure is a function registered by name with `@figure`; `metabench figures NAME|all --from RUN_DIR`
draws them, `metabench figures paper NAME` draws one paper's set (PAPERS) from the committed reference runs.
A figure whose data the run does not have raises FigureDataError naming what it needs.

Styles: `screen` writes PNG + PDF sized for a monitor; `paper` writes PDF (TrueType fonts embedded) + SVG at a
two-column paper's widths (3.25 in / 6.75 in) with 8 pt text. Every figure gets a sidecar `<name>.json` and
PDF/SVG/PNG metadata naming the runs (ids, commits) and the command that drew it. Outputs carry no dates,
so the same runs give byte-identical files (tests/test_figures.py compares them with committed images).
"""
from __future__ import annotations

import contextvars
import difflib
import json
import math
import os
import re
import shlex
import string
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: figures are files
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import LogFormatter, MaxNLocator  # noqa: E402

from bench import __version__ as metabench_version  # noqa: E402
from bench import budget_progress, latex, leaderboard, profiles, stats, style  # noqa: E402
from bench.errors import UserError  # noqa: E402
from bench.rundir import RunDir, RunDirError, atomic_write_csv, atomic_write_text  # noqa: E402

FIGURES: dict[str, tuple[Callable, str]] = {}
TABLES: set[str] = set()  # figures that are tables: also written as CSV, markdown and LaTeX
MAX_COLUMNS = 3  # panels per row: a 5-benchmark figure wraps instead of becoming one 3132-pixel-wide row


class FigureDataError(RuntimeError):
    """The run folder lacks what a figure is drawn from."""


class UnknownFigureError(UserError, KeyError):
    """A figure name not in FIGURES; a KeyError as the registry's unknown names are, and a UserError so the
    command line reports it in one line. (Not algorithms.UnknownNameError: figures never import algorithms.)"""

    def __str__(self) -> str:  # KeyError quotes its message; we want it verbatim
        return str(self.args[0])


def suggest(name: str, candidates) -> str:
    """' (did you mean 'x'?)' or '': the registry's wording (algorithms/_registry.py), without importing it."""
    close = difflib.get_close_matches(name, list(candidates), n=3, cutoff=0.6)
    return " (did you mean " + " or ".join(repr(c) for c in close) + "?)" if close else ""


def figure(name: str, description: str, table: bool = False):
    def decorator(fn):
        FIGURES[name] = (fn, description)
        if table:
            TABLES.add(name)
        return fn
    return decorator


# ---------------------------------------------------------------------------------------------------------
# drawing context: which style, which runs, which command (what save() writes into the provenance)


@dataclass
class _Context:
    name: str
    style: str
    runs: list[RunDir]
    command: str
    keep: list | None = None  # tests ask for the Figure objects instead of having them closed
    benchmarks: set[str] | None = None  # what the figure drew, to name only the runs it came from


_CONTEXT: contextvars.ContextVar[_Context | None] = contextvars.ContextVar("metabench_figure", default=None)


def drawn(benchmarks) -> None:
    """Tell save() which benchmarks the figure shows: its provenance then lists only the runs holding them
    (`figures paper` passes every reference run; a sine figure should not claim the Omniglot ones)."""
    ctx = _CONTEXT.get()
    if ctx is not None:
        ctx.benchmarks = set(map(str, benchmarks))


def _contributing(runs: list[RunDir], benchmarks: set[str] | None) -> list[RunDir]:
    if not benchmarks:
        return runs
    kept = []
    for run in runs:
        try:
            names = set(pd.read_csv(run.path / "summary.csv", usecols=["benchmark"])["benchmark"].astype(str))
        except (OSError, ValueError, pd.errors.ParserError):
            names = None  # cannot tell: keep it
        if names is None or names & benchmarks:
            kept.append(run)
    return kept or runs


def _style() -> str:
    ctx = _CONTEXT.get()
    return ctx.style if ctx else "screen"


def default_command(name: str, run_dirs: list[Path], figure_style: str) -> str:
    """The command that redraws a figure (without --out: where it goes does not change what it shows). Run paths
    are written relative to the working folder when inside it, so the text does not depend on the checkout's
    location."""
    def shown(path: Path) -> str:
        try:
            return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
        except ValueError:
            return str(path)
    parts = ["metabench", "figures", name] + [a for p in run_dirs for a in ("--from", shown(p))]
    return shlex.join(parts + (["--style", figure_style] if figure_style != "screen" else []))


def draw(name: str, run_dirs: list[Path], out: Path, figure_style: str = "screen", command: str | None = None,
         keep: list | None = None) -> list[Path]:
    """Draw one registered figure; returns the files written (images, tables, the provenance sidecar)."""
    if name not in FIGURES:
        raise UnknownFigureError(f"unknown figure {name!r}{suggest(name, list(FIGURES))}; `metabench figures --list`")
    if figure_style not in style.STYLES:
        raise ValueError(f"unknown figure style {figure_style!r}; one of {', '.join(style.STYLES)}")
    fn, _ = FIGURES[name]
    ctx = _Context(name, figure_style, [RunDir(p) for p in run_dirs],
                   command or default_command(name, run_dirs, figure_style), keep)
    token = _CONTEXT.set(ctx)
    try:
        with plt.rc_context(style.rc(figure_style)):
            return fn(ctx.runs, Path(out))
    finally:
        _CONTEXT.reset(token)


def draw_available(run_dirs: list[Path], out: Path, figure_style: str = "screen",
                   names: list[str] | None = None, command: Callable[[str], str] | None = None
                   ) -> tuple[list[Path], dict[str, str]]:
    """Every figure (or those named) the runs have data for; the others with the reason they were skipped."""
    written, skipped = [], {}
    for name in names or list(FIGURES):
        try:
            written += draw(name, run_dirs, out, figure_style, command(name) if command else None)
        except FigureDataError as exc:
            skipped[name] = str(exc)
    return written, skipped


# ---------------------------------------------------------------------------------------------------------
# provenance and saving


def provenance(name: str, runs: list[RunDir], command: str | None, figure_style: str) -> dict:
    """What a figure was drawn from: the runs (ids, commits, whether their code was dirty) and the command."""
    sources = []
    for run in runs:
        try:
            manifest = json.loads((run.path / "manifest.json").read_text())
        except (OSError, ValueError):
            manifest = {}
        if not isinstance(manifest, dict):
            manifest = {}
        sources.append({"path": str(run.path), "run_id": manifest.get("run_id"), "commit": manifest.get("commit"),
                        "dirty": manifest.get("dirty"), "suite": manifest.get("suite"),
                        "profile": manifest.get("profile"), "finished": manifest.get("finished")})
    return {"figure": name, "description": FIGURES.get(name, (None, ""))[1], "style": figure_style,
            "command": command, "runs": sources, "metabench": metabench_version, "matplotlib": matplotlib.__version__}


def _runs_line(prov: dict) -> str:
    return "; ".join(f"{r['run_id'] or r['path']} @ {(r['commit'] or 'unknown commit')[:12]}"
                     + (" (dirty)" if r.get("dirty") else "") for r in prov["runs"]) or "no run folders"


def _metadata(suffix: str, prov: dict) -> dict:
    """Per-format metadata; no dates anywhere (CreationDate/Date None), so files are byte-stable."""
    title = f"{prov['figure']}: {prov['description']}"
    creator = f"metabench {prov['metabench']} (matplotlib {prov['matplotlib']})"
    runs, command = _runs_line(prov), prov["command"] or ""
    if suffix == ".pdf":
        return {"Title": title, "Subject": f"drawn from {runs}", "Keywords": command, "Creator": creator,
                "CreationDate": None}
    if suffix == ".svg":
        return {"Title": title, "Description": f"drawn from {runs}", "Source": command, "Creator": creator,
                "Date": None}
    return {"Title": title, "Description": f"drawn from {runs}", "Source": command, "Software": creator}


def save(fig, out: Path, name: str, runs: list[RunDir] | None = None, tight: bool = False,
         extra: list[Path] = ()) -> list[Path]:
    """Write the figure in its style's formats (screen: PNG + PDF; paper: PDF + SVG) and the sidecar JSON;
    atomically (temp file + rename), so a crash never leaves half an image. `extra` (a table's CSV, markdown,
    LaTeX) is listed in the sidecar too."""
    ctx = _CONTEXT.get()
    figure_style = ctx.style if ctx else "screen"
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if runs is None:
        runs = _contributing(ctx.runs, ctx.benchmarks) if ctx else []
    prov = provenance(name, runs, ctx.command if ctx else None, figure_style)
    suffixes = (".png", ".pdf") if figure_style == "screen" else (".pdf", ".svg")
    paths = []
    for suffix in suffixes:
        path = out / f"{name}{suffix}"
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            fig.savefig(tmp, format=suffix[1:], metadata=_metadata(suffix, prov),
                        bbox_inches="tight" if tight else None, pad_inches=0.02 if tight else 0.1)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        paths.append(path)
    paths += list(extra)
    sidecar = out / f"{name}.json"
    atomic_write_text(sidecar, json.dumps({**prov, "files": [p.name for p in paths]}, indent=2, sort_keys=True) + "\n")
    if ctx is not None and ctx.keep is not None:
        ctx.keep.append(fig)
    else:
        plt.close(fig)
    return paths + [sidecar]


# ---------------------------------------------------------------------------------------------------------
# layout helpers shared by every figure


def panels(n: int, *, columns: int | None = None, aspect: float = 0.78, sharex: bool = False,
           sharey: bool = False, rows_of: int | None = None):
    """A figure of n panels wrapped at MAX_COLUMNS per row (or `columns`), sized for the style: screen 4.2 in
    per column; paper one column (3.25 in) for a single panel, the full text width (6.75 in) otherwise.
    Constrained layout keeps labels and the shared legend (placed outside the axes) inside the page width.
    `rows_of=k`: the panels come in groups of k (e.g. one group per gate) and each group starts a new row."""
    cols = max(1, min(rows_of or n, columns or MAX_COLUMNS))
    group = rows_of or n
    per_group = math.ceil(group / cols)
    groups = math.ceil(n / group)
    rows = per_group * groups
    slots = [g * per_group * cols + i for g in range(groups) for i in range(min(group, n - g * group))]
    if _style() == "paper":
        width = style.SINGLE_COLUMN_IN if cols == 1 else style.DOUBLE_COLUMN_IN
    else:
        width = 4.2 * cols
    height = width / cols * aspect * rows + 0.45  # + the legend row under the panels
    fig, grid = plt.subplots(rows, cols, figsize=(width, height), squeeze=False, layout="constrained",
                             sharex=sharex, sharey=sharey)
    axes = list(grid.flat)
    for i, ax in enumerate(axes):
        if i not in slots:
            fig.delaxes(ax)
    return fig, [axes[i] for i in slots]


def label_panels(axes, titles: list[str]) -> None:
    """Every panel titled; with several panels each gets a letter, (a), (b), ..., for a caption to refer to."""
    for i, (ax, title) in enumerate(zip(axes, titles)):
        ax.set_title(f"({_letter(i)}) {title}" if len(axes) > 1 else title)


def _letter(i: int) -> str:
    letters = string.ascii_lowercase
    return letters[i] if i < 26 else letters[i // 26 - 1] + letters[i % 26]


def shared_legend(fig, axes, title: str | None = None, neutral: bool = False) -> None:
    """One legend for the whole figure, below the panels (it hides no data), listing every labelled line that
    any panel draws: the union, so a panel with more lines than its neighbours still has all of them listed.
    `neutral`: the panels colour the same label differently (each its algorithm), so the legend shows the line
    style in grey rather than the first panel's colour."""
    entries: dict[str, object] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    if not entries:
        return
    if neutral:
        entries = {label: _neutral(handle) for label, handle in entries.items()}
    cols = min(len(entries), 3 if _style() == "paper" and len(axes) == 1 else 6)
    renderer = fig.canvas.get_renderer()
    while True:  # fewer columns (more rows) until the legend is no wider than the figure: wider, it is clipped
        legend = fig.legend(list(entries.values()), list(entries.keys()), loc="outside lower center", ncols=cols,
                            title=title)
        if cols == 1 or legend.get_window_extent(renderer).width <= fig.bbox.width:
            return
        legend.remove()
        cols -= 1


def _neutral(handle):
    if isinstance(handle, Line2D) and handle.get_color() != "black":
        return Line2D([], [], color=style.GREY, linestyle=handle.get_linestyle(), marker=handle.get_marker(),
                      alpha=handle.get_alpha())
    return handle


class PlainLogFormatter(LogFormatter):
    """Log-axis tick labels as plain numbers (0.5, 4, 100) instead of 4×10⁰: LogFormatter decides which
    ticks get a label (fewer minor labels on wide ranges), this only changes how a label is written."""

    def _num_to_string(self, x, vmin, vmax):
        return f"{x:.6g}"


def log_axis(ax, axis: str = "y") -> None:
    getattr(ax, f"set_{axis}scale")("log")
    target = getattr(ax, f"{axis}axis")
    target.set_major_formatter(PlainLogFormatter(labelOnlyBase=False))
    target.set_minor_formatter(PlainLogFormatter(labelOnlyBase=False, minor_thresholds=(1, 0.4)))


def integer_axis(ax, axis: str = "x") -> None:
    """Whole-number quantities (steps, updates, iterations) get whole-number ticks."""
    getattr(ax, f"{axis}axis").set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 5, 10]))


def outer_labels(axes, xlabel: str, ylabel: str, columns: int) -> None:
    """x label under the lowest panel of each column, y label left of the first panel of each row."""
    n = len(axes)
    for i, ax in enumerate(axes):
        if i % columns == 0:
            ax.set_ylabel(ylabel)
        if i + columns >= n:
            ax.set_xlabel(xlabel)


def _columns(n: int, columns: int | None = None) -> int:
    return max(1, min(n, columns or MAX_COLUMNS))


def _concat(runs: list[RunDir], table: str) -> pd.DataFrame:
    frames = [r.read_table(table, required=False) for r in runs]
    frames = [f for f in frames if not f.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _steps_of(metric: str) -> int | None:
    m = re.fullmatch(r"mse@(\d+)", str(metric))
    return int(m.group(1)) if m else None


def _band(ax, x, mean, ci, ident: style.Identity, floor: float | None = None, gid: str | None = None) -> None:
    """A mean line in the algorithm's identity and its 95% CI as a band of the same colour (unlabelled)."""
    ci = pd.Series(ci).fillna(0).to_numpy()
    low = np.asarray(mean) - ci
    if floor is not None:
        low = np.clip(low, floor, None)
    ax.plot(x, mean, color=ident.color, marker=ident.marker, linestyle=ident.linestyle, label=ident.display,
            markevery=max(1, len(x) // 10), gid=gid)
    ax.fill_between(x, low, np.asarray(mean) + ci, alpha=0.2, color=ident.color, linewidth=0)


# ---------------------------------------------------------------------------------------------------------
# the figures


@figure("maml-sine-steps", "MSE against adaptation steps with 95% CI bands, per K (MAML paper Fig. 3/6)")
def sine_steps(runs: list[RunDir], out: Path) -> list[Path]:
    summary = _concat(runs, "summary.csv")
    if summary.empty:
        raise FigureDataError("needs summary.csv with mse@S rows from a sine run (metabench run --benchmark sine-k10)")
    rows = stats.headline(summary)
    rows = rows[rows["metric"].map(_steps_of).notna()].copy()
    if rows.empty:
        raise FigureDataError("needs mse@S rows from a sine benchmark (metabench run --benchmark 'sine-*')")
    rows["steps"] = rows["metric"].map(_steps_of)
    benchmarks = style.benchmark_order(rows["benchmark"])
    fig, axes = panels(len(benchmarks))
    for ax, bench in zip(axes, benchmarks):
        part = rows[rows["benchmark"] == bench]
        for algo in style.algorithm_order(part["algorithm"]):
            g = part[part["algorithm"] == algo].sort_values("steps")
            _band(ax, g["steps"].to_numpy(), g["mean"].to_numpy(), g["ci95"], style.identity(algo),
                  gid=f"algorithm:{algo}")
        log_axis(ax)
        integer_axis(ax)
    drawn(benchmarks)
    label_panels(axes, [style.benchmark_display(b) for b in benchmarks])
    outer_labels(axes, "gradient steps at test", "MSE (mean ± 95% CI)", _columns(len(benchmarks)))
    shared_legend(fig, axes)
    return save(fig, out, "maml-sine-steps")


# fits: the number of adaptation steps is drawn in the panel's algorithm colour, fainter and more broken for
# fewer steps; the legend shows the step line styles in neutral grey, because the colour is the panel's algorithm
FIT_STEPS = {0: (":", 0.55), 1: ("--", 0.8), 10: ("-", 1.0)}


@figure("maml-sine-fits", "fits after 0, 1 and 10 steps on held-out tasks vs the true curve (MAML paper Fig. 2)")
def sine_fits(runs: list[RunDir], out: Path) -> list[Path]:
    fits = _concat(runs, "fits.csv")
    if fits.empty:
        raise FigureDataError("needs fits.csv from a sine run (metabench run --benchmark sine-k5 --benchmark sine-k10)")
    fits = fits[fits["task"] == 0]
    seed = sorted(fits["seed"].unique())[0]
    fits = fits[fits["seed"] == seed]
    benchmarks = style.benchmark_order(fits["benchmark"])
    algos = [a for a in ("maml", "pretrain") if a in set(fits["algorithm"])] or \
        style.algorithm_order(fits["algorithm"])[:MAX_COLUMNS]
    cells = [(b, a) for b in benchmarks for a in algos]
    fig, axes = panels(len(cells), columns=len(algos), sharex=True)
    for ax, (bench, algo) in zip(axes, cells):
        ident = style.identity(algo)
        part = fits[(fits["benchmark"] == bench) & (fits["algorithm"] == algo)]
        truth = part[part["series"] == "truth"]
        # wide and pale, behind the fits: told apart from a solid "after 10 steps" line by width, not colour
        ax.plot(truth["x"], truth["y"], color="black", lw=3 * plt.rcParams["lines.linewidth"], alpha=0.3,
                zorder=1, label="ground truth")
        for steps, group in part[part["series"] == "prediction"].groupby("steps"):
            ls, alpha = FIT_STEPS.get(int(steps), ("-.", 0.7))
            ax.plot(group["x"], group["y"], ls=ls, alpha=alpha, color=ident.color, gid=f"algorithm:{algo}",
                    label=f"after {steps} step{'s' if steps != 1 else ''}")
        support = part[part["series"] == "support"]
        ax.scatter(support["x"], support["y"], marker="^", color="black", zorder=3, label="support points",
                   s=4 * plt.rcParams["lines.markersize"] ** 2)
    drawn(benchmarks)
    label_panels(axes, [f"{style.display(a)}, {style.benchmark_display(b)}" for b, a in cells])
    outer_labels(axes, "x", "y", len(algos))
    # neutral legend handles with the same labels as the drawn lines (their colour is the panel's algorithm)
    shared_legend(fig, axes, neutral=True)
    return save(fig, out, "maml-sine-fits")


@figure("training-curves", "meta-training loss against iterations, mean ± 95% CI over seeds, per benchmark")
def training_curves(runs: list[RunDir], out: Path) -> list[Path]:
    curves = _concat(runs, "curves.csv")
    if curves.empty:
        raise FigureDataError("needs curves.csv from any run")
    curves = curves[(curves["split"] == "train") & (curves["metric"] == "loss")]
    if curves.empty:
        raise FigureDataError("needs training-loss rows (split train, metric loss) in curves.csv")
    benchmarks = style.benchmark_order(curves["benchmark"])
    fig, axes = panels(len(benchmarks))
    for ax, bench in zip(axes, benchmarks):
        part = curves[curves["benchmark"] == bench]
        for algo in style.algorithm_order(part["algorithm"]):
            g = part[part["algorithm"] == algo].groupby("iteration")["value"]
            mean = g.mean()
            ci = g.apply(lambda v: stats.ci95_t(v) if len(v) > 1 else 0.0).fillna(0)  # t-interval over seeds
            _band(ax, mean.index.to_numpy(), mean.to_numpy(), ci.to_numpy(), style.identity(algo),
                  floor=1e-12, gid=f"algorithm:{algo}")
        log_axis(ax)
        integer_axis(ax)
    drawn(benchmarks)
    label_panels(axes, [style.benchmark_display(b) for b in benchmarks])
    outer_labels(axes, "meta-iteration", "training loss", _columns(len(benchmarks)))
    shared_legend(fig, axes)
    return save(fig, out, "training-curves")


@figure("budget-curves", "validation accuracy against meta-iterations (log axis), with each published value "
                         "drawn at the paper's budget, per benchmark")
def budget_curves(runs: list[RunDir], out: Path) -> list[Path]:
    needs = ("needs validation curves (split validation in curves.csv: a run whose budget sets curve_points, "
             "e.g. metabench run omniglot-table)")
    curves = budget_progress.validation_curves([r.path for r in runs])
    if curves.empty:
        raise FigureDataError(needs)
    board = _leaderboard(runs, needs)
    config = profiles.packaged_config()
    benchmarks = style.benchmark_order(curves["benchmark"])
    fig, axes = panels(len(benchmarks))
    for ax, bench in zip(axes, benchmarks):
        part = curves[curves["benchmark"] == bench]
        for algo in style.algorithm_order(part["algorithm"]):
            ident, line = style.identity(algo), part[part["algorithm"] == algo].sort_values("iteration")
            ax.plot(line["iteration"], line["value"], color=ident.color, linestyle=ident.linestyle,
                    marker=ident.marker, ms=3, label=ident.display, gid=f"algorithm:{algo}")
            published = board[(board["benchmark"] == bench) & (board["algorithm"] == algo)
                              & (board["metric"] == line["metric"].iloc[0])]["paper_value"].dropna()
            paper_iters = profiles.paper_meta_iters(bench, algo, config)
            if len(published) and paper_iters:  # the paper's own point: its value at its budget
                ax.plot([paper_iters], [float(published.iloc[0])], color=ident.color, marker=ident.marker, ms=8,
                        markerfacecolor="none", linestyle="none", gid=f"published:{algo}")
        log_axis(ax, "x")
        ax.grid(alpha=0.3)
    drawn(benchmarks)
    label_panels(axes, [style.benchmark_display(b) for b in benchmarks])
    axes[0].plot([], [], color=style.GREY, marker="o", markerfacecolor="none", linestyle="none",
                 label="published (paper's budget)")
    outer_labels(axes, "meta-iteration", "validation accuracy (%)", _columns(len(benchmarks)))
    shared_legend(fig, axes)
    return save(fig, out, "budget-curves")


@figure("reptile-vs-maml-vs-pretrain",
        "sine MSE against test-time steps: MAML, Reptile and pre-training (the worst curve)")
def reptile_vs_maml_vs_pretrain(runs: list[RunDir], out: Path) -> list[Path]:
    trio = ("maml", "reptile", "pretrain")
    needs = ("needs mse@S rows of maml, reptile and pretrain on one sine benchmark (metabench run --benchmark "
             "sine-k10 --algorithm maml --algorithm reptile --algorithm pretrain)")
    rows = _leaderboard(runs, needs)
    if not rows.empty:
        rows = rows[rows["metric"].map(_steps_of).notna() & rows["algorithm"].isin(trio)].copy()
    benchmarks = [b for b, g in rows.groupby("benchmark", sort=False) if set(g["algorithm"]) == set(trio)] \
        if not rows.empty else []
    if not benchmarks:
        raise FigureDataError(needs)
    benchmarks = style.benchmark_order(benchmarks)
    rows["steps"] = rows["metric"].map(_steps_of)
    fig, axes = panels(len(benchmarks))
    for ax, bench in zip(axes, benchmarks):
        for algo in trio:
            g = rows[(rows["benchmark"] == bench) & (rows["algorithm"] == algo)].sort_values("steps")
            _band(ax, g["steps"].to_numpy(), g["mean"].to_numpy(), g["ci95"], style.identity(algo),
                  gid=f"algorithm:{algo}")
        integer_axis(ax)
    drawn(benchmarks)
    label_panels(axes, [style.benchmark_display(b) for b in benchmarks])
    outer_labels(axes, "gradient steps at test", "MSE (mean ± 95% CI)", _columns(len(benchmarks)))
    shared_legend(fig, axes)
    return save(fig, out, "reptile-vs-maml-vs-pretrain")


@figure("l2l-mnist-curves",
        "learned vs hand-designed optimizers: MNIST loss against steps, mean ± 95% CI over test runs")
def l2l_mnist_curves(runs: list[RunDir], out: Path) -> list[Path]:
    needs = ("needs loss@T rows from the learned-optimizer benchmarks (metabench run --benchmark 'mnist-*' "
             "--algorithm lstm-optimizer --algorithm sgd --algorithm rmsprop --algorithm adam --algorithm nag)")
    rows = _leaderboard(runs, needs)
    if not rows.empty:
        rows = rows[rows["metric"].astype(str).str.fullmatch(r"loss@\d+")].copy()
    if rows.empty:
        raise FigureDataError(needs)
    rows["step"] = rows["metric"].str.slice(5).astype(int)
    benchmarks = style.benchmark_order(rows["benchmark"])  # the training problem first, then the transfer tests
    fig, axes = panels(len(benchmarks))
    for ax, bench in zip(axes, benchmarks):
        part = rows[rows["benchmark"] == bench]
        for algo in style.algorithm_order(part["algorithm"]):
            g = part[part["algorithm"] == algo].sort_values("step")
            _band(ax, g["step"].to_numpy(), g["mean"].to_numpy(), g["ci95"], style.identity(algo),
                  floor=1e-12, gid=f"algorithm:{algo}")
        log_axis(ax)
        integer_axis(ax)
    drawn(benchmarks)
    label_panels(axes, [style.benchmark_display(b) for b in benchmarks])
    outer_labels(axes, "optimizee step", "training loss (mean ± 95% CI)", _columns(len(benchmarks)))
    shared_legend(fig, axes)
    return save(fig, out, "l2l-mnist-curves")


GATE_COLUMNS = ["algorithm", "episode", "layer", "step", "gate", "value"]


@figure("metalstm-gates", "Meta-LSTM input and forget gate values across updates, per layer, over test episodes")
def metalstm_gates(runs: list[RunDir], out: Path) -> list[Path]:
    needs = ("needs gates.csv (columns " + ", ".join(GATE_COLUMNS) + ") from a meta-lstm run "
             "(metabench run --benchmark omniglot-5w1s --algorithm meta-lstm)")
    gates = _concat(runs, "gates.csv")
    if gates.empty or not set(GATE_COLUMNS) <= set(gates.columns):
        raise FigureDataError(needs)
    gate_names = [g for g in ("input", "forget") if g in set(gates["gate"])] or sorted(gates["gate"].unique())
    layers = list(dict.fromkeys(gates["layer"]))
    # the paper draws one thin line per episode; 20 episodes keep the figure readable
    episodes = sorted(gates["episode"].unique())[:20]
    shown = gates[gates["episode"].isin(episodes)]
    keys = [k for k in ("benchmark", "seed", "algorithm") if k in shown.columns]
    series = list(dict.fromkeys(zip(*(shown[k] for k in keys))))
    cells = [(g, layer) for g in gate_names for layer in layers]
    # one row per layer, input gate left, forget gate right (a 2 x 5 grid of the paper's Fig. 2 layout would be
    # two rows of five tiny panels)
    cells = [(g, layer) for layer in layers for g in gate_names]
    fig, axes = panels(len(cells), columns=len(gate_names), aspect=0.5, sharex=True, sharey=True)
    for ax, (name, layer) in zip(axes, cells):
        part = shown[(shown["gate"] == name) & (shown["layer"] == layer)]
        for s, key in enumerate(series):
            algo = dict(zip(keys, key)).get("algorithm", "meta-lstm")
            ident = style.identity(algo)
            # one series per (benchmark, seed, algorithm): the algorithm's colour, seeds told apart by line style
            label = ident.display + ("" if len(series) == 1 else " (" + ", ".join(
                f"{k} {v}" for k, v in zip(keys, key) if k != "algorithm") + ")")
            sel = np.logical_and.reduce([part[k] == v for k, v in zip(keys, key)]) if keys else slice(None)
            for e, (_, g) in enumerate(part[sel].groupby("episode", sort=True)):
                g = g.sort_values("step")
                ax.plot(g["step"], g["value"], lw=0.6 * plt.rcParams["lines.linewidth"], alpha=0.6,
                        color=ident.color, ls=style.LINESTYLES[s % len(style.LINESTYLES)],
                        gid=f"algorithm:{algo}", label=label if e == 0 else "_nolegend_")
        ax.set_ylim(0, 1.05)
        integer_axis(ax)
    label_panels(axes, [f"{name} gate, layer {layer}" for name, layer in cells])
    outer_labels(axes, "update", "gate value (layer mean)", len(gate_names))
    shared_legend(fig, axes)
    return save(fig, out, "metalstm-gates")


@figure("l2l-gated-gates", "gated LSTM optimizer: input gate (learned learning rate) and forget gate (learned decay) "
                           "across steps, per parameter tensor, mean ± 95% CI over test runs")
def l2l_gated_gates(runs: list[RunDir], out: Path) -> list[Path]:
    needs = ("needs optimizer_gates.csv (columns benchmark, episode, layer, step, gate, value) from a "
             "gated-lstm-optimizer run (metabench run --benchmark 'mnist-*' --algorithm gated-lstm-optimizer)")
    gates = _concat(runs, "optimizer_gates.csv")
    if gates.empty or not {"benchmark", "episode", "layer", "step", "gate", "value"} <= set(gates.columns):
        raise FigureDataError(needs)
    benchmarks = style.benchmark_order(gates["benchmark"])
    gate_names = [g for g in ("input", "forget") if g in set(gates["gate"])]
    layers = list(dict.fromkeys(gates["layer"]))
    # parameter tensors are not algorithms: Tol's muted colours, which no optimizer in these figures uses
    tensor_colours = dict(zip(layers, [style.TOL_MUTED[k] for k in ("indigo", "rose", "teal", "olive", "wine",
                                                                    "cyan", "tolgreen", "magenta", "sand")] * 4))
    cells = [(name, bench) for name in gate_names for bench in benchmarks]
    fig, axes = panels(len(cells), rows_of=len(benchmarks))  # each gate starts a row
    for ax, (name, bench) in zip(axes, cells):
        part = gates[(gates["benchmark"] == bench) & (gates["gate"] == name)]
        for layer in layers:
            g = part[part["layer"] == layer].groupby("step")["value"]
            if not len(g):
                continue
            mean, ci = g.mean(), g.apply(stats.ci95_normal).fillna(0)
            ax.plot(mean.index, mean.values, color=tensor_colours[layer], label=str(layer))
            ax.fill_between(mean.index, mean - ci, mean + ci, alpha=0.2, color=tensor_colours[layer], linewidth=0)
        ax.set_ylabel("f_t (1 = no decay)" if name == "forget" else "i_t (learned lr)")
        integer_axis(ax)
    drawn(benchmarks)
    label_panels(axes, [f"{style.benchmark_display(b)}: {name} gate" for name, b in cells])
    for ax in axes:
        ax.set_xlabel("optimizee step")
    shared_legend(fig, axes, title="parameter tensor")
    return save(fig, out, "l2l-gated-gates")


# ---------------------------------------------------------------------------------------------------------
# leaderboard tables (bench.leaderboard merges the runs' summary.csv): PNG/PDF, CSV, markdown and LaTeX


def _merged(runs: list[RunDir], needs: str) -> leaderboard.Runs:
    try:
        return leaderboard.merge_runs([r.path for r in runs])
    except RunDirError as exc:
        raise FigureDataError(f"{needs} ({exc})") from None


def _leaderboard(runs: list[RunDir], needs: str):
    return leaderboard.leaderboard(_merged(runs, needs), every_metric=True)


@dataclass
class _PaperTable:
    """One paper table's content: settings (columns), algorithms (rows, in order), each cell's text and value."""

    board: pd.DataFrame
    benchmarks: list[str]
    algos: list[str]
    grid: list[list[str]]
    values: dict[tuple[str, str], latex.Cell]
    best: dict[str, str | None]


def _paper_table_content(runs: list[RunDir], prefix: str, needs: str) -> _PaperTable:
    merged = _merged(runs, needs)
    board = leaderboard.leaderboard(merged, every_metric=True)
    board = board[board["benchmark"].astype(str).str.startswith(prefix) & (board["metric"] == "accuracy")] \
        if not board.empty else board
    if board.empty:
        raise FigureDataError(needs)
    benchmarks = [b for b in leaderboard.SETTING_ORDER if b in set(board["benchmark"])] + \
        sorted(set(board["benchmark"]) - set(leaderboard.SETTING_ORDER))
    cell = {(r.algorithm, r.benchmark): r for r in board.itertuples()}
    # rows best-first on the leftmost setting an algorithm has (the papers sort by the 1-shot column)
    first = {a: next(i for i, b in enumerate(benchmarks) if (a, b) in cell) for a in board["algorithm"].unique()}
    algos = sorted(first, key=lambda a: (first[a], -cell[(a, benchmarks[first[a]])].mean, a))
    values = {(a, b): latex.Cell(float(r.mean), float(r.ci95), float(r.paper_value), float(r.paper_ci95))
              for (a, b), r in cell.items()}
    # which way is better comes from each benchmark's declaration (accuracy: higher), as in the leaderboard
    best = {b: latex.best_in_column({a: values[(a, b)] for a in algos if (a, b) in values},
                                    merged.headlines.higher_is_better(b) is not False) for b in benchmarks}

    def text(a, b, newline="\n"):
        r = cell.get((a, b))
        if r is None:
            return "–"
        ours = leaderboard.plus_minus(r.mean, r.ci95)
        return ours + (f"{newline}({leaderboard.plus_minus(r.paper_value, r.paper_ci95, measured=False)})"
                       if pd.notna(r.paper_value) else "")

    grid = [[text(a, b) for b in benchmarks] for a in algos]
    return _PaperTable(board, benchmarks, algos, grid, values, best)


def _paper_table_figure(content: _PaperTable):
    """The table drawn as a figure: algorithm names in their colours, the best of each column in bold."""
    benchmarks, algos = content.benchmarks, content.algos
    # paper: one column wide while the settings fit (two), else the text width; rows as high as two text lines
    if _style() == "paper":
        width = style.SINGLE_COLUMN_IN if len(benchmarks) <= 2 else style.DOUBLE_COLUMN_IN
        row_height = 0.3
    else:
        width, row_height = max(4.8, 1.9 * len(benchmarks) + 1.6), 0.42
    fig, ax = plt.subplots(figsize=(width, row_height * (len(algos) + 1) + 0.5), layout="constrained")
    ax.axis("off")
    ax.grid(False)
    label_width = 0.3 if len(benchmarks) <= 2 else 0.2
    # bbox: the cells fill the axes exactly (the row labels' column inside it), so the title never overlaps them
    table = ax.table(cellText=content.grid, rowLabels=[style.display(a) for a in algos],
                     colLabels=[style.benchmark_display(b) for b in benchmarks], cellLoc="center",
                     colWidths=[(1 - label_width) / len(benchmarks)] * len(benchmarks),
                     bbox=[label_width, 0, 1 - label_width, 1])
    table.auto_set_font_size(False)
    table.set_fontsize(plt.rcParams["legend.fontsize"])
    for j, b in enumerate(benchmarks):  # bold: best, with a CI overlapping no other (as in the LaTeX table)
        if content.best[b] is not None:
            table[(algos.index(content.best[b]) + 1, j)].get_text().set_fontweight("bold")
    for i, a in enumerate(algos):  # the row label in the algorithm's colour: its identity in every figure
        label = table[(i + 1, -1)].get_text()
        label.set_color(style.color(a))
        label.set_gid(f"algorithm:{a}")
    ax.set_title("accuracy %: ours (published), mean ± 95% CI\nbold: best, its CI overlapping no other")
    return fig


def _paper_table_files(runs: list[RunDir], out: Path, name: str, content: _PaperTable) -> list[Path]:
    """The table as CSV (tidy), markdown and a booktabs LaTeX tabular whose comments name its provenance."""
    benchmarks, algos = content.benchmarks, content.algos
    tidy = content.board[["benchmark", "algorithm", "mean", "ci95", "n", "ci_method", "paper_value", "paper_ci95",
                          "delta", "inside_paper_ci", "paper", "table"]]
    csv_path, md_path, tex_path = out / f"{name}.csv", out / f"{name}.md", out / f"{name}.tex"
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_csv(csv_path, tidy)
    rows = ["| algorithm | " + " | ".join(benchmarks) + " |", "|---" * (len(benchmarks) + 1) + "|"]
    rows += [f"| {a} | " + " | ".join(t.replace("\n", " ") for t in line) + " |"
             for a, line in zip(algos, content.grid)]
    atomic_write_text(md_path, "Accuracy %, ours (published), mean ± 95% CI\n\n" + "\n".join(rows) + "\n")
    ctx = _CONTEXT.get()
    comments = [f"{name}: accuracy %, mean ± 95% CI, ours beside the published value; bold: best in its column "
                f"with a CI that overlaps no other", f"drawn by: {ctx.command if ctx else 'metabench figures ' + name}",
                f"from: {_runs_line(provenance(name, _contributing(runs, set(benchmarks)), None, _style()))}",
                "settings: " + ", ".join(benchmarks)]
    named = {(style.display(a), style.benchmark_display(b)): v for (a, b), v in content.values.items()}
    atomic_write_text(tex_path, latex.booktabs(
        [style.display(a) for a in algos], [style.benchmark_display(b) for b in benchmarks], named,
        fmt=lambda m, c, measured: leaderboard.plus_minus(m, c, measured=measured), comments=comments))
    return [csv_path, md_path, tex_path]


def _paper_table(runs: list[RunDir], out: Path, name: str, prefix: str, needs: str) -> list[Path]:
    """Our accuracy ± CI with the published value ± CI beside it, one row per algorithm, one column per setting;
    drawn as a figure and also written as CSV, markdown and a booktabs LaTeX tabular."""
    content = _paper_table_content(runs, prefix, needs)
    fig = _paper_table_figure(content)
    files = _paper_table_files(runs, out, name, content)
    drawn(content.benchmarks)
    return save(fig, out, name, extra=files)


@figure("omniglot-table",
        "Omniglot accuracy ± CI per algorithm and setting, published value beside ours (+ CSV, md, tex)", table=True)
def omniglot_table(runs: list[RunDir], out: Path) -> list[Path]:
    return _paper_table(runs, out, "omniglot-table", "omniglot-",
                        "needs accuracy rows from an Omniglot run (metabench run --benchmark 'omniglot-*' "
                        "--algorithm maml --algorithm protonet ...)")


@figure("miniimagenet-table", "Mini-ImageNet accuracy ± CI per algorithm and setting beside the published value "
                              "(+ CSV, md, tex)", table=True)
def miniimagenet_table(runs: list[RunDir], out: Path) -> list[Path]:
    return _paper_table(runs, out, "miniimagenet-table", "miniimagenet-",
                        "needs accuracy rows from a Mini-ImageNet run (metabench run --benchmark 'miniimagenet-*' "
                        "--algorithm maml --algorithm protonet ...)")


# ---------------------------------------------------------------------------------------------------------
# `metabench report --trend`: each cell's headline metric over the runs' commits (bench.report.trend_table)


def draw_trend(table: pd.DataFrame, out: Path) -> list[Path]:
    benchmarks = list(dict.fromkeys(table["benchmark"]))
    fig, axes = plt.subplots(len(benchmarks), 1, squeeze=False,
                             figsize=(max(6.0, 0.6 * table["position"].nunique() + 3), 3.2 * len(benchmarks)))
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
    return save(fig, out, "trend", runs=[RunDir(p) for p in dict.fromkeys(table["run"])])


# ---------------------------------------------------------------------------------------------------------
# one paper's figure set: `metabench figures paper NAME`


@dataclass(frozen=True)
class Paper:
    title: str
    figures: tuple[str, ...]
    runs: tuple[str, ...]  # folders (glob patterns) under results/reference/ drawn from by default


PAPERS: dict[str, Paper] = {
    "maml2017": Paper("Finn et al. 2017, Model-Agnostic Meta-Learning (MAML)",
                      ("maml-sine-fits", "maml-sine-steps", "omniglot-table", "miniimagenet-table"),
                      ("sine-*", "omniglot-*", "metric-*", "blackbox-*", "miniimagenet-*")),
    "nichol2018": Paper("Nichol et al. 2018, On First-Order Meta-Learning Algorithms (Reptile)",
                        ("reptile-vs-maml-vs-pretrain", "omniglot-table"), ("sine-*", "omniglot-*")),
    "l2l2016": Paper("Andrychowicz et al. 2016, Learning to learn by gradient descent by gradient descent",
                     ("l2l-mnist-curves", "l2l-gated-gates"), ("mnist*",)),
    "ravi2017": Paper("Ravi & Larochelle 2017, Optimization as a Model for Few-Shot Learning (Meta-LSTM)",
                      ("metalstm-gates", "omniglot-table", "miniimagenet-table"), ("metalstm-*", "miniimagenet-*")),
}


def reference_root() -> Path:
    """The checkout's committed reference runs (results/reference); a wheel ships none."""
    return Path(__file__).resolve().parent.parent / "results" / "reference"


def paper_runs(name: str, root: Path | None = None) -> list[Path]:
    """The committed reference run folders a paper's figures are drawn from: top-level folders matching the
    paper's patterns that hold a manifest.json (experiments in sub-folders are not reference results)."""
    root = reference_root() if root is None else Path(root)
    found = []
    for pattern in PAPERS[name].runs:
        found += sorted(p for p in root.glob(pattern) if (p / "manifest.json").is_file())
    return list(dict.fromkeys(found))
