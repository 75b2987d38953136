"""Figures drawn from a run folder's CSVs only (never from models): PNG + PDF under figures/.

Each figure is a function registered by name with `@figure`; `metabench figures NAME|all --from RUN_DIR`
draws them. A figure whose data the run does not have raises FigureDataError naming what it needs.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

import matplotlib

matplotlib.use("Agg")  # headless: figures are files
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from bench import stats  # noqa: E402
from bench.rundir import RunDir  # noqa: E402

FIGURES: dict[str, tuple[Callable, str]] = {}


class FigureDataError(RuntimeError):
    """The run folder lacks what a figure is drawn from."""


def figure(name: str, description: str):
    def decorator(fn):
        FIGURES[name] = (fn, description)
        return fn
    return decorator


def save(fig, out: Path, name: str) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.png", out / f"{name}.pdf"]
    for path in paths:
        fig.savefig(path, dpi=150 if path.suffix == ".png" else None, bbox_inches="tight")
    plt.close(fig)
    return paths


def draw(name: str, run_dirs: list[Path], out: Path) -> list[Path]:
    if name not in FIGURES:
        from algorithms import UnknownNameError, suggest
        raise UnknownNameError(f"unknown figure {name!r}{suggest(name, list(FIGURES))}; `metabench figures --list`")
    fn, _ = FIGURES[name]
    return fn([RunDir(p) for p in run_dirs], out)


def draw_available(run_dirs: list[Path], out: Path) -> tuple[list[Path], dict[str, str]]:
    """Every figure the runs have data for; the others with the reason they were skipped."""
    written, skipped = [], {}
    for name in FIGURES:
        try:
            written += draw(name, run_dirs, out)
        except FigureDataError as exc:
            skipped[name] = str(exc)
    return written, skipped


def _concat(runs: list[RunDir], table: str) -> pd.DataFrame:
    frames = [r.read_table(table, required=False) for r in runs]
    frames = [f for f in frames if not f.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _steps_of(metric: str) -> int | None:
    m = re.fullmatch(r"mse@(\d+)", str(metric))
    return int(m.group(1)) if m else None


# ---------------------------------------------------------------------------------------------------------


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
    benchmarks = list(dict.fromkeys(rows["benchmark"]))
    fig, axes = plt.subplots(1, len(benchmarks), figsize=(4.2 * len(benchmarks), 3.6), squeeze=False)
    palette = dict(zip(sorted(rows["algorithm"].unique()), sns.color_palette("colorblind")))
    for ax, bench in zip(axes[0], benchmarks):
        part = rows[rows["benchmark"] == bench]
        for algo, group in part.groupby("algorithm", sort=True):
            group = group.sort_values("steps")
            ax.plot(group["steps"], group["mean"], marker="o", ms=3, label=algo, color=palette[algo])
            ci = group["ci95"].fillna(0)
            ax.fill_between(group["steps"], group["mean"] - ci, group["mean"] + ci, alpha=0.2, color=palette[algo])
        ax.set_title(bench)
        ax.set_xlabel("gradient steps at test")
        ax.set_ylabel("MSE (mean ± 95% CI)")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(frameon=False)
    fig.tight_layout()
    return save(fig, out, "maml-sine-steps")


@figure("maml-sine-fits", "fits after 0, 1 and 10 steps on held-out tasks vs the true curve (MAML paper Fig. 2)")
def sine_fits(runs: list[RunDir], out: Path) -> list[Path]:
    fits = _concat(runs, "fits.csv")
    if fits.empty:
        raise FigureDataError("needs fits.csv from a sine run (metabench run --benchmark sine-k5 --benchmark sine-k10)")
    fits = fits[fits["task"] == 0]
    seed = sorted(fits["seed"].unique())[0]
    fits = fits[fits["seed"] == seed]
    benchmarks = list(dict.fromkeys(fits["benchmark"]))
    algos = [a for a in ("maml", "pretrain") if a in set(fits["algorithm"])] or sorted(fits["algorithm"].unique())
    fig, axes = plt.subplots(len(benchmarks), len(algos), figsize=(4.2 * len(algos), 3.2 * len(benchmarks)),
                             squeeze=False)
    colors = dict(zip([0, 1, 10], sns.color_palette("flare", 3)))
    for i, bench in enumerate(benchmarks):
        for j, algo in enumerate(algos):
            ax = axes[i][j]
            part = fits[(fits["benchmark"] == bench) & (fits["algorithm"] == algo)]
            truth = part[part["series"] == "truth"]
            ax.plot(truth["x"], truth["y"], color="black", lw=1.5, label="ground truth")
            for steps, group in part[part["series"] == "prediction"].groupby("steps"):
                ax.plot(group["x"], group["y"], ls="--", color=colors.get(steps, None),
                        label=f"after {steps} step{'s' if steps != 1 else ''}")
            support = part[part["series"] == "support"]
            ax.scatter(support["x"], support["y"], marker="^", color="tab:purple", zorder=3, label="support points")
            ax.set_title(f"{algo}, {bench}")
            ax.grid(alpha=0.3)
    axes[0][-1].legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return save(fig, out, "maml-sine-fits")


@figure("training-curves", "meta-training loss against iterations, per benchmark and algorithm")
def training_curves(runs: list[RunDir], out: Path) -> list[Path]:
    curves = _concat(runs, "curves.csv")
    if curves.empty:
        raise FigureDataError("needs curves.csv from any run")
    curves = curves[(curves["split"] == "train") & (curves["metric"] == "loss")]
    benchmarks = list(dict.fromkeys(curves["benchmark"]))
    fig, axes = plt.subplots(1, len(benchmarks), figsize=(4.2 * len(benchmarks), 3.4), squeeze=False)
    for ax, bench in zip(axes[0], benchmarks):
        sns.lineplot(data=curves[curves["benchmark"] == bench], x="iteration", y="value", hue="algorithm",
                     errorbar=("ci", 95), seed=0, ax=ax)
        ax.set_title(bench)
        ax.set_yscale("log")
        ax.set_ylabel("training loss")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return save(fig, out, "training-curves")
