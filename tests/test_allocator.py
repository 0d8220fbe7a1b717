"""asc/allocator.py: glibc's thresholds set at import, left alone when the user set their own."""

from __future__ import annotations

import ctypes
import os
import platform
import resource
import subprocess
import sys

import pytest

from asc import allocator

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


@pytest.mark.parametrize("env", [{"ASC_MALLOC": "default"}, {"MALLOC_MMAP_THRESHOLD_": "131072"},
                                 {"MALLOC_TRIM_THRESHOLD_": "0"}])
def test_a_users_own_setting_is_kept(env):
    assert allocator.tune(env) is False


@pytest.mark.skipif(not GLIBC, reason="glibc's mallopt")
def test_large_buffers_come_from_the_heap_after_import():
    """A freed 64 MiB buffer is reused without new page faults once asc is imported, and not without it."""
    code = (  # transparent huge pages off for the child (prctl PR_SET_THP_DISABLE): 4 KiB pages, so each fresh
        # 64 MiB buffer costs 16,384 faults; with them on, the kernel may serve it in 32 faults or in 16,384
        "import ctypes, resource, sys, numpy as np\n"
        "ctypes.CDLL(None).prctl(41, 1, 0, 0, 0)\n"
        "if sys.argv[1] == 'asc': import asc\n"
        "np.ones(8 << 20)\n"  # 64 MiB, freed
        "r0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        "for _ in range(5): np.ones(8 << 20)\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r0)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "ASC_MALLOC"))}
    faults = {how: int(subprocess.run([sys.executable, "-c", code, how], env=env, capture_output=True, text=True,
                                      check=True).stdout) for how in ("asc", "plain")}
    assert faults["plain"] > 5 * 8000, faults  # the pages of each new buffer faulted in again
    assert faults["asc"] * 10 < faults["plain"], faults
