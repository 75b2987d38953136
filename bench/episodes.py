"""Fixed-seed episode sampling: named RNG streams from a cell seed, frozen test episodes, episode digests.

Test episode i of a benchmark is a pure function of (the benchmark's sampling spec, its eval seed, i): it is
drawn from a torch.Generator seeded by a hash of those three, so every algorithm and every training seed is
scored on identical episodes (paired comparisons) and episode i does not depend on how many are evaluated.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from algorithms.base import BatchRequest, Episode, EpisodeBatch, LabelledBatch, ProblemSpec, stack_episodes
from bench.data.base import DataError, ImageSplit


def stable_hash(*parts: Any) -> int:
    """A 63-bit integer from the JSON of `parts`, identical across processes and platforms."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


def named_generators(seed: int, names: Iterable[str]) -> dict[str, torch.Generator]:
    """Independent CPU generators, one per stream name, derived from one root seed with SeedSequence."""
    gens = {}
    for name in names:
        child = np.random.SeedSequence(entropy=int(seed), spawn_key=(stable_hash("stream", name),))
        gens[name] = torch.Generator().manual_seed(int(child.generate_state(1, np.uint64)[0] >> np.uint64(1)))
    return gens


def frozen_generator(spec_key: dict[str, Any], eval_seed: int, index: int) -> torch.Generator:
    """The generator that draws test episode `index`: depends on nothing but its three arguments."""
    return torch.Generator().manual_seed(stable_hash("test-episode", spec_key, int(eval_seed), int(index)))


def episode_identity(episode: Episode) -> bytes:
    """What identifies an episode for its digest: its `ids` (class ids + example ids, or task parameters)."""
    ids = episode.info.get("ids")
    if ids is None:
        raise ValueError("test episodes must carry info['ids'] (what identifies them) for the digest")
    return ids.detach().cpu().contiguous().numpy().tobytes()


class EpisodeDigest:
    """sha256 over the ids of an episode list, fed one episode at a time."""

    def __init__(self):
        self._hash = hashlib.sha256()

    def update(self, episode: Episode) -> None:
        self._hash.update(episode_identity(episode))

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def digest(episodes: Iterable[Episode]) -> str:
    """The digest of an episode list, recorded in the manifest to prove comparisons are paired."""
    h = EpisodeDigest()
    for episode in episodes:
        h.update(episode)
    return h.hexdigest()


def batches(episodes: list[Episode], size: int) -> Iterable[tuple[int, EpisodeBatch]]:
    """(first index, batch) over a list of equally shaped episodes."""
    for start in range(0, len(episodes), size):
        yield start, stack_episodes(episodes[start:start + size])


class ClassificationSource:
    """N-way K-shot episodes over decoded image splits (bench.data.base.ImageSplit), by index gathers only.

    Labels are permuted per episode: the N classes are drawn in random order and labelled 0..N-1 in that
    order. Training episodes come from the "train" split with the benchmark's train_* settings; tune() gets
    episodes from "val"; test episodes are frozen draws from "test".
    """

    kind = "classification"

    def __init__(self, spec: dict[str, Any], splits: dict[str, ImageSplit]):
        self.spec = spec
        self.splits = splits
        self.ways, self.shots, self.test_query = int(spec["ways"]), int(spec["shots"]), int(spec["test_query"])
        self.train_ways = int(spec.get("train_ways") or self.ways)
        self.train_shots = int(spec.get("train_shots") or self.shots)
        self.train_query = int(spec.get("train_query") or self.test_query)
        test = splits["test"]
        name = spec.get("name", spec["dataset"])
        for split, ways, shots, query in (("test", self.ways, self.shots, self.test_query),
                                          ("train", self.train_ways, self.train_shots, self.train_query)):
            s = splits[split]
            if ways > s.num_classes:
                raise DataError(f"{name}: {ways}-way episodes need {ways} classes but the {split} split has "
                                f"{s.num_classes}; lower `ways`/`train_ways`")
            if shots + query > s.per_class:
                raise DataError(f"{name}: {shots} shots + {query} queries per class exceed the {s.per_class} "
                                f"examples per class of the {split} split; lower shots or query")
        self._train_groups: dict[int, list[torch.Tensor]] = {}  # ways -> class ids of each group that has as many
        self.sampling_key = {"dataset": spec["dataset"], "split": spec.get("split"),
                             "image_size": spec.get("image_size"), "rotations": spec.get("rotations"),
                             "ways": self.ways, "shots": self.shots, "test_query": self.test_query,
                             "test_classes": hashlib.sha256("\n".join(test.class_names).encode()).hexdigest()}

    def problem(self) -> ProblemSpec:
        train = self.splits["train"]
        return ProblemSpec(kind="classification", input_shape=tuple(train.images.shape[2:]), ways=self.ways,
                           shots=self.shots, output_dim=self.ways, backbone=self.spec["backbone"],
                           train_ways=self.train_ways, train_shots=self.train_shots, train_query=self.train_query,
                           num_train_classes=train.num_classes, loss="cross_entropy")

    @staticmethod
    def _pixels(images: torch.Tensor) -> torch.Tensor:
        return images.float().div_(255.0)

    def _draw(self, split, ways: int, shots: int, query: int, tasks: int, generator: torch.Generator):
        """Class ids [T, N] and example ids [T, N, K+Q] for `tasks` episodes."""
        classes = torch.stack([torch.randperm(split.num_classes, generator=generator)[:ways] for _ in range(tasks)])
        examples = torch.rand(tasks, ways, split.per_class, generator=generator).argsort(dim=-1)[..., :shots + query]
        return classes, examples

    def _episodes(self, split, classes: torch.Tensor, examples: torch.Tensor, shots: int) -> EpisodeBatch:
        tasks, ways, n = examples.shape
        images = self._pixels(split.images[classes.unsqueeze(-1), examples])  # [T, N, K+Q, C, H, W]
        shape = images.shape[3:]
        labels = torch.arange(ways).view(1, ways, 1)
        support_x = images[:, :, :shots].reshape(tasks, ways * shots, *shape)
        query_x = images[:, :, shots:].reshape(tasks, ways * (n - shots), *shape)
        support_y = labels.expand(tasks, ways, shots).reshape(tasks, -1)
        query_y = labels.expand(tasks, ways, n - shots).reshape(tasks, -1)
        return EpisodeBatch(support_x, support_y, query_x, query_y, ways=ways, shots=shots,
                            info={"class_ids": classes, "example_ids": examples})

    def sample_train(self, request: BatchRequest, generator: torch.Generator):
        train = self.splits["train"]
        if request.kind == "labelled":
            size = int(request.batch_size or 64)
            flat = torch.randint(train.num_classes * train.per_class, (size,), generator=generator)
            cls, ex = flat // train.per_class, flat % train.per_class
            return LabelledBatch(self._pixels(train.images[cls, ex]), cls, train.num_classes)
        ways = self.train_ways if request.ways is None else request.ways
        shots = self.train_shots if request.shots is None else request.shots
        query = self.train_query if request.query is None else request.query
        if ways > train.num_classes or shots + query > train.per_class:
            # a learner's own train_ways/shots/query (bench.config.check_cells refuses these before a CLI run;
            # this keeps direct API use from an IndexError deep in a gather)
            raise DataError(f"{ways}-way {shots}-shot episodes with {query} queries need {ways} classes and "
                            f"{shots + query} examples per class; the train split has {train.num_classes} x "
                            f"{train.per_class}; lower train_ways/train_shots/train_query")
        if request.within_group:
            classes, examples = self._draw_within_groups(train, ways, shots, query, request.tasks, generator)
        else:
            classes, examples = self._draw(train, ways, shots, query, request.tasks, generator)
        return self._episodes(train, classes, examples, shots)

    def _draw_within_groups(self, split, ways: int, shots: int, query: int, tasks: int, generator):
        """As _draw, with each episode's classes from one group (uniform over the groups that have `ways`
        classes), so an episode's distractors look alike."""
        if split.groups is None:
            raise DataError(f"{self.spec.get('name', self.spec['dataset'])}: episodes within one group need the "
                            f"training split's groups, which {self.spec['dataset']} does not record")
        members = self._train_groups.get(ways)
        if members is None:
            by_group: dict[str, list[int]] = {}
            for i, group in enumerate(split.groups):
                by_group.setdefault(group, []).append(i)
            members = self._train_groups[ways] = [torch.tensor(ids) for _, ids in sorted(by_group.items())
                                                  if len(ids) >= ways]
        if not members:
            raise DataError(f"no group of the train split has {ways} classes; lower the training ways")
        picks = torch.randint(len(members), (tasks,), generator=generator)
        classes = torch.stack([members[g][torch.randperm(len(members[g]), generator=generator)[:ways]]
                               for g in picks.tolist()])
        examples = torch.rand(tasks, ways, split.per_class, generator=generator).argsort(dim=-1)[..., :shots + query]
        return classes, examples

    def sample_validation(self, tasks: int, generator: torch.Generator) -> EpisodeBatch:
        split = self.splits.get("val") or self.splits["train"]
        classes, examples = self._draw(split, self.ways, self.shots, self.test_query, tasks, generator)
        return self._episodes(split, classes, examples, self.shots)

    def test_episode(self, index: int, eval_seed: int) -> Episode:
        test = self.splits["test"]
        gen = frozen_generator(self.sampling_key, eval_seed, index)
        classes, examples = self._draw(test, self.ways, self.shots, self.test_query, 1, gen)
        episode = self._episodes(test, classes, examples, self.shots).task(0)
        episode.info["ids"] = torch.cat([classes.reshape(-1), examples.reshape(-1)])
        return episode


class WithinAlphabetSource(ClassificationSource):
    """Lake et al. (2015)'s one-shot classification runs, drawn as Koch et al. (2015) drew theirs: every frozen test
    episode takes its N classes from ONE group of the test split (an Omniglot alphabet, so the distractors look
    alike), and its images by drawer: K drawers made every support image and Q other drawers every query, the
    same drawers for all N classes (a query never matches its support by the drawer's hand). Training and
    validation episodes stay ordinary N-way episodes over all classes: the protocol constrains evaluation only.

    Episode i uses group i mod G (groups in name order, those with fewer than N classes left out), so G
    consecutive episodes cover every group once, as Koch's 2 runs x 10 alphabets did."""

    def __init__(self, spec: dict[str, Any], splits: dict[str, ImageSplit]):
        super().__init__(spec, splits)
        test, name = splits["test"], spec.get("name", spec["dataset"])
        if test.groups is None or test.drawers is None:
            raise DataError(f"{name}: within-alphabet episodes need the test split's groups and drawers; "
                            f"{spec['dataset']} does not record them")
        drawer_ids, order = test.drawers.sort(dim=1)
        if not bool((drawer_ids == drawer_ids[:1]).all()):
            raise DataError(f"{name}: every test class must have one example by each of the same drawers")
        self.drawer_ids = drawer_ids[0]
        self.by_drawer = order  # [classes, drawers]: example index of drawer_ids[k] in class c
        members: dict[str, list[int]] = {}
        for i, group in enumerate(test.groups):
            members.setdefault(group, []).append(i)
        self.groups = [(g, torch.tensor(ids)) for g, ids in sorted(members.items()) if len(ids) >= self.ways]
        self.skipped_groups = sorted(g for g, ids in members.items() if len(ids) < self.ways)
        if not self.groups:
            raise DataError(f"{name}: no test alphabet has {self.ways} characters; lower `ways`")
        # the protocol and the groups it cycles through change every episode, so they key the frozen draws
        self.sampling_key = {**self.sampling_key, "test_protocol": "lake",
                             "groups": [g for g, _ in self.groups]}

    def test_episode(self, index: int, eval_seed: int) -> Episode:
        test = self.splits["test"]
        gen = frozen_generator(self.sampling_key, eval_seed, index)
        group, members = self.groups[index % len(self.groups)]
        classes = members[torch.randperm(len(members), generator=gen)[:self.ways]]
        picked = torch.randperm(len(self.drawer_ids), generator=gen)[:self.shots + self.test_query]
        examples = self.by_drawer[classes][:, picked]  # [N, K+Q]: the first K columns are the support drawers
        episode = self._episodes(test, classes[None], examples[None], self.shots).task(0)
        drawers = self.drawer_ids[picked]
        episode.info.update(group=group, drawers=drawers)
        episode.info["ids"] = torch.cat([classes, examples.reshape(-1), drawers])
        return episode
