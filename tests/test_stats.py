import numpy as np
import pandas as pd
from scipy import stats as sps

from bench import stats


def test_episode_ci_matches_scipy_normal_interval():
    values = np.random.default_rng(0).normal(50, 10, size=600)
    low, high = sps.norm.interval(0.95, loc=values.mean(), scale=sps.sem(values))
    assert np.isclose(stats.ci95_normal(values), (high - low) / 2)
    assert np.isclose(stats.ci95_normal(values), 1.96 * values.std(ddof=1) / np.sqrt(600), rtol=1e-4)


def test_seed_ci_matches_scipy_t_interval():
    values = np.array([97.1, 96.4, 98.0])
    low, high = sps.t.interval(0.95, df=2, loc=values.mean(), scale=sps.sem(values))
    assert np.isclose(stats.ci95_t(values), (high - low) / 2)


def test_single_value_has_no_interval():
    assert np.isnan(stats.ci95_normal([1.0])) and np.isnan(stats.ci95_t([1.0]))


def test_summaries_keep_diverged_episodes_visible():
    frame = pd.DataFrame({"benchmark": "b", "algorithm": "a", "seed": 0, "episode": [0, 1, 2],
                          "metric": "mse@10", "value": [1.0, float("inf"), 2.0]})
    row = stats.summarize_episodes(frame).iloc[0]
    assert row["n"] == 3 and np.isinf(row["mean"])


def test_across_seeds_rows():
    per_seed = pd.DataFrame({"benchmark": "b", "algorithm": "a", "metric": "accuracy", "seed": [0, 1, 2],
                             "mean": [90.0, 92.0, 94.0]})
    row = stats.across_seeds(per_seed).iloc[0]
    assert row["seed"] == "all" and row["n"] == 3 and row["mean"] == 92.0
    assert np.isclose(row["ci95"], sps.t.ppf(0.975, 2) * 2.0 / np.sqrt(3))
