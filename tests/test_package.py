"""metabench as a dependency of another project (docs/use-in-your-project.md, end to end): build the wheel,
install it into a new virtual environment, and from an empty folder run an overlay suite with a plugin
algorithm package, then gate it with `metabench compare`.

The new environment reuses this interpreter's installed packages (torch is not installed again) through a .pth
line naming their folder; a plain path line does not run the .pth files in that folder, so the editable install
of this checkout cannot shadow the wheel: the test checks `bench` is imported from the new environment.
"""
import filecmp
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow

PLUGIN = '''\
"""A lab's own algorithm: the support set's mean target plus a meta-learned offset."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from algorithms import register
from algorithms.base import Learner


@dataclass
class Hparams:
    lr: float = 0.05


@register("mymean")
class MyMean(Learner):
    """support mean plus a learned offset"""
    kinds, Hparams = ("regression",), Hparams

    def __init__(self, problem, hparams, device, generators):
        super().__init__(problem, hparams, device, generators)
        self.params = torch.nn.ParameterDict({"offset": torch.zeros((), device=device)})
        self.opt = torch.optim.SGD(self.params.parameters(), lr=hparams.lr)

    def modules(self):
        return {"mymean": self.params}

    def optimizers(self):
        return {"sgd": self.opt}

    def fit(self, sy, qx):
        return sy.mean(-2, keepdim=True).expand(*qx.shape[:-1], sy.shape[-1]) + self.params["offset"]

    def meta_train_step(self, batch):
        loss = ((self.fit(batch.support_y, batch.query_x) - batch.query_y) ** 2).mean()
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return {"loss": loss.item()}

    def predict(self, episode, steps=None):
        with torch.no_grad():
            return self.fit(episode.support_y, episode.query_x)
'''

PLUGIN_PYPROJECT = '''\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "mypkg"
version = "0.3.1"

[project.entry-points."metabench.algorithms"]
mymean = "mypkg"

[tool.setuptools]
packages = ["mypkg"]
'''

OVERLAY = '''\
# our CI suite: MAML against our algorithm on one sine benchmark
suites:
  mysuite:
    description: the pull-request gate of mypkg
    benchmarks: [sine-k5]
    algorithms: [maml, mymean]
    profile: smoke
algorithms:
  mymean:
    defaults: {lr: 0.1}
'''
FAST = ["--set", "budget.meta_iters=20", "--set", "budget.test_episodes=20", "--set", "budget.validation_tasks=5"]


def check(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, f"{proc.args}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    if importlib.util.find_spec("pip") is None or importlib.util.find_spec("setuptools") is None:
        pytest.skip("pip and setuptools are needed to build the wheel offline (--no-build-isolation)")
    root = tmp_path_factory.mktemp("package")
    # build from a copy: the build writes build/ and *.egg-info beside the sources
    source = root / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.so")
    for name in ("bench", "algorithms"):
        shutil.copytree(REPO / name, source / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md", "benchmarks.yaml", "results/published.csv"):
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(REPO / name, source / name)
    dist = root / "dist"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    check(subprocess.run([*pip, "wheel", str(source), "--no-deps", "--no-build-isolation", "--no-index", "-q",
                          "-w", str(dist)], capture_output=True, text=True, timeout=300))
    wheel = next(dist.glob("metabench-*.whl"))

    env_dir = root / "venv"
    check(subprocess.run([sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(env_dir)],
                         capture_output=True, text=True, timeout=120))
    python = env_dir / "bin" / "python"
    site = Path(check(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                     capture_output=True, text=True)).strip())
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "_reuse_test_interpreter.pth").write_text("\n".join(sorted(ours)) + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    install = [str(python), "-m", "pip", "--disable-pip-version-check", "install", "-q", "--no-deps", "--no-index",
               "--ignore-installed"]
    check(subprocess.run([*install, str(wheel)], capture_output=True, text=True, timeout=300, env=env))
    plugin = root / "mypkg-src"
    (plugin / "mypkg").mkdir(parents=True)
    (plugin / "mypkg" / "__init__.py").write_text(PLUGIN)
    (plugin / "pyproject.toml").write_text(PLUGIN_PYPROJECT)
    check(subprocess.run([*install, "--no-build-isolation", str(plugin)], capture_output=True, text=True,
                         timeout=300, env=env))
    work = root / "work"  # an empty folder of the user's project: no checkout anywhere near
    work.mkdir()
    return {"wheel": wheel, "bin": env_dir / "bin", "site": site, "env": env, "work": work, "source": source}


def test_the_wheel_ships_the_configuration_published_numbers_and_splits(venv, tmp_path):
    with zipfile.ZipFile(venv["wheel"]) as wheel:
        names = set(wheel.namelist())
        wheel.extractall(tmp_path)
    assert filecmp.cmp(tmp_path / "bench/_packaged/benchmarks.yaml", REPO / "benchmarks.yaml", shallow=False)
    assert filecmp.cmp(tmp_path / "bench/_packaged/published.csv", REPO / "results/published.csv", shallow=False)
    # every module of every package and every data file (splits, the site's static files, the C kernel)
    for top in ("bench", "algorithms"):
        for path in (REPO / top).rglob("*"):
            if not path.is_file() or "__pycache__" in path.parts or path.suffix in (".pyc", ".so"):
                continue
            if path.suffix == ".py" and not (path.parent / "__init__.py").is_file():
                continue  # a script beside data (bench/data/splits/make_omniglot_splits.py), not a module
            assert str(path.relative_to(REPO)) in names, f"{path} is not in the wheel"


def test_the_sdist_carries_the_files_the_wheel_build_copies(venv, tmp_path):
    check(subprocess.run([sys.executable, "-c", f"from setuptools import build_meta; "
                          f"build_meta.build_sdist({str(tmp_path)!r})"], capture_output=True, text=True,
                         cwd=venv["source"], timeout=300))
    with tarfile.open(next(tmp_path.glob("metabench-*.tar.gz"))) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    assert {"benchmarks.yaml", "results/published.csv", "bench/_build.py", "pyproject.toml"} <= names


def test_run_an_overlay_suite_with_a_plugin_from_an_empty_folder_and_gate_it(venv):
    def metabench(*args):
        return subprocess.run([str(venv["bin"] / "metabench"), *args], capture_output=True, text=True, timeout=600,
                              cwd=venv["work"], env=venv["env"])

    where = check(subprocess.run([str(venv["bin"] / "python"), "-c",
                                  "import bench, algorithms; print(bench.__file__); print(algorithms.__file__)"],
                                 capture_output=True, text=True, cwd=venv["work"], env=venv["env"]))
    assert all(line.startswith(str(venv["site"])) for line in where.split()), where
    assert check(metabench("--version")).startswith("metabench ")

    # the installed plugin is listed (with its version) but does not join wildcard suites unless asked for
    listed = check(metabench("list", "algorithms", "--format", "json"))
    row = next(r for r in json.loads(listed) if r["algorithm"] == "mymean")
    assert row["from"] == "plugin mypkg 0.3.1"
    smoke = check(subprocess.run([str(venv["bin"] / "python"), "-c", "import algorithms; algorithms.load_plugins(); "
                                  "print(algorithms.expand('*'))"], capture_output=True, text=True, env=venv["env"]))
    assert "mymean" not in smoke and "maml" in smoke

    (venv["work"] / "overlay.yaml").write_text(OVERLAY)
    check(metabench("run", "mysuite", "--config", "overlay.yaml", "--plugin", "mypkg", "--profile", "smoke",
                    "--out", "run1", "--no-progress", *FAST))
    manifest = json.loads((venv["work"] / "run1" / "manifest.json").read_text())
    assert [c["key"] for c in manifest["cells"]] == ["sine-k5/maml/seed0", "sine-k5/mymean/seed0"]
    assert {c["status"] for c in manifest["cells"]} == {"ok"}
    plugins = manifest.get("provenance", {}).get("plugins")
    assert {"name": "mymean", "module": "mypkg", "distribution": "mypkg", "version": "0.3.1"} in plugins
    assert check(metabench("compare", "run1", "run1")) is not None
    assert (venv["work"] / "run1" / "summary.csv").stat().st_mode & 0o044 == 0o044  # group/other can read
