"""Types shared by the harness (`bench`) and the algorithms: episodes, problem shapes, the learner protocols.

The dependency runs one way: `bench` imports this module, nothing here imports `bench`.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch

KINDS = ("classification", "regression", "optimizer")


@dataclass
class Episode:
    """One few-shot task: a labelled support set and a query set to predict.

    Classification: x is [N*K, C, H, W], y holds episode-local labels 0..ways-1. Regression: x and y are
    [K, in_dim] / [K, out_dim]. `info` carries optional per-task facts that only plots use (e.g. the sine
    amplitude and phase); algorithms must not read it.
    """

    support_x: torch.Tensor
    support_y: torch.Tensor
    query_x: torch.Tensor
    query_y: torch.Tensor
    ways: int
    shots: int
    info: dict[str, Any] = field(default_factory=dict)

    def to(self, device: torch.device | str) -> Episode:
        return dataclasses.replace(self, **_moved(self, device))


@dataclass
class EpisodeBatch:
    """The batched form of Episode: every tensor has a leading task dimension [T, ...]."""

    support_x: torch.Tensor
    support_y: torch.Tensor
    query_x: torch.Tensor
    query_y: torch.Tensor
    ways: int
    shots: int
    info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.support_x.shape[0]

    def to(self, device: torch.device | str) -> EpisodeBatch:
        return dataclasses.replace(self, **_moved(self, device))

    def task(self, index: int) -> Episode:
        info = {k: (v[index] if isinstance(v, torch.Tensor) else v) for k, v in self.info.items()}
        return Episode(self.support_x[index], self.support_y[index], self.query_x[index], self.query_y[index],
                       self.ways, self.shots, info)

    def tasks(self) -> Iterable[Episode]:
        for i in range(len(self)):
            yield self.task(i)


def _moved(episode: Episode | EpisodeBatch, device: torch.device | str) -> dict[str, torch.Tensor]:
    names = ("support_x", "support_y", "query_x", "query_y")
    return {n: getattr(episode, n).to(device, non_blocking=True) for n in names}


def stack_episodes(episodes: list[Episode]) -> EpisodeBatch:
    """Stack equally shaped episodes into the batched form [tasks, ...]."""
    first = episodes[0]
    info: dict[str, Any] = {}
    for key, value in first.info.items():
        if isinstance(value, torch.Tensor):
            info[key] = torch.stack([e.info[key] for e in episodes])
        elif isinstance(value, (int, float)):
            info[key] = torch.tensor([e.info[key] for e in episodes])
    return EpisodeBatch(
        torch.stack([e.support_x for e in episodes]), torch.stack([e.support_y for e in episodes]),
        torch.stack([e.query_x for e in episodes]), torch.stack([e.query_y for e in episodes]),
        first.ways, first.shots, info,
    )


@dataclass
class LabelledBatch:
    """A plain supervised batch over all training classes (for pre-training baselines): y are global class ids."""

    x: torch.Tensor
    y: torch.Tensor
    num_classes: int

    def to(self, device: torch.device | str) -> LabelledBatch:
        return LabelledBatch(self.x.to(device, non_blocking=True), self.y.to(device, non_blocking=True),
                             self.num_classes)


@dataclass(frozen=True)
class BatchRequest:
    """What a learner asks the harness to sample for its next meta-training step.

    kind="episodes": `tasks` episodes of `ways`-way `shots`-shot with `query` queries per class (None = the
    benchmark's own training settings); `within_group`: each episode's classes from one group of the training
    split (an Omniglot alphabet: look-alike distractors, as Lake et al.'s test episodes have), where the
    dataset records groups. kind="labelled": a LabelledBatch of `batch_size` examples over all training classes
    (classification only).
    """

    kind: str = "episodes"
    tasks: int = 1
    ways: int | None = None
    shots: int | None = None
    query: int | None = None
    batch_size: int | None = None
    within_group: bool = False


@dataclass(frozen=True)
class ProblemSpec:
    """The shapes an algorithm is allowed to know about a benchmark (never its name or dataset).

    input_shape: one example's shape, e.g. (1,) for sine or (1, 28, 28) for Omniglot.
    ways: classes per episode at test time (1 for regression); output_dim: 1 for regression.
    train_ways/train_shots/train_query: the benchmark's training episode settings.
    num_train_classes: classes in the training split (for labelled pre-training), 0 when not applicable.
    backbone: the benchmark's default network (a name in algorithms.nets), used unless a hyper-parameter
    overrides it.
    """

    kind: str
    input_shape: tuple[int, ...]
    ways: int
    shots: int
    output_dim: int
    backbone: str
    train_ways: int | None = None
    train_shots: int | None = None
    train_query: int | None = None
    num_train_classes: int = 0
    loss: str = "cross_entropy"


class Learner:
    """Base class of every registered algorithm.

    Subclasses set `kinds` (the benchmark kinds they support) and `Hparams` (a dataclass whose fields are the
    hyper-parameters benchmarks.yaml may set; the config validator rejects any other key). The constructor
    receives the problem shapes, the resolved hyper-parameters, a device and a dict of named torch.Generators
    ("init", "algorithm") derived from the cell seed: algorithms must draw all randomness from these.

    What the harness calls, per benchmark kind, is declared by the protocols at the end of this module
    (LEARNER_PROTOCOLS); this class gives every optional hook a default, so a subclass writes meta_train_step and
    predict/predict_steps (episodic kinds) or optimize (optimizer kind).
    """

    kinds: ClassVar[tuple[str, ...]] = ()
    Hparams: ClassVar[type] = object
    name: ClassVar[str] = ""
    # Total meta-iterations of the cell's budget, which schedules (cosine learning rates, annealing) read during
    # training. The harness sets it after construction, so constructors keep one signature for every algorithm.
    meta_iters: int = 0

    def __init__(self, problem: ProblemSpec, hparams: Any, device: torch.device,
                 generators: Mapping[str, torch.Generator]):
        self.problem = problem
        self.hparams = hparams
        self.device = device
        self.generators = dict(generators)

    # -- training ---------------------------------------------------------------------------------------
    @classmethod
    def training_episode(cls, hparams: Mapping[str, Any]) -> dict[str, int | None]:
        """The ways, shots and queries per class of this learner's training episodes, from its hyper-parameters
        alone (None: the benchmark's own). The harness checks them against the split before any cell starts, so a
        learner whose batch_request asks for other shapes says so here, in the one place both read."""
        return {k: hparams.get(f"train_{k}") for k in ("ways", "shots", "query")}

    @classmethod
    def check_hparams(cls, hparams: Mapping[str, Any]) -> None:
        """Raise ValueError (one line, naming the keys and how to fix them) for settings that are each in range
        but do not go together. The harness calls it for every cell before any cell starts; default: none."""

    def batch_request(self) -> BatchRequest:
        """What the next meta_train_step wants; default: one episode batch of `meta_batch` tasks."""
        return BatchRequest(kind="episodes", tasks=int(getattr(self.hparams, "meta_batch", 1)))

    def meta_train_step(self, batch: EpisodeBatch | LabelledBatch) -> dict[str, float]:
        raise NotImplementedError

    def tune(self, validation: EpisodeBatch) -> dict[str, float]:
        """Optional: choose test-time settings (e.g. a fine-tuning learning rate) on validation tasks after
        training. Returns what it chose, which the harness logs. Default: nothing to tune."""
        return {}

    # -- evaluation -------------------------------------------------------------------------------------
    def predict(self, episode: Episode, steps: int | None = None) -> torch.Tensor:
        """Logits [Q, ways] (classification) or outputs [Q, out_dim] (regression) for the query set, after
        `steps` adaptation steps on the support set (None: the algorithm's own test-time setting,
        hparams.test_inner_steps). Subclasses override this or predict_steps (at least one)."""
        if steps is None:
            steps = int(getattr(self.hparams, "test_inner_steps", 0))
        if type(self).predict_steps is Learner.predict_steps:
            raise NotImplementedError(f"{type(self).__name__} must override predict or predict_steps")
        return self.predict_steps(episode, [steps])[steps]

    def predict_steps(self, episode: Episode, steps: list[int]) -> dict[int, torch.Tensor]:
        """Predictions after each number of adaptation steps in `steps`. Algorithms that adapt step by step
        override this to get every count from one adaptation run instead of len(steps) runs."""
        return {s: self.predict(episode, steps=s) for s in steps}

    def extra_metrics(self, episode: Episode) -> dict[str, float]:
        """Optional per-test-episode metrics besides accuracy (e.g. Siamese verification accuracy); each becomes
        rows of episodes.csv and a summary line. Default: none."""
        return {}

    def diagnostics(self) -> dict[str, list[dict[str, Any]]]:
        """Optional tables gathered during evaluation (e.g. Meta-LSTM gate values): name -> rows; the harness
        writes each as <name>.csv in the run folder with benchmark, algorithm and seed columns in front."""
        return {}

    # -- state ------------------------------------------------------------------------------------------
    def modules(self) -> dict[str, torch.nn.Module]:
        """Named modules whose state makes up the learner (used by the default state_dict)."""
        return {}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {}

    def extra_state(self) -> dict[str, Any]:
        """Plain tensors/numbers beyond modules and optimizers (schedules, counters)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {
            "modules": {k: m.state_dict() for k, m in self.modules().items()},
            "optimizers": {k: o.state_dict() for k, o in self.optimizers().items()},
            "generators": {k: g.get_state() for k, g in self.generators.items()},
            "extra": self.extra_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, m in self.modules().items():
            m.load_state_dict(state["modules"][k])
        for k, o in self.optimizers().items():
            o.load_state_dict(state["optimizers"][k])
        for k, g in self.generators.items():
            g.set_state(state["generators"][k])
        self.load_extra_state(state.get("extra", {}))


class AdamEpisodicLearner(Learner):
    """A learner trained end to end by one Adam optimiser with a step-halving learning rate, on episodes whose
    ways, shots and queries its hyper-parameters may override (the metric family and the sequence learners).

    Hparams used: lr, lr_halve_every (episodes between halvings; 0: constant), meta_batch, and optionally
    train_ways, train_shots, train_query (None: the benchmark's). Subclasses call `setup_adam(parameters)` once
    their modules exist and `adam_step(loss, episodes)` in meta_train_step."""

    def setup_adam(self, parameters) -> None:
        h = self.hparams
        self.optimizer = torch.optim.Adam(list(parameters), lr=h.lr)
        # with lr_halve_every = 0 the schedule still exists (gamma 1) so checkpoints have one shape
        self.schedule = torch.optim.lr_scheduler.StepLR(self.optimizer, step_size=max(1, h.lr_halve_every),
                                                        gamma=0.5 if h.lr_halve_every > 0 else 1.0)

    def adam_step(self, loss: torch.Tensor, episodes: int = 1, clip_norm: float = 0.0) -> None:
        """One optimiser step on `loss`; the schedule advances by `episodes` (the papers count episodes, not
        optimiser steps); clip_norm > 0 clips the global gradient norm first."""
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip_norm:
            torch.nn.utils.clip_grad_norm_([p for g in self.optimizer.param_groups for p in g["params"]], clip_norm)
        self.optimizer.step()
        for _ in range(episodes):
            self.schedule.step()

    def optimizers(self):
        return {"adam": self.optimizer}

    def extra_state(self):
        return {"schedule": self.schedule.state_dict()}

    def load_extra_state(self, state):
        if "schedule" in state:
            self.schedule.load_state_dict(state["schedule"])

    def batch_request(self) -> BatchRequest:
        h = self.hparams
        return BatchRequest(kind="episodes", tasks=h.meta_batch, **self.training_episode(vars(h)))


def hparam_fields(cls: type) -> dict[str, dataclasses.Field]:
    """The hyper-parameter fields of a Learner class (empty when it declares none)."""
    if not dataclasses.is_dataclass(cls.Hparams):
        return {}
    return {f.name: f for f in dataclasses.fields(cls.Hparams)}


# ---------------------------------------------------------------------------------------------------------
# optimizer benchmarks (learned optimizers, Andrychowicz et al. 2016): an "episode" is one optimisation run


_ACTIVATIONS = {"sigmoid": torch.sigmoid, "relu": torch.relu, "tanh": torch.tanh}


@dataclass
class OptimizeeProblem:
    """One optimisation run of an optimizer benchmark: a network's initial parameters and the minibatch of every
    step. The loss at step t is the mean softmax cross-entropy of the MLP at parameters θ_t on minibatch t
    (Andrychowicz et al. 2016, Sec. 3.2: the only sources of variation are θ_0 and the minibatch order).

    params:  θ_0 as [W_1, b_1, ..., W_L, b_L] (W_l is [out, in]) of an MLP with `activation` between layers.
    inputs, targets: the minibatches, [horizon + 1, B, features] and [horizon + 1, B]; or, when `index`
             ([horizon + 1, B]) is given, a whole dataset [N, features] / [N] (shared, not copied: runs on the
             CPU cost kilobytes) from which minibatch t is row index[t]. uint8 pixels are scaled to [0, 1] on use.
    An optimizer uses `params`/`flat_params()`, `loss(θ, t)` and `horizon` only; `info` belongs to the harness
    (e.g. the run's ids for the digest). Learners request these with BatchRequest(kind="optimizees").
    """

    params: list[torch.Tensor]
    inputs: torch.Tensor
    targets: torch.Tensor
    activation: str = "sigmoid"
    info: dict[str, Any] = field(default_factory=dict)
    index: torch.Tensor | None = None

    @property
    def horizon(self) -> int:
        """Optimisation steps this problem has minibatches for (loss@0 .. loss@horizon)."""
        return (self.index if self.index is not None else self.inputs).shape[0] - 1

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Minibatch `step`: inputs as floats, targets."""
        if self.index is not None:
            x, y = self.inputs[self.index[step]], self.targets[self.index[step]]
        else:
            x, y = self.inputs[step], self.targets[step]
        return (x.float().div(255.0) if x.dtype == torch.uint8 else x), y

    @property
    def num_params(self) -> int:
        return sum(p.numel() for p in self.params)

    def param_names(self) -> list[str]:
        """'W1', 'b1', 'W2', ... (for per-layer diagnostics)."""
        return [f"{'W' if i % 2 == 0 else 'b'}{i // 2 + 1}" for i in range(len(self.params))]

    def flat_params(self) -> torch.Tensor:
        """θ_0 as one vector (coordinatewise optimizers work on it)."""
        return torch.cat([p.reshape(-1) for p in self.params])

    def unflatten(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """Views of a flat parameter vector in the shapes of `params` (differentiable)."""
        out, start = [], 0
        for p in self.params:
            out.append(flat[start:start + p.numel()].view(p.shape))
            start += p.numel()
        return out

    def loss(self, params: torch.Tensor | list[torch.Tensor], step: int) -> torch.Tensor:
        """Mean cross-entropy on minibatch `step` at `params` (a flat vector or a list shaped like `params`)."""
        if isinstance(params, torch.Tensor):
            params = self.unflatten(params)
        x, y = self.batch(step)
        layers = len(params) // 2
        act = _ACTIVATIONS[self.activation]
        for i in range(layers):
            x = torch.nn.functional.linear(x, params[2 * i], params[2 * i + 1])
            if i < layers - 1:
                x = act(x)
        return torch.nn.functional.cross_entropy(x, y)

    def to(self, device: torch.device | str) -> OptimizeeProblem:
        inputs, targets, index = self.inputs, self.targets, self.index
        if index is not None and torch.device(device) != inputs.device:
            # another device gets this run's minibatches, not the whole dataset
            inputs, targets, index = inputs[index], targets[index], None
        return dataclasses.replace(self, params=[p.to(device) for p in self.params],
                                   inputs=inputs.to(device, non_blocking=True),
                                   targets=targets.to(device, non_blocking=True), index=index)


@dataclass
class OptimizeeBatch:
    """Several optimisation runs (the batched form of OptimizeeProblem, for meta-training and tuning).

    base: for tuning, runs of the base problem that learned optimizers are meta-trained on (they choose among
    their own snapshots on it, so that every transfer benchmark is scored with the optimizer the base problem
    chose); None where `problems` already are the base problem.
    """

    problems: list[OptimizeeProblem]
    base: list[OptimizeeProblem] | None = None

    def __len__(self) -> int:
        return len(self.problems)

    def __iter__(self):
        return iter(self.problems)

    def to(self, device: torch.device | str) -> OptimizeeBatch:
        return OptimizeeBatch([p.to(device) for p in self.problems],
                              None if self.base is None else [p.to(device) for p in self.base])


# ---------------------------------------------------------------------------------------------------------
# learner protocols: every hook the harness (bench.cell, bench.evaluate) calls, per benchmark kind. `Learner`
# provides defaults for all but meta_train_step, predict/predict_steps and optimize.


@runtime_checkable
class TrainableLearner(Protocol):
    """What the harness calls on a learner of any kind: build, meta-train, tune, checkpoint (bench.cell)."""

    meta_iters: int

    def batch_request(self) -> BatchRequest: ...

    def meta_train_step(self, batch: Any) -> dict[str, float]: ...

    def tune(self, validation: Any) -> dict[str, float]: ...

    def diagnostics(self) -> dict[str, list[dict[str, Any]]]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@runtime_checkable
class EpisodicLearner(TrainableLearner, Protocol):
    """`classification` and `regression` benchmarks: predictions for an episode's query set. Classification
    scores `predict` (logits) and `extra_metrics`; regression scores `predict_steps` (outputs after 0..eval_steps
    adaptation steps)."""

    def predict(self, episode: Episode, steps: int | None = None) -> torch.Tensor: ...

    def predict_steps(self, episode: Episode, steps: list[int]) -> dict[int, torch.Tensor]: ...

    def extra_metrics(self, episode: Episode) -> dict[str, float]: ...


@runtime_checkable
class LearnedOptimizer(TrainableLearner, Protocol):
    """`optimizer` benchmarks (learned and hand-designed optimizers): `optimize(problem, steps)` runs `steps`
    updates from problem.params and returns the loss curve loss@0..loss@steps (steps + 1 values)."""

    def optimize(self, problem: OptimizeeProblem, steps: int | None = None) -> torch.Tensor: ...


LEARNER_PROTOCOLS: dict[str, type] = {"classification": EpisodicLearner, "regression": EpisodicLearner,
                                      "optimizer": LearnedOptimizer}
