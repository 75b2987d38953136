"""Why the learned optimizer ends above Adam: mean |update| and |gradient| per coordinate over 20 frozen test
runs, the LSTM optimizer of this folder (its weights after the last of 150 meta-iterations; the test table
evaluated the snapshot of iteration 100) against Adam at its tuned learning rate (0.03).
Run from the repository root: python results/reference/mnist/experiments/lstm-log-lr003-unroll10/step_sizes.py"""
import torch, json
from bench.config import Config
from bench import runner
from algorithms.optimizer_common import loss_and_gradient
torch.set_num_threads(2)
CKPT = "results/reference/mnist/experiments/lstm-log-lr003-unroll10/trained-optimizer.pt"  # 150 meta-iterations
cfg = Config.load(sets=["lstm-optimizer.meta_loss=log", "lstm-optimizer.meta_lr=0.003", "lstm-optimizer.unroll=10"])
cell = cfg.cell("mnist-base", "lstm-optimizer", 0, "cpu")
src = runner.task_source(cell.spec, None)
lstm, _ = runner.build_learner(cell, src, torch.device("cpu"))
state = runner.load_checkpoint(__import__("pathlib").Path(CKPT))
lstm.load_state_dict(state["learner"])
acell = cfg.cell("mnist-base", "adam", 0, "cpu")
adam, _ = runner.build_learner(acell, src, torch.device("cpu"))
adam.hparams.lr = 0.03
runs = [src.test_episode(i, cell.spec["eval_seed"]) for i in range(20)]
def trace_lstm(p):
    theta = p.flat_params(); st = lstm.initial_state(theta); out = []
    with torch.no_grad():
        for t in range(100):
            loss, g = loss_and_gradient(p, theta, t)
            new, st, _ = lstm.update(theta, g, loss, st)
            out.append((float(loss), float((new - theta).abs().mean()), float(g.abs().mean())))
            theta = new
    return out
def trace_adam(p, lr=0.03):
    theta = p.flat_params().clone(); m = torch.zeros_like(theta); v = torch.zeros_like(theta); out = []
    for t in range(1, 101):
        loss, g = loss_and_gradient(p, theta, t - 1)
        m = 0.9 * m + 0.1 * g; v = 0.999 * v + 0.001 * g * g
        step = lr * (m / (1 - 0.9 ** t)) / ((v / (1 - 0.999 ** t)).sqrt() + 1e-8)
        out.append((float(loss), float(step.abs().mean()), float(g.abs().mean()))); theta = theta - step
    return out
L = [trace_lstm(p) for p in runs]; A = [trace_adam(p) for p in runs]
mean = lambda tr, t, i: sum(r[t][i] for r in tr) / len(tr)
print("step  loss(lstm) |dθ|(lstm) |g|(lstm)   loss(adam) |dθ|(adam) |g|(adam)")
for t in [0, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 99]:
    print(f"{t:4d}  {mean(L,t,0):.3f}  {mean(L,t,1):.2e}  {mean(L,t,2):.2e}    {mean(A,t,0):.3f}  {mean(A,t,1):.2e}  {mean(A,t,2):.2e}")
