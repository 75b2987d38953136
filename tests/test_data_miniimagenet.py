"""Mini-ImageNet loading on generated JPEGs named after real wnids (the images themselves are never shipped)."""
import hashlib

import pytest
import torch
from datafixtures import make_miniimagenet

from algorithms.base import BatchRequest
from bench.data import DataError, miniimagenet, open_source


@pytest.fixture
def tiny(tmp_path):
    root = tmp_path / "data"
    split = make_miniimagenet(root)
    return {"root": root, "split": split, "cache": tmp_path / "cache", "images": root / "mini-imagenet" / "images"}


def load(tiny, **spec):
    spec = {"dataset": "miniimagenet", "split": str(tiny["split"]), **spec}
    return miniimagenet.load_splits(spec, tiny["root"], tiny["cache"])


def test_fixture_loads_as_84px_rgb_per_split(tiny):
    splits = load(tiny)
    assert {k: tuple(s.images.shape) for k, s in splits.items()} == {
        "train": (3, 5, 3, 84, 84), "val": (2, 5, 3, 84, 84), "test": (2, 5, 3, 84, 84)}
    assert splits["train"].images.dtype == torch.uint8
    real = miniimagenet.read_csv(miniimagenet.RAVI_DIR / "train.csv")
    assert splits["train"].class_names == list(real)[:3]


def test_image_size_is_configurable(tiny):
    assert load(tiny, image_size=32)["test"].images.shape == (2, 5, 3, 32, 32)


def test_cache_per_split_is_reused(tiny, monkeypatch):
    first = load(tiny)
    names = sorted(p.name.split("-")[2] for p in (tiny["cache"] / "miniimagenet").iterdir())
    assert names == ["test", "train", "val"]
    monkeypatch.setattr(miniimagenet, "decode_part", lambda *a, **k: pytest.fail("decoded again despite the cache"))
    again = load(tiny)
    assert all(torch.equal(first[k].images, again[k].images) for k in first)


def test_missing_images_make_one_error_with_count_example_and_fix(tiny):
    gone = sorted(tiny["images"].iterdir())[:2]
    for p in gone:
        p.unlink()
    with pytest.raises(DataError) as err:
        load(tiny)
    msg = str(err.value)
    assert "2 of 35 images missing under" in msg and str(gone[0]) in msg
    assert "image-net.org" in msg and "\n" not in msg


def test_corrupt_jpeg_is_named(tiny):
    bad = sorted(tiny["images"].iterdir())[3]
    bad.write_bytes(b"not a jpeg at all")
    with pytest.raises(DataError, match=rf"1 file missing or corrupt: {bad} \(not an image PIL can read\)"):
        load(tiny)


def test_real_split_without_images_says_what_goes_where(tmp_path):
    with pytest.raises(DataError) as err:
        miniimagenet.load_splits({"dataset": "miniimagenet", "split": "ravi"}, tmp_path, tmp_path / "cache")
    msg = str(err.value)
    assert "60000 of 60000 images missing" in msg
    assert str(tmp_path / "mini-imagenet" / "images" / "n0153282900000005.jpg") in msg


def test_committed_ravi_split_counts_and_checksums():
    parts = miniimagenet.read_split(miniimagenet.RAVI_DIR)
    assert {p: (len(c), {len(f) for f in c.values()}) for p, c in parts.items()} == {
        "train": (64, {600}), "val": (16, {600}), "test": (20, {600})}
    for part, md5 in miniimagenet.RAVI_MD5.items():
        assert hashlib.md5((miniimagenet.RAVI_DIR / f"{part}.csv").read_bytes()).hexdigest() == md5
    assert "MIT License" in (miniimagenet.RAVI_DIR / "LICENSE").read_text()


def test_bad_split_folders_are_data_errors(tiny, tmp_path):
    with pytest.raises(DataError, match="needs .*train.csv"):
        load(tiny, split=str(tmp_path / "nowhere"))
    lines = (tiny["split"] / "val.csv").read_text().splitlines()
    (tiny["split"] / "val.csv").write_text("\n".join(lines[:-1]) + "\n")  # one class loses an image
    with pytest.raises(DataError, match="different numbers of images"):
        load(tiny)


def test_episodes_run_end_to_end_on_the_fixture(tiny, monkeypatch):
    monkeypatch.setenv("METABENCH_CACHE", str(tiny["cache"]))
    spec = {"dataset": "miniimagenet", "split": str(tiny["split"]), "ways": 2, "shots": 1, "test_query": 2,
            "train_query": 2, "backbone": "conv4", "image_size": 84}
    source = open_source(spec, tiny["root"])
    episode = source.test_episode(0, eval_seed=0)
    assert episode.support_x.shape == (2, 3, 84, 84) and episode.query_x.shape == (4, 3, 84, 84)
    batch = source.sample_train(BatchRequest(tasks=2), torch.Generator().manual_seed(0))
    assert batch.support_x.shape == (2, 2, 3, 84, 84)


def test_verify_images_decodes_every_file(tiny):
    files = sorted(p.name for p in tiny["images"].iterdir())
    assert miniimagenet.verify_images(tiny["images"], files) == []
    (tiny["images"] / files[0]).write_bytes((tiny["images"] / files[0]).read_bytes()[:200])  # truncated JPEG
    problems = miniimagenet.verify_images(tiny["images"], files)
    assert [p.path.name for p in problems] == [files[0]] and "not a readable image" in problems[0].what
