"""Mini-ImageNet (Vinyals et al. 2016) with the class split of Ravi & Larochelle (2017): 64 / 16 / 20 classes
of 600 ImageNet images each, as uint8 tensors [classes, 600, 3, 84, 84] for episodic few-shot classification.

The split CSVs (`filename,label`) are committed in bench/data/splits/miniimagenet_ravi/ (MIT, see its README).
The images are not shipped (ImageNet's terms apply). With data root R (--data-root > $METABENCH_DATA >
~/.cache/metabench/data) they are one flat folder of the JPEGs named as in the CSVs, first match wins:

    R/mini-imagenet/images/n0153282900000005.jpg ...
    R/miniimagenet/images/n0153282900000005.jpg ...

Preprocessing, done once per split and cached in $METABENCH_CACHE/miniimagenet/: JPEG -> RGB -> resized to
`image_size` (default 84; the usual copies are already 84x84) with PIL's LANCZOS filter. The cache key is the
preprocessing, the split's CSV rows and a (path, size, mtime) fingerprint of its images.

`split` in the benchmark spec is `ravi` (the default; its counts are checked at load) or a folder holding
train.csv / val.csv / test.csv in the same format (any number of classes, equal images per class), which is
how tests run the real loading code on a few generated JPEGs.
"""
from __future__ import annotations

import csv
import hashlib
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from bench.data._files import (
    Problem,
    load_cached,
    md5sum,
    problem_summary,
    save_atomic,
    settings_key,
    stat_fingerprint,
    verified_md5,
    worker_count,
)
from bench.data.base import (
    CLASSIFICATION_FIELDS,
    CLASSIFICATION_RANGES,
    CLASSIFICATION_REQUIRED,
    DataError,
    Dataset,
    ImageSplit,
    Report,
    cache_dir,
)
from bench.episodes import ClassificationSource

SPLIT_PARTS = ("train", "val", "test")
RAVI_DIR = Path(__file__).resolve().parent / "splits" / "miniimagenet_ravi"
RAVI_CLASSES = {"train": 64, "val": 16, "test": 20}
RAVI_PER_CLASS = 600
# md5 of the committed CSVs (the files published with twitter/meta-learning-lstm): `data check` verifies them.
RAVI_MD5 = {"train": "9525e1538f67719f18f1936bf8d0782d", "val": "ce315ce99b41fbf84fa6acd69315d918",
            "test": "5b89df877c6cbe5d291e43118a2a9591"}
DEFAULT_SIZE = 84
RESAMPLE = "lanczos"
CACHE_FORMAT = 1


def image_dirs(root: Path) -> list[Path]:
    """The folders that may hold the JPEGs, in the order they are tried."""
    return [Path(root) / "mini-imagenet" / "images", Path(root) / "miniimagenet" / "images"]


def find_images(root: Path) -> Path:
    """The first existing image folder; the default place when there is none."""
    return next((d for d in image_dirs(root) if d.is_dir()), image_dirs(root)[0])


def fix_hint(images: Path) -> str:
    """What to do when images are missing: where they go and where they come from."""
    return (f"put the Mini-ImageNet JPEGs, named as in the split CSVs (e.g. n0153282900000005.jpg; "
            f"{RAVI_PER_CLASS} per class), in {images}/ or point --data-root / $METABENCH_DATA at a folder holding "
            f"mini-imagenet/images/; they are ImageNet (ILSVRC-2012) images, not shipped because of ImageNet's "
            f"terms (https://image-net.org); any size works, they are resized to 84x84 once")


# ---------------------------------------------------------------------------------------------------------
# split CSVs


def split_dir_of(spec: dict[str, Any]) -> Path:
    """'ravi' (the committed Ravi & Larochelle split) or a folder with train/val/test.csv."""
    split = str(spec.get("split") or "ravi")
    folder = RAVI_DIR if split == "ravi" else Path(split).expanduser()
    missing = [folder / f"{p}.csv" for p in SPLIT_PARTS if not (folder / f"{p}.csv").is_file()]
    if missing:
        raise DataError(f"miniimagenet: split {split!r} needs {', '.join(map(str, missing))}; use split 'ravi' "
                        f"or a folder holding train.csv, val.csv and test.csv (header filename,label)")
    return folder


def read_csv(path: Path) -> dict[str, list[str]]:
    """wnid -> its image file names, in file order (classes in order of first appearance)."""
    classes: dict[str, list[str]] = {}
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header != ["filename", "label"]:
            raise DataError(f"{path}: expected the header 'filename,label', got {header}")
        for line, row in enumerate(reader, start=2):
            if len(row) != 2 or not row[0] or not row[1]:
                raise DataError(f"{path}:{line}: expected 'filename,label', got {row}")
            classes.setdefault(row[1], []).append(row[0])
    return classes


def split_sizes(spec: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """(classes, images per class) of each part, from the split CSVs alone (no image is read)."""
    parts = read_split(split_dir_of(spec))
    return {part: (len(classes), min((len(f) for f in classes.values()), default=0)) for part, classes in parts.items()}


def read_split(folder: Path) -> dict[str, dict[str, list[str]]]:
    """The three parts, each wnid -> files, with equal images per class, no shared class, and Ravi's counts."""
    parts = {p: read_csv(folder / f"{p}.csv") for p in SPLIT_PARTS}
    seen: set[str] = set()
    for part, classes in parts.items():
        path = folder / f"{part}.csv"
        sizes = sorted({len(files) for files in classes.values()})
        if len(sizes) != 1:
            raise DataError(f"{path}: classes have different numbers of images ({sizes}); episodes need equal "
                            f"counts per class")
        if seen.intersection(classes):
            raise DataError(f"{path}: class {sorted(seen.intersection(classes))[0]} is also in another part")
        seen.update(classes)
        if folder == RAVI_DIR and (len(classes), sizes[0]) != (RAVI_CLASSES[part], RAVI_PER_CLASS):
            raise DataError(f"{path}: {len(classes)} classes x {sizes[0]} images, expected "
                            f"{RAVI_CLASSES[part]} x {RAVI_PER_CLASS} (the Ravi & Larochelle split)")
    return parts


# ---------------------------------------------------------------------------------------------------------
# images


def _decode(path: Path, size: int) -> np.ndarray:
    """One JPEG as uint8 [3, size, size]."""
    with Image.open(path) as im:
        rgb = im.convert("RGB")
    if rgb.size != (size, size):
        rgb = rgb.resize((size, size), Image.Resampling.LANCZOS)
    return np.asarray(rgb).transpose(2, 0, 1)


def _decode_class(images: Path, files: list[str], out: np.ndarray, size: int) -> list[Problem]:
    """Fill out[i] with files[i]; the files that cannot be decoded."""
    problems = []
    for i, name in enumerate(files):
        try:
            out[i] = _decode(images / name, size)
        except FileNotFoundError:
            problems.append(Problem(images / name, "missing"))
        except UnidentifiedImageError:
            problems.append(Problem(images / name, "not an image PIL can read"))
        except Exception as exc:  # noqa: BLE001 - PIL raises many types for damaged files; all mean "corrupt"
            problems.append(Problem(images / name, f"not a readable image ({type(exc).__name__}: {exc})"))
    return problems


def decode_part(images: Path, classes: dict[str, list[str]], size: int) -> tuple[torch.Tensor, list[Problem]]:
    """uint8 [classes, per_class, 3, size, size] for one part, decoded by a few threads, and its problems."""
    per_class = len(next(iter(classes.values())))
    tensor = torch.empty((len(classes), per_class, 3, size, size), dtype=torch.uint8)
    out = tensor.numpy()  # shares memory: threads write straight into the tensor
    with ThreadPoolExecutor(worker_count()) as pool:
        results = pool.map(lambda c: _decode_class(images, classes[c[1]], out[c[0]], size), enumerate(classes))
        problems = [p for probs in results for p in probs]
    return tensor, problems


def _verify_one(path: Path) -> Problem | None:
    """None when `path` decodes completely, else the problem."""
    try:
        with Image.open(path) as im:
            im.load()  # the full decode: truncated or damaged JPEGs fail here, not at open()
    except FileNotFoundError:
        return Problem(path, "missing")
    except UnidentifiedImageError:
        return Problem(path, "not an image PIL can read")
    except Exception as exc:  # noqa: BLE001 - PIL raises many types for damaged files; all mean "corrupt"
        return Problem(path, f"not a readable image ({type(exc).__name__}: {exc})")
    return None


def verify_images(images: Path, files: list[str]) -> list[Problem]:
    """Decode every file once (no resizing, nothing kept): what `metabench data check` does."""
    with ThreadPoolExecutor(worker_count()) as pool:
        return [p for p in pool.map(lambda f: _verify_one(images / f), files) if p is not None]


def missing_images(images: Path, parts: dict[str, dict[str, list[str]]]) -> tuple[dict[str, str], list[Path], int]:
    """Per part the stat fingerprint, then the missing image paths and the number of images expected."""
    keys, missing, total = {}, [], 0
    for part, classes in parts.items():
        files = [f for names in classes.values() for f in names]
        keys[part], absent = stat_fingerprint(images, files)
        missing += [images / f for f in absent]
        total += len(files)
    return keys, missing, total


def missing_message(images: Path, missing: list[Path], total: int) -> str:
    """One line: how many images are missing, where, a few examples and the fix."""
    examples = ", ".join(str(p) for p in missing[:3])
    return (f"miniimagenet: {len(missing)} of {total} images missing under {images} (e.g. {examples}). "
            f"Fix: {fix_hint(images)}")


def _csv_digest(classes: dict[str, list[str]]) -> str:
    """A digest of a part's classes and file names (the CSV rows, for the cache key)."""
    return hashlib.sha256(repr(sorted(classes.items())).encode()).hexdigest()


def load_part(images: Path, cache: Path, label: str, part: str, classes: dict[str, list[str]], size: int,
              source_key: str) -> ImageSplit:
    """One part's ImageSplit, from the cache when its key matches, else decoded and cached."""
    key = settings_key(CACHE_FORMAT, size, RESAMPLE, _csv_digest(classes), source_key)
    path = Path(cache) / "miniimagenet" / f"{label}-{part}-{size}px-{key}.pt"
    cached = load_cached(path)
    if cached is not None and cached.get("classes") == list(classes):
        return ImageSplit(cached["images"], cached["classes"])
    tensor, problems = decode_part(images, classes, size)
    if problems:
        raise DataError(problem_summary("miniimagenet", problems, f"replace the damaged files; {fix_hint(images)}"))
    save_atomic({"format": CACHE_FORMAT, "images": tensor, "classes": list(classes), "size": size,
                 "resample": RESAMPLE}, path)
    return ImageSplit(tensor, list(classes))


def load_splits(spec: dict[str, Any], root: Path, cache: Path) -> dict[str, ImageSplit]:
    """train / val / test ImageSplits for a Mini-ImageNet benchmark spec (split, image_size)."""
    folder = split_dir_of(spec)
    if folder == RAVI_DIR:  # the committed split: its md5s are known (checked once per file version)
        for part, want in RAVI_MD5.items():
            path = folder / f"{part}.csv"
            if (actual := verified_md5(path, want, Path(cache))) != want:
                raise DataError(f"miniimagenet: {path} has md5 {actual}, expected {want}; restore it from the "
                                f"repository (git checkout -- {path.name}) or reinstall metabench")
    parts = read_split(folder)
    images = find_images(Path(root))
    keys, missing, total = missing_images(images, parts)
    if missing:  # one error for the whole dataset before any decoding: the usual case is "no images at all"
        raise DataError(missing_message(images, missing, total))
    size = int(spec.get("image_size") or DEFAULT_SIZE)
    label = "ravi" if folder == RAVI_DIR else "custom-" + hashlib.sha256(str(folder).encode()).hexdigest()[:8]
    return {part: load_part(images, Path(cache), label, part, classes, size, keys[part])
            for part, classes in parts.items()}


# ---------------------------------------------------------------------------------------------------------
# `metabench data check|where|prepare miniimagenet`


def check(root: Path) -> Report:
    """The split CSVs' md5 and counts, then every image present and decodable."""
    images = find_images(root)
    report = Report("miniimagenet", [f"images: {images}/<filename>.jpg", f"split: {RAVI_DIR} (Ravi & Larochelle)"])
    for part, want in RAVI_MD5.items():
        path = RAVI_DIR / f"{part}.csv"
        if (actual := md5sum(path)) != want:
            report.problems.append(Problem(path, f"md5 {actual}, expected {want}"))
    parts = read_split(RAVI_DIR)
    counts = " / ".join(f"{len(parts[p])}" for p in SPLIT_PARTS)
    report.lines.append(f"split ravi: {counts} classes (train / val / test) x {RAVI_PER_CLASS} images; "
                        f"CSV md5 {'ok' if not report.problems else 'WRONG'}")
    files = [f for classes in parts.values() for names in classes.values() for f in names]
    _, missing, total = missing_images(images, parts)
    report.lines.append(f"images present: {total - len(missing)} of {total}")
    if not images.is_dir():  # one line, not 60,000: the usual case is "no images at all"
        report.problems.append(Problem(images, f"missing: no such folder ({total} JPEGs expected in it)"))
    elif missing:
        report.problems += [Problem(p, "missing") for p in missing]
    else:
        report.problems += verify_images(images, files)
        report.lines.append(f"decoded: {total - len(report.problems)} of {total} images readable")
    report.fix = fix_hint(images)
    return report


def where(root: Path) -> Report:
    """Where the Mini-ImageNet images are expected and why they are not downloadable."""
    images = find_images(root)
    lines = [f"looked for (first match wins): {', '.join(str(d) for d in image_dirs(root))}",
             f"{images}/n0153282900000005.jpg ... (60000 JPEGs named as in the CSVs)   "
             f"[{'folder found' if images.is_dir() else 'missing'}]",
             f"split CSVs (committed): {RAVI_DIR}/{{train,val,test}}.csv",
             "download: none (ImageNet's terms); " + fix_hint(images),
             f"cache: {cache_dir() / 'miniimagenet'}/ravi-<part>-<size>px-<key>.pt"]
    return Report("miniimagenet", lines)


def prepare(root: Path, download: bool, specs: list[dict[str, Any]]) -> Report:
    """Decode the Ravi split into the cache at every size the benchmarks `specs` use."""
    report = Report("miniimagenet")
    if download:
        report.lines.append("--download: Mini-ImageNet cannot be downloaded (ImageNet's terms); nothing fetched")
    for size in sorted({int(s.get("image_size") or DEFAULT_SIZE) for s in specs}) or [DEFAULT_SIZE]:
        start = time.perf_counter()
        splits = load_splits({"split": "ravi", "image_size": size}, root, cache_dir())
        shapes = ", ".join(f"{p} {list(s.images.shape)}" for p, s in splits.items())
        report.lines.append(f"{size}px: {shapes} ready in {time.perf_counter() - start:.1f} s")
    return report


def open_source(spec: dict[str, Any], root: Path, cache: Path) -> ClassificationSource:
    return ClassificationSource(spec, load_splits(spec, root, cache))


DATASET = Dataset(
    name="miniimagenet", kind="classification", open=open_source,
    help="miniimagenet: 100 ImageNet classes x 600 images, Ravi & Larochelle split; images not downloadable",
    fields=dict(CLASSIFICATION_FIELDS), required=CLASSIFICATION_REQUIRED, ranges=CLASSIFICATION_RANGES,
    check=check, where=where, prepare=prepare, split_sizes=split_sizes)
