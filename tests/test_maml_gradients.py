"""MAML's meta-gradient, whichever way the tasks are batched, equals a plain per-task loop written here
(torch.autograd.grad with create_graph per task, through the module's ordinary forward)."""
import pytest
import torch
from torch.func import functional_call

import algorithms
from algorithms.base import EpisodeBatch, ProblemSpec
from bench import cell as runner
from bench.episodes import named_generators


def loop_meta_gradient(learner, batch, first_order):
    """The reference: each task's inner steps with torch.autograd, query loss, mean over tasks."""
    net, h = learner.net, learner.hparams
    params = dict(net.named_parameters())
    total = 0.0
    for task in batch.tasks():
        fast = dict(params)
        for _ in range(h.inner_steps):
            loss = learner.loss_fn(functional_call(net, fast, (task.support_x,)), task.support_y)
            grads = torch.autograd.grad(loss, list(fast.values()), create_graph=not first_order)
            fast = {k: v - h.inner_lr * g for (k, v), g in zip(fast.items(), grads)}
        total = total + learner.loss_fn(functional_call(net, fast, (task.query_x,)), task.query_y)
    total = total / len(batch)
    return dict(zip(params, torch.autograd.grad(total, list(params.values()))))


def assert_near_float64(value: torch.Tensor, reference: torch.Tensor, name: str, tolerance: float = 1e-5):
    """A float32 result is within `tolerance` x the reference's largest entry of the float64 evaluation of the same
    computation: what float32 rounding allows on any CPU, whichever order a library sums in."""
    error = (value.double() - reference).abs().max().item()
    scale = reference.abs().max().item()
    assert error <= tolerance * scale, f"{name}: max error {error:.3g} vs float64, largest entry {scale:.3g}"


def in_float64(learner, batch):
    """The same learner (a copy of its parameters) and batch in float64."""
    learner.net.double()
    return EpisodeBatch(batch.support_x.double(), batch.support_y, batch.query_x.double(), batch.query_y,
                        batch.ways, batch.shots)


def image_batch(tasks=4, ways=5, shots=1, query=3, size=28):
    g = torch.Generator().manual_seed(0)
    def labels(n):
        return torch.arange(ways).repeat_interleave(n).expand(tasks, -1).contiguous()
    return EpisodeBatch(torch.rand(tasks, ways * shots, 1, size, size, generator=g), labels(shots),
                        torch.rand(tasks, ways * query, 1, size, size, generator=g), labels(query), ways, shots)


def image_learner(algorithm, backbone, **hparams):
    cls = algorithms.get(algorithm)
    problem = ProblemSpec(kind="classification", input_shape=(1, 28, 28), ways=5, shots=1, output_dim=5,
                          backbone=backbone)
    h = cls.Hparams(inner_lr=0.4, meta_batch=4, **hparams)
    return cls(problem, h, torch.device("cpu"), named_generators(0, ["init", "algorithm"]))


@pytest.mark.parametrize("algorithm", ["maml", "fomaml"])
@pytest.mark.parametrize("inner_steps", [1, 3])
@pytest.mark.parametrize("batching", ["vmap", "loop", "threads"])
def test_sine_meta_gradient_matches_per_task_loop(config, algorithm, inner_steps, batching):
    cell = config.cell("sine-k10", algorithm, 0, "smoke")
    cell.hparams.update(inner_steps=inner_steps, inner_lr=0.05, task_batching=batching)
    source = runner.task_source(cell.spec, None)
    learner, gens = runner.build_learner(cell, source, torch.device("cpu"))
    batch = source.sample_train(learner.batch_request(), gens["train_episodes"])
    fast, _ = learner.meta_gradients(batch)
    loop = loop_meta_gradient(learner, batch, first_order=(algorithm == "fomaml"))
    # both float32 paths against the float64 evaluation, not one against the other
    reference = loop_meta_gradient(learner, in_float64(learner, batch), first_order=(algorithm == "fomaml"))
    for name in reference:
        assert_near_float64(fast[name], reference[name], f"{batching} {name}")
        assert_near_float64(loop[name], reference[name], f"loop {name}")


@pytest.mark.parametrize("algorithm", ["maml", "fomaml"])
@pytest.mark.parametrize("backbone", ["conv4", "conv4-maml-omniglot"])
@pytest.mark.parametrize("batching", ["threads", "loop", "vmap"])
def test_conv_meta_gradient_matches_per_task_loop(algorithm, backbone, batching):
    # in float64: with continuous pixels a float32 max-pool window can hold a near tie whose winner depends on
    # rounding, and then two correct float32 implementations differ by far more than rounding (docs/performance.md)
    learner = image_learner(algorithm, backbone, task_batching=batching)
    batch = in_float64(learner, image_batch())
    fast, _ = learner.meta_gradients(batch)
    reference = loop_meta_gradient(learner, batch, first_order=(algorithm == "fomaml"))
    for name in reference:
        torch.testing.assert_close(fast[name], reference[name], atol=1e-10, rtol=1e-8)


def test_vmap_refuses_batch_norm_with_running_statistics():
    with pytest.raises(ValueError, match="task_batching: vmap needs transductive_bn"):
        image_learner("maml", "conv4", task_batching="vmap", transductive_bn=False)


def test_first_and_second_order_differ(config):
    grads = {}
    for algorithm in ("maml", "fomaml"):
        cell = config.cell("sine-k10", algorithm, 0, "smoke")
        source = runner.task_source(cell.spec, None)
        learner, gens = runner.build_learner(cell, source, torch.device("cpu"))
        grads[algorithm], _ = learner.meta_gradients(source.sample_train(learner.batch_request(),
                                                                         gens["train_episodes"]))
    assert any(not torch.allclose(grads["maml"][k], grads["fomaml"][k]) for k in grads["maml"])
