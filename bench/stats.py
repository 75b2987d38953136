"""Means and 95% confidence intervals, the way the papers and the suite report them.

- Over test episodes (one cell): ci95 = z_{0.975} · sd / √n with the sample sd (ddof=1), z = 1.96 — the
  convention of MAML, ProtoNets and Chen et al. (a normal interval; n is hundreds of episodes).
- Over seeds (a benchmark × algorithm across training seeds): a Student-t interval t_{0.975, n−1} · sd / √n of
  the per-seed means, because n (seeds) is small.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

Z95 = float(stats.norm.ppf(0.975))  # 1.95996...


def ci95_normal(values) -> float:
    """Half-width of the normal 95% interval of the mean (episodes)."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return float("nan")
    return Z95 * float(np.std(values, ddof=1)) / math.sqrt(len(values))


def ci95_t(values) -> float:
    """Half-width of the Student-t 95% interval of the mean (seeds)."""
    values = np.asarray(values, dtype=float)
    n = len(values)
    if n < 2:
        return float("nan")
    return float(stats.t.ppf(0.975, n - 1)) * float(np.std(values, ddof=1)) / math.sqrt(n)


def summarize_episodes(episodes: pd.DataFrame) -> pd.DataFrame:
    """Per (benchmark, algorithm, seed, metric): mean, ci95 (normal, over episodes), n."""
    keys = ["benchmark", "algorithm", "seed", "metric"]
    grouped = episodes.groupby(keys, sort=False)["value"]
    # NaN/inf episodes (a diverging adaptation) stay in: the mean shows them instead of hiding them
    out = grouped.agg(mean=lambda v: float(np.mean(v.to_numpy(dtype=float))), n="size").reset_index()
    out["ci95"] = grouped.apply(ci95_normal).to_numpy()
    out["ci_method"] = "normal-episodes"
    return out[keys + ["mean", "ci95", "n", "ci_method"]]


def across_seeds(per_seed: pd.DataFrame) -> pd.DataFrame:
    """Rows with seed 'all': mean of the per-seed means and a t-interval over seeds."""
    keys = ["benchmark", "algorithm", "metric"]
    rows = []
    for key, group in per_seed.groupby(keys, sort=False):
        means = group["mean"].to_numpy(dtype=float)
        rows.append({**dict(zip(keys, key)), "seed": "all", "mean": float(np.mean(means)),
                     "ci95": ci95_t(means), "n": len(means), "ci_method": "t-seeds",
                     "seeds": " ".join(str(s) for s in group["seed"])})
    return pd.DataFrame(rows)


def headline(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per (benchmark, algorithm, metric): the across-seed row when several seeds ran, else the single
    seed's row (whose CI is over episodes)."""
    ok = summary[(summary["status"] == "ok") & (summary["metric"].astype(str) != "")].copy()
    ok["seed"] = ok["seed"].astype(str)
    rows = []
    for _, group in ok.groupby(["benchmark", "algorithm", "metric"], sort=False):
        per_seed = group[group["seed"] != "all"]
        rows.append(group[group["seed"] == "all"].iloc[0] if len(per_seed) > 1 else per_seed.iloc[0])
    return pd.DataFrame(rows).reset_index(drop=True) if rows else ok.iloc[0:0]
