"""The MAML row of `metabench perf` alone (meta-batch 32, threads, the process allocator settings; medians of 7
interleaved with the reference loop), for the checkout at PATH, so two commits can be compared in alternating runs:

    git worktree add /tmp/before 0e95302
    for i in 1 2 3; do (cd /tmp/before && python $OLDPWD/experiments/maml-cpu-speed/maml_ratio.py /tmp/before); \
        python experiments/maml-cpu-speed/maml_ratio.py .; done
"""
import sys

sys.path.insert(0, sys.argv[1] if len(sys.argv) > 1 else ".")

import torch  # noqa: E402

from algorithms.base import BatchRequest  # noqa: E402
from bench import perf  # noqa: E402
from bench.allocator import keep_freed_memory  # noqa: E402
from bench.config import Config  # noqa: E402

keep_freed_memory()
config = Config.load()
source, _ = perf.omniglot_source(config)
batch = source.sample_train(BatchRequest(tasks=32, ways=5, shots=1, query=15), torch.Generator().manual_seed(0))
maml = perf.build(config, "maml", source, {"backbone": "conv4", "inner_lr": 0.4, "inner_steps": 1, "meta_batch": 32})
reference = perf.textbook_conv4(5)
ours, ref = perf.interleaved(lambda: maml.meta_gradients(batch), lambda: perf.reference_maml_step(reference, batch), 7)
print(f"{sys.argv[1] if len(sys.argv) > 1 else '.'}: maml {ours / 32 * 1e3:.1f} ms/task, "
      f"reference {ref / 32 * 1e3:.1f} ms/task, ratio {ref / ours:.3f}")
