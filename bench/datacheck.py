"""`metabench data check|where|prepare [DATASET]`: counts, checksums and expected paths of the datasets.

- check:   every expected file is there and intact (Omniglot: pixel checksums of all 32,460 images and the
           zips' md5; MNIST: md5 of the .gz and uncompressed IDX files and their headers; Mini-ImageNet: the
           split CSVs' md5 and a full decode of every image); prints the counts and each problem's path.
- where:   the resolved data root and cache folder, and where each dataset's files are expected.
- prepare: decode once into the cache (the sizes benchmarks.yaml uses); with --download, first fetch what is
           missing from the official URLs with checksums (never done otherwise).
Exit status: 0 all good, 1 a dataset has problems, 2 a usage error.
"""
from __future__ import annotations

import gzip
import os
import struct
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.data import DataError, cache_dir, data_root
from bench.data import miniimagenet, omniglot
from bench.data._files import Problem, md5sum

DATASETS = ("omniglot", "mnist", "miniimagenet")
EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE = 0, 1, 2
SHOWN = 20  # problems listed per dataset by `check` before "... and N more"

# MNIST (LeCun & Cortes) in torchvision's layout: (file, md5 of the .gz as in torchvision.datasets.MNIST.resources,
# md5 of the uncompressed file, IDX magic number, items). The uncompressed md5s are those of the official files.
MNIST_FILES = [
    ("train-images-idx3-ubyte", "f68b3c2dcbeaaa9fbdd348bbdeb94873", "6bbc9ace898e44ae57da46a324031adb", 2051, 60000),
    ("train-labels-idx1-ubyte", "d53e105ee54ea40749a09fcbcd1e9432", "a25bea736e30d166cdddb491f175f624", 2049, 60000),
    ("t10k-images-idx3-ubyte", "9fb629c4189551a2d022fa330f9573f3", "2646ac647ad5339dbf082846283269ea", 2051, 10000),
    ("t10k-labels-idx1-ubyte", "ec29112dd5afa0611ce80d1b7f02629c", "27ae3e4e09519cfbb04c329615203637", 2049, 10000),
]
MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"  # torchvision's first mirror


@dataclass
class Report:
    """What one action found for one dataset: lines to print and the problems (none means ok)."""

    dataset: str
    lines: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    fix: str = ""
    error: str = ""  # a DataError that stopped the action (its message names the path and the fix)

    @property
    def ok(self) -> bool:
        return not self.problems and not self.error

    def render(self) -> str:
        out = [f"{self.dataset}:"] + [f"  {line}" for line in self.lines]
        if self.error:
            out.append(f"  error: {self.error}")
        if self.problems:
            noun = "problem" if len(self.problems) == 1 else "problems"
            out.append(f"  {len(self.problems)} {noun}:")
            out += [f"    {p}" for p in self.problems[:SHOWN]]
            if len(self.problems) > SHOWN:
                out.append(f"    ... and {len(self.problems) - SHOWN} more")
            out.append(f"  fix: {self.fix}")
        out.append(f"  {'ok' if self.ok else 'FAILED'}")
        return "\n".join(out)


# ---------------------------------------------------------------------------------------------------------
# Omniglot


def _omniglot_counts(files: omniglot.OmniglotFiles, manifest: omniglot.Manifest, absent: set[str]) -> list[str]:
    """Per set: alphabets, characters and images found (an image counts when its file is not missing)."""
    lines, total = [], [set(), set(), 0]
    for s in omniglot.SETS:
        chars = [c for c in manifest.characters if c.set == s]
        present = s in files.folders or s in files.zips
        found = [(c, d) for c in chars for d in range(omniglot.DRAWERS)
                 if present and files.location(c, d) not in absent]
        alphabets = {c.alphabet for c, _ in found}
        characters = {c.name for c, _ in found}
        lines.append(f"{s}: {len(alphabets)} alphabets, {len(characters)} characters, {len(found)} images "
                     f"(expected {len({c.alphabet for c in chars})}, {len(chars)}, {len(chars) * omniglot.DRAWERS})")
        total[0] |= alphabets
        total[1] |= characters
        total[2] += len(found)
    lines.append(f"total: {len(total[0])} alphabets, {len(total[1])} characters, {total[2]} images")
    return lines


def _omniglot_split_lines(manifest: omniglot.Manifest, rotations: int = 4) -> list[str]:
    """Characters and classes per part of each committed split (counts checked on reading)."""
    lines = []
    for name in omniglot.available_splits():
        parts = omniglot.read_split(name, manifest)  # raises DataError on a count mismatch
        chars = " / ".join(str(len(parts[p])) for p in omniglot.SPLIT_PARTS)
        classes = " / ".join(str(len(parts[p]) * rotations) for p in omniglot.SPLIT_PARTS)
        lines.append(f"split {name}: {chars} characters (train / val / test); {classes} classes with "
                     f"{rotations} rotations")
    return lines


def check_omniglot(root: Path, manifest: str | os.PathLike | None = None) -> Report:
    """Every expected PNG present with the committed pixel checksum (or read from an md5-checked zip)."""
    man = omniglot.Manifest.load(manifest)
    files = omniglot.OmniglotFiles(omniglot.find_base(root))
    report = Report("omniglot", [f"source: {files.describe()}"])
    try:
        bad_zips = {str(p.path) for p in files.archive_problems()}
        report.lines += [f"{p.name}: md5 ok ({omniglot.ZIP_MD5[s]})" for s, p in files.zips.items()
                         if str(p) not in bad_zips]
        _, report.problems = omniglot.scan(files, man)
        absent = {str(p.path) for p in report.problems if p.what == "missing"}
        report.lines += _omniglot_counts(files, man, absent)
        if not files.absent_sets() and not bad_zips:
            checked = man.images - len(absent)
            corrupt = sum(p.what != "missing" for p in report.problems)
            report.lines.append(f"pixel checksums: {checked - corrupt} of {checked} images match")
        extra = omniglot.unexpected_files(files, man)
        if extra:
            report.lines.append(f"note: {extra} PNG files not in the manifest were ignored")
        report.lines += _omniglot_split_lines(man)
    finally:
        files.close()
    report.fix = omniglot.fix_hint(files.base, report.problems)
    return report


def where_omniglot(root: Path) -> Report:
    """Where the Omniglot files are expected and where they come from."""
    base = omniglot.find_base(root)
    lines = [f"looked for (first match wins): {', '.join(str(b) for b in omniglot.candidate_bases(root))}"]
    for s in omniglot.SETS:
        state = "folder" if (base / s).is_dir() else "zip" if (base / f"{s}.zip").is_file() else "missing"
        lines.append(f"{base / s}/<Alphabet>/characterNN/CCCC_DD.png  or  {base / s}.zip   [{state}]")
    lines.append(f"download: {omniglot.URL_PREFIX}/<set>.zip (md5 {', '.join(omniglot.ZIP_MD5.values())}), "
                 f"with `{omniglot.DOWNLOAD_COMMAND}`")
    lines.append(f"cache: {cache_dir() / 'omniglot'}/omniglot-<size>px-<key>.pt")
    return Report("omniglot", lines)


def prepare_omniglot(root: Path, download: bool) -> Report:
    """Download when asked, then decode into the cache at every size benchmarks.yaml uses."""
    report = Report("omniglot")
    if download:
        report.lines += omniglot.download(root) or ["nothing to download: both sets are there"]
    for size in _image_sizes("omniglot", omniglot.DEFAULT_SIZE):
        start = time.perf_counter()
        images = omniglot.load_images(root, cache_dir(), size)
        report.lines.append(f"{size}px: uint8 {list(images.shape)} ready in {time.perf_counter() - start:.1f} s "
                            f"(cache: {cache_dir() / 'omniglot'})")
    return report


# ---------------------------------------------------------------------------------------------------------
# MNIST


def mnist_dirs(root: Path) -> list[Path]:
    """torchvision's `MNIST/raw` under R/mnist (one folder per dataset) or under R itself (a torchvision root)."""
    return [Path(root) / "mnist" / "MNIST" / "raw", Path(root) / "MNIST" / "raw"]


def find_mnist(root: Path) -> Path:
    """The first existing MNIST raw folder; the default place when there is none."""
    return next((d for d in mnist_dirs(root) if d.is_dir()), mnist_dirs(root)[0])


def _idx_items(header: bytes, magic: int) -> int | None:
    """The item count of an IDX header, or None when the magic number is wrong."""
    if len(header) < 8:
        return None
    found, items = struct.unpack(">II", header[:8])
    return items if found == magic else None


def _check_mnist_file(raw: Path, name: str, gz_md5: str, raw_md5: str, magic: int,
                      items: int) -> tuple[str, list[Problem]]:
    """One IDX file: the .gz and/or uncompressed copy, md5 and header item count of each present."""
    gz, plain = raw / f"{name}.gz", raw / name
    if not gz.is_file() and not plain.is_file():
        return f"{name}: missing", [Problem(gz, f"missing (and no uncompressed {name} beside it)")]
    problems, notes = [], []
    for path, want, opener in ((gz, gz_md5, gzip.open), (plain, raw_md5, open)):
        if not path.is_file():
            continue
        actual = md5sum(path)
        if actual != want:
            problems.append(Problem(path, f"md5 {actual}, expected {want}"))
            continue
        with opener(path, "rb") as f:
            count = _idx_items(f.read(8), magic)
        if count != items:
            problems.append(Problem(path, f"IDX header says {count} items, expected {items}"))
        notes.append(f"{path.name} md5 ok")
    if not plain.is_file():
        notes.append(f"no uncompressed copy: torchvision reads {name}; `gunzip -k {gz}`")
    return f"{name}: {items} items; " + ", ".join(notes), problems


def check_mnist(root: Path) -> Report:
    """md5 and IDX header of each of the four files (.gz and uncompressed, whichever are there)."""
    raw = find_mnist(root)
    report = Report("mnist", [f"folder: {raw}"])
    for name, gz_md5, raw_md5, magic, items in MNIST_FILES:
        line, problems = _check_mnist_file(raw, name, gz_md5, raw_md5, magic, items)
        report.lines.append(line)
        report.problems += problems
    report.fix = (f"run `metabench data prepare mnist --download` (torchvision's MNIST download from {MNIST_URL}, "
                  f"md5-checked), or put the four IDX files (.gz and/or uncompressed) in {raw}")
    return report


def where_mnist(root: Path) -> Report:
    """Where the MNIST files are expected."""
    raw = find_mnist(root)
    lines = [f"looked for (first match wins): {', '.join(str(d) for d in mnist_dirs(root))}"]
    for name, *_ in MNIST_FILES:
        found = (raw / name).is_file() or (raw / f"{name}.gz").is_file()
        lines.append(f"{raw / name}[.gz]   [{'found' if found else 'missing'}]")
    lines.append(f"download: {MNIST_URL} with `metabench data prepare mnist --download`")
    return Report("mnist", lines)


def prepare_mnist(root: Path, download: bool) -> Report:
    """Download through torchvision when asked, then check."""
    if download:
        from torchvision.datasets import MNIST

        target = find_mnist(root).parent.parent  # torchvision adds MNIST/raw itself
        try:
            for train in (True, False):
                MNIST(str(target), train=train, download=True)
        except Exception as exc:  # noqa: BLE001 - network and disk errors alike: say where and what to do
            raise DataError(f"mnist: download into {target / 'MNIST' / 'raw'} failed ({type(exc).__name__}: "
                            f"{exc}); fetch the four files from {MNIST_URL} by hand") from exc
    report = check_mnist(root)
    report.lines.append("nothing to decode: MNIST is read from its IDX files directly")
    return report


# ---------------------------------------------------------------------------------------------------------
# Mini-ImageNet


def check_miniimagenet(root: Path) -> Report:
    """The split CSVs' md5 and counts, then every image present and decodable."""
    images = miniimagenet.find_images(root)
    report = Report("miniimagenet", [f"images: {images}/<filename>.jpg",
                                     f"split: {miniimagenet.RAVI_DIR} (Ravi & Larochelle)"])
    for part, want in miniimagenet.RAVI_MD5.items():
        path = miniimagenet.RAVI_DIR / f"{part}.csv"
        if (actual := md5sum(path)) != want:
            report.problems.append(Problem(path, f"md5 {actual}, expected {want}"))
    parts = miniimagenet.read_split(miniimagenet.RAVI_DIR)
    counts = " / ".join(f"{len(parts[p])}" for p in miniimagenet.SPLIT_PARTS)
    report.lines.append(f"split ravi: {counts} classes (train / val / test) x {miniimagenet.RAVI_PER_CLASS} images; "
                        f"CSV md5 {'ok' if not report.problems else 'WRONG'}")
    files = [f for classes in parts.values() for names in classes.values() for f in names]
    _, missing, total = miniimagenet.missing_images(images, parts)
    report.lines.append(f"images present: {total - len(missing)} of {total}")
    if not images.is_dir():  # one line, not 60,000: the usual case is "no images at all"
        report.problems.append(Problem(images, f"missing: no such folder ({total} JPEGs expected in it)"))
    elif missing:
        report.problems += [Problem(p, "missing") for p in missing]
    else:
        report.problems += miniimagenet.verify_images(images, files)
        report.lines.append(f"decoded: {total - len(report.problems)} of {total} images readable")
    report.fix = miniimagenet.fix_hint(images)
    return report


def where_miniimagenet(root: Path) -> Report:
    """Where the Mini-ImageNet images are expected and why they are not downloadable."""
    images = miniimagenet.find_images(root)
    lines = [f"looked for (first match wins): {', '.join(str(d) for d in miniimagenet.image_dirs(root))}",
             f"{images}/n0153282900000005.jpg ... (60000 JPEGs named as in the CSVs)   "
             f"[{'folder found' if images.is_dir() else 'missing'}]",
             f"split CSVs (committed): {miniimagenet.RAVI_DIR}/{{train,val,test}}.csv",
             "download: none (ImageNet's terms); " + miniimagenet.fix_hint(images),
             f"cache: {cache_dir() / 'miniimagenet'}/ravi-<part>-<size>px-<key>.pt"]
    return Report("miniimagenet", lines)


def prepare_miniimagenet(root: Path, download: bool) -> Report:
    """Decode the Ravi split into the cache at every size benchmarks.yaml uses."""
    report = Report("miniimagenet")
    if download:
        report.lines.append("--download: Mini-ImageNet cannot be downloaded (ImageNet's terms); nothing fetched")
    for size in _image_sizes("miniimagenet", miniimagenet.DEFAULT_SIZE):
        start = time.perf_counter()
        splits = miniimagenet.load_splits({"split": "ravi", "image_size": size}, root, cache_dir())
        shapes = ", ".join(f"{p} {list(s.images.shape)}" for p, s in splits.items())
        report.lines.append(f"{size}px: {shapes} ready in {time.perf_counter() - start:.1f} s")
    return report


# ---------------------------------------------------------------------------------------------------------
# the command


def _image_sizes(dataset: str, default: int) -> list[int]:
    """The image sizes the benchmarks of `dataset` in benchmarks.yaml use (what `prepare` decodes)."""
    from bench.config import Config

    specs = [s for s in Config.load().benchmarks.values() if isinstance(s, dict) and s.get("dataset") == dataset]
    return sorted({int(s.get("image_size") or default) for s in specs}) or [default]


ACTIONS = {
    "check": {"omniglot": lambda r, d: check_omniglot(r), "mnist": lambda r, d: check_mnist(r),
              "miniimagenet": lambda r, d: check_miniimagenet(r)},
    "where": {"omniglot": lambda r, d: where_omniglot(r), "mnist": lambda r, d: where_mnist(r),
              "miniimagenet": lambda r, d: where_miniimagenet(r)},
    "prepare": {"omniglot": prepare_omniglot, "mnist": prepare_mnist, "miniimagenet": prepare_miniimagenet},
}


def _root_origin(explicit: str | None) -> str:
    """Which setting chose the data root, for the report header."""
    if explicit:
        return "--data-root"
    return "$METABENCH_DATA" if os.environ.get("METABENCH_DATA") else "default"


def _run_one(action: str, name: str, root: Path, download: bool) -> Report:
    """One dataset's report; a DataError (missing data, failed download) becomes a failed report."""
    try:
        return ACTIONS[action][name](root, download)
    except DataError as exc:
        return Report(name, error=str(exc))


def command(args) -> int:
    """Entry point of `metabench data`: returns the exit status."""
    names = [args.dataset] if getattr(args, "dataset", None) else list(DATASETS)
    unknown = [n for n in names if n not in DATASETS]
    if unknown:
        print(f"metabench: error: unknown dataset {unknown[0]!r}; choose from {', '.join(DATASETS)}", file=sys.stderr)
        return EXIT_USAGE
    if getattr(args, "download", False) and args.action != "prepare":
        print("metabench: error: --download only goes with `metabench data prepare`", file=sys.stderr)
        return EXIT_USAGE
    root = data_root(getattr(args, "data_root", None))
    print(f"data root: {root}  ({_root_origin(getattr(args, 'data_root', None))})")
    print(f"cache:     {cache_dir()}  ({'$METABENCH_CACHE' if os.environ.get('METABENCH_CACHE') else 'default'})")
    ok = True
    for name in names:
        report = _run_one(args.action, name, root, getattr(args, "download", False))
        print(report.render(), flush=True)
        ok = ok and report.ok
    return EXIT_OK if ok else EXIT_PROBLEMS
