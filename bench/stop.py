"""The stop request of a run: set by the first Ctrl-C, read by training loops and executors.

Kept apart from bench.cell so that executors (which must not import the harness) can relay it to their workers.
"""
from __future__ import annotations

import threading

# Set by the first Ctrl-C (bench.run_command): the training loop stops at the next iteration boundary, writes a
# checkpoint and raises RunInterrupted, so `metabench run --resume` continues exactly where it stopped.
STOP = threading.Event()


class RunInterrupted(Exception):
    """Training was stopped on request after a checkpoint was written; the cell is unfinished, not failed."""
