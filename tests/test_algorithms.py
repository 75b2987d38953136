"""Every registered algorithm, picked up from the registry without edits: a smoke cell on each benchmark kind it
supports, and a bit-exact state_dict round trip."""
import copy

import pytest
import torch
from conftest import real_omniglot_available

import algorithms
from bench import cell as runner

# one representative benchmark per kind; later kinds add theirs here (with the data they need)
KIND_BENCHMARK = {"regression": "sine-k5", "classification": "omniglot-5w1s", "optimizer": "mnist-base"}


def real_mnist_available() -> bool:
    from bench.data import data_root, mnist
    return mnist.available(data_root())


NEEDS_DATA = {"omniglot-5w1s": (real_omniglot_available, "the Omniglot images (set METABENCH_DATA)"),
              "mnist-base": (real_mnist_available, "the four MNIST IDX files (set METABENCH_DATA)")}


def cells_for_registry():
    for name in algorithms.names():
        for kind in algorithms.get(name).kinds:
            if kind in KIND_BENCHMARK:
                bench_name = KIND_BENCHMARK[kind]
                check, what = NEEDS_DATA.get(bench_name, (lambda: True, ""))
                marks = [] if check() else [pytest.mark.skip(reason=f"needs {what}")]
                yield pytest.param(name, bench_name, id=f"{name}-{bench_name}", marks=marks)


@pytest.mark.parametrize("algorithm,bench_name", list(cells_for_registry()))
def test_smoke_cell_runs_and_learns(config, algorithm, bench_name):
    cell = config.cell(bench_name, algorithm, 0, "smoke")
    result = runner.run_cell(cell, progress=False)
    assert result.status == "ok", result.error
    assert result.meta_iters == cell.budget["meta_iters"]
    assert len({r["episode"] for r in result.episodes}) == cell.budget["test_episodes"]
    losses = [c["value"] for c in result.curves if c["metric"] == "loss"]
    # hand-designed optimizers have no meta-training (0 iterations): no training curve, nothing to check
    assert (losses or cell.budget["meta_iters"] == 0) and all(torch.isfinite(torch.tensor(losses)))
    assert result.digest


@pytest.mark.parametrize("algorithm,bench_name", list(cells_for_registry()))
def test_state_dict_round_trip_resumes_bit_for_bit(config, algorithm, bench_name):
    cell = config.cell(bench_name, algorithm, 0, "smoke")
    source = runner.task_source(cell.spec, None)
    learner, gens = runner.build_learner(cell, source, torch.device("cpu"))
    batches = [source.sample_train(learner.batch_request(), gens["train_episodes"]) for _ in range(4)]
    for batch in batches[:2]:
        learner.meta_train_step(batch)
    saved = copy.deepcopy(learner.state_dict())
    for batch in batches[2:]:
        learner.meta_train_step(batch)
    clone, _ = runner.build_learner(cell, source, torch.device("cpu"))
    clone.load_state_dict(saved)
    for batch in batches[2:]:
        clone.meta_train_step(batch)
    episode = source.test_episode(0, cell.spec["eval_seed"])
    assert torch.equal(learner.predict(episode, steps=2), clone.predict(episode, steps=2))
    for (name, a), b in zip(learner.state_dict()["modules"].items(), clone.state_dict()["modules"].values()):
        for key in a:
            assert torch.equal(a[key], b[key]), f"{name}.{key} differs after resuming"
