"""setuptools hooks (named in pyproject.toml's [tool.setuptools.cmdclass]) that ship the top-level data files.

benchmarks.yaml and results/published.csv live outside the `bench` package because people edit them there;
`build_py` copies them into bench/_packaged/ of the build (never into the source tree, so there is no second copy
to drift), and `sdist` includes them so a wheel built from the sdist gets them too. Imported only by setuptools.
"""
from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

ROOT = Path(__file__).resolve().parent.parent


def _resources():
    """bench/resources.py loaded by path: the build environment need not have the project on sys.path, and
    importing the `bench` package is not needed for two constants."""
    spec = importlib.util.spec_from_file_location("_metabench_resources", Path(__file__).with_name("resources.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class BuildPy(build_py):
    def run(self) -> None:
        super().run()
        # an editable install reads the top-level files directly (bench.resources.checkout_root)
        if getattr(self, "editable_mode", False):
            return
        res = _resources()
        target = Path(self.build_lib) / "bench" / res.PACKAGED
        target.mkdir(parents=True, exist_ok=True)
        for name, source in res.SOURCES.items():
            path = ROOT / source
            if not path.is_file():
                raise FileNotFoundError(f"{path}: missing; the metabench wheel ships it as bench/{res.PACKAGED}/{name}")
            shutil.copyfile(path, target / name)


class Sdist(sdist):
    def make_distribution(self) -> None:
        # setuptools builds the file list in egg_info; adding here puts the two files into the archive
        self.filelist.extend(str(source) for source in _resources().SOURCES.values())
        super().make_distribution()
