"""Adding a dataset is one module plus YAML: a toy dataset written into tmp_path, registered the way the built-in
ones are (its module in bench.data.MODULES), is validated by bench.config, listed and checked by
`metabench data`, and runs a smoke cell through the public CLI."""
import csv
import hashlib
import sys

import pytest
import torch

import bench.data
from bench.cli import main
from bench.config import Config, ConfigError

TOY_MODULE = '''"""Toy stripes: 12 classes x 10 noisy 28x28 images of one stripe each, for the dataset-registry test."""
from pathlib import Path

import torch

from bench.data._files import md5sum
from bench.data.base import (CLASSIFICATION_FIELDS, CLASSIFICATION_RANGES, CLASSIFICATION_REQUIRED, DataError,
                             Dataset, ImageSplit, Resource)
from bench.episodes import ClassificationSource

FILE = Resource("toy/stripes.bin", "{md5}")
SHAPE = (12, 10, 1, 28, 28)


def open_source(spec, root, cache):
    path = Path(root) / FILE.path
    if not path.is_file() or md5sum(path) != FILE.md5:
        raise DataError(f"toy: {{path}} missing or corrupt; fix: regenerate it with the test's make_stripes()")
    images = torch.frombuffer(bytearray(path.read_bytes()), dtype=torch.uint8).view(SHAPE)
    parts = {{"train": (0, 5), "val": (5, 8), "test": (8, 12)}}
    return ClassificationSource(spec, {{p: ImageSplit(images[a:b].clone(), [str(i) for i in range(a, b)])
                                       for p, (a, b) in parts.items()}})


DATASET = Dataset(name="toy", kind="classification", open=open_source,
                  help="toy: 12 classes of noisy stripes (the dataset-registry test)",
                  fields=CLASSIFICATION_FIELDS, required=CLASSIFICATION_REQUIRED, ranges=CLASSIFICATION_RANGES,
                  files=(FILE,), fix="regenerate it with the test's make_stripes()")
'''

TOY_YAML = """\
benchmarks:
  toy-3w1s:
    kind: classification
    dataset: toy
    description: toy stripes 3-way 1-shot
    backbone: conv4
    ways: 3
    shots: 1
    test_query: 2
    train_query: 2
    eval_seed: 7
    test_episodes: 10
"""


def make_stripes() -> bytes:
    """Class c is a bright row at height 2c+2 on low noise: easy, so a few meta-iterations move off chance."""
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 40, (12, 10, 1, 28, 28), dtype=torch.uint8, generator=g)
    for c in range(12):
        images[c, :, 0, 2 * c + 2] = 255
    return images.numpy().tobytes()


@pytest.fixture
def toy(tmp_path, monkeypatch):
    """The toy dataset's one module (in tmp_path, on sys.path), its file in a data root, and a YAML overlay."""
    payload = make_stripes()
    modules = tmp_path / "modules"
    modules.mkdir()
    (modules / "toy_stripes.py").write_text(TOY_MODULE.format(md5=hashlib.md5(payload).hexdigest()))
    monkeypatch.syspath_prepend(str(modules))
    monkeypatch.setattr(bench.data, "MODULES", (*bench.data.MODULES, "toy_stripes"))
    root = tmp_path / "data"
    (root / "toy").mkdir(parents=True)
    (root / "toy" / "stripes.bin").write_bytes(payload)
    overlay = tmp_path / "toy.yaml"
    overlay.write_text(TOY_YAML)
    yield root, overlay
    sys.modules.pop("toy_stripes", None)


def test_a_toy_dataset_runs_a_smoke_cell_through_the_cli(toy, tmp_path, capsys):
    root, overlay = toy
    out = tmp_path / "run"
    code = main(["run", "--benchmark", "toy-3w1s", "--algorithm", "protonet", "--profile", "smoke",
                 "--config", str(overlay), "--data-root", str(root), "--out", str(out), "--no-progress",
                 "--no-figures", "--set", "budget.meta_iters=5", "--set", "budget.test_episodes=10",
                 "--set", "budget.validation_tasks=2", "--set", "protonet.train_ways=3"])  # 5 training classes
    assert code == 0, capsys.readouterr()
    with open(out / "episodes.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["metric"] == "accuracy"]
    assert [r["benchmark"] for r in rows] == ["toy-3w1s"] * 10
    with open(out / "summary.csv", newline="") as f:
        assert {r["status"] for r in csv.DictReader(f)} == {"ok"}


def test_data_check_where_and_help_list_the_toy_dataset(toy, capsys):
    root, _ = toy
    assert main(["data", "check", "--data-root", str(root)]) == 1  # the real datasets are not in this root
    out = capsys.readouterr().out
    assert "toy:\n  toy/stripes.bin: md5 ok\n  ok" in out and "omniglot:" in out
    assert main(["data", "where", "toy", "--data-root", str(root)]) == 0
    assert f"{root / 'toy' / 'stripes.bin'}   [found]" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["data", "--help"])
    assert "toy: 12 classes of noisy stripes" in capsys.readouterr().out


def test_a_damaged_toy_file_is_named_with_its_fix(toy, capsys):
    root, _ = toy
    (root / "toy" / "stripes.bin").write_bytes(b"not the stripes")
    assert main(["data", "check", "toy", "--data-root", str(root)]) == 1
    out = capsys.readouterr().out
    assert f"{root / 'toy' / 'stripes.bin'} (md5 " in out and "fix: regenerate it with the test's make_stripes()" in out


def test_the_toy_schema_comes_from_its_module(toy):
    _, overlay = toy
    config = Config.load([overlay])
    assert config.benchmarks["toy-3w1s"]["dataset"] == "toy"
    bad = overlay.with_name("bad.yaml")
    bad.write_text(TOY_YAML + "    rotations: [0, 90]\n")  # an Omniglot field: not one the toy declares
    with pytest.raises(ConfigError, match=r"benchmarks.toy-3w1s.rotations: unknown benchmark field"):
        Config.load([bad])


def test_unknown_dataset_names_the_known_ones():
    with pytest.raises(bench.data.DataError, match="unknown dataset 'omniglott' \\(did you mean 'omniglot'\\?\\)"):
        bench.data.get("omniglott")


def test_a_plugin_dataset_is_one_module_and_yaml_with_no_edit_of_the_suite(tmp_path, monkeypatch, capsys):
    """A dataset outside the suite: its module registers itself (bench.data.register) and is named with --plugin,
    as an algorithm plugin is; bench.data.MODULES and every other file of the suite stay as they are."""
    import algorithms

    payload = make_stripes()
    modules = tmp_path / "modules"
    modules.mkdir()
    source = TOY_MODULE.format(md5=hashlib.md5(payload).hexdigest())
    (modules / "toy_plugin.py").write_text(source + "\nfrom bench.data import register\n\nregister(DATASET)\n")
    monkeypatch.syspath_prepend(str(modules))
    root = tmp_path / "data"
    (root / "toy").mkdir(parents=True)
    (root / "toy" / "stripes.bin").write_bytes(payload)
    overlay = tmp_path / "toy.yaml"
    overlay.write_text(TOY_YAML)
    modules_before = bench.data.MODULES
    try:
        code = main(["run", "--benchmark", "toy-3w1s", "--algorithm", "protonet", "--profile", "smoke",
                     "--plugin", "toy_plugin", "--config", str(overlay), "--data-root", str(root),
                     "--out", str(tmp_path / "run"), "--no-progress", "--no-figures",
                     "--set", "budget.meta_iters=3", "--set", "budget.test_episodes=4",
                     "--set", "budget.validation_tasks=2", "--set", "protonet.train_ways=3"])
        assert code == 0, capsys.readouterr()
        assert bench.data.MODULES == modules_before and bench.data.get("toy").name == "toy"
        with pytest.raises(ValueError, match="'omniglot' is already taken by a built-in dataset"):
            bench.data.register(bench.data.get("toy").__class__(**{**vars(bench.data.get("toy")), "name": "omniglot"}),
                                module="toy_plugin")
    finally:
        bench.data._REGISTERED.pop("toy", None)
        algorithms._registry._REQUESTED.discard("toy_plugin")
        sys.modules.pop("toy_plugin", None)
