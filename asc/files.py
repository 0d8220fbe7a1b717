"""Files that readers and rival processes never see half-made: atomic writes, checked arrays, inter-process locks.

Every cache, state and summary file of the project is written here: to a temporary name in the same folder,
then renamed into place (``os.replace`` is atomic), so a killed job leaves no half-written file under a
valid name. Temporary names start with ``.`` and end with ``.tmp`` (see ``FeatureCache.remove_stale``).

A renamed file can still be damaged later (a disk error, a copy cut short, a stray write): cache entries are
*checked* ``.npy`` files, the array followed by a 20-byte trailer holding the CRC-32 of the bytes before it
(:func:`atomic_save_checked`, :func:`load_checked`). They stay ordinary ``.npy`` files (``np.load`` ignores the
trailer); a reader of this module refuses one whose bytes changed, and the cache computes it again. Reading a
checked 117 KiB entry costs 1.48x ``np.load`` of the same array (139 vs 94 microseconds with the page cache warm, one
core of the 2-vCPU VM; ``python -m benchmarks.checked_reads``): 0.7 s more for TAU's 14,400 entries, once per run.
"""

from __future__ import annotations

import errno
import io
import logging
import os
import shutil
import struct
import tempfile
import zlib
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


class DiskFull(OSError):
    """No space left where the project writes: the message names the folder, the space needed and what to do."""


def no_space(err: BaseException) -> bool:
    """Whether ``err`` says a file system is full (or a quota is used up)."""
    return isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT)


def size_text(n: float) -> str:
    """Bytes for people: 512 B, 117.4 KiB, 1.73 GiB."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def free_space(folder: str | Path) -> int:
    """Bytes free for this user in ``folder`` (or in its nearest existing parent)."""
    path = Path(folder)
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def disk_full(folder: str | Path, what: str, need: int | None = None, hint: str = "") -> DiskFull:
    """The :class:`DiskFull` error for ``folder`` (``need``: bytes still to write there, if known)."""
    free = free_space(folder)
    amount = f"about {size_text(need)} more needed, {size_text(free)} free" if need else f"{size_text(free)} free"
    err = DiskFull(f"{folder}: no space left for {what} ({amount}). Free space there{hint}, then rerun the same "
                   "command: what was finished is kept")
    err.errno = errno.ENOSPC
    return err


#: The trailer of a checked ``.npy`` file: a marker, the CRC-32 of the ``.npy`` bytes before it and their length.
_TRAILER = struct.Struct("<8sIQ")
_MAGIC = b"asc-crc\x00"


class DamagedFile(ValueError):
    """A file whose bytes are not the ones written (flipped bits, cut short): never to be used as it is."""


def checked_npy(array: np.ndarray) -> bytes:
    """``array`` as ``.npy`` bytes followed by their CRC-32 trailer."""
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    body = buf.getvalue()
    return body + _TRAILER.pack(_MAGIC, zlib.crc32(body), len(body))


def checked_size(array: np.ndarray) -> int:
    """Bytes of ``array`` as a checked ``.npy`` file: its data, numpy's 128-byte header (arrays of a few dimensions)
    and the trailer."""
    return array.nbytes + 128 + _TRAILER.size


def atomic_save_checked(path: str | Path, array: np.ndarray) -> None:
    """Write ``array`` to ``path`` as a checked ``.npy`` file, atomically."""
    data = checked_npy(array)
    atomic_write(path, lambda f: f.write(data))


def load_checked(path: str | Path) -> np.ndarray:
    """The array of a checked ``.npy`` file; :class:`DamagedFile` if its bytes changed, it was cut short or it holds
    Python objects. A ``.npy`` file without a trailer (written before they had one) is checked for an intact header
    and exactly the size its header declares. ``FileNotFoundError`` if it does not exist."""
    data = Path(path).read_bytes()
    body = data
    if len(data) >= _TRAILER.size and data[-_TRAILER.size : -_TRAILER.size + len(_MAGIC)] == _MAGIC:
        _, crc, size = _TRAILER.unpack(data[-_TRAILER.size :])
        body = data[:size]
        if size != len(data) - _TRAILER.size or zlib.crc32(body) != crc:
            raise DamagedFile(f"{path}: damaged (its checksum does not match its bytes)")
    try:
        f = io.BytesIO(body)
        version = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read_header(f)
        if dtype.hasobject:
            raise ValueError("it holds Python objects")
        if f.tell() + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize != len(body):
            raise ValueError(f"{len(body)} bytes where its header declares {shape} {dtype}")
        f.seek(0)
        return np.load(f, allow_pickle=False)
    except (ValueError, EOFError, OSError, SyntaxError) as err:
        raise DamagedFile(f"{path}: damaged, not a readable array ({err})") from err


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


def held(lock_path: str | Path) -> bool:
    """Whether another process holds the lock on ``lock_path`` now (False if nobody does, or it does not exist)."""
    if not Path(lock_path).exists():
        return False
    lock = FileLock(str(lock_path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return True
    lock.release()
    return False
