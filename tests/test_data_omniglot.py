"""Omniglot loading: a generated tree in torchvision's layout everywhere, the real data when it is present."""
import hashlib
import importlib.util
import json
import os
import shutil
import time
import zipfile
from pathlib import Path

import pytest
import torch
from conftest import REAL_DATA
from datafixtures import make_omniglot, write_omniglot_manifest, write_omniglot_split

from bench.data import DataError, cache_dir, omniglot

REAL = REAL_DATA / "omniglot" / "omniglot-py"
needs_real = pytest.mark.skipif(not REAL.is_dir(), reason=f"real Omniglot not found at {REAL}")
ROT4 = [0, 90, 180, 270]


@pytest.fixture
def tiny(tmp_path):
    """A 10-character tree (two background alphabets, one evaluation alphabet), its manifest and split."""
    root = tmp_path / "data"
    base = make_omniglot(root)
    manifest = write_omniglot_manifest(base, tmp_path / "manifest.json")
    names = omniglot.Manifest.load(manifest).names
    split = write_omniglot_split(tmp_path / "tiny.json", names[:4], names[4:7], names[7:])
    return {"root": root, "base": base, "manifest": manifest, "split": split, "cache": tmp_path / "cache",
            "names": names}


def load(tiny, **spec):
    spec = {"dataset": "omniglot", "split": str(tiny["split"]), "image_size": 28, **spec}
    return omniglot.load_splits(spec, tiny["root"], tiny["cache"], manifest=tiny["manifest"])


def test_loads_splits_with_rotations_as_classes(tiny):
    splits = load(tiny, rotations=ROT4)
    assert {k: tuple(s.images.shape) for k, s in splits.items()} == {
        "train": (16, 20, 1, 28, 28), "val": (12, 20, 1, 28, 28), "test": (12, 20, 1, 28, 28)}
    train = splits["train"]
    assert train.images.dtype == torch.uint8
    assert train.class_names[:5] == ["Alpha/character01@rot0", "Alpha/character01@rot90", "Alpha/character01@rot180",
                                     "Alpha/character01@rot270", "Alpha/character02@rot0"]
    # strokes are 255 on a 0 background (inverted), and each rotated class is rot90 of the upright one
    assert train.images[:, :, :, 0, 0].max() == 0 and train.images.max() == 255
    assert torch.equal(train.images[1], torch.rot90(train.images[0], 1, dims=(-2, -1)))
    assert torch.equal(train.images[2], torch.rot90(train.images[0], 2, dims=(-2, -1)))


def test_without_rotations_class_names_are_characters(tiny):
    splits = load(tiny, image_size=105)
    assert splits["test"].class_names == ["Gamma/character01", "Gamma/character02", "Gamma/character03"]
    assert splits["test"].images.shape == (3, 20, 1, 105, 105)


def test_cache_is_written_once_and_reused(tiny, monkeypatch):
    first = load(tiny)
    files = list((tiny["cache"] / "omniglot").iterdir())
    assert len(files) == 1 and files[0].name.startswith("omniglot-28px-") and files[0].suffix == ".pt"
    monkeypatch.setattr(omniglot, "scan", lambda *a, **k: pytest.fail("decoded again despite the cache"))
    again = load(tiny)
    assert torch.equal(first["train"].images, again["train"].images)


def test_touched_source_file_invalidates_the_cache(tiny):
    load(tiny)
    png = next(tiny["base"].glob("images_background/Alpha/character01/*.png"))
    later = png.stat().st_mtime_ns + 10**9
    os.utime(png, ns=(later, later))  # same bytes, new mtime: the fast fingerprint must notice
    load(tiny)
    assert len(list((tiny["cache"] / "omniglot").iterdir())) == 2


def test_other_image_size_gets_its_own_cache(tiny):
    assert load(tiny, image_size=14)["val"].images.shape[-2:] == (14, 14)
    assert sorted(p.name[:13] for p in (tiny["cache"] / "omniglot").iterdir()) == ["omniglot-14px"]


def test_missing_files_are_listed_with_paths_and_the_fix(tiny):
    gone = tiny["base"] / "images_evaluation" / "Gamma" / "character02" / "0009_03.png"
    gone.unlink()
    shutil.rmtree(tiny["base"] / "images_background" / "Beta" / "character01")
    with pytest.raises(DataError) as err:
        load(tiny)
    msg = str(err.value)
    assert "21 files missing or corrupt" in msg and "more" not in msg  # every one named (issue 26)
    assert msg.count("(missing)") == 21
    assert "metabench data prepare omniglot --download" in msg and "\n" not in msg
    assert str(tiny["base"] / "images_background" / "Beta" / "character01" / "0005_01.png") in msg


def test_missing_and_corrupt_files_are_named_in_one_error(tiny):
    (tiny["base"] / "images_background" / "Alpha" / "character01" / "0001_01.png").unlink()
    garbage = tiny["base"] / "images_evaluation" / "Gamma" / "character03" / "0010_05.png"
    garbage.write_bytes(b"garbage")
    with pytest.raises(DataError) as err:
        load(tiny)
    assert "2 files missing or corrupt" in str(err.value) and f"{garbage} (not a PNG image)" in str(err.value)


def test_corrupt_files_are_named(tiny):
    broken = tiny["base"] / "images_background" / "Alpha" / "character03" / "0003_07.png"
    broken.write_bytes(broken.read_bytes()[:40])  # truncated PNG
    swapped = tiny["base"] / "images_evaluation" / "Gamma" / "character01" / "0008_01.png"
    shutil.copy(tiny["base"] / "images_evaluation" / "Gamma" / "character01" / "0008_02.png", swapped)
    with pytest.raises(DataError) as err:
        load(tiny)
    msg = str(err.value)
    assert "2 files missing or corrupt" in msg
    assert f"{broken} (not a " in msg  # "not a PNG image" or "not a readable PNG (...)"
    assert f"{swapped} (pixel checksum" in msg and "expected" in msg


def test_no_dataset_names_both_sets_and_the_download_command(tmp_path):
    with pytest.raises(DataError) as err:
        omniglot.load_splits({"dataset": "omniglot"}, tmp_path, tmp_path / "cache")
    msg = str(err.value)
    assert str(tmp_path / "omniglot" / "omniglot-py" / "images_background") in msg
    assert "images_evaluation.zip" in msg and "prepare omniglot --download" in msg


def test_torchvision_root_layout_is_accepted(tiny, tmp_path):
    alt = tmp_path / "tvroot"
    shutil.copytree(tiny["base"], alt / "omniglot-py")
    assert omniglot.find_base(alt) == alt / "omniglot-py"
    splits = omniglot.load_splits({"split": str(tiny["split"])}, alt, tiny["cache"], manifest=tiny["manifest"])
    assert splits["train"].images.shape == (4, 20, 1, 28, 28)


def _zip_set(base, set_name):
    path = base / f"{set_name}.zip"
    with zipfile.ZipFile(path, "w") as z:
        for png in sorted((base / set_name).rglob("*.png")):
            z.write(png, png.relative_to(base).as_posix())
    shutil.rmtree(base / set_name)
    return path


def test_official_zip_is_read_without_extracting(tiny, monkeypatch):
    folder = load(tiny)
    path = _zip_set(tiny["base"], "images_background")
    monkeypatch.setitem(omniglot.ZIP_MD5, "images_background", hashlib.md5(path.read_bytes()).hexdigest())
    zipped = load(tiny)
    assert torch.equal(folder["train"].images, zipped["train"].images)
    assert not (tiny["base"] / "images_background").exists()


def test_zip_with_wrong_md5_is_rejected(tiny):
    _zip_set(tiny["base"], "images_background")
    with pytest.raises(DataError, match=r"images_background.zip \(md5 [0-9a-f]{32}, expected 68d2efa1"):
        load(tiny)


def test_split_counts_are_checked(tiny, tmp_path):
    names = tiny["names"]
    bad = write_omniglot_split(tmp_path / "bad.json", names[:4], names[4:7], names[7:], {"train": 5})
    with pytest.raises(DataError, match="train lists 4 characters but counts.train says 5"):
        load(tiny, split=str(bad))
    overlap = write_omniglot_split(tmp_path / "overlap.json", names[:4], names[3:7], names[7:])
    with pytest.raises(DataError, match="in two parts"):
        load(tiny, split=str(overlap))


def test_unknown_split_and_bad_rotation_are_data_errors(tiny):
    with pytest.raises(DataError, match="known splits: lake, maml-random, vinyals"):
        load(tiny, split="no-such-split")
    with pytest.raises(DataError, match="multiples of 90"):
        load(tiny, rotations=[0, 45])


def test_constants_match_torchvision():
    # read torchvision's source instead of importing it (importing torchvision.datasets takes seconds)
    spec = importlib.util.find_spec("torchvision")
    source = (Path(spec.submodule_search_locations[0]) / "datasets" / "omniglot.py").read_text()
    assert all(f'"{md5}"' in source for md5 in omniglot.ZIP_MD5.values())
    assert f'"{omniglot.URL_PREFIX}"' in source


# ---------------------------------------------------------------------------------------------------------
# the committed data files (no dataset needed)


def _split(name):
    return json.loads((omniglot.SPLITS_DIR / f"omniglot_{name}.json").read_text())


def test_committed_manifest_describes_the_full_dataset():
    man = omniglot.Manifest.load()
    assert len(man.characters) == 1623 and man.images == 32460
    assert len(man.alphabets("images_background")) == 30 and len(man.alphabets("images_evaluation")) == 20
    assert [c.id for c in man.characters] == list(range(1, 1624))
    assert man.characters[0].relpath(0) == "images_background/Arcadian/character01/0001_01.png"
    assert all(len(c.digests) == 20 for c in man.characters)


def test_vinyals_split_is_the_prototypical_networks_split():
    split = _split("vinyals")
    assert split["counts"] == {"train": 1028, "val": 172, "test": 423}
    alphabets = {part: {n.split("/")[0] for n in split[part]} for part in ("train", "val", "test")}
    assert alphabets["val"] == {"Armenian", "Bengali", "Early_Aramaic", "Hebrew", "Mkhedruli_(Georgian)"}
    evaluation = set(omniglot.Manifest.load().alphabets("images_evaluation"))
    assert len(alphabets["test"]) == 13 and alphabets["test"] <= evaluation
    gurmukhi = sorted(n for n in split["test"] if n.startswith("Gurmukhi/"))
    assert gurmukhi == [f"Gurmukhi/character{i}" for i in (42, 43, 44, 45)]
    assert "Gurmukhi/character41" in split["train"]
    parts = [set(split[p]) for p in ("train", "val", "test")]
    assert set.union(*parts) == set(omniglot.Manifest.load().names) and sum(map(len, parts)) == 1623


def test_maml_random_split_is_seeded_and_complete():
    split = _split("maml-random")
    assert split["seed"] == 1 and split["counts"] == {"train": 1100, "val": 100, "test": 423}
    parts = [set(split[p]) for p in ("train", "val", "test")]
    assert set.union(*parts) == set(omniglot.Manifest.load().names) and sum(map(len, parts)) == 1623


# ---------------------------------------------------------------------------------------------------------
# the real data (../shared/datasets): decoded once per machine into the tests' cache folder


@pytest.fixture(scope="session")
def real_vinyals():
    start = time.perf_counter()
    splits = omniglot.load_splits({"dataset": "omniglot", "split": "vinyals", "image_size": 28, "rotations": ROT4},
                                  REAL_DATA, cache_dir())
    return splits, time.perf_counter() - start


@needs_real
def test_real_vinyals_split_counts_with_rotations(real_vinyals):
    splits, _ = real_vinyals
    assert {k: s.num_classes for k, s in splits.items()} == {"train": 4112, "val": 688, "test": 1692}
    assert all(s.per_class == 20 and s.images.shape[2:] == (1, 28, 28) for s in splits.values())
    assert splits["test"].class_names[0] == "Gurmukhi/character42@rot0"
    assert splits["val"].class_names[-1] == "Mkhedruli_(Georgian)/character41@rot270"
    # inverted: strokes bright on a 0 background (a few drawings reach into a corner)
    corners = splits["train"].images[..., 0, 0]
    assert (corners == 0).float().mean() > 0.99 and splits["train"].images.max() == 255


@needs_real
def test_real_cached_load_is_fast_and_other_splits_reuse_it(real_vinyals, monkeypatch):
    def no_decoding(data):
        raise AssertionError("a cached load must not decode the PNGs again")

    monkeypatch.setattr(omniglot, "read_strokes", no_decoding)
    splits = omniglot.load_splits({"split": "maml-random", "rotations": ROT4}, REAL_DATA, cache_dir())
    assert {k: s.num_classes for k, s in splits.items()} == {"train": 4400, "val": 400, "test": 1692}
