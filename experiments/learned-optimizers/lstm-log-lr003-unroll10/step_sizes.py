"""Why the learned optimizer ends above Adam: mean |update| and |gradient| per coordinate over 20 frozen test runs
of mnist-base, a trained LSTM optimizer against Adam at its tuned learning rate (0.03, the grid search's choice).

Train the optimizer first (one thread, about 15 minutes; the committed run folder is
experiments/learned-optimizers/lstm-log-lr003-unroll10/, without its checkpoints):
  metabench run --benchmark mnist-base --algorithm lstm-optimizer --profile cpu --seed 0 --set budget.cpus=1 $PAPER \
    --set lstm-optimizer.meta_loss=log --set lstm-optimizer.meta_lr=0.003 --set lstm-optimizer.unroll=10 --out RUN
then, from the repository root:
  python experiments/learned-optimizers/lstm-log-lr003-unroll10/step_sizes.py RUN
($PAPER: the paper-recipe flags of docs/notes/learned-optimizers.md, the PAPER list below as --set flags.)
The weights read are those after the last of the 150 meta-iterations (the test table evaluated iteration 100's).
"""
import sys
from pathlib import Path

import torch

from algorithms.optimizer_common import loss_and_gradient
from bench import cell as runner
from bench.config import Config

# the paper's recipe (the lstm-optimizer defaults when this ran; they now add a NAG-imitation warm start),
# then this run's
PAPER = ["lstm-optimizer.imitate=null", "lstm-optimizer.imitate_iters=0", "lstm-optimizer.imitate_lr=null",
         "lstm-optimizer.meta_loss=sum", "lstm-optimizer.meta_lr=0.01", "lstm-optimizer.select_every=50"]
SETS = PAPER + ["lstm-optimizer.meta_loss=log", "lstm-optimizer.meta_lr=0.003", "lstm-optimizer.unroll=10"]
if len(sys.argv) != 2 or not (Path(sys.argv[1]) / "checkpoints").is_dir():
    sys.exit("usage: step_sizes.py RUN_DIR  (a run folder of the metabench run command in this file's docstring)")
checkpoint = Path(sys.argv[1]) / "checkpoints" / "mnist-base__lstm-optimizer__seed0.pt"
torch.set_num_threads(2)
config = Config.load(sets=SETS)
cell = config.cell("mnist-base", "lstm-optimizer", 0, "cpu")
source = runner.task_source(cell.spec, None)
lstm, _ = runner.build_learner(cell, source, torch.device("cpu"))
lstm.load_state_dict(runner.load_checkpoint(checkpoint)["learner"])
adam, _ = runner.build_learner(config.cell("mnist-base", "adam", 0, "cpu"), source, torch.device("cpu"))
runs = [source.test_episode(i, cell.spec["eval_seed"]) for i in range(20)]


def trace(problem, init, step):
    """(loss, mean |Δθ|, mean |∇|) at each of the 100 steps of one run under the update `step`."""
    theta = problem.flat_params()
    state, rows = init(theta), []
    with torch.no_grad():
        for t in range(problem.horizon):
            loss, grad = loss_and_gradient(problem, theta, t)
            new, state = step(theta, grad, loss, state, t)
            rows.append((float(loss), float((new - theta).abs().mean()), float(grad.abs().mean())))
            theta = new
    return rows


def lstm_step(theta, grad, loss, state, t):
    new, state, _ = lstm.update(theta, grad, loss, state)
    return new, state


def adam_step(theta, grad, loss, state, t):
    return adam.rule(theta, grad, state, 0.03, t + 1), state


learned = [trace(p, lstm.initial_state, lstm_step) for p in runs]
tuned = [trace(p, adam.init_state, adam_step) for p in runs]
print("step  loss(lstm) |dθ|(lstm) |g|(lstm)   loss(adam) |dθ|(adam) |g|(adam)")
for t in [0, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 99]:
    a, b = ([sum(r[t][i] for r in rows) / len(rows) for i in range(3)] for rows in (learned, tuned))
    print(f"{t:4d}  {a[0]:.3f}  {a[1]:.2e}  {a[2]:.2e}    {b[0]:.3f}  {b[1]:.2e}  {b[2]:.2e}")
