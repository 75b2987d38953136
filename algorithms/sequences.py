"""Episodes as sequences, for black-box meta-learners (blackbox-lstm, mann, snail).

Two ways to read an episode as a sequence of (example, label) steps:

- "sequence" (the lecture's "train + test as one RNN input"; SNAIL, Mishra et al. 2018, Sec. 3): each support
  example's features concatenated with its own one-hot label, in a shuffled order, then a query with an all-zero
  label; the model predicts the query's label at that last step.
- "stream" (MANN, Santoro et al. 2016, Sec. 3.1): step t carries example x_t and the label of step t-1 (the
  label arrives one step late), and the model predicts y_t at every step. A query is the step after the support
  stream: it carries the last support label.

Every query is answered independently, as the last step of its own sequence "support + that query": the
learners compute the support prefix once and branch per query, which gives the same result as Q separate
sequences of length n+1, keeps queries from seeing each other (no transduction) and costs n + Q steps, not
Q·(n+1).

MANN's metric, accuracy at the k-th presentation of a class (`acc@instance{k}`, Santoro Table 1), is scored on a
stream built from a test episode's own images (`test_stream`): `INSTANCES_PER_CLASS` images of every class,
shuffled by a generator seeded from the episode itself, so the metric is a pure function of the episode.
"stream" learners read it with delayed labels; "sequence" learners get the same information as queries: the
prediction for step t is a query (zero label) placed after the labelled steps 0..t-1 (`positions`), so every
learner is scored on what it has seen before each label arrives, exactly as in MANN's protocol.
"""
from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from algorithms import nets
from algorithms.base import AdamEpisodicLearner, Episode, EpisodeBatch

INSTANCES = (1, 2, 5, 10)          # the presentations MANN's Table 1 reports (it also has 3 and 4)
INSTANCES_PER_CLASS = max(INSTANCES)
PROTOCOLS = ("sequence", "stream")


def check_protocol(protocol: str, owner: str) -> str:
    if protocol not in PROTOCOLS:
        raise ValueError(f"{owner}.protocol: {protocol!r} is not one of {', '.join(map(repr, PROTOCOLS))}")
    return protocol


def shuffled_order(tasks: int, length: int, generator: torch.Generator) -> torch.Tensor:
    """An independent random permutation of 0..length-1 per task: [tasks, length] (CPU, from `generator`)."""
    return torch.rand(tasks, length, generator=generator).argsort(dim=-1)


def gather_steps(x: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """x[t, order[t]] for every task t: reorders the step dimension (dim 1) of [T, n, ...] tensors."""
    order = order.to(x.device)
    index = order.view(*order.shape, *([1] * (x.dim() - 2))).expand(*order.shape, *x.shape[2:])
    return x.gather(1, index)


def labelled_steps(features: torch.Tensor, labels: torch.Tensor, ways: int) -> torch.Tensor:
    """'sequence' support steps: [T, n, D] features ++ one-hot of their own labels -> [T, n, D + ways]."""
    return torch.cat([features, F.one_hot(labels, ways).to(features.dtype)], dim=-1)


def unlabelled_steps(features: torch.Tensor, ways: int) -> torch.Tensor:
    """'sequence' query steps: features ++ an all-zero label -> [..., D + ways]."""
    return torch.cat([features, features.new_zeros(*features.shape[:-1], ways)], dim=-1)


def delayed_steps(features: torch.Tensor, labels: torch.Tensor, ways: int) -> torch.Tensor:
    """'stream' steps: x_t ++ one-hot(y_{t-1}), all-zero label at t = 0 (Santoro et al. 2016, Fig. 1a)."""
    previous = F.one_hot(labels[:, :-1], ways).to(features.dtype)
    previous = torch.cat([previous.new_zeros(labels.shape[0], 1, ways), previous], dim=1)
    return torch.cat([features, previous], dim=-1)


def delayed_query_steps(features: torch.Tensor, last_label: torch.Tensor, ways: int) -> torch.Tensor:
    """'stream' query steps after a support stream: [T, q, D] features ++ one-hot of the last support label."""
    late = F.one_hot(last_label, ways).to(features.dtype)[:, None, :].expand(-1, features.shape[1], -1)
    return torch.cat([features, late], dim=-1)


def support_and_query_steps(protocol: str, support: torch.Tensor, support_y: torch.Tensor, query: torch.Tensor,
                            ways: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs of the support prefix [T, n, D+ways] and of each query step [T, q, D+ways] for `protocol`; the
    support must already be in its shuffled order."""
    if protocol == "sequence":
        return labelled_steps(support, support_y, ways), unlabelled_steps(query, ways)
    return delayed_steps(support, support_y, ways), delayed_query_steps(query, support_y[:, -1], ways)


def episode_generator(episode: Episode, purpose: str) -> torch.Generator:
    """A generator that depends on the episode only (its `ids` when the harness gave them, else its pixels), so
    that test-time shuffles are pure functions of the episode and consume none of the learner's streams."""
    ids = episode.info.get("ids") if isinstance(episode.info, dict) else None
    h = hashlib.sha256(purpose.encode())
    if isinstance(ids, torch.Tensor):
        h.update(ids.detach().cpu().to(torch.int64).contiguous().numpy().tobytes())
    else:
        for t in (episode.support_x, episode.support_y, episode.query_x, episode.query_y):
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return torch.Generator().manual_seed(int.from_bytes(h.digest()[:8], "little") >> 1)


def instance_numbers(labels: torch.Tensor) -> torch.Tensor:
    """For each step of [T, L] label streams, which presentation of its class it is (1 = first time seen)."""
    same = labels.unsqueeze(-1) == labels.unsqueeze(-2)                   # [T, L, L]: same class as step j
    earlier_or_now = torch.ones(labels.shape[-1], labels.shape[-1], dtype=torch.bool,
                                device=labels.device).tril()
    return (same & earlier_or_now).sum(-1)


def instance_accuracies(correct: torch.Tensor, instance: torch.Tensor,
                        instances: tuple[int, ...] = INSTANCES) -> dict[str, float]:
    """Accuracy (%) over the steps that are the k-th presentation of their class, for each k in `instances`
    that occurs in the stream: {'acc@instance1': ..., ...}."""
    out = {}
    for k in instances:
        mask = instance == k
        if bool(mask.any()):
            out[f"acc@instance{k}"] = 100.0 * float(correct[mask].float().mean())
    return out


def test_stream(episode: Episode, per_class: int = INSTANCES_PER_CLASS) -> tuple[torch.Tensor, torch.Tensor]:
    """MANN's protocol on a test episode's own images: the first `per_class` images of each class (support then
    queries, at most as many as the episode has), shuffled by a generator seeded from the episode.

    Returns images [L, C, H, W] and labels [L] (the episode's labels). A 5-way 1-shot episode with 15 queries
    per class has 16 images per class: a 50-step stream with 10 presentations of each class.
    """
    x = torch.cat([episode.support_x, episode.query_x])
    y = torch.cat([episode.support_y, episode.query_y])
    picks = []
    for c in range(episode.ways):
        picks.append(torch.nonzero(y == c).flatten()[:per_class])   # stable: support first, then queries
    picks = torch.cat(picks)
    order = torch.randperm(len(picks), generator=episode_generator(episode, "mann-stream"))
    picks = picks[order.to(picks.device)]
    return x[picks], y[picks]


def absent_labels_masked(logits: torch.Tensor, support_y: torch.Tensor, ways: int) -> torch.Tensor:
    """[T, m, ways] logits with the label slots that no support step of task t carries set to -inf."""
    present = F.one_hot(support_y, ways).amax(dim=1).bool()                   # [T, ways]
    return logits.masked_fill(~present[:, None, :], float("-inf"))


# ---------------------------------------------------------------------------------------------------------
# the learner all three share: a Conv-4 (or raw pixels) embedding trained end to end under a sequence model


def build_module(factory, generator: torch.Generator, device: torch.device | str) -> nn.Module:
    """Build `factory()` on the meta device and initialise it from `generator` (as nets.build does)."""
    with torch.device("meta"):
        module = factory()
    module = module.to_empty(device=device)
    nets.init_parameters(module, generator)
    return module


class Pixels(nn.Module):
    """The raw-pixel 'embedding' of MANN's original setting: images (optionally resized, Santoro et al. use
    20x20) flattened to vectors."""

    def __init__(self, input_shape: tuple[int, ...], size: int = 0):
        super().__init__()
        self.size = size
        channels, height, width = input_shape
        self.feature_dim = channels * (size * size if size else height * width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.size and x.shape[-1] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="area")
        return x.flatten(1)


@dataclass
class SequenceHparams:
    """Hyper-parameters every sequence learner has; each algorithm's Hparams extends these."""

    lr: float = 0.001                  # Adam
    lr_halve_every: int = 0            # optimiser steps between halvings of the learning rate (0: never)
    grad_clip: float = 0.0             # clip the global gradient norm (0: off)
    meta_batch: int = 16               # episodes per optimiser step
    train_shots: int | None = None     # support examples per class of training episodes (None: the benchmark's)
    train_query: int | None = 5        # queries per class of training episodes (None: the benchmark's)
    protocol: str = "sequence"         # "sequence" (labels attached, queries unlabelled) or "stream" (MANN)
    backbone: str | None = None        # a name in algorithms.nets, "pixels", or None: the benchmark's
    pixel_size: int = 0                # backbone "pixels": resize to this square size first (0: keep)
    # a curriculum over ways: training episodes start with this many classes, stay there until `curriculum_from`
    # of the run and grow linearly to the benchmark's ways at `curriculum_until` (0: off). A k-way episode's
    # labels land on k random label slots of the benchmark's ways, so every slot is trained from the start.
    # Added after results were committed: at these defaults they leave a cell's config hash as it was
    # (hash_neutral, bench.config.Cell.config_hash).
    curriculum_ways: int = field(default=0, metadata={"hash_neutral": True})
    curriculum_from: float = field(default=0.0, metadata={"hash_neutral": True})
    curriculum_until: float = field(default=0.5, metadata={"hash_neutral": True})
    curriculum_spread: bool = field(default=True, metadata={"hash_neutral": True})  # false: labels 0..k-1
    # training loss over the label slots the episode uses only (its support's labels): on a k-way curriculum
    # episode under a wider head, the other slots' logits are left out of the softmax instead of being pushed
    # down. A no-op on episodes with all of the benchmark's ways, so at test time too. Hash-neutral when off.
    curriculum_mask: bool = field(default=False, metadata={"hash_neutral": True})


class SequenceLearner(AdamEpisodicLearner):
    """Embeds every image, reads the episode as a sequence (`protocol`) and trains embedding and sequence
    model end to end by cross-entropy on the predicted labels.

    Subclasses implement `build_model(in_dim, ways)` returning a module whose forward(support, query,
    positions=None) maps support steps [T, n, in_dim] and query steps [T, q, in_dim] to logits ([T, n, ways],
    [T, q, ways]): the prediction at every support step (causal) and, for each query independently, at the step
    after the first positions[i] support steps (default: after all n).
    """

    kinds = ("classification",)

    def __init__(self, problem, hparams, device, generators):
        super().__init__(problem, hparams, device, generators)
        self.protocol = check_protocol(hparams.protocol, self.name or type(self).__name__)
        self.check_hparams(dataclasses.asdict(hparams))
        self.ways = problem.ways
        name = hparams.backbone or problem.backbone
        if name == "pixels":
            self.embedding = Pixels(tuple(problem.input_shape), hparams.pixel_size).to(device)
        else:
            # running batch-norm statistics at test: one query's prediction never depends on the other queries
            self.embedding = nets.build(name, problem.input_shape, 0, generators["init"], device, transductive=False)
        in_dim = self.embedding.feature_dim + self.ways
        self.model = build_module(lambda: self.build_model(in_dim, self.ways), generators["init"], device)
        params = list(self.embedding.parameters()) + list(self.model.parameters())
        self.setup_adam(params)

    def build_model(self, in_dim: int, ways: int) -> nn.Module:
        raise NotImplementedError

    # -- state ---------------------------------------------------------------------------------------------
    def modules(self):
        return {"embedding": self.embedding, "model": self.model}

    # -- reading episodes ----------------------------------------------------------------------------------
    def embed(self, *images: torch.Tensor) -> list[torch.Tensor]:
        """Features [T, m, D] of image tensors [T, m, C, H, W], all in one pass of the embedding."""
        flat = torch.cat([x.flatten(0, 1) for x in images])
        z = self.embedding(flat)
        out, start = [], 0
        for x in images:
            count = x.shape[0] * x.shape[1]
            out.append(z[start:start + count].view(x.shape[0], x.shape[1], z.shape[-1]))
            start += count
        return out

    def _logits(self, support_x, support_y, query_x, order):
        support_x, support_y = gather_steps(support_x, order), gather_steps(support_y, order)
        support, query = self.embed(support_x, query_x)
        steps = support_and_query_steps(self.protocol, support, support_y, query, self.ways)
        support_logits, query_logits = self.model(*steps)
        return support_logits, query_logits, support_y

    @classmethod
    def check_hparams(cls, hparams):
        name, defaults = cls.name or cls.__name__, cls.Hparams()

        def get(key):
            return hparams.get(key, getattr(defaults, key))

        if get("protocol") == "sequence" and get("train_query") == 0:
            raise ValueError(f"{name}.train_query: 0 leaves the 'sequence' protocol nothing to predict (its "
                             f"support steps carry their own labels); use train_query >= 1 or protocol: stream")
        if get("curriculum_ways") and get("curriculum_from") >= get("curriculum_until"):
            raise ValueError(f"{name}.curriculum_from ({get('curriculum_from')}) must be below curriculum_until "
                             f"({get('curriculum_until')}): the ways grow between the two")

    def training_ways(self) -> int | None:
        """The curriculum's ways for the next training episodes (None: no curriculum, the benchmark's)."""
        h = self.hparams
        if not h.curriculum_ways or h.curriculum_ways >= self.ways:
            return None
        total = max(1, self.meta_iters)
        start, end = h.curriculum_from * total, h.curriculum_until * total
        done = max(0.0, self.schedule.last_epoch - start) / max(1.0, end - start)
        return min(self.ways, round(h.curriculum_ways + (self.ways - h.curriculum_ways) * min(1.0, done)))

    def batch_request(self):
        request = super().batch_request()
        ways = self.training_ways()
        return request if ways is None else dataclasses.replace(request, ways=ways)

    def _spread_labels(self, batch: EpisodeBatch) -> EpisodeBatch:
        """A k-way episode's labels 0..k-1 moved to k random slots of the benchmark's ways, per episode."""
        slots = torch.rand(len(batch), self.ways, generator=self.generators["algorithm"]).argsort(-1)
        slots = slots[:, :batch.ways].to(batch.support_y.device)
        return dataclasses.replace(batch, support_y=slots.gather(1, batch.support_y),
                                   query_y=slots.gather(1, batch.query_y), ways=self.ways)

    def meta_train_step(self, batch: EpisodeBatch) -> dict[str, float]:
        self.embedding.train()
        self.model.train()
        curriculum = batch.ways < self.ways
        if curriculum and self.hparams.curriculum_spread:
            batch = self._spread_labels(batch)      # (its ways become the benchmark's: decided before)
        order = shuffled_order(len(batch), batch.support_x.shape[1], self.generators["algorithm"])
        support_logits, query_logits, support_y = self._logits(batch.support_x, batch.support_y, batch.query_x,
                                                                order)
        if self.hparams.curriculum_mask and curriculum:
            support_logits, query_logits = (absent_labels_masked(logits, batch.support_y, self.ways)
                                            for logits in (support_logits, query_logits))
        if self.protocol == "stream":
            # MANN's loss: every step of the stream predicts its own label (Santoro et al. 2016, Sec. 3.1)
            logits = torch.cat([support_logits, query_logits], dim=1)
            targets = torch.cat([support_y, batch.query_y], dim=1)
        else:  # support steps carry their own label: only the queries are predictions
            logits, targets = query_logits, batch.query_y
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        self.adam_step(loss, clip_norm=self.hparams.grad_clip)
        with torch.no_grad():
            values = {"loss": loss.item()}
            if batch.query_y.numel():   # MANN's own training streams may have no queries (train_query: 0)
                values["accuracy"] = 100.0 * (query_logits.argmax(-1) == batch.query_y).float().mean().item()
            if self.protocol == "stream":
                correct = support_logits.argmax(-1) == support_y
                values.update(instance_accuracies(correct, instance_numbers(support_y), (2,)))
        return values

    @torch.no_grad()
    def predict(self, episode: Episode, steps: int | None = None) -> torch.Tensor:
        self.embedding.eval()
        self.model.eval()
        order = shuffled_order(1, episode.support_x.shape[0], episode_generator(episode, "support-order"))
        _, query_logits, _ = self._logits(episode.support_x[None], episode.support_y[None], episode.query_x[None],
                                          order)
        return query_logits[0]

    @torch.no_grad()
    def extra_metrics(self, episode: Episode) -> dict[str, float]:
        """MANN's accuracy at the k-th presentation of a class, on a stream of the episode's images."""
        self.embedding.eval()
        self.model.eval()
        x, y = test_stream(episode)
        (features,) = self.embed(x[None])
        if self.protocol == "stream":
            steps = delayed_steps(features, y[None], self.ways)
            logits, _ = self.model(steps, steps[:, :0])
        else:   # step t as a query after the labelled steps 0..t-1: the label arrives after the prediction
            positions = torch.arange(features.shape[1], device=features.device)
            _, logits = self.model(labelled_steps(features, y[None], self.ways), unlabelled_steps(features, self.ways),
                                   positions)
        correct = logits.argmax(-1) == y[None]
        return instance_accuracies(correct, instance_numbers(y[None]))
