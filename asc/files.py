"""Files that readers and rival processes never see half-made: atomic writes and inter-process locks.

Every cache, state and summary file of the project is written here: to a temporary name in the same folder,
then renamed into place (``os.replace`` is atomic), so a killed job leaves no half-written file under a
valid name. Temporary names start with ``.`` and end with ``.tmp`` (see ``FeatureCache.remove_stale``).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import numpy as np
from filelock import FileLock, Timeout

log = logging.getLogger(__name__)


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object]) -> None:
    """Call ``write(f)`` on a temporary file beside ``path``, then rename it to ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode()))


def atomic_save_npy(path: str | Path, array: np.ndarray) -> None:
    atomic_write(path, lambda f: np.save(f, array))


@contextmanager
def exclusive(lock_path: str | Path, waiting: str = "", timeout: float = -1) -> Iterator[None]:
    """Hold an inter-process lock on ``lock_path`` (``filelock``); log ``waiting`` if another process holds it.

    ``timeout``: seconds to wait before ``filelock.Timeout`` is raised (-1: for ever).
    """
    lock = FileLock(str(lock_path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if waiting:
            log.info("%s", waiting)
        lock.acquire(timeout=timeout)
    try:
        yield
    finally:
        lock.release()
