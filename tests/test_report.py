"""`metabench report` and the figures over run folders: leaderboards with published columns, merging, grid
checks, the commit trend, and the paper tables. Most run folders here are written directly (no training)."""
import io
import json

import numpy as np
import pandas as pd
import pytest

from bench import plots, report, stats
from bench.cli import main
from bench.rundir import SUMMARY_COLUMNS

FAST = ["--set", "budget.meta_iters=20", "--set", "budget.test_episodes=30", "--set", "budget.validation_tasks=5",
        "--no-progress", "--no-figures"]
KINDS = {"sine": "regression", "omniglot": "classification", "miniimagenet": "classification", "mnist": "optimizer"}


def make_run(path, cells, commit="a" * 40, date="2026-01-01T00:00:00+00:00", failed=(), digest="d0"):
    """Write a run folder: `cells` maps (benchmark, algorithm, seed) -> {metric: per-episode values}."""
    path.mkdir(parents=True, exist_ok=True)
    rows = [{"benchmark": b, "algorithm": a, "seed": s, "episode": i, "metric": m, "value": float(v)}
            for (b, a, s), metrics in cells.items() for m, values in metrics.items() for i, v in enumerate(values)]
    episodes = pd.DataFrame(rows, columns=["benchmark", "algorithm", "seed", "episode", "metric", "value"])
    per_seed = stats.summarize_episodes(episodes).assign(train_seconds=12.5, eval_seconds=1.0, meta_iters=100,
                                                         status="ok", error="")
    per_seed["seeds"] = per_seed["seed"].astype(str)
    parts = [per_seed, stats.across_seeds(per_seed).assign(status="ok", error="", meta_iters=100, train_seconds=25.0)]
    parts += [pd.DataFrame([{"benchmark": b, "algorithm": a, "seed": s, "metric": "", "n": 0, "status": "failed",
                             "error": "RuntimeError: boom"} for b, a, s in failed])]
    pd.concat(parts, ignore_index=True).reindex(columns=SUMMARY_COLUMNS).to_csv(path / "summary.csv", index=False)
    episodes.to_csv(path / "episodes.csv", index=False)
    entries = [{"key": f"{b}/{a}/seed{s}", "benchmark": b, "algorithm": a, "seed": s,
                "status": "failed" if (b, a, s) in failed else "ok",
                "error": "RuntimeError: boom" if (b, a, s) in failed else "",
                "test_episode_digest": "" if (b, a, s) in failed else digest,
                "config": {"spec": {"kind": KINDS[b.split("-")[0]]}}}
               for b, a, s in [*cells, *failed]]
    manifest = {"run_id": path.name, "suite": "test", "profile": "smoke", "commit": commit, "dirty": False,
                "commit_date": date, "started": date, "cells": entries}
    (path / "manifest.json").write_text(json.dumps(manifest))
    return path


def sine(level, n=40, seed=0):
    """mse@0..10 for n episodes, decreasing with steps."""
    rng = np.random.default_rng(seed)
    base = rng.gamma(2.0, 1.0, size=n)
    return {f"mse@{s}": base * level * (1 - 0.05 * s) for s in range(11)}


def accuracy(mean, n=40, seed=0):
    return {"accuracy": np.clip(np.random.default_rng(seed).normal(mean, 4.0, size=n), 0, 100)}


def test_published_csv_has_one_primary_row_per_merge_key():
    table = pd.read_csv(report.PUBLISHED_CSV)
    assert list(table.columns) == ["paper", "table", "method", "algorithm", "benchmark", "setting", "metric", "value",
                                   "ci95", "notes", "primary"]
    primary = table[table["primary"] == 1]
    assert not primary.duplicated(["algorithm", "benchmark", "metric"]).any()
    assert set(table["primary"]) == {0, 1}
    # the numbers the issues quote, on the protocol rows
    key = primary.set_index(["algorithm", "benchmark", "metric"])["value"]
    assert key[("maml", "miniimagenet-5w5s", "accuracy")] == 63.11
    assert key[("fomaml", "miniimagenet-5w5s", "accuracy")] == 63.15
    assert key[("maml", "sine-k5", "mse@10")] == 0.35
    assert key[("protonet", "omniglot-5w1s", "accuracy")] == 98.8
    assert "transductive" in primary.set_index(["algorithm", "benchmark"]).loc[("maml", "miniimagenet-5w1s"), "notes"]
    from bench.readers import read_published as published_values
    assert len(published_values()) == len(primary)


def test_markdown_leaderboard_has_published_columns(tmp_path, capsys):
    run = make_run(tmp_path / "run", {("sine-k5", "maml", 0): sine(0.5), ("sine-k5", "pretrain", 0): sine(3.0),
                                      ("omniglot-5w1s", "maml", 0): accuracy(98.5)})
    assert main(["report", str(run), "--format", "md"]) == 0
    out = capsys.readouterr().out
    assert "## sine-k5" in out and "## omniglot-5w1s" in out
    maml_rows = [line for line in out.splitlines() if line.startswith("| maml | mse@")]
    assert [r.split(" | ")[1] for r in maml_rows] == ["mse@1", "mse@5", "mse@10"]  # the paper's columns only
    assert "| 0.67 |" in maml_rows[0]
    line = next(line for line in out.splitlines() if line.startswith("| maml | accuracy"))
    assert "98.7 ± 0.4" in line and ("| yes |" in line or "| no |" in line)
    assert "Finn et al. 2017 (MAML)" in out
    # ranked: lower MSE first
    sine_algos = [line.split(" | ")[0][2:] for line in out.split("## sine-k5")[1].split("##")[0].splitlines()
                  if line.startswith("| ") and "mse@10" in line]
    assert sine_algos == ["maml", "pretrain"]


def test_csv_has_every_step_and_html_renders(tmp_path, capsys):
    run = make_run(tmp_path / "run", {("sine-k5", "maml", 0): sine(0.5)})
    assert main(["report", str(run), "--format", "csv"]) == 0
    table = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert sorted(table["metric"]) == sorted(f"mse@{s}" for s in range(11))
    assert table.loc[table["metric"] == "mse@1", "paper_value"].item() == 0.67
    out = tmp_path / "board.html"
    assert main(["report", str(run), "--format", "html", "--out", str(out)]) == 0
    assert "<table" in out.read_text() and "sine-k5" in out.read_text()


def test_later_folder_wins_and_seeds_from_several_folders_merge(tmp_path, capsys):
    a = make_run(tmp_path / "a", {("sine-k5", "maml", 0): sine(2.0), ("sine-k5", "maml", 1): sine(2.0, seed=1)})
    b = make_run(tmp_path / "b", {("sine-k5", "maml", 0): sine(1.0)})
    merged = report.merge_runs([a, b])
    assert any("seed0" in line and str(b) in line for line in merged.replaced)
    board = report.leaderboard(merged, every_metric=True).set_index("metric")
    assert board.loc["mse@10", "ci_method"] == "t-seeds" and board.loc["mse@10", "n"] == 2
    expected = (sine(1.0)["mse@10"].mean() + sine(2.0, seed=1)["mse@10"].mean()) / 2
    assert np.isclose(board.loc["mse@10", "mean"], expected)
    assert main(["report", str(a), str(b)]) == 0
    assert "replaces" in capsys.readouterr().err


def test_incomplete_grid_is_a_warning_and_an_error_with_strict(tmp_path, capsys):
    run = make_run(tmp_path / "run", {("sine-k5", "maml", 0): sine(1.0), ("sine-k5", "maml", 1): sine(1.0),
                                      ("sine-k5", "reptile", 0): sine(1.0), ("sine-k10", "maml", 0): sine(1.0)},
                   failed=[("sine-k10", "reptile", 0)])
    assert main(["report", str(run)]) == 0
    err = capsys.readouterr().err
    assert "incomplete grid" in err and "sine-k5/reptile/seed1" in err and "sine-k10/reptile/seed0" in err
    assert main(["report", str(run), "--strict"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--strict" in err and "sine-k10/maml/seed1" in err


def test_kinds_keep_the_grid_honest(tmp_path, capsys):
    # protonet only runs on images: its absence on sine is not a hole in the grid
    run = make_run(tmp_path / "run", {("sine-k5", "maml", 0): sine(1.0), ("omniglot-5w1s", "maml", 0): accuracy(90),
                                      ("omniglot-5w1s", "protonet", 0): accuracy(95)})
    assert main(["report", str(run), "--strict"]) == 0


def test_unusable_folders_are_one_line_errors(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nope")]) == 2
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "manifest.json" in capsys.readouterr().err


def test_trend_over_commits(tmp_path, capsys):
    runs = [make_run(tmp_path / f"r{i}", {("sine-k5", "maml", 0): sine(1.0 + i), ("sine-k5", "reptile", 0): sine(2.0)},
                     commit=f"{i}" * 40, date=f"2026-01-0{3 - i}T00:00:00+00:00") for i in range(3)]
    out = tmp_path / "trend"
    assert main(["report", *map(str, runs), "--trend", "--out", str(out)]) == 0
    assert (out / "trend.png").is_file() and (out / "trend.pdf").is_file() and (out / "report.md").is_file()
    table = pd.read_csv(out / "trend.csv")
    maml = table[table["algorithm"] == "maml"].sort_values("position")
    assert maml["commit"].astype(str).str[:1].tolist() == ["2", "1", "0"]  # ordered by commit date
    assert set(table["metric"]) == {"mse@10"}


def test_end_to_end_on_a_real_run(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "--benchmark", "sine-k5", "--algorithm", "maml", "--algorithm", "pretrain", "--profile",
                 "smoke", "--out", str(out), *FAST]) == 0
    capsys.readouterr()
    assert main(["report", str(out), "--strict"]) == 0
    md = capsys.readouterr().out
    assert "| 2.41 |" in md and "| 0.35 |" in md
    assert main(["figures", "reptile-vs-maml-vs-pretrain", "--from", str(out), "--out", str(tmp_path / "f")]) == 2
    assert "--algorithm reptile" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------
# figures


def test_figure_list_has_every_name(capsys):
    assert main(["figures", "--list"]) == 0
    listed = capsys.readouterr().out
    for name in ("maml-sine-fits", "maml-sine-steps", "omniglot-table", "miniimagenet-table",
                 "reptile-vs-maml-vs-pretrain", "l2l-mnist-curves", "metalstm-gates"):
        assert name in listed


def test_omniglot_table_figure_with_published_values(tmp_path):
    run = make_run(tmp_path / "run", {("omniglot-5w1s", "maml", 0): accuracy(97.0),
                                      ("omniglot-20w1s", "maml", 0): accuracy(90.0),
                                      ("omniglot-5w1s", "protonet", 0): accuracy(98.0)})
    paths = plots.draw("omniglot-table", [run], tmp_path / "fig")
    assert {p.suffix for p in paths} == {".png", ".pdf", ".csv", ".md", ".tex", ".json"}  # .json: provenance
    md = (tmp_path / "fig" / "omniglot-table.md").read_text()
    assert "(98.7 ± 0.4)" in md and "(98.8)" in md and "omniglot-20w1s" in md
    with pytest.raises(plots.FigureDataError, match="miniimagenet"):
        plots.draw("miniimagenet-table", [run], tmp_path / "fig")


def test_reptile_vs_maml_vs_pretrain_figure(tmp_path):
    run = make_run(tmp_path / "run", {("sine-k10", a, 0): sine(level) for a, level in
                                      (("maml", 0.5), ("reptile", 0.6), ("pretrain", 3.0))})
    paths = plots.draw("reptile-vs-maml-vs-pretrain", [run], tmp_path / "fig")
    assert all(p.is_file() and p.stat().st_size > 0 for p in paths) and len(paths) == 3  # png, pdf, provenance


@pytest.mark.parametrize("name,needs", [("l2l-mnist-curves", "lstm-optimizer"), ("metalstm-gates", "meta-lstm")])
def test_optimizer_figures_say_which_run_they_need(tmp_path, name, needs):
    run = make_run(tmp_path / "run", {("sine-k5", "maml", 0): sine(1.0)})
    with pytest.raises(plots.FigureDataError, match=needs):
        plots.draw(name, [run], tmp_path / "fig")


def test_l2l_curves_and_gate_figures_from_their_csvs(tmp_path):
    curves = {f"loss@{t}": np.full(20, 2.0 / (t + 1)) + np.random.default_rng(t).random(20) * 0.01
              for t in range(0, 100, 10)}
    run = make_run(tmp_path / "run", {("mnist-base", "adam", 0): {**curves, "final_loss": curves["loss@90"]},
                                      ("mnist-base", "lstm-optimizer", 0): curves})
    assert len(plots.draw("l2l-mnist-curves", [run], tmp_path / "fig")) == 3
    gates = pd.DataFrame([{"algorithm": "meta-lstm", "episode": e, "layer": layer, "step": s, "gate": g,
                           "value": 0.5 + 0.01 * s} for e in range(3) for layer in (1, 2) for s in range(5)
                          for g in ("input", "forget")])
    gates.to_csv(run / "gates.csv", index=False)
    assert len(plots.draw("metalstm-gates", [run], tmp_path / "fig")) == 3
