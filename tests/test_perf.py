"""pytest-benchmark speed benchmarks (`tox -e perf`; excluded from the default test run by `-m "not perf"`).

They time the same pieces as `metabench perf` and store the ratio to the reference loop, measured in the same
session, in each benchmark's extra_info: ratios, never absolute times, are what these shared machines can
compare. Nothing here asserts a speed: the speed gate (`metabench perf --quick` + `metabench compare --perf`,
tested in tests/test_perf_gate.py) does, against the committed results/baseline-perf/.
"""
import pytest
import torch

from algorithms.base import BatchRequest
from bench import perf
from bench.config import Config

pytestmark = pytest.mark.perf


@pytest.fixture(scope="module")
def setup():
    config = Config.load()
    source, note = perf.omniglot_source(config)
    batch = source.sample_train(BatchRequest(tasks=perf.TASKS, ways=perf.WAYS, shots=perf.SHOTS, query=perf.QUERY),
                                torch.Generator().manual_seed(0))
    reference_net = perf.textbook_conv4(perf.WAYS)
    reference_seconds = perf.timed(lambda: perf.reference_maml_step(reference_net, batch), 3)
    return {"config": config, "source": source, "batch": batch, "note": note,
            "reference_tasks_per_s": perf.TASKS / sorted(reference_seconds)[1], "reference_net": reference_net}


def _record(benchmark, setup, work: int):
    rate = work / benchmark.stats.stats.median
    benchmark.extra_info.update({"rate_per_s": rate, "reference_tasks_per_s": setup["reference_tasks_per_s"],
                                 "ratio": rate / setup["reference_tasks_per_s"], "data": setup["note"]})


def test_reference_maml_loop(benchmark, setup):
    benchmark.pedantic(perf.reference_maml_step, args=(setup["reference_net"], setup["batch"]), rounds=5,
                       warmup_rounds=1)
    _record(benchmark, setup, perf.TASKS)


def test_maml_meta_gradient(benchmark, setup):
    maml = perf.build(setup["config"], "maml", setup["source"],
                      {"backbone": "conv4", "inner_lr": 0.4, "inner_steps": 1, "meta_batch": perf.TASKS})
    benchmark.pedantic(maml.meta_gradients, args=(setup["batch"],), rounds=5, warmup_rounds=1)
    _record(benchmark, setup, perf.TASKS)


def test_protonet_evaluation(benchmark, setup):
    protonet = perf.build(setup["config"], "protonet", setup["source"])
    episodes = [setup["source"].test_episode(i, 0) for i in range(50)]
    benchmark.pedantic(lambda: [protonet.predict(e) for e in episodes], rounds=3, warmup_rounds=1)
    benchmark.extra_info["episodes_per_s"] = len(episodes) / benchmark.stats.stats.median


def test_episode_sampler(benchmark, setup):
    generator = torch.Generator().manual_seed(1)
    benchmark.pedantic(setup["source"].sample_train, args=(BatchRequest(tasks=perf.TASKS), generator), rounds=20)
    benchmark.extra_info["episodes_per_s"] = perf.TASKS / benchmark.stats.stats.median
