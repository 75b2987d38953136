"""What the MAML experiment scripts beside this file share: the batch and the learner that `metabench perf` times
(Omniglot 5w1s, Conv-4 with 64 filters, 15 queries per class, one inner step, inner_lr 0.4), and a per-task timer."""
import time

import torch

from algorithms.base import BatchRequest
from bench import perf
from bench.allocator import keep_freed_memory
from bench.config import Config

SETTINGS = {"backbone": "conv4", "inner_lr": 0.4, "inner_steps": 1}


def maml_and_batch(tasks: int, learners: int = 1, **hparams):
    """`learners` MAML learners with the same initial weights, and one training batch of `tasks` tasks."""
    keep_freed_memory()
    config = Config.load()
    source, _ = perf.omniglot_source(config)
    batch = source.sample_train(BatchRequest(tasks=tasks, ways=5, shots=1, query=15), torch.Generator().manual_seed(0))
    built = [perf.build(config, "maml", source, {**SETTINGS, "meta_batch": tasks, **hparams}) for _ in range(learners)]
    return built, batch


def ms_per_task(fn, tasks: int, repeats: int = 5) -> float:
    """Median milliseconds per task of `fn()`, which handles `tasks` tasks, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        tic = time.perf_counter()
        fn()
        times.append(time.perf_counter() - tic)
    return sorted(times)[repeats // 2] / tasks * 1e3
