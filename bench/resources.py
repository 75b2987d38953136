"""Where the suite's own data files are: the configuration, the published numbers (and, beside them in the
package, the class splits under bench/data/splits).

The repository's top-level benchmarks.yaml and results/published.csv are the files people edit. A wheel cannot
reach them, so the build (bench/_build.py) copies them into the package as bench/_packaged/; an installed
metabench reads those copies with importlib.resources. A checkout (editable install, `python -m bench` from the
repository) keeps reading the top-level files, so an edit takes effect without a rebuild.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path

PACKAGED = "_packaged"          # folder inside the `bench` package the build fills
CONFIG_NAME = "benchmarks.yaml"
PUBLISHED_NAME = "published.csv"
# where the build finds each packaged file, relative to the project root (the layout DESIGN.md fixes)
SOURCES = {CONFIG_NAME: Path("benchmarks.yaml"), PUBLISHED_NAME: Path("results") / "published.csv"}


def checkout_root() -> Path | None:
    """The repository this package was imported from, or None for an installed wheel. Recognised by the
    project's pyproject.toml beside the package, so a site-packages folder never passes for one."""
    root = Path(__file__).resolve().parent.parent
    pyproject = root / "pyproject.toml"
    try:
        if pyproject.is_file() and 'name = "metabench"' in pyproject.read_text():
            return root
    except OSError:
        pass
    return None


def data_file(name: str) -> Path:
    """A shipped data file (CONFIG_NAME or PUBLISHED_NAME): the checkout's own when running from one, else the
    wheel's copy. Raises FileNotFoundError naming both places when neither exists (a broken install)."""
    root = checkout_root()
    if root is not None and (root / SOURCES[name]).is_file():
        return root / SOURCES[name]
    packaged = resources.files("bench").joinpath(PACKAGED, name)
    # regular (unzipped) installs give a real path; that is the only kind pip creates
    path = Path(str(packaged))
    if path.is_file():
        return path
    raise FileNotFoundError(f"metabench's {name} is missing from {path.parent} (a broken install: reinstall the "
                            f"wheel, or build it with `pip wheel .` from a checkout so the build copies it in)")


def config_file() -> Path:
    return data_file(CONFIG_NAME)


def published_csv() -> Path:
    return data_file(PUBLISHED_NAME)
