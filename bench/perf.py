"""`metabench perf`: the speed of every timed step (each algorithm's meta-training step on its benchmark's
shapes, evaluation, episode sampling, the textbook MAML loop) as ratios to a fixed reference workload timed
interleaved with it in the same process: reference, step, reference, step, ..., reference. Each repeat's ratio
divides the step's seconds by the mean of the two reference timings around it, so whatever slows the machine
for a second or more (other jobs on a shared CI runner, a slower CPU) slows both and cancels.

perf.csv holds every repeat (raw seconds, the reference's seconds, the ratio) and each step's peak memory;
perf-summary.csv one row per step (medians); manifest.json the size, threads and provenance. `metabench compare
--perf BASELINE NEW` (bench/perfgate.py) is the speed gate over two such folders.

Sizes: `quick` (the CI gate; smoke-profile hyper-parameters, one thread, about a minute on 2 busy cores) and
`full` (cpu-profile hyper-parameters, every thread, plus perf-report.csv: rates against the 32-task textbook
loop, the matmul ceiling, autocast and GPU variants).
"""
from __future__ import annotations

import fnmatch
import gc
import json
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pandas as pd
import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

import algorithms
from algorithms import native
from algorithms.base import BatchRequest
from bench import data, perf_ab
from bench.cell import precision
from bench.config import Config
from bench.data import ImageSplit
from bench.data.mnist import MnistOptimizees
from bench.episodes import ClassificationSource, named_generators
from bench.rundir import atomic_write_csv, atomic_write_text, environment, git_commit, provenance, utc_now

TASKS, WAYS, SHOTS, QUERY = 32, 5, 1, 15
BENCHMARK = "omniglot-5w1s"
SINE, MNIST = "sine-k5", "mnist-base"
# The reference workloads: the textbook second-order MAML loop (plain PyTorch, nothing of this project's code, so a
# regression in the project cannot hide in them), in two kinds, because load on a shared core slows arithmetic on
# large tensors and per-operation overhead (the interpreter, PyTorch's dispatcher) by different amounts: measured
# here, one conv reference left the sine steps' ratios 15-30% off between reruns while the conv steps held.
#   conv:  one Omniglot 5-way 1-shot task (5 queries/class) through an nn.Sequential Conv-4 with 64 filters;
#   small: four sine tasks (K=5, 10 queries) through the 1-40-40-1 MLP: dominated by per-operation overhead.
# Each is short (~0.05 s on one core) so it is timed right before and right after every step sample.
REFERENCE_TASKS = 1
REFERENCE_SECONDS = 0.04
# Steps shorter than this are called several times per timed sample (as timeit does): a 2 ms step timed alone is
# mostly timer and scheduler jitter.
SAMPLE_SECONDS = 0.08
# An injected slowdown for testing the gate end to end: "GLOB=FRACTION[,GLOB=FRACTION]" makes each matching step
# busy-wait FRACTION of its own measured time after every call, i.e. behave like code that does FRACTION more
# work (it costs CPU time as well as wall time; a sleep would show in wall time only).
SLOWDOWN_ENV = "METABENCH_PERF_SLOWDOWN"


@dataclass(frozen=True)
class Size:
    profile: str           # whose hyper-parameters (and meta-batch sizes) the steps use
    repeats: int           # timed calls per step, each between two reference timings
    threads: int | None    # torch intra-op threads (None: leave torch's default)
    eval_episodes: int     # frozen test episodes per evaluation call
    mnist_horizon: int | None  # optimizer steps of MNIST problems (None: the benchmark's 100)


SIZES = {
    # one thread: a single-threaded step on a busy machine is time-sliced but never waits at a barrier for a
    # descheduled sibling thread, which is what made multi-threaded timings swing 2-10x here
    # MNIST runs of 20 steps: the learned optimizers' step costs the same per optimizer step, and 100-step runs
    # took 3.5 s a call, half the quick size's time
    "quick": Size(profile="smoke", repeats=8, threads=1, eval_episodes=10, mnist_horizon=20),
    "full": Size(profile="cpu", repeats=7, threads=None, eval_episodes=50, mnist_horizon=None),
}


def textbook_conv4(ways: int) -> nn.Module:
    def block(cin):
        return [nn.Conv2d(cin, 64, 3, padding=1), nn.BatchNorm2d(64, track_running_stats=False), nn.ReLU(),
                nn.MaxPool2d(2)]
    return nn.Sequential(*block(1), *block(64), *block(64), *block(64), nn.Flatten(), nn.Linear(64, ways))


def reference_maml_step(net: nn.Module, batch, inner_lr: float = 0.4,
                        loss_fn=F.cross_entropy) -> dict[str, torch.Tensor]:
    """The plain per-task loop: inner step with create_graph, query loss, one backward for the meta-gradient."""
    params = dict(net.named_parameters())
    total = 0.0
    for task in batch.tasks():
        loss = loss_fn(functional_call(net, params, (task.support_x,)), task.support_y)
        grads = torch.autograd.grad(loss, list(params.values()), create_graph=True)
        fast = {k: v - inner_lr * g for (k, v), g in zip(params.items(), grads)}
        total = total + loss_fn(functional_call(net, fast, (task.query_x,)), task.query_y)
    return dict(zip(params, torch.autograd.grad(total / len(batch), list(params.values()))))


def omniglot_source(config: Config, data_root=None) -> tuple[ClassificationSource, str]:
    """The real Omniglot source when its files are there, else random images of the same shapes (speed does
    not depend on pixel values)."""
    spec = dict(config.benchmarks[BENCHMARK])
    try:
        return data.open_source(spec, data_root), "real Omniglot"
    except Exception:
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
    # lazy: `metabench --help` builds this module's parser and must not load more of torch than it did
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


class _Report:
    """The rows of perf-report.csv and what its sections share: the Omniglot source, a 32-task batch, the textbook
    reference loop on it, and how to add a rate (with its ratio to the reference) or a fraction."""

    def __init__(self, repeats: int, device: str, data_root, autocast: str | None):
        torch.manual_seed(0)
        self.repeats, self.device, self.autocast, self.rows = repeats, device, autocast, []
        self.config = Config.load()
        self.source, self.data_note = omniglot_source(self.config, data_root)
        self.gen = torch.Generator().manual_seed(0)
        request = BatchRequest(tasks=TASKS, ways=WAYS, shots=SHOTS, query=QUERY)
        self.batch = self.source.sample_train(request, self.gen).to(device)
        self.reference_net = textbook_conv4(WAYS).to(device)

    def reference(self):
        return reference_maml_step(self.reference_net, self.batch)

    def add(self, name, unit, seconds, work, reference_seconds=None, reference_work=None, notes=""):
        rate = work / seconds
        ratio = None if reference_seconds is None else rate / (reference_work / reference_seconds)
        self.rows.append({"measure": name, "unit": unit, "value": round(rate, 3), "median_seconds": round(seconds, 5),
                          "repeats": self.repeats, "ratio": None if ratio is None else round(ratio, 3),
                          "peak_rss_mb": round(peak_rss_mb(), 1), "notes": notes})
        print(f"  {name}: {rate:.2f} {unit}" + (f"  (x{ratio:.2f} reference)" if ratio else ""), file=sys.stderr)

    def add_fraction(self, name: str, value: float, notes: str) -> None:
        self.rows.append({"measure": name, "unit": "fraction", "value": value, "median_seconds": None,
                          "repeats": self.repeats, "ratio": None, "peak_rss_mb": round(peak_rss_mb(), 1),
                          "notes": notes})


def report(repeats: int = 5, device: str = "cpu", data_root=None, autocast: str | None = None) -> pd.DataFrame:
    """The full size's extra table (perf-report.csv): rates against the 32-task textbook loop, the matmul
    ceiling and MAML's fraction of it, autocast and GPU task-batching variants."""
    r = _Report(repeats, device, data_root, autocast)
    maml_seconds = _report_maml(r)
    _report_training_steps(r)
    _report_evaluation(r, maml_seconds)
    table = pd.DataFrame(r.rows)
    card = torch.cuda.get_device_name(0) if device.startswith("cuda") else "cpu"
    table["torch"], table["threads"], table["device"], table["data"] = (torch.__version__, torch.get_num_threads(),
                                                                        card, r.data_note)
    return table


def _report_maml(r: _Report) -> float:
    """1. the reference loop and our MAML on the same network shape (Conv-4, 64 filters, max-pool), its batching
    and precision variants, and the fraction of the matmul ceiling it reaches. Returns MAML's seconds per step."""
    settings = {"backbone": "conv4", "inner_lr": 0.4, "inner_steps": 1, "meta_batch": TASKS}
    maml = build(r.config, "maml", r.source, settings, r.device)
    ours, ref = interleaved(lambda: maml.meta_gradients(r.batch), r.reference, r.repeats)
    r.add("reference: per-task MAML loop (textbook Conv-4)", "tasks/s", ref, TASKS, ref, TASKS,
          "second order, meta-batch 32, 1 inner step, 15 queries/class")
    kernel = "on" if r.device == "cpu" and native.library() is not None else "off"
    r.add("maml meta-gradient (Conv-4, 64 filters)", "tasks/s", ours, TASKS, ref, TASKS,
          f"task batching: {maml._batching()}; first-layer C kernel (algorithms/native.py): {kernel}; same settings "
          f"as the reference")
    if r.device != "cpu":  # on a GPU, vectorising across tasks may win: measure it beside the default
        for batching in ("vmap", "loop"):
            alt = build(r.config, "maml", r.source, {**settings, "task_batching": batching}, r.device)
            seconds, ref_again = interleaved(partial(alt.meta_gradients, r.batch), r.reference, r.repeats)
            r.add(f"maml meta-gradient, task batching {batching}", "tasks/s", seconds, TASKS, ref_again, TASKS)
    if r.autocast:  # mixed precision: the same MAML step under torch.autocast, against the float32 reference
        def maml_mixed():
            with precision(torch.device(r.device), r.autocast):
                return maml.meta_gradients(r.batch)
        seconds, ref_again = interleaved(maml_mixed, r.reference, r.repeats)
        r.add(f"maml meta-gradient, {r.autocast} autocast", "tasks/s", seconds, TASKS, ref_again, TASKS,
              f"task batching: {maml._batching()}; reference in float32")
    gflops = matmul_gflops(device=r.device)
    flops = flops_of(r.reference)
    r.add("matmul ceiling (2048x2048 fp32)", "GFLOP/s", 1.0, gflops, notes="the machine's dense-matmul rate")
    r.rows[-1]["value"] = round(gflops, 1)
    achieved = flops / ours / 1e9
    r.add_fraction("maml fraction of the matmul ceiling", round(achieved / gflops, 3),
                   f"{flops / 1e9:.0f} GFLOP per meta-iteration of 32 tasks (counted on the reference), "
                   f"{achieved:.0f} GFLOP/s achieved")
    print(f"  maml: {achieved:.0f} GFLOP/s = {achieved / gflops:.0%} of the matmul ceiling", file=sys.stderr)
    return ours


def _report_training_steps(r: _Report) -> None:
    """2. every classification algorithm's own meta-training step with its cpu-profile settings."""
    for name in algorithms.names():
        if "classification" not in algorithms.get(name).kinds:
            continue
        learner = build(r.config, name, r.source, device=r.device)
        request = learner.batch_request()
        train_batch = r.source.sample_train(request, torch.Generator().manual_seed(1)).to(r.device)
        work = len(train_batch) if request.kind == "episodes" else 1
        unit = "tasks/s" if request.kind == "episodes" else "batches/s"
        seconds, ref = interleaved(partial(learner.meta_train_step, train_batch), r.reference, r.repeats)
        r.add(f"{name} meta-training step", unit, seconds, work, ref, TASKS,
              f"{BENCHMARK} cpu-profile settings; ratio: its {unit} over the reference's tasks/s")


def _report_evaluation(r: _Report, maml_seconds: float) -> None:
    """3. evaluation: ProtoNet on frozen test episodes (15 queries), and the episode sampler's share of a step."""
    protonet = build(r.config, "protonet", r.source, device=r.device)
    episodes = [r.source.test_episode(i, 0).to(r.device) for i in range(50)]
    seconds = statistics.median(timed(lambda: [protonet.predict(e) for e in episodes], max(1, r.repeats // 2)))
    r.add("protonet evaluation", "episodes/s", seconds, len(episodes), notes="5-way 1-shot, 15 queries, frozen")
    if r.autocast:
        def evaluate_mixed():
            with precision(torch.device(r.device), r.autocast):
                return [protonet.predict(e) for e in episodes]
        seconds = statistics.median(timed(evaluate_mixed, max(1, r.repeats // 2)))
        r.add(f"protonet evaluation, {r.autocast} autocast", "episodes/s", seconds, len(episodes))
    sample = statistics.median(timed(lambda: r.source.sample_train(BatchRequest(tasks=TASKS), r.gen), r.repeats))
    r.add("episode sampler", "episodes/s", sample, TASKS, notes="index gathers on the cached uint8 tensor")
    r.add_fraction("sampling share of a maml training step", round(sample / (sample + maml_seconds), 4),
                   "time to draw a 32-task batch over (that + the meta-gradient)")



# ---------------------------------------------------------------------------------------------------------
# the steps


@dataclass
class Step:
    name: str                          # kind/what/benchmark, e.g. train/maml/omniglot-5w1s
    unit: str                          # what `work` counts
    work: int                          # units of work per call (rate = work / seconds)
    make: Callable[[], Callable[[], object]]   # builds the learner and data lazily; returns the timed call
    notes: str = ""
    reference: str = "conv"            # which reference workload its ratios divide by (REFERENCES)


def _sources(config: Config, data_root=None, size: Size | None = None) -> dict[str, tuple[object, str]]:
    sources = {BENCHMARK: omniglot_source(config, data_root),
               SINE: (data.open_source(dict(config.benchmarks[SINE]), data_root), "generated sine tasks")}
    spec = dict(config.benchmarks[MNIST])
    if size is not None and size.mnist_horizon:
        spec["horizon"] = size.mnist_horizon
        spec["train_problem"] = {**spec["train_problem"], "horizon": size.mnist_horizon}
    try:
        sources[MNIST] = (data.open_source(spec, data_root), "real MNIST")
    except (data.DataError, OSError):  # speed does not depend on pixel values: random digits of the same shapes
        g = torch.Generator().manual_seed(0)
        # flat [n, 784] rows, the layout load_mnist gives
        fake = {split: (torch.randint(0, 256, (n, 28 * 28), dtype=torch.uint8, generator=g),
                        torch.randint(0, 10, (n,), generator=g)) for split, n in (("train", 60000), ("test", 10000))}
        sources[MNIST] = (MnistOptimizees(spec, fake), "synthetic images (MNIST not found)")
    return sources


def reference_workloads(sources: dict) -> dict[str, Callable[[], object]]:
    """The two reference workloads (see REFERENCE_TASKS): plain PyTorch, fixed inputs and weights."""
    batch = sources[BENCHMARK][0].sample_train(BatchRequest(tasks=REFERENCE_TASKS, ways=WAYS, shots=SHOTS, query=5),
                                               torch.Generator().manual_seed(0))
    sine = sources[SINE][0].sample_train(BatchRequest(tasks=4), torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    conv = textbook_conv4(WAYS)
    mlp = nn.Sequential(nn.Linear(1, 40), nn.ReLU(), nn.Linear(40, 40), nn.ReLU(), nn.Linear(40, 1))
    return {"conv": lambda: reference_maml_step(conv, batch),
            "small": lambda: reference_maml_step(mlp, sine, 0.01, F.mse_loss)}


REFERENCES = {"conv": f"textbook second-order MAML loop, {REFERENCE_TASKS} Omniglot 5-way 1-shot task "
                      f"(5 queries/class), nn.Sequential Conv-4 with 64 filters",
              "small": "textbook second-order MAML loop, 4 sine tasks (K=5, 10 queries), nn.Sequential MLP 1-40-40-1"}


KINDS = {BENCHMARK: "classification", SINE: "regression", MNIST: "optimizer"}


@dataclass
class _StepContext:
    """What every step factory needs: the size's profile, the configuration, the opened sources, the device."""
    size: Size
    config: Config
    sources: dict
    device: str

    def source(self, benchmark: str):
        return self.sources[benchmark][0]

    def reference(self, benchmark: str) -> str:
        return "conv" if benchmark == BENCHMARK else "small"

    def learner(self, name: str, benchmark: str):
        cls = algorithms.get(name)
        hparams = self.config.hparams(name, benchmark, self.size.profile)
        made = cls(self.source(benchmark).problem(), cls.Hparams(**hparams), torch.device(self.device),
                   named_generators(0, ["init", "algorithm"]))
        made.meta_iters = 1000  # schedules that depend on the budget: mid-training, not the first iteration
        return made


def steps(size: Size, config: Config, sources: dict, device: str = "cpu") -> list[Step]:
    """Every timed step of a size, in a fixed order (the gate compares step sets by name)."""
    c = _StepContext(size, config, sources, device)
    return [*_training_steps(c), *_evaluation_steps(c), *_sampling_steps(c), _textbook_step(c)]


def _training_steps(c: _StepContext) -> list[Step]:
    def train_step(name: str, benchmark: str) -> Step:
        def make():
            model = c.learner(name, benchmark)
            batch = c.source(benchmark).sample_train(model.batch_request(), torch.Generator().manual_seed(1))
            batch = batch.to(c.device)
            return lambda: model.meta_train_step(batch)
        return Step(f"train/{name}/{benchmark}", "meta-iterations", 1, make,
                    f"{c.size.profile}-profile hyper-parameters", c.reference(benchmark))

    out = []
    for benchmark, kind in KINDS.items():
        for name in algorithms.names():
            if kind not in algorithms.get(name).kinds or not c.config.supports(name, benchmark):
                continue
            if int(c.config.budget(name, benchmark, c.size.profile).get("meta_iters", 0)) <= 0:
                continue  # hand-designed optimizers never meta-train
            out.append(train_step(name, benchmark))
    return out


def _evaluation_steps(c: _StepContext) -> list[Step]:
    episodes = c.size.eval_episodes

    def evaluation(name: str, benchmark: str) -> Step:
        def make():
            model = c.learner(name, benchmark)
            spec = c.config.benchmarks[benchmark]
            frozen = [c.source(benchmark).test_episode(i, spec["eval_seed"]).to(c.device) for i in range(episodes)]
            if KINDS[benchmark] == "regression":
                ks = list(range(int(spec["eval_steps"]) + 1))
                return lambda: [model.predict_steps(e, ks) for e in frozen]
            if KINDS[benchmark] == "optimizer":
                return lambda: [model.optimize(e, e.horizon) for e in frozen[:1]]
            return lambda: [model.predict(e) for e in frozen]
        count = 1 if KINDS[benchmark] == "optimizer" else episodes
        return Step(f"eval/{name}/{benchmark}", "episodes", count, make, "frozen test episodes",
                    c.reference(benchmark))

    return [evaluation(name, benchmark) for name, benchmark in (
        ("protonet", BENCHMARK), ("maml", BENCHMARK), ("matchingnet", BENCHMARK),
        ("maml", SINE), ("sgd", MNIST), ("lstm-optimizer", MNIST))]


def _sampling_steps(c: _StepContext) -> list[Step]:
    def sampler(benchmark: str, tasks: int) -> Step:
        def make():
            gen = torch.Generator().manual_seed(2)
            request = BatchRequest(tasks=tasks) if benchmark != MNIST else BatchRequest(tasks=tasks, kind="optimizees")
            return lambda: c.source(benchmark).sample_train(request, gen)
        return Step(f"sample/train/{benchmark}", "tasks", tasks, make, "meta-training batches", "small")

    episodes = c.size.eval_episodes

    def test_episodes() -> Callable:
        source, spec = c.source(BENCHMARK), c.config.benchmarks[BENCHMARK]
        return lambda: [source.test_episode(i, spec["eval_seed"]) for i in range(episodes)]

    return [sampler(BENCHMARK, TASKS), sampler(SINE, 25),
            Step(f"sample/test/{BENCHMARK}", "episodes", episodes, test_episodes, "frozen test episodes", "small")]


def _textbook_step(c: _StepContext) -> Step:
    def textbook():
        tasks = int(c.config.hparams("maml", BENCHMARK, c.size.profile).get("meta_batch", TASKS))
        batch = c.source(BENCHMARK).sample_train(BatchRequest(tasks=tasks, ways=WAYS, shots=SHOTS, query=QUERY),
                                                 torch.Generator().manual_seed(3)).to(c.device)
        torch.manual_seed(0)
        net = textbook_conv4(WAYS).to(c.device)
        return lambda: reference_maml_step(net, batch)

    return Step("reference/maml-textbook-loop", "meta-iterations", 1, textbook,
                "the per-task second-order loop over MAML's meta-batch: plain PyTorch, a control whose ratio "
                "moves only with measurement noise or a torch change")


# ---------------------------------------------------------------------------------------------------------
# measuring


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    raise OSError(f"{field} not in /proc/self/status")


def peak_memory(fn: Callable[[], object]) -> tuple[float, float, str]:
    """Run fn once; the process's peak resident memory during it, that minus the resident memory before, and how
    that was measured. Linux resets the high-water mark (VmHWM) when "5" is written to /proc/self/clear_refs,
    so each step gets its own peak; tracemalloc would miss tensors (they are not Python allocations), and
    ru_maxrss only ever grows, so the fallback can report 0 for a step below an earlier step's peak."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        before = _status_mb("VmRSS")
        fn()
        peak = _status_mb("VmHWM")
        return peak, max(0.0, peak - before), "VmHWM reset per step"
    except OSError:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        fn()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        return peak, peak - before, "ru_maxrss delta (process high-water)"


def injected_slowdowns(text: str | None = None) -> dict[str, float]:
    text = os.environ.get(SLOWDOWN_ENV, "") if text is None else text
    found = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        pattern, _, fraction = part.rpartition("=")
        try:
            found[pattern] = float(fraction)
        except ValueError:
            raise ValueError(f"{SLOWDOWN_ENV}={text!r}: expected GLOB=FRACTION[,GLOB=FRACTION], e.g. "
                             f"'train/maml/*=0.3'") from None
        if not pattern:
            raise ValueError(f"{SLOWDOWN_ENV}={text!r}: a FRACTION without a step pattern")
    return found


def _slowed(fn: Callable[[], object], fraction: float) -> Callable[[], object]:
    # proportional to the call's CPU time, its work: its wall time on a busy machine also counts other processes
    def call():
        tic = time.thread_time()
        result = fn()
        spin(fraction * (time.thread_time() - tic))
        return result
    return call


def spin(seconds: float) -> None:
    """Busy-wait: extra work costing `seconds` of this thread's time (wall and CPU alike)."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def _clock(fn: Callable[[], object], calls: int = 1) -> tuple[float, float]:
    """Wall and process-CPU seconds per call of `calls` back-to-back calls."""
    _sync()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(calls):
        fn()
    _sync()
    return (time.perf_counter() - wall) / calls, (time.process_time() - cpu) / calls


def _calls(fn: Callable[[], object], seconds: float) -> int:
    return max(1, min(1000, round(seconds / max(_clock(fn)[0], 1e-6))))


def measure(steps_: list[Step], references: dict[str, Callable[[], object]], repeats: int,
            slowdowns: dict[str, float] | None = None, progress: bool = False) -> list[dict]:
    """Every repeat's row: rounds over all steps (round-robin), each step sample timed between two samples of its
    reference workload.

    Round-robin, not one step's repeats back to back: the load on a shared machine drifts over a minute, and a
    step measured in one 3-second window inherited that window's conditions (rerun-to-rerun shifts of 20-30%
    here); spread over the whole run, every step sees the same mixture. Two clocks: wall seconds and process
    CPU seconds (a single-threaded step's wall time also counts the slices other processes ran in)."""
    slowdowns = slowdowns or {}
    refs = {name: (fn, _calls(fn, REFERENCE_SECONDS)) for name, fn in references.items()}
    prepared = []
    for step in steps_:
        fn = step.make()
        fraction = next((f for p, f in slowdowns.items() if fnmatch.fnmatchcase(step.name, p)), 0.0)
        if fraction:
            fn = _slowed(fn, fraction)
        gc.collect()
        peak, extra, method = peak_memory(fn)  # doubles as a warm-up call (first-use allocations, kernel choice)
        prepared.append((step, fn, _calls(fn, SAMPLE_SECONDS), peak, extra, method, fraction))
    rows = []
    for r in range(repeats):
        tic = time.perf_counter()
        for step, fn, calls, peak, extra, method, fraction in prepared:
            ref, ref_calls = refs[step.reference]
            before = _clock(ref, ref_calls)
            wall, cpu = _clock(fn, calls)
            after = _clock(ref, ref_calls)
            ref_wall, ref_cpu = 0.5 * (before[0] + after[0]), 0.5 * (before[1] + after[1])
            rows.append({"step": step.name, "repeat": r, "calls": calls, "seconds": wall,
                         "reference_seconds": ref_wall, "ratio": wall / ref_wall, "cpu_seconds": cpu,
                         "reference_cpu_seconds": ref_cpu, "cpu_ratio": cpu / ref_cpu if ref_cpu > 0 else float("nan"),
                         "reference": step.reference, "unit": step.unit, "work": step.work,
                         "peak_rss_mb": round(peak, 1), "step_peak_mb": round(extra, 1), "memory_method": method,
                         "injected_slowdown": fraction})
        if progress:
            print(f"  round {r + 1}/{repeats}: {time.perf_counter() - tic:.1f} s", file=sys.stderr)
    return rows


def run(size: str = "quick", repeats: int | None = None, device: str = "cpu", data_root=None,
        patterns: list[str] | None = None, progress: bool = True, threads: int | None = None) -> pd.DataFrame:
    """perf.csv's rows: every repeat of every step (matching `patterns`) of a size."""
    spec = SIZES[size]
    repeats = repeats or spec.repeats
    before = torch.get_num_threads()
    if threads or spec.threads:
        torch.set_num_threads(threads or spec.threads)
    try:
        config = Config.load()
        sources = _sources(config, data_root, spec)
        chosen = [s for s in steps(spec, config, sources, device)
                  if not patterns or any(fnmatch.fnmatchcase(s.name, p) for p in patterns)]
        if not chosen:
            raise ValueError(f"no step matches {', '.join(patterns or [])}; `metabench perf --list` names them")
        rows = measure(chosen, reference_workloads(sources), repeats, injected_slowdowns(), progress)
        table = pd.DataFrame(rows)
        table["size"], table["threads"], table["device"] = size, torch.get_num_threads(), device
    finally:
        torch.set_num_threads(before)
    table["data"] = table["step"].map(lambda s: next((note for b, (_, note) in sources.items() if s.endswith(b)), ""))
    if progress:
        for step, g in table.groupby("step", sort=False):
            print(f"  {step}: ratio {g['ratio'].median():.4g}, cpu ratio {g['cpu_ratio'].median():.4g} "
                  f"({g['seconds'].median() * 1e3:.1f} ms x{g['calls'].iloc[0]}, {g['reference'].iloc[0]} reference)",
                  file=sys.stderr)
    return table


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """One row per step: median seconds and ratio, the ratio's spread, the rate, peak memory."""
    rows = []
    for step, g in table.groupby("step", sort=False):
        seconds = float(g["seconds"].median())
        q1, q3 = g["ratio"].quantile([0.25, 0.75])
        rows.append({"step": step, "reference": g["reference"].iloc[0], "repeats": len(g),
                     "calls": int(g["calls"].iloc[0]), "median_seconds": seconds,
                     "median_reference_seconds": float(g["reference_seconds"].median()),
                     "median_ratio": float(g["ratio"].median()), "ratio_iqr": float(q3 - q1),
                     "median_cpu_ratio": float(g["cpu_ratio"].median()),
                     "rate": float(g["work"].iloc[0]) / seconds, "unit": f"{g['unit'].iloc[0]}/s",
                     "peak_rss_mb": float(g["peak_rss_mb"].iloc[0]), "step_peak_mb": float(g["step_peak_mb"].iloc[0])})
    return pd.DataFrame(rows)


def manifest(size: str, repeats: int, device: str, started: str) -> dict:
    return {"kind": "perf", "size": size, "repeats": repeats, "profile": SIZES[size].profile,
            "threads": torch.get_num_threads(),
            "references": REFERENCES,
            "ratio": "step seconds / mean of the reference's seconds just before and just after it (wall: ratio; "
                     "process CPU time: cpu_ratio)", "sample_seconds": SAMPLE_SECONDS,
            "injected_slowdown": os.environ.get(SLOWDOWN_ENV) or None,
            "started": started, "finished": utc_now(), **git_commit(), "environment": environment(device),
            "provenance": provenance()}


def add_arguments(perf) -> None:
    perf.add_argument("--out", type=Path, help="folder for perf.csv, perf-summary.csv and manifest.json "
                                               "(default results/perf)")
    perf.add_argument("--size", choices=["quick", "full"], default="full",
                      help="quick: the CI speed gate's size (smoke-profile steps, one thread, ~2 minutes); full "
                           "(default): cpu-profile steps, every thread, plus perf-report.csv")
    perf.add_argument("--quick", dest="size", action="store_const", const="quick", help="the same as --size quick")
    perf.add_argument("--repeats", type=int, default=None, help="timed calls per step (default: the size's)")
    perf.add_argument("--step", action="append", default=[], metavar="GLOB",
                      help="time only the steps matching GLOB (repeatable), e.g. 'train/maml/*'")
    perf.add_argument("--list", action="store_true", help="print the size's step names and exit")
    perf.add_argument("--threads", type=int, default=None,
                      help="torch intra-op threads (default: 1 for quick, torch's default for full)")
    perf.add_argument("--device", default="cpu")
    perf.add_argument("--autocast", choices=["bf16"], help="full size: also time MAML and ProtoNet under "
                                                          "torch.autocast (bfloat16) in perf-report.csv")
    perf.add_argument("--against", metavar="REV|PERF_DIR",
                      help="also time the code of this git revision (or of the commit a perf folder's manifest "
                           "records, e.g. results/baseline-perf) in fresh processes alternating with this code; "
                           "writes OUT/baseline/run-N and OUT/new/run-N for `compare --perf` (bench/perf_ab.py)")
    perf.add_argument("--rounds", type=int, default=3,
                      help="with --against: processes per side (default 3)")


def command(args) -> int:
    size = getattr(args, "size", None) or "full"
    spec = SIZES[size]
    threads = getattr(args, "threads", None) or spec.threads
    if threads:
        torch.set_num_threads(threads)
    if getattr(args, "list", False):
        config = Config.load()
        for step in steps(spec, config, _sources(config, size=spec)):
            print(step.name)
        return 0
    if getattr(args, "against", None):
        return _against(args, size)
    repeats = args.repeats or spec.repeats
    if repeats < 5:
        print("metabench: perf needs at least 5 repeats per step for the gate's test; using 5", file=sys.stderr)
        repeats = 5
    out = Path(args.out) if args.out else Path("results") / "perf"
    started = utc_now()
    print(f"metabench perf: size {size} ({spec.profile}-profile steps, {repeats} repeats, "
          f"{torch.get_num_threads()} thread(s)); ratios to reference workloads (textbook MAML loops) timed around "
          f"every step sample",
          file=sys.stderr)
    if args.device == "cpu":  # built here, before any timing, if this is its first use
        state = "on" if native.library() is not None else "off: the PyTorch path (no C compiler, or METABENCH_NATIVE=0)"
        print(f"  first-layer C kernel (algorithms/native.py): {state}", file=sys.stderr)
    if os.environ.get(SLOWDOWN_ENV):
        print(f"  {SLOWDOWN_ENV}={os.environ[SLOWDOWN_ENV]}: injected slowdown (testing the gate)", file=sys.stderr)
    table = run(size, repeats, args.device, patterns=getattr(args, "step", None) or None)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_csv(out / "perf.csv", table)
    brief = summary(table)
    atomic_write_csv(out / "perf-summary.csv", brief)
    if size == "full" and not getattr(args, "step", None):
        extra = report(max(5, repeats), args.device, autocast=args.autocast)
        atomic_write_csv(out / "perf-report.csv", extra)
    atomic_write_text(out / "manifest.json", json.dumps(manifest(size, repeats, args.device, started), indent=2,
                                                        default=str) + "\n")
    with pd.option_context("display.width", 200):
        print(brief[["step", "median_ratio", "ratio_iqr", "median_cpu_ratio", "median_seconds", "step_peak_mb"]]
              .to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    print(f"metabench: wrote {out / 'perf.csv'}", file=sys.stderr)
    return 0


def _against(args, size: str) -> int:
    if args.rounds < 2:
        print("metabench: perf --rounds must be at least 2 (the gate needs each side's run-to-run noise)",
              file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else Path("results") / "perf-ab"
    try:
        perf_ab.run(args.against, out, list(getattr(args, "step", None) or []), size, args.rounds)
    except perf_ab.ABError as exc:
        print(f"metabench: perf --against: {exc}", file=sys.stderr)
        return 2
    return 0
