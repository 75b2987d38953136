"""Where cells run. Every executor yields CellResults as cells finish; only the driver writes the run folder."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

from bench.config import Cell


class LocalExecutor:
    """Sequential, in this process (the default)."""

    name = "local"

    def run(self, cells: list[Cell], *, data_root=None, device: str = "cpu", checkpoint_dir: Path | None = None,
            progress: bool = True) -> Iterator:
        from bench.runner import run_cell

        for cell in cells:
            yield run_cell(cell, data_root=data_root, device=device, checkpoint_dir=checkpoint_dir,
                           progress=progress)


def make_executor(name: str, jobs: int = 1):
    if name == "local":
        return LocalExecutor()
    raise ValueError(f"unknown executor {name!r}; use local")
