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


# ---------------------------------------------------------------------------------------------------------
# leaderboard tables and the comparisons of the lecture (bench.report merges the runs' summary.csv)


def _leaderboard(runs: list[RunDir], needs: str):
    from bench import report
    from bench.rundir import RunDirError

    try:
        merged = report.merge_runs([r.path for r in runs])
    except RunDirError as exc:
        raise FigureDataError(f"{needs} ({exc})") from None
    return report.leaderboard(merged, every_metric=True)


def _paper_table(runs: list[RunDir], out: Path, name: str, prefix: str, needs: str) -> list[Path]:
    """Our accuracy ± CI with the published value ± CI under it, one row per algorithm, one column per setting;
    drawn as a figure and also written as CSV and markdown."""
    from bench import report

    board = _leaderboard(runs, needs)
    board = board[board["benchmark"].astype(str).str.startswith(prefix) & (board["metric"] == "accuracy")] \
        if not board.empty else board
    if board.empty:
        raise FigureDataError(needs)
    benchmarks = [b for b in report.SETTING_ORDER if b in set(board["benchmark"])] + \
        sorted(set(board["benchmark"]) - set(report.SETTING_ORDER))
    cell = {(r.algorithm, r.benchmark): r for r in board.itertuples()}
    # rows best-first on the leftmost setting an algorithm has (the papers sort by the 1-shot column)
    first = {a: next(i for i, b in enumerate(benchmarks) if (a, b) in cell) for a in board["algorithm"].unique()}
    algos = sorted(first, key=lambda a: (first[a], -cell[(a, benchmarks[first[a]])].mean))

    def text(a, b):
        r = cell.get((a, b))
        if r is None:
            return "–"
        ours = report.plus_minus(r.mean, r.ci95)
        return ours + (f"\n({report.plus_minus(r.paper_value, r.paper_ci95, measured=False)})"
                       if pd.notna(r.paper_value) else "")

    grid = [[text(a, b) for b in benchmarks] for a in algos]
    fig, ax = plt.subplots(figsize=(1.9 * len(benchmarks) + 1.6, 0.55 * len(algos) + 1.0))
    ax.axis("off")
    table = ax.table(cellText=grid, rowLabels=algos, colLabels=benchmarks, loc="center", cellLoc="center")
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    table.scale(1.0, 2.2)
    ax.set_title("accuracy %, ours (published) — mean ± 95% CI", fontsize=9)
    paths = save(fig, out, name)
    tidy = board[["benchmark", "algorithm", "mean", "ci95", "n", "ci_method", "paper_value", "paper_ci95", "delta",
                  "inside_paper_ci", "paper", "table"]]
    csv_path, md_path = out / f"{name}.csv", out / f"{name}.md"
    report.atomic_write_csv(csv_path, tidy)
    rows = ["| algorithm | " + " | ".join(benchmarks) + " |", "|---" * (len(benchmarks) + 1) + "|"]
    rows += [f"| {a} | " + " | ".join(t.replace("\n", " ") for t in line) + " |" for a, line in zip(algos, grid)]
    report.atomic_write_text(md_path, "Accuracy %, ours (published), mean ± 95% CI\n\n" + "\n".join(rows) + "\n")
    return paths + [csv_path, md_path]


@figure("omniglot-table", "Omniglot accuracy ± CI per algorithm and setting, published value beside ours (+ CSV, md)")
def omniglot_table(runs: list[RunDir], out: Path) -> list[Path]:
    return _paper_table(runs, out, "omniglot-table", "omniglot-",
                        "needs accuracy rows from an Omniglot run (metabench run --benchmark 'omniglot-*' "
                        "--algorithm maml --algorithm protonet ...)")


@figure("miniimagenet-table", "Mini-ImageNet accuracy ± CI per algorithm and setting beside the published value (+ CSV, md)")
def miniimagenet_table(runs: list[RunDir], out: Path) -> list[Path]:
    return _paper_table(runs, out, "miniimagenet-table", "miniimagenet-",
                        "needs accuracy rows from a Mini-ImageNet run (metabench run --benchmark 'miniimagenet-*' "
                        "--algorithm maml --algorithm protonet ...)")


@figure("reptile-vs-maml-vs-pretrain", "sine MSE against test-time steps: MAML, Reptile and pre-training (the worst curve)")
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
    rows["steps"] = rows["metric"].map(_steps_of)
    colors = dict(zip(trio, sns.color_palette("colorblind", 3)))
    fig, axes = plt.subplots(1, len(benchmarks), figsize=(4.2 * len(benchmarks), 3.6), squeeze=False)
    for ax, bench in zip(axes[0], benchmarks):
        for algo in trio:
            g = rows[(rows["benchmark"] == bench) & (rows["algorithm"] == algo)].sort_values("steps")
            ci = g["ci95"].fillna(0)
            ax.plot(g["steps"], g["mean"], marker="o", ms=3, label=algo, color=colors[algo],
                    ls="--" if algo == "pretrain" else "-")
            ax.fill_between(g["steps"], g["mean"] - ci, g["mean"] + ci, alpha=0.2, color=colors[algo])
        ax.set_title(bench)
        ax.set_xlabel("gradient steps at test")
        ax.set_ylabel("MSE (mean ± 95% CI)")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(frameon=False)
    fig.tight_layout()
    return save(fig, out, "reptile-vs-maml-vs-pretrain")


@figure("l2l-mnist-curves", "learned vs hand-designed optimizers: MNIST loss against steps, mean ± 95% CI over test runs")
def l2l_mnist_curves(runs: list[RunDir], out: Path) -> list[Path]:
    needs = ("needs loss@T rows from the learned-optimizer benchmarks (metabench run --benchmark 'mnist-*' "
             "--algorithm lstm-optimizer --algorithm sgd --algorithm rmsprop --algorithm adam --algorithm nag)")
    rows = _leaderboard(runs, needs)
    if not rows.empty:
        rows = rows[rows["metric"].astype(str).str.fullmatch(r"loss@\d+")].copy()
    if rows.empty:
        raise FigureDataError(needs)
    rows["step"] = rows["metric"].str.slice(5).astype(int)
    # the paper's order: the training problem first, then the transfer tests
    order = ["mnist-base", "mnist-200steps", "mnist-40units", "mnist-2layers", "mnist-relu"]
    present = list(dict.fromkeys(rows["benchmark"]))
    benchmarks = [b for b in order if b in present] + [b for b in present if b not in order]
    palette = dict(zip(sorted(rows["algorithm"].unique()), sns.color_palette("colorblind", rows["algorithm"].nunique())))
    fig, axes = plt.subplots(1, len(benchmarks), figsize=(4.2 * len(benchmarks), 3.6), squeeze=False)
    for ax, bench in zip(axes[0], benchmarks):
        for algo, g in rows[rows["benchmark"] == bench].groupby("algorithm", sort=True):
            g = g.sort_values("step")
            ci = g["ci95"].fillna(0)
            ax.plot(g["step"], g["mean"], label=algo, color=palette[algo],
                    ls="-" if "lstm" in algo else "--")  # learned solid, hand-designed dashed
            ax.fill_between(g["step"], (g["mean"] - ci).clip(lower=1e-12), g["mean"] + ci, alpha=0.2, color=palette[algo])
        ax.set_title(bench)
        ax.set_yscale("log")
        ax.set_xlabel("optimizee step")
        ax.set_ylabel("training loss (mean ± 95% CI)")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(frameon=False, fontsize=8)
    fig.tight_layout()
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
    fig, axes = plt.subplots(len(gate_names), len(layers), figsize=(2.6 * len(layers), 2.4 * len(gate_names)),
                             squeeze=False, sharey=True)
    # the paper draws one thin line per episode; 20 episodes keep the figure readable
    episodes = sorted(gates["episode"].unique())[:20]
    shown = gates[gates["episode"].isin(episodes)]
    keys = [k for k in ("benchmark", "seed", "algorithm") if k in shown.columns]
    series = list(dict.fromkeys(zip(*(shown[k] for k in keys)))) if keys else [()]
    colours = dict(zip(series, sns.color_palette("colorblind", max(1, len(series)))))
    for i, name in enumerate(gate_names):
        for j, layer in enumerate(layers):
            ax = axes[i][j]
            part = shown[(shown["gate"] == name) & (shown["layer"] == layer)]
            for key, g in part.groupby(keys + ["episode"], sort=False):
                ax.plot(g["step"], g["value"], lw=0.8, alpha=0.6, color=colours.get(tuple(key[:-1])),
                        label="/".join(map(str, key[:-1])) if key[-1] == episodes[0] else None)
            ax.set_title(f"{name} gate, layer {layer}", fontsize=8)
            ax.set_ylim(0, 1.1)
            ax.grid(alpha=0.3)
        axes[i][0].set_ylabel("gate value (layer mean)")
    for ax in axes[-1]:
        ax.set_xlabel("update")
    if len(series) > 1:
        axes[0][-1].legend(frameon=False, fontsize=6)
    fig.tight_layout()
    return save(fig, out, "metalstm-gates")


@figure("l2l-gated-gates", "gated LSTM optimizer: input gate (learned learning rate) and forget gate (learned decay) "
                           "across steps, per parameter tensor, mean ± 95% CI over test runs")
def l2l_gated_gates(runs: list[RunDir], out: Path) -> list[Path]:
    needs = ("needs optimizer_gates.csv (columns benchmark, episode, layer, step, gate, value) from a "
             "gated-lstm-optimizer run (metabench run --benchmark 'mnist-*' --algorithm gated-lstm-optimizer)")
    gates = _concat(runs, "optimizer_gates.csv")
    if gates.empty or not {"benchmark", "episode", "layer", "step", "gate", "value"} <= set(gates.columns):
        raise FigureDataError(needs)
    order = ["mnist-base", "mnist-200steps", "mnist-40units", "mnist-2layers", "mnist-relu"]
    present = list(dict.fromkeys(gates["benchmark"]))
    benchmarks = [b for b in order if b in present] + [b for b in present if b not in order]
    gate_names = [g for g in ("input", "forget") if g in set(gates["gate"])]
    layers = list(dict.fromkeys(gates["layer"]))
    palette = dict(zip(layers, sns.color_palette("colorblind", len(layers))))
    fig, axes = plt.subplots(len(gate_names), len(benchmarks), figsize=(3.6 * len(benchmarks), 2.8 * len(gate_names)),
                             squeeze=False)
    for i, name in enumerate(gate_names):
        for j, bench in enumerate(benchmarks):
            ax = axes[i][j]
            part = gates[(gates["benchmark"] == bench) & (gates["gate"] == name)]
            for layer in layers:
                g = part[part["layer"] == layer].groupby("step")["value"]
                if not len(g):
                    continue
                mean, ci = g.mean(), g.apply(stats.ci95_normal).fillna(0)
                ax.plot(mean.index, mean.values, lw=1.2, color=palette[layer], label=str(layer))
                ax.fill_between(mean.index, mean - ci, mean + ci, alpha=0.2, color=palette[layer])
            ax.set_title(f"{bench}: {name} gate", fontsize=9)
            ax.grid(alpha=0.3)
            if name == "forget":
                ax.set_ylabel("f_t (1 = no decay)")
            else:
                ax.set_ylabel("i_t (learned lr)")
        axes[i][0].legend(frameon=False, fontsize=7, title="tensor", title_fontsize=7)
    for ax in axes[-1]:
        ax.set_xlabel("optimizee step")
    fig.tight_layout()
    return save(fig, out, "l2l-gated-gates")
