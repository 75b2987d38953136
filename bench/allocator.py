"""Keep freed heap memory in the process instead of handing it back to the operating system after every tensor.

glibc's malloc serves large blocks (a Conv-4 activation of a 75-image query set is 15 MB) with fresh mmap()s and
returns them on free, so the next iteration page-faults through the same megabytes again. On the shared
machines this suite is developed on, a page fault is expensive enough that writing a fresh 15 MB tensor took
5-10x longer than overwriting an old one: a fifth of a MAML task went to it. Raising the mmap and trim
thresholds lets malloc reuse those blocks; numbers are unchanged, only where the memory comes from.

Skipped when the user tunes malloc through its own MALLOC_* variables, with METABENCH_MALLOC=system, and on
C libraries other than glibc.
"""
from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3   # glibc's mallopt() parameter numbers
MMAP_THRESHOLD = 32 * 2 ** 20    # glibc's largest allowed value: blocks up to 32 MiB come from the heap
TRIM_THRESHOLD = 2 ** 30         # keep up to 1 GiB of free heap instead of trimming it
TOP_PAD = 256 * 2 ** 20          # grow the heap in large steps (address space only: untouched pages cost nothing)

_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Apply the settings once per process; True when they are in effect."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if (not sys.platform.startswith("linux") or os.environ.get("METABENCH_MALLOC") == "system"
            or any(name.startswith("MALLOC_") for name in os.environ)):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _applied = all(mallopt(param, value) == 1 for param, value in
                   ((M_MMAP_THRESHOLD, MMAP_THRESHOLD), (M_TRIM_THRESHOLD, TRIM_THRESHOLD), (M_TOP_PAD, TOP_PAD)))
    return _applied
