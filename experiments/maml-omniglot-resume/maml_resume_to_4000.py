"""Usage: python experiments/maml-omniglot-resume/maml_resume_to_4000.py 4000 CHECKPOINT_DIR (repository root).

Continue the cpu-profile MAML cell (2,500 iterations) to 4,000: same training stream, constant meta lr, so the
result equals `--set budget.meta_iters=4000` run from scratch. Prints accuracy on the 600 frozen episodes."""
import sys
from pathlib import Path

import torch

from bench import cell as runner
from bench.config import Config

iters = int(sys.argv[1])
config = Config.load(None, [f"budget.meta_iters={iters}"])
cells, _, _ = config.grid(None, ["omniglot-5w1s"], ["maml"], [0], "cpu")
cell = cells[0]
ck = Path(sys.argv[2])  # a folder with a copy of the 2,500-iteration cell checkpoint (it is rewritten)
path = runner.checkpoint_path(ck, cell)
state = torch.load(path, weights_only=True)
print("continuing from", state["iteration"])
state["config_hash"] = cell.config_hash
torch.save(state, path)
res = runner.run_cell(cell, data_root=None, checkpoint_dir=ck)
acc = [r["value"] for r in res.episodes if r["metric"] == "accuracy"]
t = torch.tensor(acc, dtype=torch.float64)
print(f"maml {iters} iterations: {t.mean():.2f} ± {1.96 * t.std() / len(t) ** 0.5:.2f} over {len(t)} episodes; "
      f"status {res.status} {res.error or ''}")
