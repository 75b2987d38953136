"""Omniglot (Lake, Salakhutdinov & Tenenbaum 2015, Science 350(6266)): 1,623 handwritten characters from 50
alphabets, each drawn by 20 people, as uint8 tensors for episodic few-shot classification.

On-disk layout (torchvision's, so an existing torchvision download just works). With data root R
(--data-root > $METABENCH_DATA > ~/.cache/metabench/data) the loader looks in, first match wins:

    R/omniglot/omniglot-py/   (R holds one folder per dataset: omniglot/, mnist/, mini-imagenet/)
    R/omniglot-py/            (R is a torchvision root)

and there, per set, for the extracted folder `images_background/<Alphabet>/characterNN/CCCC_DD.png` (resp.
`images_evaluation/...`), else the official zip `images_background.zip` (resp. `images_evaluation.zip`) beside
it, read without extracting (the data root may be read-only) after checking torchvision's md5.

Preprocessing, done once and cached in $METABENCH_CACHE/omniglot/: PNG -> 8-bit grey -> inverted (strokes 255,
paper 0, so zero padding and rotations add "no ink") -> resized to `image_size` (default 28) with PIL's
LANCZOS filter (what MAML's resizing script used). The cache is one uint8 tensor [1623, 20, 1, S, S] keyed by
the preprocessing settings and a fingerprint (path, size, mtime) of the source files.

Every file is checked against bench/data/splits/omniglot_files.json, the committed list of the 32,460 expected
files with a checksum of each image's pixels (not of its bytes: re-encoded copies of the official PNGs, such as
../shared/datasets', are pixel-identical and pass). Splits are committed JSON too (omniglot_<split>.json);
`rotations` turns each (character, angle) into its own class, in every split, as the Prototypical Networks
protocol does.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
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
    Resource,
    cache_dir,
)
from bench.episodes import ClassificationSource, WithinAlphabetSource

SETS = ("images_background", "images_evaluation")
# torchvision.datasets.Omniglot's download_url_prefix and zips_md5 (tests check they still agree).
URL_PREFIX = "https://raw.githubusercontent.com/brendenlake/omniglot/master/python"
ZIP_MD5 = {"images_background": "68d2efa1b9178cc56df9314c21c6e718",
           "images_evaluation": "6b91aef0f799c5bb55b94e3f2daec811"}
DRAWERS = 20
DEFAULT_SIZE = 28
RESAMPLE = "lanczos"
CACHE_FORMAT = 1
SPLIT_PARTS = ("train", "val", "test")
SPLITS_DIR = Path(__file__).resolve().parent / "splits"
MANIFEST = SPLITS_DIR / "omniglot_files.json"
DOWNLOAD_COMMAND = "metabench data prepare omniglot --download"


# ---------------------------------------------------------------------------------------------------------
# the expected files


@dataclass(frozen=True)
class Character:
    """One character: where its 20 PNGs live and the pixel checksum of each drawing."""

    set: str
    alphabet: str
    number: int  # NN in characterNN (1-based, per alphabet)
    id: int  # CCCC in CCCC_DD.png (1-based, over the whole dataset)
    digests: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"{self.alphabet}/character{self.number:02d}"

    def relpath(self, drawer: int) -> str:
        """Path of drawing `drawer` (0-based) inside the set folder or zip, e.g. 'images_background/Latin/...'."""
        return f"{self.set}/{self.name}/{self.id:04d}_{drawer + 1:02d}.png"


_FILE_RE = re.compile(r"(?:^|/)(\d{4})_(\d{2})\.png$")  # CCCC_DD.png: character id, drawer


def drawer_of(path: str) -> int:
    """The drawer (1-20) of an Omniglot image from its file name CCCC_DD.png (DD: who drew it)."""
    match = _FILE_RE.search(path)
    if not match:
        raise DataError(f"omniglot: {path!r} is not named <character id>_<drawer>.png")
    return int(match.group(2))


class Manifest:
    """The committed list of expected characters and image checksums (bench/data/splits/omniglot_files.json)."""

    def __init__(self, data: dict[str, Any], digest: str):
        self.digest = digest
        self.characters: list[Character] = []
        for entry in data["alphabets"]:
            for i, row in enumerate(entry["digests"]):
                digests = tuple(row[j:j + 8] for j in range(0, len(row), 8))
                self.characters.append(Character(entry["set"], entry["name"], i + 1, entry["first_id"] + i, digests))

    @classmethod
    def load(cls, path: str | os.PathLike | None = None) -> Manifest:
        """Read a manifest file (default: the committed one); its sha256 goes into the cache key."""
        text = Path(path or MANIFEST).read_text()
        return cls(json.loads(text), hashlib.sha256(text.encode()).hexdigest())

    @cached_property
    def names(self) -> list[str]:
        return [c.name for c in self.characters]

    @property
    def images(self) -> int:
        return len(self.characters) * DRAWERS

    def alphabets(self, set_name: str | None = None) -> list[str]:
        """Alphabet names, of one set or of both."""
        return sorted({c.alphabet for c in self.characters if set_name in (None, c.set)})


def pixel_digest(strokes: np.ndarray) -> str:
    """8 hex digits of blake2b over the image's size and its ink mask: independent of how the PNG is encoded."""
    h = hashlib.blake2b(digest_size=4)
    h.update(f"{strokes.shape[0]}x{strokes.shape[1]}:".encode())
    h.update(np.packbits(strokes >= 128).tobytes())
    return h.hexdigest()


def read_strokes(data: bytes) -> np.ndarray:
    """A PNG as uint8 [H, W] with strokes 255 and paper 0 (the files are black on white)."""
    with Image.open(io.BytesIO(data), formats=["PNG"]) as im:  # no sniffing through every format plugin
        im.load()
        if im.mode == "1":  # the official files are 1-bit: asarray gives True for white; a third faster than convert
            return (~np.asarray(im)).astype(np.uint8) * 255
        return 255 - np.asarray(im.convert("L"))


def build_manifest(base: Path) -> dict[str, Any]:
    """The manifest JSON of an extracted tree `base/images_*/<Alphabet>/characterNN/CCCC_DD.png`.

    Used once to write omniglot_files.json from the real data, and by tests to describe fixture trees.
    Character ids must run contiguously through each alphabet (characterNN holds id first_id + NN - 1).
    """
    alphabets = []
    for set_name in SETS:
        for alphabet in sorted(p.name for p in (base / set_name).iterdir() if p.is_dir()):
            folders = sorted((base / set_name / alphabet).iterdir())
            ids, rows = [], []
            for n, folder in enumerate(folders, start=1):
                files = sorted(folder.glob("*.png"))
                if folder.name != f"character{n:02d}" or len(files) != DRAWERS:
                    raise DataError(f"{folder}: expected character{n:02d} with {DRAWERS} PNGs")
                ids.append(int(files[0].name[:4]))
                rows.append("".join(pixel_digest(read_strokes(f.read_bytes())) for f in files))
            if ids != list(range(ids[0], ids[0] + len(ids))):
                raise DataError(f"{base / set_name / alphabet}: character ids are not contiguous")
            alphabets.append({"set": set_name, "name": alphabet, "first_id": ids[0], "digests": rows})
    alphabets.sort(key=lambda a: a["first_id"])
    return {"format": 1, "drawers": DRAWERS,
            "pixel_digest": "blake2b(digest_size=4) of '<H>x<W>:' + numpy.packbits(ink mask: grey < 128)",
            "alphabets": alphabets}


# ---------------------------------------------------------------------------------------------------------
# where the files are


def candidate_bases(root: Path) -> list[Path]:
    """The folders that may hold torchvision's `omniglot-py` contents, in the order they are tried."""
    return [Path(root) / "omniglot" / "omniglot-py", Path(root) / "omniglot-py"]


def find_base(root: Path) -> Path:
    """The first candidate holding a set folder or zip; the default place when there is none."""
    for base in candidate_bases(root):
        if any((base / s).is_dir() or (base / f"{s}.zip").is_file() for s in SETS):
            return base
    return candidate_bases(root)[0]


def fix_hint(base: Path, problems: list[Problem] = ()) -> str:
    """The fix for `problems`: download when a whole set is absent, else restore the files from the zips."""
    if problems and not any(p.what.startswith("missing: neither") for p in problems):
        return corrupt_hint(base)
    return (f"run `{DOWNLOAD_COMMAND}` (downloads {SETS[0]}.zip and {SETS[1]}.zip from {URL_PREFIX}, "
            f"md5-checked), or put torchvision's extracted folders or the zips in {base}")


def corrupt_hint(base: Path) -> str:
    """The fix for missing or damaged files inside a set that is otherwise there."""
    return (f"restore those files from the official zips ({URL_PREFIX}/<set>.zip, md5 {ZIP_MD5[SETS[0]]} / "
            f"{ZIP_MD5[SETS[1]]}) into {base}, or remove the damaged set folder and run `{DOWNLOAD_COMMAND}`")


class OmniglotFiles:
    """Reads the images of each set from its extracted folder, else from its official zip."""

    def __init__(self, base: Path):
        self.base = base
        self._prefix = str(base) + os.sep  # string joins: pathlib is 10x slower over 32,460 files
        self.folders = {s: base / s for s in SETS if (base / s).is_dir()}
        self.zips = {s: base / f"{s}.zip" for s in SETS if s not in self.folders and (base / f"{s}.zip").is_file()}
        self._open: dict[str, zipfile.ZipFile] = {}
        self._lock = threading.Lock()  # one zip handle per set, shared by the decoding threads

    def describe(self) -> str:
        """Where each set is read from, for reports."""
        parts = [f"{s}/ (folder)" if s in self.folders else f"{s}.zip" if s in self.zips else f"{s}: none"
                 for s in SETS]
        return f"{self.base}: " + ", ".join(parts)

    def absent_sets(self) -> list[Problem]:
        """One problem per set that has neither its folder nor its zip."""
        return [Problem(self.base / s, f"missing: neither the folder nor {s}.zip is there")
                for s in SETS if s not in self.folders and s not in self.zips]

    def location(self, character: Character, drawer: int) -> str:
        """Where an image is expected, for messages: a file path, or 'zip:member'."""
        rel = character.relpath(drawer)
        if character.set in self.zips:
            return f"{self.zips[character.set]}:{rel}"
        return self._prefix + rel

    def _zip(self, set_name: str) -> zipfile.ZipFile:
        if set_name not in self._open:
            self._open[set_name] = zipfile.ZipFile(self.zips[set_name])
        return self._open[set_name]

    def read(self, character: Character, drawer: int) -> bytes:
        """The PNG bytes; FileNotFoundError when the file (or zip member) is not there."""
        if character.set in self.folders:
            with open(self._prefix + character.relpath(drawer), "rb") as f:
                return f.read()
        with self._lock:
            try:
                return self._zip(character.set).read(character.relpath(drawer))
            except KeyError:
                raise FileNotFoundError(character.relpath(drawer)) from None

    def fingerprint(self, manifest: Manifest) -> tuple[str, list[Problem]]:
        """Cache key part for the sources, and every expected file that is missing (found by stat, not decoding)."""
        problems = self.absent_sets()
        parts = []
        for s in self.zips:
            st = self.zips[s].stat()
            parts.append((s, st.st_size, st.st_mtime_ns))
        rel = [c.relpath(d) for c in manifest.characters if c.set in self.folders for d in range(DRAWERS)]
        digest, missing = stat_fingerprint(self.base, rel)
        problems += [Problem(self._prefix + r, "missing") for r in missing]
        problems += self._zip_members_missing(manifest)
        return settings_key(digest, parts), problems

    def _zip_members_missing(self, manifest: Manifest) -> list[Problem]:
        """Expected images that a zip does not contain."""
        problems = []
        for s, path in self.zips.items():
            try:
                names = set(self._zip(s).namelist())
            except (OSError, zipfile.BadZipFile) as exc:
                problems.append(Problem(path, f"not a readable zip ({exc})"))
                continue
            problems += [Problem(self.location(c, d), "missing") for c in manifest.characters if c.set == s
                         for d in range(DRAWERS) if c.relpath(d) not in names]
        return problems

    def archive_problems(self) -> list[Problem]:
        """The zips whose md5 is not torchvision's (checked before any image is read from them)."""
        return [Problem(path, f"md5 {actual}, expected {ZIP_MD5[s]}")
                for s, path in self.zips.items() if (actual := md5sum(path)) != ZIP_MD5[s]]

    def close(self) -> None:
        """Close the zip handles."""
        for z in self._open.values():
            z.close()
        self._open.clear()


# ---------------------------------------------------------------------------------------------------------
# decoding


def _resize(strokes: np.ndarray, size: int) -> np.ndarray:
    """Resize to size x size with LANCZOS (a no-op at the native 105 px)."""
    if strokes.shape == (size, size):
        return strokes
    return np.asarray(Image.fromarray(strokes).resize((size, size), Image.Resampling.LANCZOS))


def _decode_character(files: OmniglotFiles, character: Character, size: int | None):
    """The 20 drawings of one character (inverted, resized) or None when size is None, plus their problems."""
    out = np.zeros((DRAWERS, size, size), np.uint8) if size else None
    problems = []
    for d in range(DRAWERS):
        where = files.location(character, d)
        try:
            strokes = read_strokes(files.read(character, d))
        except FileNotFoundError:
            problems.append(Problem(where, "missing"))
            continue
        except UnidentifiedImageError:
            problems.append(Problem(where, "not a PNG image"))
            continue
        except Exception as exc:  # noqa: BLE001 - PIL raises many types for damaged files; all mean "corrupt"
            problems.append(Problem(where, f"not a readable PNG ({type(exc).__name__}: {exc})"))
            continue
        actual = pixel_digest(strokes)
        if actual != character.digests[d]:
            problems.append(Problem(where, f"pixel checksum {actual}, expected {character.digests[d]}"))
        elif out is not None:
            out[d] = _resize(strokes, size)
    return out, problems


def scan(files: OmniglotFiles, manifest: Manifest, size: int | None = None):
    """Decode and verify every expected image; the uint8 tensor [characters, 20, 1, S, S] (None without `size`)
    and the list of problems (missing, unreadable, wrong pixels, bad zip md5)."""
    problems = files.absent_sets() + files.archive_problems()
    if problems:  # a wrong zip would only add thousands of per-image errors
        return None, problems
    with ThreadPoolExecutor(worker_count()) as pool:
        results = list(pool.map(lambda c: _decode_character(files, c, size), manifest.characters))
    problems = [p for _, probs in results for p in probs]
    if size is None or problems:
        return None, problems
    return torch.from_numpy(np.stack([images for images, _ in results])).unsqueeze(2), problems


def load_images(root: Path, cache: Path, size: int = DEFAULT_SIZE, manifest: Manifest | None = None):
    """The whole dataset as uint8 [characters, 20, 1, size, size] in manifest order, decoded once and cached."""
    manifest = manifest or Manifest.load()
    files = OmniglotFiles(find_base(root))
    try:
        source_key, problems = files.fingerprint(manifest)
        if problems and not files.absent_sets():
            _, problems = scan(files, manifest)  # decode the rest too, so the one error also names corrupt files
        if problems:
            raise DataError(problem_summary("omniglot", problems, fix_hint(files.base, problems)))
        key = settings_key(CACHE_FORMAT, size, RESAMPLE, "inverted", manifest.digest, source_key)
        path = Path(cache) / "omniglot" / f"omniglot-{size}px-{key}.pt"
        cached = load_cached(path)
        expected = (len(manifest.names), DRAWERS, 1, size, size)
        if cached is not None and cached.get("characters") == manifest.names and cached["images"].shape == expected:
            return cached["images"]
        images, problems = scan(files, manifest, size)
        if problems:
            raise DataError(problem_summary("omniglot", problems, corrupt_hint(files.base)))
        save_atomic({"format": CACHE_FORMAT, "images": images, "characters": manifest.names, "size": size,
                     "resample": RESAMPLE, "source": files.describe()}, path)
        return images
    finally:
        files.close()


# ---------------------------------------------------------------------------------------------------------
# splits and rotations


def available_splits() -> list[str]:
    """The committed split names (bench/data/splits/omniglot_<name>.json)."""
    return sorted(p.stem[len("omniglot_"):] for p in SPLITS_DIR.glob("omniglot_*.json") if p != MANIFEST)


def split_sizes(spec: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """(classes, examples per class) of each part, from the committed split file alone (no image is read), so a
    run can refuse an impossible episode shape before any cell starts."""
    path = split_file(str(spec.get("split") or "vinyals"))
    counts = json.loads(path.read_text()).get("counts") or {}
    angles = rotations_of(spec)
    return {part: (int(counts[part]) * len(angles), DRAWERS) for part in SPLIT_PARTS if part in counts}


def split_file(split: str) -> Path:
    """A committed split name ('vinyals', 'maml-random') or a path to a split JSON of the same format."""
    path = Path(split) if split.endswith(".json") else SPLITS_DIR / f"omniglot_{split}.json"
    if not path.is_file():
        raise DataError(f"omniglot: no split {split!r} ({path} not found); known splits: "
                        f"{', '.join(available_splits())}, or a path to a split .json")
    return path


def read_split(split: str, manifest: Manifest) -> dict[str, list[str]]:
    """Character names per part, with the counts written in the file checked (and no character in two parts)."""
    path = split_file(split)
    data = json.loads(path.read_text())
    if not isinstance(data.get("counts"), dict) or any(p not in data for p in SPLIT_PARTS):
        raise DataError(f"{path}: not an Omniglot split file (needs 'counts', 'train', 'val' and 'test'); "
                        f"see bench/data/splits/omniglot_vinyals.json")
    known, seen, parts = set(manifest.names), set(), {}
    for part in SPLIT_PARTS:
        names = data[part]
        # "val_in_train": validation characters also train (a split whose train part is a whole set, e.g. lake)
        in_train = part == "val" and data.get("val_in_train") is True
        if len(names) != data["counts"][part]:
            raise DataError(f"{path}: {part} lists {len(names)} characters but counts.{part} says "
                            f"{data['counts'][part]}; regenerate it with bench/data/splits/make_omniglot_splits.py")
        unknown = [n for n in names if n not in known]
        if unknown:
            raise DataError(f"{path}: {len(unknown)} {part} characters are not in Omniglot, e.g. {unknown[0]!r}")
        twice = set(names) - set(parts["train"]) if in_train else seen.intersection(names)
        if twice:
            where = "not in train, though val_in_train says so" if in_train else "in two parts"
            raise DataError(f"{path}: {len(twice)} characters are {where}, e.g. {sorted(twice)[0]!r}")
        seen.update(names)
        parts[part] = list(names)
    return parts


def rotations_of(spec: dict[str, Any]) -> list[int]:
    """The spec's rotation angles (default [0]); multiples of 90 so torch.rot90 needs no resampling."""
    angles = [int(a) for a in (spec.get("rotations") or [0])]
    if any(a % 90 or not 0 <= a < 360 for a in angles) or len(set(angles)) != len(angles):
        raise DataError(f"{spec.get('name', 'omniglot')}: rotations must be distinct multiples of 90 in [0, 360), "
                        f"got {angles}; fix `rotations` in benchmarks.yaml")
    return angles


def with_rotations(images: torch.Tensor, names: list[str], angles: list[int]) -> ImageSplit:
    """Each (character, angle) as its own class: [n, 20, 1, S, S] -> [n * len(angles), 20, 1, S, S]."""
    if angles == [0]:
        return ImageSplit(images.contiguous(), list(names))
    rotated = torch.stack([torch.rot90(images, k=a // 90, dims=(-2, -1)) for a in angles], dim=1)
    classes = [f"{n}@rot{a}" for n in names for a in angles]
    return ImageSplit(rotated.reshape(-1, *images.shape[1:]).contiguous(), classes)


def load_splits(spec: dict[str, Any], root: Path, cache: Path, *,
                manifest: str | os.PathLike | None = None) -> dict[str, ImageSplit]:
    """train / val / test ImageSplits for an Omniglot benchmark spec (split, image_size, rotations)."""
    man = Manifest.load(manifest)
    angles = rotations_of(spec)
    size = int(spec.get("image_size") or DEFAULT_SIZE)
    if size < 1:
        raise DataError(f"{spec.get('name', 'omniglot')}: image_size must be positive, got {size}")
    parts = read_split(str(spec.get("split") or "vinyals"), man)
    images = load_images(Path(root), Path(cache), size, man)
    index = {name: i for i, name in enumerate(man.names)}
    # who drew each image, read from its file name (drawing d of a character is not assumed to be drawer d + 1)
    drawers = torch.tensor([[drawer_of(c.relpath(d)) for d in range(DRAWERS)] for c in man.characters])
    splits = {}
    for part, names in parts.items():
        rows = torch.tensor([index[n] for n in names], dtype=torch.long)
        split = with_rotations(images[rows], names, angles)
        if split.num_classes != len(names) * len(angles) or split.per_class != DRAWERS:
            raise DataError(f"omniglot: the {part} split has {split.num_classes} classes x {split.per_class}, "
                            f"expected {len(names) * len(angles)} x {DRAWERS}")
        # a rotated copy keeps its character's alphabet and drawers (with_rotations puts angles innermost)
        splits[part] = ImageSplit(split.images, split.class_names, [n.split("/")[0] for n in split.class_names],
                                  drawers[rows].repeat_interleave(len(angles), dim=0))
    return splits


# ---------------------------------------------------------------------------------------------------------
# download (only when the user asks: `metabench data prepare omniglot --download`)


def fetch(url: str, folder: Path, filename: str, md5: str) -> None:
    """Download one file with torchvision's downloader, which checks the md5 (the one network access here)."""
    from torchvision.datasets.utils import download_url  # optional: only the download needs torchvision

    download_url(url, str(folder), filename, md5)
    if md5sum(folder / filename) != md5:  # belt and braces: never extract an unverified archive
        raise DataError(f"omniglot: {folder / filename} does not have md5 {md5} after downloading {url}")


def download(root: Path) -> list[str]:
    """Fetch and extract the official zips for the sets that have neither a folder nor a valid zip."""
    base = find_base(root)
    done = []
    for s in SETS:
        zip_path = base / f"{s}.zip"
        if (base / s).is_dir() or (zip_path.is_file() and md5sum(zip_path) == ZIP_MD5[s]):
            continue
        url = f"{URL_PREFIX}/{s}.zip"
        try:
            fetch(url, base, zip_path.name, ZIP_MD5[s])
            with zipfile.ZipFile(zip_path) as z:
                z.extractall(base)  # torchvision's layout: base/images_background/<Alphabet>/...
        except DataError:
            raise
        except Exception as exc:  # noqa: BLE001 - network and disk errors alike: say which URL and where
            raise DataError(f"omniglot: downloading {url} into {base} failed ({type(exc).__name__}: {exc}); "
                            f"download it by hand (md5 {ZIP_MD5[s]}) and put it there") from exc
        done.append(f"downloaded {url} -> {zip_path} (md5 ok) and extracted it")
    return done


_ID_RE = re.compile(r"^\d{4}_\d{2}\.png$")  # CCCC_DD.png, for the checker's count of unexpected files


def unexpected_files(files: OmniglotFiles, manifest: Manifest) -> int:
    """How many PNG-like files in the extracted folders are not in the manifest (reported, not an error)."""
    expected = {c.relpath(d) for c in manifest.characters if c.set in files.folders for d in range(DRAWERS)}
    found = 0
    for _, folder in files.folders.items():
        for dirpath, _, names in os.walk(folder):
            rel = Path(dirpath).relative_to(files.base).as_posix()
            found += sum(1 for n in names if _ID_RE.match(n) and f"{rel}/{n}" not in expected)
    return found


# ---------------------------------------------------------------------------------------------------------
# `metabench data check|where|prepare omniglot`


def _counts(files: OmniglotFiles, manifest: Manifest, absent: set[str]) -> list[str]:
    """Per set: alphabets, characters and images found (an image counts when its file is not missing)."""
    lines, total = [], [set(), set(), 0]
    for s in SETS:
        chars = [c for c in manifest.characters if c.set == s]
        present = s in files.folders or s in files.zips
        found = [(c, d) for c in chars for d in range(DRAWERS) if present and files.location(c, d) not in absent]
        alphabets = {c.alphabet for c, _ in found}
        characters = {c.name for c, _ in found}
        lines.append(f"{s}: {len(alphabets)} alphabets, {len(characters)} characters, {len(found)} images "
                     f"(expected {len({c.alphabet for c in chars})}, {len(chars)}, {len(chars) * DRAWERS})")
        total[0] |= alphabets
        total[1] |= characters
        total[2] += len(found)
    lines.append(f"total: {len(total[0])} alphabets, {len(total[1])} characters, {total[2]} images")
    return lines


def _split_lines(manifest: Manifest, rotations: int = 4) -> list[str]:
    """Characters and classes per part of each committed split (counts checked on reading); a split file may
    name the rotations its protocol uses (lake: none), else `rotations`."""
    lines = []
    for name in available_splits():
        parts = read_split(name, manifest)  # raises DataError on a count mismatch
        data = json.loads(split_file(name).read_text())
        angles = len(data.get("rotations") or [None] * rotations)
        chars = " / ".join(str(len(parts[p])) for p in SPLIT_PARTS)
        classes = " / ".join(str(len(parts[p]) * angles) for p in SPLIT_PARTS)
        val = ", val drawn from train" if data.get("val_in_train") else ""
        lines.append(f"split {name}: {chars} characters (train / val / test{val}); {classes} classes with "
                     + (f"{angles} rotations" if angles > 1 else "no rotations"))
    return lines


def check(root: Path, manifest: str | os.PathLike | None = None) -> Report:
    """Every expected PNG present with the committed pixel checksum (or read from an md5-checked zip)."""
    man = Manifest.load(manifest)
    files = OmniglotFiles(find_base(root))
    report = Report("omniglot", [f"source: {files.describe()}"])
    try:
        bad_zips = {str(p.path) for p in files.archive_problems()}
        report.lines += [f"{p.name}: md5 ok ({ZIP_MD5[s]})" for s, p in files.zips.items() if str(p) not in bad_zips]
        _, report.problems = scan(files, man)
        absent = {str(p.path) for p in report.problems if p.what == "missing"}
        report.lines += _counts(files, man, absent)
        if not files.absent_sets() and not bad_zips:
            checked = man.images - len(absent)
            corrupt = sum(p.what != "missing" for p in report.problems)
            report.lines.append(f"pixel checksums: {checked - corrupt} of {checked} images match")
        extra = unexpected_files(files, man)
        if extra:
            report.lines.append(f"note: {extra} PNG files not in the manifest were ignored")
        report.lines += _split_lines(man)
    finally:
        files.close()
    report.fix = fix_hint(files.base, report.problems)
    return report


def where(root: Path) -> Report:
    """Where the Omniglot files are expected and where they come from."""
    base = find_base(root)
    lines = [f"looked for (first match wins): {', '.join(str(b) for b in candidate_bases(root))}"]
    for s in SETS:
        state = "folder" if (base / s).is_dir() else "zip" if (base / f"{s}.zip").is_file() else "missing"
        lines.append(f"{base / s}/<Alphabet>/characterNN/CCCC_DD.png  or  {base / s}.zip   [{state}]")
    lines.append(f"download: {URL_PREFIX}/<set>.zip (md5 {', '.join(ZIP_MD5.values())}), with `{DOWNLOAD_COMMAND}`")
    lines.append(f"cache: {cache_dir() / 'omniglot'}/omniglot-<size>px-<key>.pt")
    return Report("omniglot", lines)


def prepare(root: Path, download_missing: bool, specs: list[dict[str, Any]]) -> Report:
    """Download when asked, then decode into the cache at every size the benchmarks `specs` use."""
    report = Report("omniglot")
    if download_missing:
        report.lines += download(root) or ["nothing to download: both sets are there"]
    for size in sorted({int(s.get("image_size") or DEFAULT_SIZE) for s in specs}) or [DEFAULT_SIZE]:
        start = time.perf_counter()
        images = load_images(root, cache_dir(), size)
        report.lines.append(f"{size}px: uint8 {list(images.shape)} ready in {time.perf_counter() - start:.1f} s "
                            f"(cache: {cache_dir() / 'omniglot'})")
    return report


TEST_PROTOCOLS = (None, "lake")  # null: N classes from anywhere in the test split; lake: see WithinAlphabetSource


def open_source(spec: dict[str, Any], root: Path, cache: Path) -> ClassificationSource:
    source = WithinAlphabetSource if spec.get("test_protocol") == "lake" else ClassificationSource
    return source(spec, load_splits(spec, root, cache))


def validate(checker, keypath: str, spec: dict[str, Any]) -> None:
    """test_protocol names a protocol open_source knows."""
    if spec.get("test_protocol") not in TEST_PROTOCOLS:
        checker.fail(f"{keypath}.test_protocol", f"{spec['test_protocol']!r} is not a test protocol; use null "
                                                 f"(classes from anywhere) or lake (Lake et al.'s within-alphabet "
                                                 f"runs, support and query by different drawers)")


DATASET = Dataset(
    name="omniglot", kind="classification", open=open_source,
    help="omniglot: 1,623 handwritten characters x 20 drawers (Lake et al. 2015); downloadable",
    # rotations: extra classes made by rotating every character by these angles (degrees); test_protocol: how
    # frozen test episodes are drawn (TEST_PROTOCOLS)
    fields={**CLASSIFICATION_FIELDS, "rotations": "list[int]", "test_protocol": "str|null"},
    required=CLASSIFICATION_REQUIRED, ranges=CLASSIFICATION_RANGES, validate=validate,
    files=tuple(Resource(f"omniglot/omniglot-py/{s}.zip", ZIP_MD5[s], f"{URL_PREFIX}/{s}.zip") for s in SETS),
    fix=f"run `{DOWNLOAD_COMMAND}`", check=check, where=where, prepare=prepare, split_sizes=split_sizes)
