"""The speed gate: `metabench perf --quick` folders and `metabench compare --perf` (exit 0 ok, 1 a regression
naming the step, 2 unusable). The statistics run on synthetic perf.csv files (deterministic); one test measures
for real, in-process: MAML's meta-training step made 30% slower must give exit 1 naming that step."""
import json

import numpy as np
import pandas as pd
import pytest

from bench import perfgate
from bench.cli import main

STEPS = ["train/maml/omniglot-5w1s", "train/protonet/omniglot-5w1s", "eval/protonet/omniglot-5w1s",
         "reference/maml-textbook-loop"]
MEDIANS = {"train/maml/omniglot-5w1s": 0.9, "train/protonet/omniglot-5w1s": 0.4, "eval/protonet/omniglot-5w1s": 1.1,
           "reference/maml-textbook-loop": 4.0}


def write_perf(folder, seed: int, scale: dict | None = None, repeats: int = 8, noise: float = 0.03,
               steps=STEPS, **columns):
    """A perf folder as `metabench perf` writes it: every repeat's ratio, lognormal noise around fixed medians."""
    rng = np.random.default_rng(seed)
    rows = []
    for step in steps:
        for i in range(repeats):
            ratio = MEDIANS.get(step, 1.0) * (scale or {}).get(step, 1.0) * float(np.exp(rng.normal(0, noise)))
            reference = 0.15 * float(np.exp(rng.normal(0, 0.2)))  # the machine's speed: cancels in the ratio
            rows.append({"step": step, "repeat": i, "calls": 1, "seconds": ratio * reference,
                         "reference_seconds": reference, "ratio": ratio, "cpu_seconds": ratio * reference,
                         "reference_cpu_seconds": reference, "cpu_ratio": ratio, "unit": "meta-iterations",
                         "work": 1, "peak_rss_mb": 900.0, "step_peak_mb": 2.0, "memory_method": "VmHWM reset per step",
                         "size": "quick", "threads": 1, "device": "cpu",
                         "reference": "small" if step.startswith("eval/") else "conv", **columns})
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(folder / "perf.csv", index=False)
    return folder


def test_a_rerun_passes_and_a_slower_step_fails_naming_it(tmp_path, capsys):
    base = write_perf(tmp_path / "base", 0)
    assert main(["compare", "--perf", str(base), str(write_perf(tmp_path / "rerun", 1))]) == 0
    assert "REGRESSION" not in capsys.readouterr().out
    slow = write_perf(tmp_path / "slow", 2, {"train/maml/omniglot-5w1s": 1.2})
    assert main(["compare", "--perf", str(base), str(slow)]) == 1
    err = capsys.readouterr().err
    assert "regression: train/maml/omniglot-5w1s is +" in err and "protonet" not in err
    # the other way round it is faster: reported, never gated
    assert main(["compare", "--perf", str(slow), str(base)]) == 0
    assert "faster" in capsys.readouterr().out


def test_a_slowdown_below_the_threshold_or_without_significance_passes(tmp_path):
    base = write_perf(tmp_path / "base", 0)
    # significant but small: 5% < 10%
    assert main(["compare", "--perf", str(base), str(write_perf(tmp_path / "a", 3, {STEPS[0]: 1.05}))]) == 0
    # large but drowned in noise (two repeats 10x slow are not a median shift)
    noisy = write_perf(tmp_path / "b", 4, noise=0.03)
    table = pd.read_csv(noisy / "perf.csv")
    table.loc[(table["step"] == STEPS[0]) & (table["repeat"] < 2), ["ratio", "cpu_ratio"]] *= 10
    table.to_csv(noisy / "perf.csv", index=False)
    assert main(["compare", "--perf", str(base), str(noisy)]) == 0
    # --max-slowdown moves the threshold
    slow = write_perf(tmp_path / "c", 5, {STEPS[0]: 1.2})
    assert main(["compare", "--perf", str(base), str(slow), "--max-slowdown", "0.3"]) == 0


def test_compare_step_statistics():
    rng = np.random.default_rng(0)
    base = np.full(8, 1.0) * np.exp(rng.normal(0, 0.02, 8))
    row = perfgate.compare_step(base, base * 1.3, 0.1, 0.05, np.random.default_rng(0))
    assert row["verdict"] == "slower" and row["p"] < 1e-3 and row["ci_low"] > 0.2
    assert perfgate.compare_step(base, base.copy(), 0.1, 0.05, np.random.default_rng(0))["verdict"] == "ok"


def test_markdown_and_json_for_a_pull_request(tmp_path, capsys):
    base = write_perf(tmp_path / "base", 0)
    slow = write_perf(tmp_path / "slow", 2, {STEPS[0]: 1.25})
    assert main(["compare", "--perf", str(base), str(slow), "--format", "md"]) == 1
    text = capsys.readouterr().out
    assert text.startswith("**metabench compare --perf**: 4 step(s), **1 regression(s)**")
    flagged = text.split("<details>")[0]
    assert "| train/maml/omniglot-5w1s |" in flagged and "REGRESSION" in flagged and "protonet" not in flagged
    assert main(["compare", "--perf", str(base), str(slow), "--format", "json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["regressions"] == ["train/maml/omniglot-5w1s"] and data["steps"] == 4
    assert {r["step"] for r in data["rows"]} == set(STEPS)


@pytest.mark.parametrize("case", ["missing-folder", "no-csv", "old-format", "fewer-steps", "more-steps",
                                  "other-threads", "too-few-repeats"])
def test_unusable_inputs_exit_2_with_one_line(tmp_path, capsys, case):
    base = write_perf(tmp_path / "base", 0)
    new = tmp_path / "new"
    if case == "missing-folder":
        pass
    elif case == "no-csv":
        new.mkdir()
    elif case == "old-format":  # the summary table `metabench perf` wrote before the gate
        new.mkdir()
        pd.DataFrame({"measure": ["maml"], "unit": ["tasks/s"], "value": [27.0], "ratio": [2.5]}).to_csv(
            new / "perf.csv", index=False)
    elif case == "fewer-steps":
        write_perf(new, 1, steps=STEPS[:-1])
    elif case == "more-steps":
        write_perf(new, 1, steps=[*STEPS, "train/reptile/omniglot-5w1s"])
    elif case == "other-threads":
        write_perf(new, 1, threads=2)
    elif case == "too-few-repeats":
        write_perf(new, 1, repeats=3)
    assert main(["compare", "--perf", str(base), str(new)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("metabench: error: ")
    if case in ("fewer-steps", "more-steps"):
        assert "reference/maml-textbook-loop" in err[0] or "train/reptile" in err[0]


def test_injected_slowdown_parsing():
    from bench import perf

    assert perf.injected_slowdowns("train/maml/*=0.3, eval/*=0.1") == {"train/maml/*": 0.3, "eval/*": 0.1}
    assert perf.injected_slowdowns("") == {}
    with pytest.raises(ValueError, match="GLOB=FRACTION"):
        perf.injected_slowdowns("train/maml/*")


def test_a_slower_maml_step_measured_for_real_fails_the_gate(tmp_path, monkeypatch, capsys):
    """In-process, as a commit would: MAML's meta_train_step does 30% more work (a busy-wait of 30% of its own
    time), and the gate, on real timings of this (busy) machine, exits 1 naming that step."""
    import algorithms
    from bench import perf
    from bench.rundir import atomic_write_csv

    picked = ["train/maml/omniglot-5w1s", "reference/maml-textbook-loop"]
    base = perf.run("quick", repeats=7, patterns=picked, progress=False)  # one thread, as the CI gate
    maml = algorithms.get("maml")
    original = maml.meta_train_step

    def slower(self, batch):
        tic = perf.time.thread_time()
        out = original(self, batch)
        perf.spin(0.3 * (perf.time.thread_time() - tic))
        return out

    monkeypatch.setattr(maml, "meta_train_step", slower)
    new = perf.run("quick", repeats=7, patterns=picked, progress=False)
    for name, table in (("base", base), ("new", new)):
        (tmp_path / name).mkdir()
        atomic_write_csv(tmp_path / name / "perf.csv", table)
    assert main(["compare", "--perf", str(tmp_path / "base"), str(tmp_path / "new")]) == 1
    err = capsys.readouterr().err
    assert "regression: train/maml/omniglot-5w1s" in err and "reference/maml-textbook-loop is" not in err


def test_a_baseline_of_several_runs_allows_each_step_its_run_to_run_noise(tmp_path, capsys):
    """Subfolders with perf.csv are pooled; the spread of their per-run medians widens a noisy step's allowance
    (run-level drift that the repeats of one run cannot show) and leaves a steady step at --max-slowdown."""
    noisy = "eval/protonet/omniglot-5w1s"
    for run, shift in enumerate([0.85, 1.0, 1.15, 0.95, 1.08]):
        write_perf(tmp_path / "base" / f"run-{run + 1}", run, {noisy: shift}, noise=0.01)
    new = write_perf(tmp_path / "new", 9, {noisy: 1.14, STEPS[0]: 1.14}, noise=0.01)
    assert main(["compare", "--perf", str(tmp_path / "base"), str(new), "--format", "json"]) == 1
    rows = {r["step"]: r for r in json.loads(capsys.readouterr().out)["rows"]}
    assert rows[noisy]["allowed"] > 0.2 and rows[noisy]["verdict"] == "ok"
    assert rows[STEPS[0]]["allowed"] == pytest.approx(0.10, abs=0.02) and rows[STEPS[0]]["verdict"] == "slower"
    assert rows[STEPS[0]]["n_baseline"] == 40  # 5 runs x 8 repeats, pooled


def test_step_filter_compares_a_re_measurement_of_flagged_steps(tmp_path, capsys):
    base = write_perf(tmp_path / "base", 0)
    again = write_perf(tmp_path / "again", 1, {STEPS[0]: 1.3}, steps=[STEPS[0]])
    assert main(["compare", "--perf", str(base), str(again)]) == 2  # different step sets without --step
    capsys.readouterr()
    assert main(["compare", "--perf", str(base), str(again), "--step", STEPS[0]]) == 1
    assert main(["compare", "--perf", str(base), str(again), "--step", "nothing/*"]) == 2
