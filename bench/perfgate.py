"""`metabench compare --perf BASELINE_DIR NEW_DIR`: the speed gate over two `metabench perf` folders.

Each folder's perf.csv holds, per step, every repeat's ratio of the step's time to a reference workload timed
just before and just after it in the same process (bench/perf.py), so the machine's speed and load cancel. Per
step the gate compares the two sets of ratios:

- the change: median(new ratios) / median(baseline ratios) - 1 (positive = slower), with a 95% percentile
  bootstrap interval (resampling each side's repeats; fixed seed, so the same inputs print the same interval);
- a one-sided Mann-Whitney U test of "new ratios are larger" (scipy.stats.mannwhitneyu): rank-based, so the
  odd repeat that a busy machine stretches tenfold moves it no more than any other slow repeat.

A step is a regression when it is slower by more than its allowance AND the test gives p < --alpha. The
allowance is the larger of --max-slowdown (default 10%) and NOISE_SIGMAS times the run-to-run noise of its kind
of step: a baseline folder may pool several runs (subfolders with perf.csv), and the spread of their per-step
medians, pooled over the steps that share a reference workload, is that noise. The repeats of one run cannot
show it: on this busy 2-core machine whole runs drifted by 5-25% per step (load, memory layout, which workloads
ran beside), far beyond the spread within a run, so a Mann-Whitney test alone flagged unchanged code in most
reruns (docs/performance.md). Faster steps are reported, never gated.

Exit codes, as for the accuracy gate: 0 no regression, 1 some step regressed (each named on stderr), 2 the folders
cannot be compared (missing or unreadable perf.csv, different step sets, sizes, thread counts or clocks).
"""
from __future__ import annotations

import fnmatch
import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as sps

from bench.rundir import RunDirError, provenance_differences

EXIT_OK, EXIT_REGRESSION, EXIT_UNUSABLE = 0, 1, 2
DEFAULT_MAX_SLOWDOWN = 0.10
DEFAULT_ALPHA = 0.05
# cpu: process CPU time. On this busy 2-core machine its ratios drifted less between reruns than wall time's,
# which also counts the slices other processes ran in (docs/performance.md, experiments/perf-gate/).
DEFAULT_CLOCK = "cpu"
CLOCK_COLUMNS = {"wall": "ratio", "cpu": "cpu_ratio"}
MIN_REPEATS = 5
# one-sided, per step: with ~30 steps and normal run-to-run noise, 3 sigmas leave ~4% of unchanged runs with a false
# alarm somewhere; the measured rate is in docs/performance.md
NOISE_SIGMAS = 3.0
BOOTSTRAP = 2000
NEEDED = {"step", "repeat", "seconds", "reference_seconds", "ratio"}


class PerfGateError(RunDirError):
    """The two folders cannot be compared (reported as one line, exit 2)."""


def load(path: Path) -> tuple[pd.DataFrame, dict]:
    """A perf folder's rows, or the pooled rows of its subfolders' perf.csv (a baseline of several runs: each
    process meets its own load and memory layout, and one run's luck would otherwise be the baseline's)."""
    path = Path(path)
    if not path.is_dir():
        raise PerfGateError(f"{path} is not a folder; pass folders written by `metabench perf --quick --out DIR`")
    if not (path / "perf.csv").is_file():
        runs = sorted(p.parent for p in path.glob("*/perf.csv"))
        if not runs:
            raise PerfGateError(
                f"{path / 'perf.csv'} does not exist; make it with `metabench perf --quick --out {path}`"
            )
        loaded = [_load_one(run) for run in runs]
        table = pd.concat([t.assign(run=run.name) for run, (t, _) in zip(runs, loaded)], ignore_index=True)
        return table, loaded[0][1]
    return _load_one(path)


def _load_one(path: Path) -> tuple[pd.DataFrame, dict]:
    csv = path / "perf.csv"
    try:
        table = pd.read_csv(csv)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise PerfGateError(f"{csv} is unreadable ({type(exc).__name__}); rerun `metabench perf`") from None
    missing = NEEDED - set(table.columns)
    if missing:
        raise PerfGateError(f"{csv} lacks column(s) {', '.join(sorted(missing))}: it was written by an older "
                            f"`metabench perf` (one row per measure); remake it with `metabench perf --quick`")
    manifest = {}
    if (path / "manifest.json").is_file():
        try:
            manifest = json.loads((path / "manifest.json").read_text())
        except ValueError:
            raise PerfGateError(f"{path / 'manifest.json'} is not valid JSON; rerun `metabench perf`") from None
    return table, manifest


def check_comparable(base: pd.DataFrame, new: pd.DataFrame, base_path: Path, new_path: Path, clock: str) -> None:
    """Raise PerfGateError naming every difference that makes the ratios incomparable."""
    problems = []
    sb, sn = list(dict.fromkeys(base["step"])), list(dict.fromkeys(new["step"]))
    gone, extra = [s for s in sb if s not in sn], [s for s in sn if s not in sb]
    if gone:
        problems.append(f"step(s) missing in NEW {new_path}: {_few(gone)}")
    if extra:
        problems.append(f"step(s) not in BASELINE {base_path}: {_few(extra)} (remake the baseline when steps are "
                        f"added on purpose)")
    for column, what in (("size", "size (--size)"), ("threads", "thread count (--threads)"), ("device", "device")):
        if column in base.columns and column in new.columns:
            a, b = sorted(set(base[column].astype(str))), sorted(set(new[column].astype(str)))
            if a != b:
                problems.append(f"different {what}: BASELINE {', '.join(a)}, NEW {', '.join(b)}")
    column = CLOCK_COLUMNS[clock]
    for label, table, path in (("BASELINE", base, base_path), ("NEW", new, new_path)):
        if column not in table.columns:
            problems.append(f"{label} {path}/perf.csv has no {column} column for --clock {clock}; use --clock wall "
                            f"or remake it")
            continue
        counts = table.groupby("step")[column].apply(lambda v: int(np.isfinite(v).sum()))
        if "run" in table.columns:  # pooled runs must each time the same steps
            sets = {run: frozenset(g["step"]) for run, g in table.groupby("run")}
            if len(set(sets.values())) > 1:
                problems.append(f"{label} {path}: its runs ({', '.join(sets)}) timed different steps")
        short = [s for s, c in counts.items() if c < MIN_REPEATS]
        if short:
            problems.append(f"{label} has fewer than {MIN_REPEATS} repeats for {_few(short)}")
    if problems:
        raise PerfGateError(f"cannot compare {base_path} with {new_path}: " + "; ".join(problems))


def _few(names: list[str], limit: int = 5) -> str:
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def run_noise(base: pd.DataFrame, column: str) -> dict[str, tuple[float, int]]:
    """Per step: the standard deviation of log(per-run median ratio) across the baseline's runs, and the number of
    runs; empty for a one-run baseline. A few runs estimate one step's spread poorly, so it is shrunk halfway (in
    variance) to the pooled spread of the steps that share its reference workload; steps that are noisier than
    their kind keep part of their own, larger spread."""
    if "run" not in base.columns or base["run"].nunique() < 2:
        return {}
    runs = int(base["run"].nunique())
    kinds = base["reference"] if "reference" in base.columns else pd.Series("all", index=base.index)
    medians = base.assign(kind=kinds).groupby(["kind", "step", "run"])[column].median().map(np.log)
    deviations = medians - medians.groupby(level=["kind", "step"]).transform("mean")
    step_var = (deviations ** 2).groupby(level=["kind", "step"]).sum() / (runs - 1)
    kind_var = step_var.groupby(level="kind").mean()
    out = {}
    for (kind, step), var in step_var.items():
        out[step] = (float(np.sqrt(0.5 * (var + kind_var[kind]))), runs)
    return out


def allowance(max_slowdown: float, noise: tuple[float, int] | None) -> float:
    """The slowdown a step may show without counting: max_slowdown, or NOISE_SIGMAS run-to-run sigmas of a new
    run against the mean of K baseline runs (sd * sqrt(1 + 1/K)) when that is larger."""
    if not noise:
        return max_slowdown
    sd, runs = noise
    return max(max_slowdown, float(np.expm1(NOISE_SIGMAS * sd * np.sqrt(1 + 1 / runs))))


def compare_step(base: np.ndarray, new: np.ndarray, max_slowdown: float, alpha: float,
                 rng: np.random.Generator) -> dict:
    """Median ratios, relative change with its bootstrap interval, one-sided p-values and the verdict; a
    regression needs change > max_slowdown (the step's allowance) and p < alpha."""
    mb, mn = float(np.median(base)), float(np.median(new))
    change = mn / mb - 1.0
    if np.array_equal(np.sort(base), np.sort(new)):
        p_slower = p_faster = 1.0
    else:
        p_slower = float(sps.mannwhitneyu(new, base, alternative="greater").pvalue)
        p_faster = float(sps.mannwhitneyu(new, base, alternative="less").pvalue)
    draws_b = np.median(rng.choice(base, (BOOTSTRAP, len(base))), axis=1)
    draws_n = np.median(rng.choice(new, (BOOTSTRAP, len(new))), axis=1)
    low, high = np.percentile(draws_n / draws_b - 1.0, [2.5, 97.5])
    if change > max_slowdown and p_slower < alpha:
        verdict = "slower"
    elif change < -max_slowdown and p_faster < alpha:
        verdict = "faster"
    else:
        verdict = "ok"
    return {"baseline": mb, "new": mn, "change": change, "ci_low": float(low), "ci_high": float(high),
            "p": p_slower, "n_baseline": len(base), "n_new": len(new), "allowed": max_slowdown, "verdict": verdict}


def compare(base: pd.DataFrame, new: pd.DataFrame, max_slowdown: float = DEFAULT_MAX_SLOWDOWN,
            alpha: float = DEFAULT_ALPHA, clock: str = DEFAULT_CLOCK,
            noise: dict[str, tuple[float, int]] | None = None) -> pd.DataFrame:
    """One row per step, in the baseline's order; `noise` as run_noise gives it (default: from `base`)."""
    column = CLOCK_COLUMNS[clock]
    rng = np.random.default_rng(0)
    noise = run_noise(base, column) if noise is None else noise
    rows = []
    for step in dict.fromkeys(base["step"]):
        b = base.loc[base["step"] == step, column].to_numpy(float)
        n = new.loc[new["step"] == step, column].to_numpy(float)
        allowed = allowance(max_slowdown, noise.get(step))
        row = {"step": step, **compare_step(b[np.isfinite(b)], n[np.isfinite(n)], allowed, alpha, rng)}
        if "step_peak_mb" in base.columns and "step_peak_mb" in new.columns:
            row["peak_mb_baseline"] = float(base.loc[base["step"] == step, "step_peak_mb"].iloc[0])
            row["peak_mb_new"] = float(new.loc[new["step"] == step, "step_peak_mb"].iloc[0])
        rows.append(row)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------------------

HEADER = ("step", "baseline", "new", "change", "95% CI", "allowed", "p", "peak MB", "verdict")


def _rows(table: pd.DataFrame) -> list[tuple]:
    lines = []
    for r in table.to_dict("records"):
        peak = ""
        if not math.isnan(r.get("peak_mb_baseline", math.nan)):
            peak = f"{r['peak_mb_baseline']:.0f} -> {r['peak_mb_new']:.0f}"
        verdict = "REGRESSION" if r["verdict"] == "slower" else r["verdict"]
        lines.append((r["step"], f"{r['baseline']:.4g}", f"{r['new']:.4g}", f"{r['change']:+.1%}",
                      f"{r['ci_low']:+.0%}..{r['ci_high']:+.0%}", f"+{r['allowed']:.0%}", f"{r['p']:.2g}", peak,
                      verdict))
    return lines


def text(table: pd.DataFrame) -> str:
    lines = [HEADER, *_rows(table)]
    widths = [max(len(str(x)) for x in col) for col in zip(*lines)]
    return "\n".join("  ".join(str(x).ljust(w) for x, w in zip(line, widths)).rstrip() for line in lines)


def markdown(table: pd.DataFrame, base: Path, new: Path, note: str) -> str:
    """A pull-request comment: the verdict, the regressed steps, then every step folded away."""
    bad = table[table["verdict"] == "slower"]
    head = (f"**metabench compare --perf**: {len(table)} step(s), "
            + (f"**{len(bad)} regression(s)**" if len(bad) else "no regression") + f" (`{base}` → `{new}`)")

    def md(rows: list[tuple]) -> list[str]:
        return ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER),
                *["| " + " | ".join(str(x).replace("|", "\\|") for x in row) + " |" for row in rows]]

    parts = [head, ""]
    if len(bad):
        parts += [*md(_rows(bad)), ""]
    parts += ["<details><summary>every step</summary>", "", *md(_rows(table)), "", "</details>", "", note, ""]
    return "\n".join(parts)


def command(args) -> int:
    alpha = getattr(args, "alpha", None) or DEFAULT_ALPHA
    max_slowdown = getattr(args, "max_slowdown", None)
    max_slowdown = DEFAULT_MAX_SLOWDOWN if max_slowdown is None else max_slowdown
    clock = getattr(args, "clock", None) or DEFAULT_CLOCK
    if not 0 < alpha < 1:
        raise PerfGateError(f"--alpha {alpha}: expected a probability between 0 and 1, e.g. 0.05")
    if max_slowdown < 0:
        raise PerfGateError(f"--max-slowdown {max_slowdown}: expected a fraction >= 0, e.g. 0.1 for 10%")
    if clock not in CLOCK_COLUMNS:
        raise PerfGateError(f"--clock {clock}: expected one of {', '.join(CLOCK_COLUMNS)}")
    (base, base_manifest), (new, new_manifest) = load(args.baseline), load(args.new)
    # the run-to-run noise from every step of the baseline, so that --step does not change a step's allowance
    noise = run_noise(base, CLOCK_COLUMNS[clock]) if CLOCK_COLUMNS[clock] in base.columns else {}
    patterns = getattr(args, "step", None) or []
    if patterns:
        base, new = (t[t["step"].map(lambda s: any(fnmatch.fnmatchcase(s, p) for p in patterns))] for t in (base, new))
        if base.empty:
            raise PerfGateError(f"no step of {args.baseline} matches {', '.join(patterns)}")
    check_comparable(base, new, args.baseline, args.new, clock)
    if base_manifest and new_manifest:  # notes, not errors: the CI runner is rarely the baseline's machine
        for line in provenance_differences(base_manifest, new_manifest):
            print(f"metabench: note: {line}", file=sys.stderr)
    for label, m in (("BASELINE", base_manifest), ("NEW", new_manifest)):
        if m.get("injected_slowdown"):
            print(f"metabench: note: {label} was measured with an injected slowdown ({m['injected_slowdown']})",
                  file=sys.stderr)
    table = compare(base, new, max_slowdown, alpha, clock, noise)
    bad = table[table["verdict"] == "slower"]
    note = (f"Ratio = step time / reference workload time, interleaved in the same process ({clock} clock); "
            f"baseline/new are median ratios, change = new/baseline - 1 (positive = slower) with a bootstrap "
            f"95% CI; p = one-sided Mann-Whitney U. Regression: slower than allowed (the larger of {max_slowdown:.0%} "
            f"and {NOISE_SIGMAS:g} sigmas of the baseline's run-to-run noise for that kind of step) with p < {alpha}.")
    runs = base["run"].nunique() if "run" in base.columns else 1
    if runs < 2:
        note += " The baseline holds one run, so its run-to-run noise is unknown: the allowance is --max-slowdown."
    fmt = getattr(args, "format", "text") or "text"
    if fmt == "md":
        sys.stdout.write(markdown(table, args.baseline, args.new, note))
    elif fmt == "json":
        print(json.dumps({"baseline": str(args.baseline), "new": str(args.new), "clock": clock,
                          "max_slowdown": max_slowdown, "alpha": alpha, "steps": len(table),
                          "regressions": bad["step"].tolist(), "rows": json.loads(table.to_json(orient="records"))},
                         indent=2))
    else:
        print(text(table))
        print(note)
    for r in bad.to_dict("records"):
        print(f"metabench: regression: {r['step']} is {r['change']:+.1%} slower (median ratio {r['baseline']:.4g} -> "
              f"{r['new']:.4g}, 95% CI {r['ci_low']:+.0%}..{r['ci_high']:+.0%}, p={r['p']:.2g}; allowed "
              f"+{r['allowed']:.0%})", file=sys.stderr)
    print(f"metabench: compare --perf: {len(table)} step(s), {len(bad)} regression(s)", file=sys.stderr)
    return EXIT_REGRESSION if len(bad) else EXIT_OK
