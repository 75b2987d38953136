"""Tiny generated datasets in the real on-disk layouts, so the real loading code runs without the real data."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from bench.data import miniimagenet, omniglot


def _character_png(rng: np.random.Generator, path: Path) -> None:
    """A 105x105 1-bit drawing (black strokes on white), like the official Omniglot PNGs."""
    im = Image.new("1", (105, 105), 1)
    draw = ImageDraw.Draw(im)
    for _ in range(3):
        draw.line([tuple(int(v) for v in rng.integers(10, 95, 2)) for _ in range(3)], fill=0, width=4)
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path)


def make_omniglot(root: Path, alphabets: dict[str, dict[str, int]] | None = None, seed: int = 0) -> Path:
    """A torchvision-layout Omniglot tree under root/omniglot/omniglot-py; returns that folder.

    `alphabets` maps set -> {alphabet: number of characters}; ids run on through the sets as in the real data.
    """
    alphabets = alphabets or {"images_background": {"Alpha": 4, "Beta": 3}, "images_evaluation": {"Gamma": 3}}
    base = root / "omniglot" / "omniglot-py"
    rng, next_id = np.random.default_rng(seed), 1
    for set_name, counts in alphabets.items():
        for alphabet, n in counts.items():
            for number in range(1, n + 1):
                folder = base / set_name / alphabet / f"character{number:02d}"
                for drawer in range(1, omniglot.DRAWERS + 1):
                    _character_png(rng, folder / f"{next_id:04d}_{drawer:02d}.png")
                next_id += 1
    return base


def write_omniglot_manifest(base: Path, path: Path) -> Path:
    """The manifest (expected files + pixel checksums) of a fixture tree."""
    path.write_text(json.dumps(omniglot.build_manifest(base)))
    return path


def write_omniglot_split(path: Path, train: list[str], val: list[str], test: list[str],
                         counts: dict[str, int] | None = None) -> Path:
    """A split JSON in the committed format; `counts` overrides the declared counts (to test the check)."""
    declared = {"train": len(train), "val": len(val), "test": len(test), **(counts or {})}
    path.write_text(json.dumps({"name": path.stem, "counts": declared, "train": train, "val": val, "test": test}))
    return path


def make_miniimagenet(root: Path, classes: dict[str, int] | None = None, per_class: int = 5,
                      size: tuple[int, int] = (100, 90), seed: int = 0) -> Path:
    """A few real wnids (the first classes of each Ravi CSV, their first file names) as generated JPEGs under
    root/mini-imagenet/images, and their split CSVs in root/split; returns the split folder."""
    classes = classes or {"train": 3, "val": 2, "test": 2}
    images, split = root / "mini-imagenet" / "images", root / "split"
    images.mkdir(parents=True, exist_ok=True)
    split.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for part, n in classes.items():
        real = miniimagenet.read_csv(miniimagenet.RAVI_DIR / f"{part}.csv")
        rows = [(f, wnid) for wnid in list(real)[:n] for f in real[wnid][:per_class]]
        with open(split / f"{part}.csv", "w", newline="") as f:
            csv.writer(f).writerows([("filename", "label"), *rows])
        for name, _ in rows:
            pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(pixels).save(images / name, quality=90)
    return split
