"""Mixed precision (budget key `autocast: bf16`): runs under torch.autocast, also in MAML's worker threads, and
still learns (a cast cache held open across training would freeze the weights the forward pass sees)."""
import torch

from algorithms.functional import map_tasks
from bench import cell as runner
from bench.config import Config


def test_worker_threads_inherit_the_callers_autocast():
    def dtypes(chunk):
        return [(torch.ones(2, 2) @ torch.ones(2, 2)).dtype for _ in chunk]
    with runner.precision(torch.device("cpu"), "bf16"):
        assert map_tasks(dtypes, list(range(4)), 2) == [[torch.bfloat16] * 2] * 2
    assert map_tasks(dtypes, list(range(4)), 2) == [[torch.float32] * 2] * 2


def test_float32_is_the_default_and_unknown_precisions_are_refused():
    with runner.precision(torch.device("cpu"), None):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
    try:
        runner.precision(torch.device("cpu"), "fp8")
    except ValueError as err:
        assert "budget.autocast" in str(err) and "'fp8'" in str(err)
    else:
        raise AssertionError("fp8 accepted")


def test_parameters_updated_in_place_are_seen_by_the_next_forward():
    layer = torch.nn.Linear(4, 4)
    x = torch.ones(1, 4)
    with runner.precision(torch.device("cpu"), "bf16"):
        before = layer(x)
        with torch.no_grad():
            layer.weight.add_(1.0)  # what an optimizer step does
        after = layer(x)
    assert before.dtype == torch.bfloat16
    assert not torch.allclose(before, after)


def test_bf16_cell_trains_like_the_float32_cell():
    finals = {}
    for autocast in (None, "bf16"):
        sets = ["budget.meta_iters=60", "budget.test_episodes=20", f"budget.autocast={autocast or 'null'}"]
        result = runner.run_cell(Config.load(sets=sets).cell("sine-k10", "maml", 0, "smoke"), progress=False)
        assert result.status == "ok", result.error
        finals[autocast] = [row["value"] for row in result.curves if row["metric"] == "loss"][-1]
    assert abs(finals["bf16"] - finals[None]) < 0.05 * finals[None]
