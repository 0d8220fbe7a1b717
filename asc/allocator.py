"""glibc's allocator tuned for tensor work, set once when asc is imported.

By default glibc serves every block above 128 KiB-32 MiB (the threshold adapts) with a fresh ``mmap`` and returns it
to the OS on ``free``: each layer's activations are new pages, and the kernel zero-fills them page fault by page
fault. Measured on the 2-core VM (timm's EfficientNet-Lite0, batch 64, 224 x 224, 2 threads, inference): 16 views/s
with 8.6 s user and 18.3 s system time and 6.4 M page faults, against 79 views/s, 30.6 s user, 0.0 s system and no
page faults with the two thresholds below (``benchmarks/allocator.py``, ``make bench``). Freed memory then stays in
the process for the next batch: the resident size stays near its peak instead of falling between batches.

A user who sets ``MALLOC_MMAP_THRESHOLD_`` or ``MALLOC_TRIM_THRESHOLD_`` (or ``ASC_MALLOC=default``) keeps glibc's
behaviour or their own. On other C libraries (macOS, musl) nothing is changed. Results do not depend on it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

#: mallopt() parameters (malloc.h) and the values asc sets: blocks up to 1 GiB from the heap, never trimmed.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 1 << 30
TRIM_THRESHOLD = 2**31 - 1
_USER_VARIABLES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")


def tune(environ: dict[str, str] | None = None) -> bool:
    """Raise glibc's mmap and trim thresholds (see the module's docstring); True when they were set."""
    env = os.environ if environ is None else environ
    if env.get("ASC_MALLOC", "").lower() == "default" or any(v in env for v in _USER_VARIABLES):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
