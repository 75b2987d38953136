"""The validation curve during training (budget keys curve_points / curve_tasks): accuracy on the same
validation tasks at evenly spaced meta-iterations, written to curves.csv as split "validation", without
changing what training does (the test episodes' results are those of a run without the curve)."""
import pytest
from conftest import real_omniglot_available

from bench.cell import curve_iterations
from bench.cli import main
from bench.config import Config

needs_omniglot = pytest.mark.skipif(not real_omniglot_available(),
                                    reason="needs the real Omniglot images (set METABENCH_DATA)")
TINY = ["--benchmark", "omniglot-5w1s", "--profile", "smoke", "--set", "budget.meta_iters=6",
        "--set", "budget.test_episodes=5", "--no-progress", "--no-figures"]


def test_points_are_evenly_spaced_and_end_at_the_last_iteration():
    config = Config.load(sets=["budget.curve_points=4", "budget.meta_iters=10"])
    cell = config.cell("omniglot-5w1s", "protonet", 0, "smoke")
    assert curve_iterations(cell) == {2, 5, 8, 10}
    assert curve_iterations(Config.load().cell("omniglot-5w1s", "protonet", 0, "smoke")) == set()
    assert curve_iterations(Config.load(sets=["budget.curve_points=4"]).cell("sine-k5", "maml", 0, "smoke")) == set()


def test_absent_keys_leave_the_config_hash_alone():
    plain = Config.load().cell("omniglot-5w1s", "protonet", 0, "smoke")
    assert "curve_points" not in plain.budget
    curved = Config.load(sets=["budget.curve_points=2"]).cell("omniglot-5w1s", "protonet", 0, "smoke")
    assert curved.config_hash != plain.config_hash


@needs_omniglot
@pytest.mark.parametrize("algorithm", ["protonet", "maml"])
def test_the_curve_is_written_and_does_not_change_training(tmp_path, algorithm):
    plain, curved = tmp_path / "plain", tmp_path / "curved"
    assert main(["run", "--algorithm", algorithm, "--out", str(plain), *TINY]) == 0
    assert main(["run", "--algorithm", algorithm, "--out", str(curved), "--set", "budget.curve_points=3",
                 "--set", "budget.curve_tasks=4", *TINY]) == 0
    assert (curved / "episodes.csv").read_text() == (plain / "episodes.csv").read_text()
    rows = [line.split(",") for line in (curved / "curves.csv").read_text().splitlines() if ",validation," in line]
    assert [int(r[3]) for r in rows] == [2, 4, 6]
    assert all(r[5] == "accuracy" and 0.0 <= float(r[6]) <= 100.0 for r in rows)
    assert ",validation," not in (plain / "curves.csv").read_text()
