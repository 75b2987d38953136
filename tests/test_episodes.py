import torch

from bench import cell as runner
from bench.episodes import digest, named_generators


def sine_source(config, name="sine-k5"):
    return runner.task_source(config.benchmarks[name], None)


def test_frozen_test_tasks_are_pure_functions_of_spec_seed_index(config):
    source = sine_source(config)
    a = source.test_episode(7, 2017)
    b = source.test_episode(7, 2017)
    assert torch.equal(a.support_x, b.support_x) and torch.equal(a.query_y, b.query_y)
    assert not torch.equal(source.test_episode(8, 2017).support_x, a.support_x)
    assert not torch.equal(source.test_episode(7, 2018).support_x, a.support_x)


def test_frozen_tasks_do_not_depend_on_how_many_are_evaluated(config):
    source = sine_source(config)
    ten = list(runner.frozen_episodes(source, 2017, 10))
    three = runner.frozen_episodes(source, 2017, 3)
    assert digest(ten[:3]) == digest(three)


def test_digest_is_identical_for_every_algorithm(config):
    digests = {runner.test_digest(config.cell("sine-k10", name, 0, "smoke")) for name in
               ("maml", "fomaml", "reptile", "pretrain")}
    assert len(digests) == 1


def test_sine_task_distribution_follows_the_maml_protocol(config):
    source = sine_source(config)
    batch = source.sample_train(runner.algorithms.base.BatchRequest(tasks=2000), torch.Generator().manual_seed(0))
    amplitude, phase = batch.info["amplitude"], batch.info["phase"]
    assert 0.1 <= amplitude.min() and amplitude.max() <= 5.0
    assert 0.0 <= phase.min() and phase.max() <= torch.pi
    assert -5.0 <= batch.support_x.min() and batch.query_x.max() <= 5.0
    assert batch.support_x.shape == (2000, 5, 1) and batch.query_x.shape == (2000, 10, 1)
    expected = amplitude.view(-1, 1, 1) * torch.sin(batch.support_x - phase.view(-1, 1, 1))
    assert torch.allclose(batch.support_y, expected)


def test_named_streams_are_independent_and_reproducible():
    a = named_generators(0, ["init", "train_episodes"])
    b = named_generators(0, ["init", "train_episodes"])
    assert torch.equal(torch.rand(5, generator=a["init"]), torch.rand(5, generator=b["init"]))
    assert not torch.equal(torch.rand(5, generator=a["train_episodes"]), torch.rand(5, generator=b["init"]))
    c = named_generators(1, ["init"])
    assert not torch.equal(torch.rand(5, generator=c["init"]),
                           torch.rand(5, generator=named_generators(0, ["init"])["init"]))


def test_library_code_does_not_touch_the_global_rng(config):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    cell = config.cell("sine-k5", "reptile", 0, "smoke")
    cell.budget.update(meta_iters=3, test_episodes=2, validation_tasks=2)
    runner.run_cell(cell, progress=False)
    assert torch.equal(torch.rand(3), expected)
