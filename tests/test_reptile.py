"""Reptile's inner Adam: second moments carried from task to task as in the paper's code, untouched by test
episodes, and a fresh Adam per task when `carry_adam_state` is false."""
import pytest
import torch

from bench import cell as runner
from bench.config import Config


def reptile_with_adam(carry: bool):
    config = Config.load(sets=["reptile.inner_optimizer=adam", "reptile.inner_lr=0.001",
                               f"reptile.carry_adam_state={str(carry).lower()}"])
    cell = config.cell("sine-k5", "reptile", 0, "smoke")
    source = runner.task_source(cell.spec, None)
    learner, gens = runner.build_learner(cell, source, torch.device("cpu"))
    return learner, source, gens, cell


@pytest.mark.parametrize("carry", [True, False])
def test_adam_state_is_carried_across_meta_iterations_only_when_asked(carry):
    learner, source, gens, cell = reptile_with_adam(carry)
    for _ in range(2):
        learner.meta_train_step(source.sample_train(learner.batch_request(), gens["train_episodes"]))
    steps = learner.hparams.inner_steps
    if not carry:
        assert learner.adam_second == {} and learner.adam_steps == 0
        return
    assert learner.adam_steps == 2 * steps
    params = dict(learner.net.named_parameters())
    assert set(learner.adam_second) == set(params)
    for name, v in learner.adam_second.items():
        assert v.shape == params[name].shape and bool((v > 0).any()), name


def test_first_inner_step_from_carried_state_is_not_sign_sgd():
    learner, source, gens, _ = reptile_with_adam(True)
    learner.meta_train_step(source.sample_train(learner.batch_request(), gens["train_episodes"]))
    opt = learner._inner_optimizer(0.001)
    params = {k: torch.zeros_like(v) for k, v in learner.adam_second.items()}
    grads = {k: torch.full_like(v, 1e-6) for k, v in learner.adam_second.items()}
    moved = opt.step(params, grads)
    # a fresh Adam's first step is lr * sign(g) whatever |g|; carried moments scale a tiny gradient down
    # (coordinates whose carried gradients were all zero, e.g. behind dead ReLUs, are left out)
    for name, m in moved.items():
        seen = learner.adam_second[name] > 1e-8
        assert bool(seen.any()) and bool((m[seen].abs() < 0.001 * 0.5).all()), name
    fresh = type(opt)("adam", 0.001).step(params, grads)
    assert all(torch.allclose(m.abs(), torch.full_like(m, 0.001), rtol=0.02) for m in fresh.values())


def test_test_episodes_leave_the_carried_state_unchanged():
    learner, source, gens, cell = reptile_with_adam(True)
    learner.meta_train_step(source.sample_train(learner.batch_request(), gens["train_episodes"]))
    before = {k: v.clone() for k, v in learner.adam_second.items()}
    steps = learner.adam_steps
    learner.predict(source.test_episode(0, cell.spec["eval_seed"]), steps=3)
    assert learner.adam_steps == steps
    assert all(torch.equal(before[k], learner.adam_second[k]) for k in before)


@pytest.mark.parametrize("replacement", [False, True])
def test_inner_minibatches_cover_the_task_in_passes_unless_drawn_with_replacement(replacement):
    learner, *_ = reptile_with_adam(True)
    learner.hparams.inner_batch, learner.hparams.replacement = 10, replacement
    steps = learner._minibatches(tasks=3, n=50, steps=7)
    assert len(steps) == 7 and all(s.shape == (3, 10) for s in steps)
    first_pass = torch.cat(steps[:5], dim=1)
    covered = [sorted(first_pass[t].tolist()) == list(range(50)) for t in range(3)]
    # without replacement: 5 steps of 10 are one shuffled pass over the 50 examples, the next steps a new pass
    assert all(covered) if not replacement else not all(covered)
