"""`metabench perf`: speed of meta-training steps, evaluation and sampling on Omniglot 5-way 1-shot, as ratios to
a reference measured in the same run (absolute times on shared machines are noise; ratios are not).

The reference is the textbook implementation every suite starts from: a plain per-task loop of second-order
MAML (torch.autograd.grad with create_graph per task) over an nn.Sequential Conv-4 (conv -> batch norm ->
ReLU -> max-pool, 64 filters), meta-batch 32, one inner step, 15 queries per class. Each measurement is the
median of `repeats` timed calls, reference and candidate interleaved so both see the same machine load.
"""
from __future__ import annotations

import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import pandas as pd
import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

import algorithms
from algorithms import native
from algorithms.base import BatchRequest
from bench.config import Config
from bench.episodes import ClassificationSource, named_generators
from bench.runner import precision

TASKS, WAYS, SHOTS, QUERY = 32, 5, 1, 15
BENCHMARK = "omniglot-5w1s"


def textbook_conv4(ways: int) -> nn.Module:
    def block(cin):
        return [nn.Conv2d(cin, 64, 3, padding=1), nn.BatchNorm2d(64, track_running_stats=False), nn.ReLU(),
                nn.MaxPool2d(2)]
    return nn.Sequential(*block(1), *block(64), *block(64), *block(64), nn.Flatten(), nn.Linear(64, ways))


def reference_maml_step(net: nn.Module, batch, inner_lr: float = 0.4) -> dict[str, torch.Tensor]:
    """The plain per-task loop: inner step with create_graph, query loss, one backward for the meta-gradient."""
    params = dict(net.named_parameters())
    total = 0.0
    for task in batch.tasks():
        loss = F.cross_entropy(functional_call(net, params, (task.support_x,)), task.support_y)
        grads = torch.autograd.grad(loss, list(params.values()), create_graph=True)
        fast = {k: v - inner_lr * g for (k, v), g in zip(params.items(), grads)}
        total = total + F.cross_entropy(functional_call(net, fast, (task.query_x,)), task.query_y)
    return dict(zip(params, torch.autograd.grad(total / len(batch), list(params.values()))))


def omniglot_source(config: Config, data_root=None) -> tuple[ClassificationSource, str]:
    """The real Omniglot source when its files are there, else random images of the same shapes (speed does
    not depend on pixel values)."""
    spec = dict(config.benchmarks[BENCHMARK])
    try:
        from bench import data
        return data.open_source(spec, data_root), "real Omniglot"
    except Exception:
        from bench.data import ImageSplit
        g = torch.Generator().manual_seed(0)
        def split(classes):
            images = torch.randint(0, 256, (classes, 20, 1, 28, 28), dtype=torch.uint8, generator=g)
            return ImageSplit(images, [str(i) for i in range(classes)])
        return ClassificationSource(spec, {"train": split(4112), "val": split(688), "test": split(1692)}), \
            "synthetic images (Omniglot not found)"


def _sync() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def timed(fn: Callable[[], object], repeats: int) -> list[float]:
    fn()  # warm-up: one-off allocations and kernel selection
    times = []
    for _ in range(repeats):
        times.append(_once(fn))
    return times


def interleaved(candidate: Callable, reference: Callable, repeats: int) -> tuple[float, float]:
    """Median seconds of candidate and reference, timed alternately."""
    candidate(), reference()  # warm-up
    a, b = [], []
    for _ in range(repeats):
        a.append(_once(candidate))
        b.append(_once(reference))
    return statistics.median(a), statistics.median(b)


def _once(fn: Callable) -> float:
    _sync()
    tic = time.perf_counter()
    fn()
    _sync()
    return time.perf_counter() - tic


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def matmul_gflops(size: int = 2048, repeats: int = 5, device: str = "cpu") -> float:
    a = torch.randn(size, size, device=device)
    seconds = statistics.median(timed(lambda: a @ a, repeats))
    return 2 * size ** 3 / seconds / 1e9


def flops_of(fn: Callable) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def build(config: Config, name: str, source, overrides: dict | None = None, device: str = "cpu"):
    cls = algorithms.get(name)
    hparams = config.hparams(name, BENCHMARK, "cpu")
    hparams.update(overrides or {})
    learner = cls(source.problem(), cls.Hparams(**hparams), torch.device(device),
                  named_generators(0, ["init", "algorithm"]))
    learner.meta_iters = 1000
    return learner


def run(repeats: int = 5, device: str = "cpu", data_root=None, autocast: str | None = None) -> pd.DataFrame:
    torch.manual_seed(0)
    config = Config.load()
    source, data_note = omniglot_source(config, data_root)
    gen = torch.Generator().manual_seed(0)
    batch = source.sample_train(BatchRequest(tasks=TASKS, ways=WAYS, shots=SHOTS, query=QUERY), gen).to(device)
    rows = []

    def add(name, unit, seconds, work, reference_seconds=None, reference_work=None, notes=""):
        rate = work / seconds
        ratio = None if reference_seconds is None else rate / (reference_work / reference_seconds)
        rows.append({"measure": name, "unit": unit, "value": round(rate, 3), "median_seconds": round(seconds, 5),
                     "repeats": repeats, "ratio": None if ratio is None else round(ratio, 3),
                     "peak_rss_mb": round(peak_rss_mb(), 1), "notes": notes})
        print(f"  {name}: {rate:.2f} {unit}" + (f"  (x{ratio:.2f} reference)" if ratio else ""), file=sys.stderr)

    # 1. the reference loop and our MAML on the same network shape (Conv-4, 64 filters, max-pool)
    reference_net = textbook_conv4(WAYS).to(device)
    maml = build(config, "maml", source, {"backbone": "conv4", "inner_lr": 0.4, "inner_steps": 1,
                                          "meta_batch": TASKS}, device)
    ours, ref = interleaved(lambda: maml.meta_gradients(batch), lambda: reference_maml_step(reference_net, batch),
                            repeats)
    add("reference: per-task MAML loop (textbook Conv-4)", "tasks/s", ref, TASKS, ref, TASKS,
        "second order, meta-batch 32, 1 inner step, 15 queries/class")
    kernel = "on" if device == "cpu" and native.library() is not None else "off"
    add("maml meta-gradient (Conv-4, 64 filters)", "tasks/s", ours, TASKS, ref, TASKS,
        f"task batching: {maml._batching()}; first-layer C kernel (algorithms/native.py): {kernel}; same settings "
        f"as the reference")
    if device != "cpu":  # on a GPU, vectorising across tasks may win: measure it beside the default
        for batching in ("vmap", "loop"):
            alt = build(config, "maml", source, {"backbone": "conv4", "inner_lr": 0.4, "inner_steps": 1,
                                                 "meta_batch": TASKS, "task_batching": batching}, device)
            seconds, ref_again = interleaved(lambda: alt.meta_gradients(batch),
                                             lambda: reference_maml_step(reference_net, batch), repeats)
            add(f"maml meta-gradient, task batching {batching}", "tasks/s", seconds, TASKS, ref_again, TASKS)
    if autocast:  # mixed precision: the same MAML step under torch.autocast, against the float32 reference
        def maml_mixed():
            with precision(torch.device(device), autocast):
                return maml.meta_gradients(batch)
        seconds, ref_again = interleaved(maml_mixed, lambda: reference_maml_step(reference_net, batch), repeats)
        add(f"maml meta-gradient, {autocast} autocast", "tasks/s", seconds, TASKS, ref_again, TASKS,
            f"task batching: {maml._batching()}; reference in float32")
    gflops = matmul_gflops(device=device)
    flops = flops_of(lambda: reference_maml_step(reference_net, batch))
    add("matmul ceiling (2048x2048 fp32)", "GFLOP/s", 1.0, gflops, notes="the machine's dense-matmul rate")
    rows[-1]["value"] = round(gflops, 1)
    achieved = flops / ours / 1e9
    rows.append({"measure": "maml fraction of the matmul ceiling", "unit": "fraction",
                 "value": round(achieved / gflops, 3), "median_seconds": None, "repeats": repeats, "ratio": None,
                 "peak_rss_mb": round(peak_rss_mb(), 1),
                 "notes": f"{flops / 1e9:.0f} GFLOP per meta-iteration of 32 tasks (counted on the reference), "
                          f"{achieved:.0f} GFLOP/s achieved"})
    print(f"  maml: {achieved:.0f} GFLOP/s = {achieved / gflops:.0%} of the matmul ceiling", file=sys.stderr)

    # 2. every classification algorithm's own meta-training step with its cpu-profile settings
    for name in algorithms.names():
        cls = algorithms.get(name)
        if "classification" not in cls.kinds:
            continue
        learner = build(config, name, source, device=device)
        request = learner.batch_request()
        train_batch = source.sample_train(request, torch.Generator().manual_seed(1)).to(device)
        work = len(train_batch) if request.kind == "episodes" else 1
        unit = "tasks/s" if request.kind == "episodes" else "batches/s"
        seconds, ref = interleaved(lambda: learner.meta_train_step(train_batch),
                                   lambda: reference_maml_step(reference_net, batch), repeats)
        add(f"{name} meta-training step", unit, seconds, work, ref, TASKS,
            f"{BENCHMARK} cpu-profile settings; ratio: its {unit} over the reference's tasks/s")

    # 3. evaluation: ProtoNet on frozen test episodes (15 queries), and the episode sampler
    protonet = build(config, "protonet", source, device=device)
    episodes = [source.test_episode(i, 0).to(device) for i in range(50)]
    seconds = statistics.median(timed(lambda: [protonet.predict(e) for e in episodes], max(1, repeats // 2)))
    add("protonet evaluation", "episodes/s", seconds, len(episodes), notes="5-way 1-shot, 15 queries, frozen")
    if autocast:
        def evaluate_mixed():
            with precision(torch.device(device), autocast):
                return [protonet.predict(e) for e in episodes]
        seconds = statistics.median(timed(evaluate_mixed, max(1, repeats // 2)))
        add(f"protonet evaluation, {autocast} autocast", "episodes/s", seconds, len(episodes))
    sample = statistics.median(timed(lambda: source.sample_train(BatchRequest(tasks=TASKS), gen), repeats))
    add("episode sampler", "episodes/s", sample, TASKS, notes="index gathers on the cached uint8 tensor")
    maml_step = ours
    rows.append({"measure": "sampling share of a maml training step", "unit": "fraction",
                 "value": round(sample / (sample + maml_step), 4), "median_seconds": None, "repeats": repeats,
                 "ratio": None, "peak_rss_mb": round(peak_rss_mb(), 1),
                 "notes": "time to draw a 32-task batch over (that + the meta-gradient)"})
    table = pd.DataFrame(rows)
    card = torch.cuda.get_device_name(0) if device.startswith("cuda") else "cpu"
    table["torch"], table["threads"], table["device"], table["data"] = (torch.__version__, torch.get_num_threads(),
                                                                        card, data_note)
    return table


def command(args) -> int:
    out = Path(args.out) if args.out else Path("results") / "perf"
    if args.repeats < 5:
        print("metabench: perf reports medians of at least 5 repeats; using 5", file=sys.stderr)
    print(f"metabench perf: {BENCHMARK}, meta-batch {TASKS}, {QUERY} queries/class", file=sys.stderr)
    if args.device == "cpu":  # built here, before any timing, if this is its first use
        state = "on" if native.library() is not None else "off: the PyTorch path (no C compiler, or METABENCH_NATIVE=0)"
        print(f"  first-layer C kernel (algorithms/native.py): {state}", file=sys.stderr)
    table = run(max(5, args.repeats), args.device, autocast=args.autocast)
    out.mkdir(parents=True, exist_ok=True)
    from bench.rundir import atomic_write_csv
    atomic_write_csv(out / "perf.csv", table)
    with pd.option_context("display.max_colwidth", 60, "display.width", 200):
        print(table[["measure", "unit", "value", "ratio", "peak_rss_mb"]].to_string(index=False))
    print(f"metabench: wrote {out / 'perf.csv'}", file=sys.stderr)
    return 0
