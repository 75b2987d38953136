"""MNIST optimizer-transfer benchmarks (Andrychowicz et al. 2016, Sec. 3.2): the task is to *optimise* a small
MLP on MNIST; an "episode" is one optimisation run of `horizon` steps from a random θ_0 on random minibatches.

Files: the four official IDX files in torchvision's layout (`<root>/mnist/MNIST/raw` or `<root>/MNIST/raw`,
uncompressed or .gz), read once per process into uint8 tensors (they are raw pixels already: nothing to decode
or cache). `metabench data check mnist` verifies their md5s.

Problems: MLP 784 → hidden (activation) → 10, softmax cross-entropy on minibatches of `batch_size`, θ_0 ~ N(0,
init_std²) (the official code's initialiser, stddev 0.01). Optimizers are meta-trained on the benchmark's
`train_problem` only (the paper's 1×20 sigmoid, 100 steps), on minibatches of the 60,000 training images.
Baselines tune their learning rate on the benchmark's own problem (the paper tuned them per problem), also on
training images. The frozen test runs draw their minibatches from `test_images` (default: the 10,000 test
images, a held-out stream; "train" gives the paper's setting) and run i is a pure function of (the problem,
eval seed, i), so every optimizer is scored on identical runs.

Metrics per test run: loss@T for T = 0..horizon (loss of θ_T on minibatch T, the curve the paper plots),
final_loss = loss@horizon, auc = mean of loss@0..loss@horizon.
"""
from __future__ import annotations

import gzip
import struct
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from algorithms.base import BatchRequest, OptimizeeBatch, OptimizeeProblem, ProblemSpec
from bench.data._files import Problem, md5sum, verified_md5
from bench.data.base import DataError, Dataset, Report, Resource, cache_dir
from bench.episodes import frozen_generator

PROBLEM_KEYS = {"hidden", "activation", "batch_size", "horizon", "init_std"}
ACTIVATIONS = ("sigmoid", "relu", "tanh")
SPLIT_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", 60000),
               "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", 10000)}
IMAGE_MAGIC, LABEL_MAGIC = 2051, 2049
# The four files (LeCun & Cortes) in torchvision's layout: (file, md5 of the .gz as in
# torchvision.datasets.MNIST.resources, md5 of the uncompressed file, IDX magic number, items). The uncompressed
# md5s are those of the official files.
MNIST_FILES = [
    ("train-images-idx3-ubyte", "f68b3c2dcbeaaa9fbdd348bbdeb94873", "6bbc9ace898e44ae57da46a324031adb", 2051, 60000),
    ("train-labels-idx1-ubyte", "d53e105ee54ea40749a09fcbcd1e9432", "a25bea736e30d166cdddb491f175f624", 2049, 60000),
    ("t10k-images-idx3-ubyte", "9fb629c4189551a2d022fa330f9573f3", "2646ac647ad5339dbf082846283269ea", 2051, 10000),
    ("t10k-labels-idx1-ubyte", "ec29112dd5afa0611ce80d1b7f02629c", "27ae3e4e09519cfbb04c329615203637", 2049, 10000),
]
MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"  # torchvision's first mirror
DOWNLOAD_COMMAND = "metabench data prepare mnist --download"

_LOADED: dict[str, dict[str, tuple[torch.Tensor, torch.Tensor]]] = {}
_LOCK = threading.Lock()


# ---------------------------------------------------------------------------------------------------------
# files


def mnist_dirs(root: Path) -> list[Path]:
    """torchvision's `MNIST/raw` under R/mnist (one folder per dataset) or under R itself (a torchvision root)."""
    return [Path(root) / "mnist" / "MNIST" / "raw", Path(root) / "MNIST" / "raw"]


def find_mnist(root: Path) -> Path:
    """The first existing MNIST raw folder; the default place when there is none."""
    return next((d for d in mnist_dirs(root) if d.is_dir()), mnist_dirs(root)[0])


def _read_idx(raw: Path, name: str, magic: int, items: int, item_bytes: int,
              cache: Path | None = None) -> tuple[bytes | None, str]:
    """The payload of one IDX file (uncompressed preferred, else .gz), or None and what is wrong. The file's md5
    is checked against the official one first (once per file version: bench.data._files.verified_md5): a file
    with flipped bytes but a valid header and size was once used silently, and its test runs even kept the same
    digest."""
    md5 = {entry[0]: (entry[2], entry[1]) for entry in MNIST_FILES}[name]  # (uncompressed, .gz)
    for path, opener, want in ((raw / name, open, md5[0]), (raw / f"{name}.gz", gzip.open, md5[1])):
        if not path.is_file():
            continue
        try:
            with opener(path, "rb") as f:
                data = f.read()
        except (OSError, EOFError, zlib.error) as exc:
            return None, f"{path} (unreadable: {exc})"
        dims = 3 if magic == IMAGE_MAGIC else 1
        header = 4 + 4 * dims
        if len(data) < header or struct.unpack(">I", data[:4])[0] != magic:
            return None, f"{path} (not an IDX file with magic number {magic})"
        count = struct.unpack(">I", data[4:8])[0]
        if count != items or len(data) != header + items * item_bytes:
            return None, (f"{path} (truncated or wrong: header says {count} items, {len(data)} bytes; expected "
                          f"{items} items, {header + items * item_bytes} bytes)")
        if cache is not None and (actual := verified_md5(path, want, cache)) != want:
            return None, f"{path} (md5 {actual}, expected {want}: the file is damaged or not the official one)"
        return data[header:], ""
    return None, f"{raw / name}[.gz] (missing)"


def available(root: Path) -> bool:
    """Whether the four IDX files (plain or .gz) are in one of the places load_mnist looks."""
    raw = find_mnist(Path(root))
    names = [n for images, labels, _ in SPLIT_FILES.values() for n in (images, labels)]
    return all((raw / n).is_file() or (raw / f"{n}.gz").is_file() for n in names)


def load_mnist(root: Path, cache: Path | None = None) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{"train": (images uint8 [60000, 784], labels int64), "test": (... [10000, 784], ...)}, read once per
    process, each file's md5 verified (remembered in `cache`, default $METABENCH_CACHE)."""
    cache = Path(cache) if cache is not None else cache_dir()
    raw = find_mnist(Path(root))
    key = str(raw.resolve()) if raw.exists() else str(raw)
    with _LOCK:
        if key in _LOADED:
            return _LOADED[key]
        out, problems = {}, []
        for split, (images_name, labels_name, items) in SPLIT_FILES.items():
            images, why_i = _read_idx(raw, images_name, IMAGE_MAGIC, items, 28 * 28, cache)
            labels, why_l = _read_idx(raw, labels_name, LABEL_MAGIC, items, 1, cache)
            problems += [w for w in (why_i, why_l) if w]
            if images is not None and labels is not None:
                out[split] = (torch.frombuffer(bytearray(images), dtype=torch.uint8).view(items, 28 * 28),
                              torch.frombuffer(bytearray(labels), dtype=torch.uint8).long())
        if problems:
            looked = " or ".join(str(d) for d in mnist_dirs(Path(root)))
            raise DataError(f"mnist: {len(problems)} of 4 files missing or corrupt: {'; '.join(problems)} "
                            f"(looked in {looked}). Fix: `{DOWNLOAD_COMMAND}` (torchvision's "
                            f"md5-checked download from {MNIST_URL}), or copy the four official IDX files there; "
                            f"`metabench data check mnist` verifies them")
        _LOADED[key] = out
        return out


# ---------------------------------------------------------------------------------------------------------
# problems


@dataclass(frozen=True)
class ProblemConfig:
    """An optimizee family: MLP 784 → hidden → 10 with `activation`, minibatches of `batch_size`, `horizon` steps."""

    hidden: tuple[int, ...]
    activation: str
    batch_size: int
    horizon: int
    init_std: float

    @classmethod
    def from_spec(cls, values: dict[str, Any], defaults: dict[str, Any], where: str) -> ProblemConfig:
        unknown = set(values) - PROBLEM_KEYS
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; allowed: "
                             f"{', '.join(sorted(PROBLEM_KEYS))}")
        merged = {"init_std": defaults.get("init_std", 0.01), **values}
        missing = sorted(PROBLEM_KEYS - set(merged))
        if missing:
            raise ValueError(f"{where}: missing {', '.join(missing)}")
        if merged["activation"] not in ACTIVATIONS:
            raise ValueError(f"{where}.activation: {merged['activation']!r} is not one of {', '.join(ACTIVATIONS)}")
        hidden = tuple(int(h) for h in merged["hidden"])
        if not hidden or min(hidden) < 1 or int(merged["batch_size"]) < 1 or int(merged["horizon"]) < 1:
            raise ValueError(f"{where}: hidden sizes, batch_size and horizon must be positive")
        return cls(hidden, str(merged["activation"]), int(merged["batch_size"]), int(merged["horizon"]),
                   float(merged["init_std"]))

    def key(self) -> dict[str, Any]:
        return {"hidden": list(self.hidden), "activation": self.activation, "batch_size": self.batch_size,
                "horizon": self.horizon, "init_std": self.init_std}


class MnistOptimizees:
    """Task source of an MNIST optimizer benchmark: training optimizees, validation optimizees, frozen test runs."""

    kind = "optimizer"

    def __init__(self, spec: dict[str, Any], data: dict[str, tuple[torch.Tensor, torch.Tensor]]):
        name = spec.get("name", "mnist")
        self.spec = spec
        self.data = data
        self.test_problem = ProblemConfig.from_spec({k: spec[k] for k in PROBLEM_KEYS if k in spec}, spec, name)
        train = spec.get("train_problem")
        self.train_problem = (ProblemConfig.from_spec(dict(train), spec, f"{name}.train_problem") if train
                              else self.test_problem)
        self.test_images = str(spec.get("test_images", "test"))
        if self.test_images not in SPLIT_FILES:
            raise ValueError(f"{name}.test_images: {self.test_images!r} is not 'train' or 'test'")
        # what determines the frozen test runs (not the benchmark's name or how many runs are evaluated)
        self.sampling_key = {"dataset": "mnist", "images": self.test_images, **self.test_problem.key()}

    def training_key(self) -> dict[str, Any]:
        """What meta-training sees: the base problem on the training images. The five MNIST benchmarks share it,
        so a run meta-trains each learned optimizer once and tests it on all of them (bench.cell)."""
        return {"dataset": "mnist", "images": "train", "train_problem": self.train_problem.key()}

    def problem(self) -> ProblemSpec:
        return ProblemSpec(kind="optimizer", input_shape=(28 * 28,), ways=10, shots=0, output_dim=10,
                           backbone=self.spec["backbone"], loss="cross_entropy")

    def _draw(self, cfg: ProblemConfig, split: str, generator: torch.Generator) -> OptimizeeProblem:
        """θ_0 ~ N(0, init_std²) layer by layer, then horizon + 1 minibatches of random training indices."""
        dims = [28 * 28, *cfg.hidden, 10]
        params = []
        for fan_in, fan_out in zip(dims[:-1], dims[1:]):
            params.append(torch.randn(fan_out, fan_in, generator=generator) * cfg.init_std)
            params.append(torch.randn(fan_out, generator=generator) * cfg.init_std)
        images, labels = self.data[split]
        index = torch.randint(images.shape[0], (cfg.horizon + 1, cfg.batch_size), generator=generator)
        return OptimizeeProblem(params, images, labels, cfg.activation, index=index)

    def _batch(self, cfg: ProblemConfig, tasks: int, generator: torch.Generator) -> OptimizeeBatch:
        return OptimizeeBatch([self._draw(cfg, "train", generator) for _ in range(tasks)])

    def sample_train(self, request: BatchRequest, generator: torch.Generator) -> OptimizeeBatch:
        """Meta-training optimizees: always the base problem (`train_problem`), on training images."""
        if request.kind not in ("optimizees", "episodes"):
            raise ValueError(f"optimizer benchmarks provide optimizees, not {request.kind!r} batches")
        return self._batch(self.train_problem, request.tasks, generator)

    def sample_validation(self, tasks: int, generator: torch.Generator) -> OptimizeeBatch:
        """Tuning optimizees on training images: the benchmark's own problem (hand-designed optimizers tune their
        learning rate on it, per problem as in the paper) and, for a transfer benchmark, as many runs of the base
        problem (learned optimizers pick their snapshot there: they never see the transfer problem)."""
        # the base runs first: with the same validation stream they are the same runs on every benchmark, so the
        # snapshot a learned optimizer keeps is the same for all five (as its meta-training is)
        base = self._batch(self.train_problem, tasks, generator)
        if self.train_problem == self.test_problem:
            return base
        return OptimizeeBatch(self._batch(self.test_problem, tasks, generator).problems, base.problems)

    def test_episode(self, index: int, eval_seed: int) -> OptimizeeProblem:
        """Frozen test run `index`: θ_0 and the minibatch order depend only on (problem, eval seed, index)."""
        run = self._draw(self.test_problem, self.test_images,
                         frozen_generator(self.sampling_key, eval_seed, index))
        run.info["ids"] = torch.cat([run.index.reshape(-1).double(), run.flat_params().double()])
        run.info["run"] = index
        return run


def open_source(spec: dict[str, Any], data_root: Path, cache_dir: Path | None = None) -> MnistOptimizees:
    return MnistOptimizees(spec, load_mnist(Path(data_root), cache_dir))


# ---------------------------------------------------------------------------------------------------------
# benchmarks.yaml schema and `metabench data check|where|prepare mnist`

# learned-optimizer benchmarks: the optimizee MLP (hidden sizes, activation), minibatch size, steps per run,
# θ_0 std; train_problem: the same keys for the base problem optimizers are meta-trained on; test_images:
# the MNIST split ("test" or "train") the frozen test runs draw minibatches from
PROBLEM_FIELDS = {"hidden": "list[int]", "activation": "str", "batch_size": "int", "horizon": "int",
                  "init_std": "float"}
RANGES = {"batch_size": (1, 2**31 - 1), "horizon": (1, 2**31 - 1), "init_std": (0, None), "hidden": (1, 1_000_000)}


def validate(checker, where: str, spec: dict[str, Any]) -> None:
    """The optimizee keys of the benchmark and of its train_problem (which the flat schema cannot type)."""
    for sub, node in ((where, spec), (f"{where}.train_problem", spec.get("train_problem"))):
        if node is None:
            continue
        if sub != where:
            checker.keys(node, PROBLEM_FIELDS, sub, "optimizee key", RANGES)
        if node.get("activation") not in (None, *ACTIVATIONS):
            checker.fail(f"{sub}.activation", f"{node['activation']!r} is not one of {', '.join(ACTIVATIONS)}")
        if node.get("hidden") == []:
            checker.fail(f"{sub}.hidden", "empty; give at least one hidden layer size")
    if spec.get("test_images", "test") not in SPLIT_FILES:
        checker.fail(f"{where}.test_images", f"{spec['test_images']!r} is not 'test' or 'train'")


def _idx_items(header: bytes, magic: int) -> int | None:
    """The item count of an IDX header, or None when the magic number is wrong."""
    if len(header) < 8:
        return None
    found, items = struct.unpack(">II", header[:8])
    return items if found == magic else None


def _check_file(raw: Path, name: str, gz_md5: str, raw_md5: str, magic: int,
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


def check(root: Path) -> Report:
    """md5 and IDX header of each of the four files (.gz and uncompressed, whichever are there)."""
    raw = find_mnist(root)
    report = Report("mnist", [f"folder: {raw}"])
    for name, gz_md5, raw_md5, magic, items in MNIST_FILES:
        line, problems = _check_file(raw, name, gz_md5, raw_md5, magic, items)
        report.lines.append(line)
        report.problems += problems
    report.fix = (f"run `{DOWNLOAD_COMMAND}` (torchvision's MNIST download from {MNIST_URL}, "
                  f"md5-checked), or put the four IDX files (.gz and/or uncompressed) in {raw}")
    return report


def where(root: Path) -> Report:
    """Where the MNIST files are expected."""
    raw = find_mnist(root)
    lines = [f"looked for (first match wins): {', '.join(str(d) for d in mnist_dirs(root))}"]
    for name, *_ in MNIST_FILES:
        found = (raw / name).is_file() or (raw / f"{name}.gz").is_file()
        lines.append(f"{raw / name}[.gz]   [{'found' if found else 'missing'}]")
    lines.append(f"download: {MNIST_URL} with `{DOWNLOAD_COMMAND}`")
    return Report("mnist", lines)


def prepare(root: Path, download: bool, specs: list[dict[str, Any]]) -> Report:
    """Download through torchvision when asked, then check (MNIST is read from its IDX files: nothing to decode)."""
    if download:
        from torchvision.datasets import MNIST  # optional: only the download needs torchvision

        target = find_mnist(root).parent.parent  # torchvision adds MNIST/raw itself
        try:
            for train in (True, False):
                MNIST(str(target), train=train, download=True)
        except Exception as exc:  # noqa: BLE001 - network and disk errors alike: say where and what to do
            raise DataError(f"mnist: download into {target / 'MNIST' / 'raw'} failed ({type(exc).__name__}: "
                            f"{exc}); fetch the four files from {MNIST_URL} by hand") from exc
    report = check(root)
    report.lines.append("nothing to decode: MNIST is read from its IDX files directly")
    return report


DATASET = Dataset(
    name="mnist", kind="optimizer", open=open_source, validate=validate,
    help="mnist: the four MNIST IDX files, optimizee data for learned-optimizer benchmarks; downloadable",
    fields={**PROBLEM_FIELDS, "train_problem": "dict", "test_images": "str"},
    required=("hidden", "activation", "batch_size", "horizon"), ranges=RANGES,
    files=tuple(Resource(f"mnist/MNIST/raw/{name}.gz", gz_md5, f"{MNIST_URL}{name}.gz")
                for name, gz_md5, *_ in MNIST_FILES),
    fix=f"run `{DOWNLOAD_COMMAND}`", check=check, where=where, prepare=prepare)
