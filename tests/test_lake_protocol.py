"""The Lake / Koch Omniglot protocol (issue 25): the `lake` split, within-alphabet test episodes whose support and
query images come from different drawers, the pixels-1nn baseline, and a smoke cell of the two together."""
from __future__ import annotations

import csv
import json

import pytest
import torch
from conftest import real_omniglot_available

from algorithms.base import Episode
from algorithms.pixels_1nn import PixelsOneNN, nearest_support_scores
from bench.data import omniglot
from bench.data.base import DataError, ImageSplit
from bench.episodes import WithinAlphabetSource, digest

# ---------------------------------------------------------------------------------------------------------
# the split (committed data: no image is read)


def test_lake_split_is_background_vs_evaluation():
    manifest = omniglot.Manifest.load()
    parts = omniglot.read_split("lake", manifest)
    by_set = {s: [c.name for c in manifest.characters if c.set == s] for s in omniglot.SETS}
    assert (len(parts["train"]), len(parts["test"])) == (964, 659)
    assert parts["train"] == by_set["images_background"] and parts["test"] == by_set["images_evaluation"]
    assert not set(parts["train"]) & set(parts["test"])
    assert len({n.split("/")[0] for n in parts["train"]}) == 30
    assert len({n.split("/")[0] for n in parts["test"]}) == 20
    # validation: the seeded, written-down background alphabets, which stay training characters
    data = json.loads(omniglot.split_file("lake").read_text())
    assert data["val_in_train"] is True and data["rotations"] == [0]
    assert set(parts["val"]) <= set(parts["train"])
    assert sorted({n.split("/")[0] for n in parts["val"]}) == data["val_alphabets"]


def test_val_outside_train_is_refused_even_when_val_in_train(tmp_path):
    data = json.loads(omniglot.split_file("lake").read_text())
    data["val"] = data["val"][:-1] + [data["test"][0]]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match="not in train"):
        omniglot.read_split(str(path), omniglot.Manifest.load())


def test_drawer_is_the_file_name_suffix():
    assert omniglot.drawer_of("images_evaluation/Angelic/character01/0965_07.png") == 7
    assert omniglot.drawer_of("0001_20.png") == 20
    character = omniglot.Manifest.load().characters[0]
    assert [omniglot.drawer_of(character.relpath(d)) for d in range(20)] == list(range(1, 21))
    with pytest.raises(DataError, match="drawer"):
        omniglot.drawer_of("images_background/Latin/character01/readme.txt")


def test_lake_benchmark_is_configured(config):
    spec = config.benchmarks["omniglot-lake-20w1s"]
    assert (spec["kind"], spec["dataset"], spec["split"], spec["test_protocol"]) == (
        "classification", "omniglot", "lake", "lake")
    assert (spec["ways"], spec["shots"], spec["test_query"], spec["rotations"]) == (20, 1, 1, [0])
    assert spec["test_episodes"] >= 20 and spec["metric"] == {"name": "accuracy", "higher_is_better": True}
    for profile in ("smoke", "cpu", "paper", "gate"):
        assert config.budget("pixels-1nn", "omniglot-lake-20w1s", profile)["meta_iters"] == 0
    assert set(config.suites["lake"]["algorithms"]) == {"pixels-1nn", "siamese", "protonet", "matchingnet", "maml"}


# ---------------------------------------------------------------------------------------------------------
# within-alphabet episodes on a constructed split (every pixel names its class and drawer)

GROUP_SIZES = {"Alpha": 25, "Beta": 20, "Gamma": 12}  # Gamma is too small for 20-way: never used


def constructed_source() -> WithinAlphabetSource:
    names = [f"{g}/character{i + 1:02d}" for g, n in GROUP_SIZES.items() for i in range(n)]
    classes = len(names)
    gen = torch.Generator().manual_seed(0)
    # each class lists its 20 drawers in its own order, so the sampler must look drawers up, not assume slot d+1
    drawers = torch.stack([torch.randperm(20, generator=gen) + 1 for _ in range(classes)])
    images = torch.zeros(classes, 20, 1, 2, 2, dtype=torch.uint8)
    images[:, :, 0, 0, 0] = torch.arange(classes).view(-1, 1)  # pixel (0, 0): the class
    images[:, :, 0, 0, 1] = drawers.to(torch.uint8)  # pixel (0, 1): the drawer
    split = ImageSplit(images, names, [n.split("/")[0] for n in names], drawers)
    spec = {"dataset": "omniglot", "split": "constructed", "image_size": 2, "ways": 20, "shots": 1,
            "test_query": 1, "test_protocol": "lake", "backbone": "conv4"}
    return WithinAlphabetSource(spec, {"train": split, "val": split, "test": split})


def decode(x: torch.Tensor) -> tuple[list[int], list[int]]:
    """(class, drawer) of each image from its pixels (images were divided by 255 on the way out)."""
    values = (x[:, 0, 0] * 255).round().long()
    return values[:, 0].tolist(), values[:, 1].tolist()


def test_episode_is_one_alphabet_distinct_characters_and_two_drawers():
    source = constructed_source()
    assert [g for g, _ in source.groups] == ["Alpha", "Beta"] and source.skipped_groups == ["Gamma"]
    for index in range(6):
        episode = source.test_episode(index, 2015)
        s_class, s_drawer = decode(episode.support_x)
        q_class, q_drawer = decode(episode.query_x)
        alphabets = {source.splits["test"].groups[c] for c in s_class}
        assert alphabets == {["Alpha", "Beta"][index % 2]}  # one alphabet, the groups taken in turn
        assert len(set(s_class)) == 20 and q_class == s_class  # 20 distinct characters, one query each
        assert episode.support_y.tolist() == episode.query_y.tolist() and sorted(episode.support_y.tolist()) == \
            list(range(20))
        # one drawer made all support images, another all queries (Koch's pair of drawers per run)
        assert len(set(s_drawer)) == 1 and len(set(q_drawer)) == 1 and s_drawer[0] != q_drawer[0]
        assert episode.info["drawers"].tolist() == [s_drawer[0], q_drawer[0]]


def test_training_episodes_within_one_group_on_request():
    """BatchRequest.within_group (siamese.train_within_alphabet): every training episode's classes from one
    alphabet with enough characters, both alphabets drawn; an ordinary request mixes them."""
    from algorithms.base import BatchRequest
    source = constructed_source()
    groups = source.splits["train"].groups
    seen = set()
    gen = torch.Generator().manual_seed(0)
    batch = source.sample_train(BatchRequest(tasks=12, ways=20, shots=1, query=1, within_group=True), gen)
    for classes in batch.info["class_ids"]:
        alphabets = {groups[c] for c in classes.tolist()}
        assert len(alphabets) == 1 and len(set(classes.tolist())) == 20
        seen |= alphabets
    assert seen == {"Alpha", "Beta"}   # Gamma has fewer than 20 characters
    mixed = source.sample_train(BatchRequest(tasks=4, ways=20, shots=1, query=1), gen)
    assert any(len({groups[c] for c in classes.tolist()}) > 1 for classes in mixed.info["class_ids"])
    with pytest.raises(DataError, match="no group of the train split has 30 classes"):  # 57 classes in all
        source.sample_train(BatchRequest(tasks=1, ways=30, shots=1, query=1, within_group=True), gen)


def test_episodes_are_frozen_and_their_digest_covers_the_drawers():
    a, b = constructed_source(), constructed_source()
    first, again = a.test_episode(3, 2015), b.test_episode(3, 2015)
    for name in ("support_x", "support_y", "query_x", "query_y"):
        assert torch.equal(getattr(first, name), getattr(again, name))
    episodes = [a.test_episode(i, 2015) for i in range(8)]
    assert digest(episodes) == digest(b.test_episode(i, 2015) for i in range(8))
    # pinned: a change to how frozen episodes are drawn (here or in torch's CPU randperm) changes every run's
    # manifest digest, and should fail here first
    assert digest(episodes) == "276d725099501c6e638dcbc2a4394026dbbeab6425271b0e2469a342541b895e"
    assert digest([a.test_episode(3, 2016)]) != digest([first])
    ids = first.info["ids"]
    assert ids[-2:].tolist() == first.info["drawers"].tolist()  # the drawer pair itself is hashed
    # the protocol keys the draws: the same spec without it gives other (ordinary) episodes
    assert a.sampling_key["test_protocol"] == "lake" and a.sampling_key["groups"] == ["Alpha", "Beta"]


def test_a_split_without_drawers_is_refused():
    source = constructed_source()
    split = source.splits["test"]
    bare = ImageSplit(split.images, split.class_names)
    with pytest.raises(DataError, match="groups and drawers"):
        WithinAlphabetSource(source.spec, {"train": bare, "val": bare, "test": bare})


# ---------------------------------------------------------------------------------------------------------
# pixels-1nn


def test_pixels_1nn_predicts_the_nearest_support_image():
    # 3-way 1-shot on 1x1x2 images: supports at (0,0), (10,0), (0,10)
    support = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]]).view(3, 1, 1, 2)
    support_y = torch.tensor([2, 0, 1])  # labels need not follow the support order
    query = torch.tensor([[1.0, 1.0], [9.0, 2.0], [2.0, 7.0], [6.0, 0.0], [4.0, 0.0]]).view(5, 1, 1, 2)
    episode = Episode(support, support_y, query, torch.zeros(5, dtype=torch.long), ways=3, shots=1)
    learner = PixelsOneNN(None, PixelsOneNN.Hparams(), torch.device("cpu"), {})
    scores = learner.predict(episode)
    assert scores.shape == (5, 3)
    assert scores.argmax(-1).tolist() == [2, 0, 1, 0, 2]
    assert torch.allclose(scores[0], -torch.tensor([(81 + 1) ** 0.5, (1 + 81) ** 0.5, 2 ** 0.5]))
    assert learner.meta_train_step(None) == {} and learner.predict(episode, steps=5).equal(scores)


def test_pixels_1nn_with_several_shots_takes_each_class_nearest_image():
    support = torch.tensor([[0.0], [100.0], [50.0], [52.0]]).view(4, 1, 1, 1)
    support_y = torch.tensor([0, 0, 1, 1])
    query = torch.tensor([[95.0], [40.0], [20.0]]).view(3, 1, 1, 1)
    scores = nearest_support_scores(support, support_y, query, ways=2)
    assert scores.argmax(-1).tolist() == [0, 1, 0]
    assert scores.tolist() == [[-5.0, -43.0], [-40.0, -10.0], [-20.0, -30.0]]
    batched = nearest_support_scores(support[None].expand(2, -1, -1, -1, -1), support_y[None].expand(2, -1),
                                     query[None].expand(2, -1, -1, -1, -1), ways=2)
    assert torch.equal(batched[1], scores)


# ---------------------------------------------------------------------------------------------------------
# the real thing (skipped without the Omniglot images)

needs_omniglot = pytest.mark.skipif(not real_omniglot_available(),
                                    reason="needs the Omniglot images (set METABENCH_DATA)")


@needs_omniglot
def test_smoke_cell_of_pixels_1nn_on_the_lake_benchmark(tmp_path):
    from bench.cli import main

    out = tmp_path / "run"
    assert main(["run", "--benchmark", "omniglot-lake-20w1s", "--algorithm", "pixels-1nn", "--profile", "smoke",
                 "--out", str(out), "--no-progress"]) == 0
    rows = [r for r in csv.DictReader((out / "summary.csv").open()) if r["seed"] == "0" and r["metric"] == "accuracy"]
    assert len(rows) == 1 and rows[0]["status"] == "ok" and rows[0]["meta_iters"] == "0"
    # 20-way chance is 5%; raw pixels get well above it but nowhere near a learned embedding
    assert 8.0 < float(rows[0]["mean"]) < 35.0 and int(rows[0]["n"]) == 40


@needs_omniglot
def test_real_lake_episodes_keep_the_constraints(config):
    from bench import cell as runner

    source = runner.task_source(config.benchmarks["omniglot-lake-20w1s"], None)
    test = source.splits["test"]
    assert (source.splits["train"].num_classes, test.num_classes) == (964, 659)
    assert torch.equal(test.drawers, torch.arange(1, 21).expand(659, 20))
    assert len(source.groups) == 20 and source.skipped_groups == []  # every evaluation alphabet has >= 20
    episode = source.test_episode(0, config.benchmarks["omniglot-lake-20w1s"]["eval_seed"])
    classes, examples = episode.info["class_ids"], episode.info["example_ids"]
    assert len({test.groups[c] for c in classes.tolist()}) == 1 and len(set(classes.tolist())) == 20
    support_drawers = test.drawers[classes, examples[:, 0]]
    query_drawers = test.drawers[classes, examples[:, 1]]
    assert len(set(support_drawers.tolist())) == 1 and bool((support_drawers != query_drawers).all())
