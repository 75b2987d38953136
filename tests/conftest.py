import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "datasets"

# Tests never write caches into the user's home or a read-only data root.
os.environ.setdefault("METABENCH_CACHE", str(Path(os.environ.get("TMPDIR", "/tmp")) / "metabench-test-cache"))
# The real datasets (Omniglot, MNIST) next to the checkout are used when present; tests that need them skip
# with the reason otherwise.
if SHARED_DATA.is_dir():
    os.environ.setdefault("METABENCH_DATA", str(SHARED_DATA))
# where tests look for the real datasets: $METABENCH_DATA when set (CI), else the shared folder beside the checkout
REAL_DATA = Path(os.environ.get("METABENCH_DATA", str(SHARED_DATA)))


def real_omniglot_available() -> bool:
    from bench.data import data_root
    root = data_root()
    return (root / "omniglot" / "omniglot-py").is_dir() or (root / "omniglot-py").is_dir()


@pytest.fixture
def config():
    from bench.config import Config
    return Config.load()


def write_yaml(tmp_path, text: str) -> Path:
    path = tmp_path / "bench.yaml"
    path.write_text(text)
    return path
