"""Learned and hand-designed optimizers (Andrychowicz et al. 2016) and the Meta-LSTM (Ravi & Larochelle 2017):
preprocessing, truncated BPTT without second derivatives, the update rules, the learning-rate search, gates."""
import math

import pytest
import torch
from conftest import real_omniglot_available

import algorithms
from algorithms.base import OptimizeeBatch, OptimizeeProblem, ProblemSpec
from algorithms.lstm_optimizer import PAPER_RECIPE
from algorithms.optimizer_common import log_sign
from bench import cell as runner
from bench.data import data_root, mnist

needs_mnist = pytest.mark.skipif(not mnist.available(data_root()),
                                 reason="needs the four MNIST IDX files (set METABENCH_DATA)")
SPEC = ProblemSpec(kind="optimizer", input_shape=(784,), ways=10, shots=0, output_dim=10, backbone="mnist-mlp")
# the settings these tests start from: the paper's recipe at Adam 0.001 (no imitation warm start, loss Σ f); the
# dataclasses' defaults are the suite's recipe, which a test asks for by name where it needs it
START = {"lstm-optimizer": {**PAPER_RECIPE, "meta_lr": 0.001}, "gated-lstm-optimizer": {"meta_lr": 0.001}}


def toy_problem(horizon=6, seed=0, hidden=5, activation="sigmoid"):
    """A small MLP problem on random data (no MNIST needed)."""
    g = torch.Generator().manual_seed(seed)
    params = [torch.randn(hidden, 12, generator=g) * 0.3, torch.randn(hidden, generator=g) * 0.1,
              torch.randn(3, hidden, generator=g) * 0.3, torch.randn(3, generator=g) * 0.1]
    inputs = torch.randn(horizon + 1, 16, 12, generator=g)
    targets = torch.randint(3, (horizon + 1, 16), generator=g)
    return OptimizeeProblem(params, inputs, targets, activation)


def make(name, **overrides):
    cls = algorithms.get(name)
    gens = {"init": torch.Generator().manual_seed(0), "algorithm": torch.Generator().manual_seed(1)}
    return cls(SPEC, cls.Hparams(**{**START.get(name, {}), **overrides}), torch.device("cpu"), gens)


# -- preprocessing -----------------------------------------------------------------------------------------


def test_log_sign_preprocessing_follows_appendix_a():
    p = 10.0
    x = torch.tensor([2.0, -0.5, 1e-3, -1e-6, 0.0, math.exp(-p)])
    out = log_sign(x, p)
    assert out.shape == (6, 2)
    # |x| >= e^-p: (log|x| / p, sgn x)
    assert torch.allclose(out[0], torch.tensor([math.log(2.0) / p, 1.0]))
    assert torch.allclose(out[1], torch.tensor([math.log(0.5) / p, -1.0]))
    assert torch.allclose(out[2], torch.tensor([math.log(1e-3) / p, 1.0]))
    assert torch.allclose(out[5], torch.tensor([-1.0, 1.0]), atol=1e-6)  # the boundary: both branches agree
    # |x| < e^-p: (-1, e^p x)
    assert torch.allclose(out[3], torch.tensor([-1.0, math.exp(p) * -1e-6]))
    assert torch.equal(out[4], torch.tensor([-1.0, 0.0]))
    # other p
    assert torch.allclose(log_sign(torch.tensor([0.1]), 5.0), torch.tensor([[math.log(0.1) / 5.0, 1.0]]))


def test_preprocessing_switch_changes_the_input_width():
    assert make("lstm-optimizer").net["lstm"].cells[0].input_size == 2
    assert make("lstm-optimizer", preprocess=False).net["lstm"].cells[0].input_size == 1


# -- truncated BPTT ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["lstm-optimizer", "gated-lstm-optimizer"])
def test_bptt_is_truncated_and_drops_second_derivatives(name):
    learner = make(name, unroll=4, zero_output=False) if name == "lstm-optimizer" else make(name, unroll=4)
    problem = toy_problem(horizon=10)
    seen, steps = [], []
    update = learner.update

    def spy(theta, grad, loss, state):
        seen.append((theta.requires_grad, grad.requires_grad, loss.requires_grad))
        return update(theta, grad, loss, state)

    learner.update = spy
    step = learner.optimizer.step
    learner.optimizer.step = lambda *a, **k: (steps.append(1), step(*a, **k))[1]
    out = learner.meta_train_step(OptimizeeBatch([problem]))
    assert math.isfinite(out["loss"])
    assert len(seen) == 10 and len(steps) == 3  # 10 steps in unrolls of 4, 4, 2
    # the optimizee gradients and losses fed to the update rule are constants: no second derivatives
    assert not any(grad or loss for _, grad, loss in seen)
    # θ is cut from the graph at the start of every unroll, and carries the graph inside one
    assert [t for t, _, _ in seen] == [False, True, True, True, False, True, True, True, False, True]


@pytest.mark.parametrize("meta_loss,loss_weights", [("sum", "flat"), ("log", "flat"), ("log", "ramp")])
def test_meta_gradient_equals_the_first_order_formula(meta_loss, loss_weights):
    """One unroll of 2 steps, checked against a hand-written meta-loss with explicitly detached gradients:
    f(θ_1) + f(θ_2) (the paper's), or log f(θ_1) + log f(θ_2); the ramp weighs them 2/3 and 4/3."""
    learner = make("lstm-optimizer", unroll=2, zero_output=False, meta_lr=0.1, lr_schedule="constant",
                   meta_loss=meta_loss, loss_weights=loss_weights)
    problem = toy_problem(horizon=2)
    before = {k: v.clone() for k, v in learner.net.state_dict().items()}
    learner.optimizer.step = lambda *a, **k: None  # keep φ, look at φ.grad
    learner.meta_train_step(OptimizeeBatch([problem]))
    got = {k: p.grad.clone() for k, p in learner.net.named_parameters()}

    ref = make("lstm-optimizer", unroll=2, zero_output=False)
    ref.net.load_state_dict(before)
    theta0 = problem.flat_params()
    leaf = theta0.clone().requires_grad_()
    g0 = torch.autograd.grad(problem.loss(leaf, 0), leaf)[0]
    state = ref.initial_state(theta0)
    theta1, state, _ = ref.update(theta0, g0, None, state)
    f1 = problem.loss(theta1, 1)
    leaf1 = theta1.detach().requires_grad_()
    g1 = torch.autograd.grad(problem.loss(leaf1, 1), leaf1)[0]  # ∇f(θ_1) as a constant
    theta2, _, _ = ref.update(theta1, g1, None, state)
    f2 = problem.loss(theta2, 2)
    if meta_loss == "log":
        f1, f2 = f1.log(), f2.log()
    w1, w2 = (2 / 3, 4 / 3) if loss_weights == "ramp" else (1.0, 1.0)
    (w1 * f1 + w2 * f2).backward()
    for name, p in ref.net.named_parameters():
        assert torch.allclose(got[name], p.grad, rtol=1e-4, atol=1e-7), name


def test_unknown_meta_loss_is_refused_by_name():
    with pytest.raises(ValueError, match="meta_loss: 'mean'"):
        make("lstm-optimizer", meta_loss="mean")
    with pytest.raises(ValueError, match="loss_weights: 'late'"):
        make("gated-lstm-optimizer", loss_weights="late")


@pytest.mark.parametrize("name", ["lstm-optimizer", "gated-lstm-optimizer"])
def test_imitation_follows_the_teacher_and_fits_its_steps(name):
    learner = make(name, imitate="adam", teacher_lr=0.05, imitate_iters=40, meta_lr=0.01, unroll=3)
    teacher = make("adam", lr=0.05)
    learner.meta_iters = 41
    errors = []
    for i in range(40):
        problem = toy_problem(horizon=6, seed=i)
        out = learner.meta_train_step(OptimizeeBatch([problem]))
        # off-policy: the training run is the teacher's own, whatever the learned rule proposed
        assert out["final_loss"] == pytest.approx(float(teacher.optimize(problem)[-1]), rel=1e-5)
        errors.append(out["imitation_error"])
    assert sum(errors[-5:]) / 5 < 0.5 * sum(errors[:5]) / 5
    # the meta-objective takes over after imitate_iters
    assert "imitation_error" not in learner.meta_train_step(OptimizeeBatch([toy_problem(horizon=6, seed=99)]))


def test_imitation_runs_at_its_own_learning_rate_then_the_schedule_resumes():
    learner = make("lstm-optimizer", imitate="sgd", teacher_lr=0.1, imitate_iters=2, imitate_lr=0.02, meta_lr=0.01,
                   lr_schedule="constant", unroll=3)
    learner.meta_iters = 3
    for expected in (0.02, 0.02, 0.01):
        learner.meta_train_step(OptimizeeBatch([toy_problem(horizon=3)]))
        assert learner.optimizer.param_groups[0]["lr"] == expected


def test_bad_imitation_settings_are_refused_by_name():
    with pytest.raises(ValueError, match="imitate: 'lbfgs'"):
        make("lstm-optimizer", imitate="lbfgs", teacher_lr=0.1, imitate_iters=10)
    with pytest.raises(ValueError, match="teacher_lr: None"):
        make("gated-lstm-optimizer", imitate="nag", imitate_iters=10)
    with pytest.raises(ValueError, match="imitate: None with imitate_iters: 10"):
        make("lstm-optimizer", imitate_iters=10)
    with pytest.raises(ValueError, match="imitate_lr: -0.01 must be a positive"):
        make("lstm-optimizer", imitate="adam", teacher_lr=0.03, imitate_iters=10, imitate_lr=-0.01)
    with pytest.raises(ValueError, match="imitate: 'adam' with imitate_iters: 0"):
        make("lstm-optimizer", imitate="adam", teacher_lr=0.03)


def test_zero_output_init_starts_as_the_zero_update():
    learner = make("lstm-optimizer")
    problem = toy_problem()
    curve = learner.optimize(problem)
    assert curve.shape == (problem.horizon + 1,)
    theta = problem.flat_params()
    new, _, _ = learner.update(theta, torch.randn_like(theta), torch.tensor(1.0), learner.initial_state(theta))
    assert torch.equal(new, theta)


def test_snapshot_selection_keeps_the_best_on_validation():
    learner = make("lstm-optimizer", unroll=3, select_every=1, select_runs=2, meta_lr=0.01)
    learner.meta_iters = 3
    for seed in range(3):
        learner.meta_train_step(OptimizeeBatch([toy_problem(horizon=6, seed=seed)]))
    assert sorted(learner.snapshots) == [1, 2, 3]
    base = [toy_problem(horizon=6, seed=10 + s) for s in range(3)]
    other = [toy_problem(horizon=6, seed=20 + s, hidden=9, activation="relu") for s in range(3)]
    tuned = learner.tune(OptimizeeBatch(other, base))  # a transfer benchmark: selection on the base problem
    table = learner.diagnostics()["snapshot_selection"]
    best = min(table, key=lambda r: r["final_loss"])
    assert tuned["selected_iteration"] == best["iteration"] and sum(r["chosen"] for r in table) == 1
    finals = [float(learner.optimize(p)[-1]) for p in base[:2]]
    assert sum(finals) / 2 == pytest.approx(best["final_loss"], rel=1e-5)
    # the cosine schedule reaches 0 at the end of the budget
    assert learner._meta_lr() == pytest.approx(0.0, abs=1e-12)


# -- the gated optimizer -----------------------------------------------------------------------------------


def test_gated_update_is_forget_times_theta_minus_input_times_step():
    learner = make("gated-lstm-optimizer")
    theta = toy_problem().flat_params()
    grad = torch.randn_like(theta)
    state = learner.initial_state(theta)
    new, state2, gates = learner.update(theta, grad, torch.tensor(1.0), state)
    hidden, _ = learner.net["lstm"](log_sign(grad, 10.0), state["lstm"])
    m = learner.net["step"](hidden).squeeze(-1) * learner.hparams.output_scale
    assert torch.allclose(new, gates["forget"] * theta - gates["input"] * m, atol=1e-7)
    # initial gates: forget ≈ σ(5) (a small decay), input ≈ σ(0)
    assert gates["forget"].mean().item() == pytest.approx(torch.sigmoid(torch.tensor(5.0)).item(), abs=0.01)
    assert gates["input"].mean().item() == pytest.approx(0.5, abs=0.05)
    assert torch.equal(state2["i"].squeeze(-1), gates["input"])


def test_gated_optimizer_records_gate_values_per_tensor_and_step():
    learner = make("gated-lstm-optimizer", record_runs=1)
    problem = toy_problem(horizon=4)
    learner.optimize(problem)
    learner.optimize(problem)  # beyond record_runs: not recorded
    rows = learner.diagnostics()["optimizer_gates"]
    assert {r["episode"] for r in rows} == {0}
    assert {r["layer"] for r in rows} == {"W1", "b1", "W2", "b2"}
    assert {r["step"] for r in rows} == {1, 2, 3, 4} and {r["gate"] for r in rows} == {"input", "forget"}
    assert all(0.0 <= r["value"] <= 1.0 for r in rows)


# -- hand-designed optimizers ------------------------------------------------------------------------------


@pytest.mark.parametrize("name,reference", [
    ("sgd", lambda p, lr: torch.optim.SGD(p, lr=lr)),
    ("rmsprop", lambda p, lr: torch.optim.RMSprop(p, lr=lr, alpha=0.9, eps=1e-8)),
    ("adam", lambda p, lr: torch.optim.Adam(p, lr=lr, betas=(0.9, 0.999), eps=1e-8)),
    ("nag", lambda p, lr: torch.optim.SGD(p, lr=lr, momentum=0.9, nesterov=True)),
])
def test_hand_update_rules_match_torch_optim(name, reference):
    problem = toy_problem(horizon=8)
    lr = 0.05
    learner = make(name, lr=lr)
    ours = learner.optimize(problem)
    params = [p.clone().requires_grad_() for p in problem.params]
    optimizer = reference(params, lr)
    losses = []
    for t in range(problem.horizon + 1):
        loss = problem.loss(params, t)
        losses.append(loss.item())
        if t < problem.horizon:
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    assert torch.allclose(ours.double(), torch.tensor(losses, dtype=torch.double), rtol=1e-5, atol=1e-6)


@needs_mnist
@pytest.mark.parametrize("name,low,high", [("sgd", 0.3, 10.0), ("adam", 0.003, 0.3)])
def test_lr_search_on_training_optimizees_picks_a_sane_value(config, name, low, high):
    cell = config.cell("mnist-base", name, 0, "smoke")
    source = runner.task_source(cell.spec, None)
    learner, gens = runner.build_learner(cell, source, torch.device("cpu"))
    tuned = learner.tune(source.sample_validation(2, gens["validation"]))
    table = learner.diagnostics()["lr_search"]
    assert [r["lr"] for r in table] == learner.hparams.lr_grid
    assert sum(r["chosen"] for r in table) == 1
    best = min(table, key=lambda r: r["final_loss"])
    assert tuned["lr"] == best["lr"] == learner.lr
    assert low <= tuned["lr"] <= high and not tuned["at_grid_edge"]
    assert best["final_loss"] < 1.0  # tuned, 100 steps get well below ln 10
    assert table[-1]["final_loss"] > best["final_loss"]  # the largest rate is too large


def test_fixed_lr_skips_the_search():
    learner = make("adam", lr=0.02)
    assert learner.tune(OptimizeeBatch([toy_problem()])) == {"lr": 0.02, "lr_source": "fixed"}
    assert learner.diagnostics() == {}


def test_diverging_learning_rates_count_as_infinite():
    learner = make("sgd", lr_grid=[0.1, 1e9, 1e38])
    learner.tune(OptimizeeBatch([toy_problem()]))
    assert learner.lr == 0.1 and learner.search[1]["final_loss"] > 1e3 and learner.search[2]["final_loss"] == math.inf


# -- Meta-LSTM ---------------------------------------------------------------------------------------------


needs_omniglot = pytest.mark.skipif(not real_omniglot_available(), reason="needs the Omniglot images")


@needs_omniglot
def test_meta_lstm_cell_state_is_the_learner_and_gates_are_recorded(config):
    cell = config.cell("omniglot-5w1s", "meta-lstm", 0, "smoke")
    cell.hparams.update(updates=3, record_episodes=1)
    source = runner.task_source(cell.spec, None)
    learner, gens = runner.build_learner(cell, source, torch.device("cpu"))
    # c_0 is the Conv-4 (32 filters) learner's initialisation; 28x28 -> 1x1x32 features -> 5 ways
    assert learner.meta.c0.numel() == sum(p.numel() for p in learner.net.parameters())
    assert learner.net.feature_dim == 32 and learner.layers == [1, 2, 3, 4, 5]
    episode = source.test_episode(0, cell.spec["eval_seed"])
    zero = learner.predict(episode, steps=0)
    direct = learner.net.forward_with(learner._params(learner.meta.c0.detach()), episode.query_x)
    assert torch.allclose(zero, direct)
    learner.episodes_seen = 0
    learner.predict(episode)
    rows = learner.diagnostics()["gates"]
    assert {r["layer"] for r in rows} == {1, 2, 3, 4, 5} and {r["step"] for r in rows} == {1, 2, 3}
    assert {r["gate"] for r in rows} == {"input", "forget"}
    forget = [r["value"] for r in rows if r["gate"] == "forget"]
    assert min(forget) > 0.9  # b_F starts in U(4, 6): f ≈ 1


@needs_omniglot
def test_meta_lstm_ignores_second_order_terms(config):
    cell = config.cell("omniglot-5w1s", "meta-lstm", 0, "smoke")
    cell.hparams.update(updates=2)
    source = runner.task_source(cell.spec, None)
    learner, gens = runner.build_learner(cell, source, torch.device("cpu"))
    batch = source.sample_train(learner.batch_request(), gens["train_episodes"])
    inputs = []
    original = learner.lstm.forward

    def spy(x, state):
        inputs.append(x)
        return original(x, state)

    learner.lstm.forward = spy
    learner.optimizer.step = lambda *a, **k: None
    out = learner.meta_train_step(batch)
    assert math.isfinite(out["loss"]) and len(inputs) == 2
    assert not any(x.requires_grad for x in inputs)  # preprocessed loss and gradient are constants
    assert learner.meta.c0.grad is not None and learner.cell.forget_gate.weight.grad is not None


# -- the gated optimizer's figure --------------------------------------------------------------------------


def test_gated_gate_figure_from_optimizer_gates_csv(tmp_path):
    import pandas as pd

    from bench import plots

    learner = make("gated-lstm-optimizer", record_runs=3)
    for seed in range(3):
        learner.optimize(toy_problem(horizon=5, seed=seed))
    rows = [{"benchmark": b, "algorithm": "gated-lstm-optimizer", "seed": 0, **r}
            for b in ("mnist-relu", "mnist-base") for r in learner.diagnostics()["optimizer_gates"]]
    run = tmp_path / "run"
    run.mkdir()
    pd.DataFrame(rows).to_csv(run / "optimizer_gates.csv", index=False)
    paths = plots.draw("l2l-gated-gates", [run], tmp_path / "fig")
    assert len(paths) == 3 and all(p.stat().st_size > 0 for p in paths)  # png, pdf, provenance sidecar
    with pytest.raises(plots.FigureDataError, match="gated-lstm-optimizer"):
        plots.draw("l2l-gated-gates", [tmp_path], tmp_path / "fig")
