"""MAML's vectorised meta-gradient equals a plain per-task loop (autograd.grad with create_graph per task)."""
import pytest
import torch

from bench import runner


def loop_meta_gradient(learner, batch, first_order):
    """The reference: each task's inner steps with torch.autograd, query loss, mean over tasks."""
    net, h = learner.net, learner.hparams
    params = dict(net.named_parameters())
    total = 0.0
    for task in batch.tasks():
        fast = dict(params)
        for _ in range(h.inner_steps):
            loss = learner.loss_fn(torch.func.functional_call(net, fast, (task.support_x,)), task.support_y)
            grads = torch.autograd.grad(loss, list(fast.values()), create_graph=not first_order)
            fast = {k: v - h.inner_lr * g for (k, v), g in zip(fast.items(), grads)}
        total = total + learner.loss_fn(torch.func.functional_call(net, fast, (task.query_x,)), task.query_y)
    total = total / len(batch)
    return dict(zip(params, torch.autograd.grad(total, list(params.values()))))


@pytest.mark.parametrize("algorithm", ["maml", "fomaml"])
@pytest.mark.parametrize("inner_steps", [1, 3])
def test_meta_gradient_matches_per_task_loop(config, algorithm, inner_steps):
    cell = config.cell("sine-k10", algorithm, 0, "smoke")
    cell.hparams.update(inner_steps=inner_steps, inner_lr=0.05)
    source = runner.task_source(cell.spec, None)
    learner, gens = runner.build_learner(cell, source, torch.device("cpu"))
    batch = source.sample_train(learner.batch_request(), gens["train_episodes"])
    fast, _ = learner.meta_gradients(batch)
    reference = loop_meta_gradient(learner, batch, first_order=(algorithm == "fomaml"))
    for name in reference:
        torch.testing.assert_close(fast[name], reference[name], atol=1e-5, rtol=1e-4)


def test_first_and_second_order_differ(config):
    grads = {}
    for algorithm in ("maml", "fomaml"):
        cell = config.cell("sine-k10", algorithm, 0, "smoke")
        source = runner.task_source(cell.spec, None)
        learner, gens = runner.build_learner(cell, source, torch.device("cpu"))
        grads[algorithm], _ = learner.meta_gradients(source.sample_train(learner.batch_request(),
                                                                         gens["train_episodes"]))
    assert any(not torch.allclose(grads["maml"][k], grads["fomaml"][k]) for k in grads["maml"])
