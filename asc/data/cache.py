"""The on-disk spectrogram cache: each clip's image computed once, in parallel, and written atomically.

Layout: ``<cache_root>/<kind>-<spec hash>/<file stem>.<source hash>.npy`` (uint8 ``[height, frames]``) plus
``spec.json`` describing the settings. The source hash covers the file's dataset-relative name, size and
modification time, so a replaced recording is recomputed. Entries are written to a temporary name and
renamed into place: a killed extraction leaves no half-written entry under a valid name, a rerun computes
only what is missing, and two jobs filling the same cache at once end with one correct copy of each entry.
Builders of one cache folder also take turns (a ``filelock`` on ``.build.lock``): the second job
waits, then finds the entries the first computed, so a sweep's parallel jobs do not all extract the same
clips. Temporary files a killed job left behind are removed once they are an hour old.

Entries are checked ``.npy`` files (:func:`asc.files.atomic_save_checked`: the image and a CRC-32 of its bytes).
Every read checks them (:meth:`FeatureCache.read`): an entry whose bytes changed or that was cut short is deleted,
computed again from its recording and counted (``repaired``), never trained on. Entries written before they carried
a checksum are checked for an intact header and size only.

With ``features.backend=torch`` the entries are the same files, made another way: worker processes decode the
clips (and apply the emphasis filter), this process stacks equally long clips into batches and computes their
images at once on the device (CUDA if available, else the CPU; :mod:`asc.data.features_torch`), and a few threads
write each entry atomically as above -- the layout, the resumability and the locking do not change.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from joblib import Parallel, cpu_count, delayed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from asc.data.audio import AudioError
from asc.data.features import NOT_FINITE, FeatureSpec, audio_from_file, emphasis, image_from_file, torch_transform
from asc.errors import SettingError
from asc.files import (DamagedFile, atomic_save_checked, atomic_write_text, checked_size, disk_full, exclusive,
                       load_checked, no_space)

log = logging.getLogger(__name__)

#: A temporary entry older than this (seconds) belongs to a killed job and is removed.
STALE_SECONDS = 3600.0
#: What to do when the cache's disk is full.
CACHE_HINT = " or choose another cache folder (--cache, paths.cache)"
#: Clips per batch of the torch backend's transform.
BATCH_SIZE = 32


@dataclass
class ExtractReport:
    """What :meth:`FeatureCache.build` did."""

    computed: int = 0
    cached: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)


class FeatureCache:
    """Spectrogram images of one feature setup, for any number of datasets."""

    def __init__(self, root: str | Path, spec: FeatureSpec) -> None:
        self.spec = spec
        self.dir = Path(root) / f"{spec.kind}-{spec.key()[:12]}"
        self.repaired = 0  # damaged entries found and computed again by this object
        info = self.dir / "spec.json"
        text = json.dumps(asdict(spec), indent=2)
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            if not info.exists():
                atomic_write_text(info, text)
        except OSError as err:
            if no_space(err):  # the entries will need more: the caller's first write says how much
                raise disk_full(self.dir, "the feature cache's spec.json", len(text.encode()) + 4096,
                                hint=CACHE_HINT) from None
            raise

    def entry(self, audio: Path, name: str) -> Path:
        """Cache file for the audio file ``audio`` known in its dataset as ``name``."""
        st = audio.stat()
        digest = hashlib.sha1(f"{name}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]
        return self.dir / f"{Path(name).stem}.{digest}.npy"

    def remove_stale(self, max_age: float = STALE_SECONDS) -> int:
        """Delete temporary entries older than ``max_age`` seconds (left by killed jobs). Returns how many."""
        now, count = time.time(), 0
        for tmp in self.dir.glob(".*.tmp"):
            try:
                if now - tmp.stat().st_mtime > max_age:
                    tmp.unlink()
                    count += 1
            except FileNotFoundError:  # its job renamed it in the meantime
                pass
        return count

    def missing(self, files: Sequence[Path], names: Sequence[str]) -> list[tuple[Path, Path]]:
        """``(audio, entry)`` for every file whose entry is not in the cache."""
        todo = []
        for audio, name in zip(files, names, strict=True):
            if not audio.is_file():
                raise AudioError(f"{audio}: no such audio file")
            dst = self.entry(audio, name)
            if not dst.exists():
                todo.append((audio, dst))
        return todo

    def build(
        self,
        files: Sequence[Path],
        names: Sequence[str],
        workers: int | None = None,
        on_error: str = "raise",
        progress: bool = True,
        device: str | None = None,
        batch_size: int = BATCH_SIZE,
    ) -> ExtractReport:
        """Compute every missing entry, using ``workers`` processes (default: every core this process may use).

        ``on_error``: ``"raise"`` stops at the first bad file with an error naming it; ``"skip"`` leaves it
        out, counts it in the report and logs a warning. Memory stays bounded whatever the number of clips:
        jobs are handed out lazily, workers write their own entries and return only a status. A progress bar
        shows clips done, clips/s and the ETA.

        ``features.backend=torch``: ``workers`` processes decode (one: this process), and the images are computed
        in batches of up to ``batch_size`` equally long clips on ``device`` (default: CUDA if available, else the
        CPU). ``device`` and ``batch_size`` change nothing else (not the entries' names).
        """
        if on_error not in ("raise", "skip"):
            raise SettingError(f"data.on_error: {on_error!r} is not one of 'raise', 'skip'")
        report = ExtractReport()
        todo = self.missing(files, names)
        if todo:
            with exclusive(self.dir / ".build.lock", f"{self.dir}: another job is extracting into this cache; waiting for it"):
                self.remove_stale()
                todo = [(audio, dst) for audio, dst in todo if not dst.exists()]  # filled while we waited?
                if todo and self.spec.backend == "torch":
                    self._run_batched(todo, workers, on_error, progress, report, device, batch_size)
                elif todo:
                    self._run(todo, workers, on_error, progress, report)
        report.cached = len(files) - report.computed - len(report.skipped)
        if report.skipped:
            log.warning("%d file(s) skipped because they could not be used (data.on_error=skip)", len(report.skipped))
        return report

    def _run(self, todo: list[tuple[Path, Path]], workers: int | None, on_error: str, progress: bool,
             report: ExtractReport) -> None:
        n_jobs = max(1, min(workers or cpu_count(), len(todo)))
        jobs = (delayed(_extract_one)(audio, dst, self.spec) for audio, dst in todo)
        runner = Parallel(n_jobs=n_jobs, return_as="generator_unordered", batch_size=1 if n_jobs > 1 else "auto")
        bar = tqdm(total=len(todo), desc=f"{self.spec.kind} spectrograms", unit="clip", disable=not progress)
        with bar:
            for audio, error in runner(jobs):
                bar.update()
                if isinstance(error, int):  # no space for the entry (its size): nothing was left under its name
                    raise self._full(len(todo) - report.computed - len(report.skipped), error)
                if error is None:
                    report.computed += 1
                elif on_error == "skip":
                    log.warning("skipped %s", error)
                    report.skipped.append((str(audio), error))
                else:
                    raise AudioError(error)

    def _run_batched(self, todo: list[tuple[Path, Path]], workers: int | None, on_error: str, progress: bool,
                     report: ExtractReport, device: str | None, batch_size: int) -> None:
        """``features.backend=torch``: decode on worker processes, transform batches of equally long clips on
        ``device``, write the entries from a few threads."""
        if batch_size < 1:
            raise ValueError(f"batch size {batch_size} must be at least 1")
        n_workers = max(1, min(workers or cpu_count(), len(todo)))
        loader = DataLoader(_Decode(todo, self.spec), batch_size=None, shuffle=False,
                            num_workers=n_workers if n_workers > 1 else 0,
                            prefetch_factor=4 if n_workers > 1 else None)
        clips = iter(loader)  # the decoding processes start here, before the device is touched
        transform = torch_transform(self.spec, device)
        pending: dict[int, list[tuple[int, torch.Tensor]]] = {}  # clips waiting for a batch, by length
        entry_bytes = [0]  # size of the last entry written
        writes: list[Future] = []

        def failed(audio: Path, error: str) -> None:
            if on_error != "skip":
                raise AudioError(error)
            log.warning("skipped %s", error)
            report.skipped.append((str(audio), error))
            bar.update()

        def flush(length: int) -> None:
            items = pending.pop(length)
            try:
                images, finite = transform(torch.stack([y for _, y in items]))
                results = list(zip(images.cpu().numpy(), finite.cpu().numpy(), strict=True))
            except ValueError:  # one clip the transform refuses: find it, keep the others
                results = []
                for i, y in items:
                    try:
                        image, ok = transform(y[None])
                        results.append((image[0].cpu().numpy(), bool(ok[0])))
                    except ValueError as err:
                        results.append((None, _message(todo[i][0], err)))
            for (i, _), (image, ok) in zip(items, results, strict=True):
                audio, dst = todo[i]
                if isinstance(ok, str) or not ok:
                    failed(audio, ok if isinstance(ok, str) else f"{audio}: {NOT_FINITE}")
                    continue
                entry_bytes[0] = checked_size(image)
                writes.append(writer.submit(atomic_save_checked, dst, image))
                report.computed += 1
                bar.update()
            while len(writes) > 4 * batch_size:  # bounded: wait for the oldest writes
                settle(writes.pop(0))

        def settle(write: Future) -> None:
            """Wait for one entry's write; a full disk is this cache's error, counting the entries still to write (this
            one, those waiting to be written, those not yet computed)."""
            try:
                write.result()
            except OSError as err:
                if no_space(err):
                    raise self._full(len(todo) - report.computed + len(writes) + 1, entry_bytes[0]) from None
                raise

        bar = tqdm(total=len(todo), desc=f"{self.spec.kind} spectrograms ({transform.device.type})", unit="clip",
                   disable=not progress)
        threads = torch.get_num_threads()
        if transform.device.type == "cpu" and n_workers > 1:
            # the decoders keep their cores busy: more transform threads than free cores run several times slower
            torch.set_num_threads(max(1, min(threads, cpu_count() - n_workers)))
        with bar, ThreadPoolExecutor(max_workers=4) as writer, _restore_threads(threads):
            for i, y, error in clips:
                if error is not None:
                    failed(todo[i][0], error)
                    continue
                group = pending.setdefault(int(y.shape[-1]), [])
                group.append((int(i), y))
                if len(group) >= batch_size:
                    flush(int(y.shape[-1]))
                elif sum(len(g) for g in pending.values()) >= 2 * batch_size:  # many lengths: bound the memory
                    flush(max(pending, key=lambda n: len(pending[n])))
            for length in list(pending):
                flush(length)
            while writes:
                settle(writes.pop(0))

    def _full(self, remaining: int, entry_bytes: int):
        """The :class:`asc.files.DiskFull` error of this cache, ``remaining`` entries of about ``entry_bytes`` to go."""
        return disk_full(self.dir, f"{remaining} more feature cache entries", remaining * entry_bytes, CACHE_HINT)

    def read(self, audio: Path, name: str) -> np.ndarray:
        """The checked entry of ``audio`` (uint8 ``[height, frames]``); a damaged one is deleted, computed again from
        ``audio`` (errors name it) and counted in ``repaired``. ``FileNotFoundError`` if it has none."""
        path = self.entry(audio, name)
        try:
            return load_checked(path)
        except DamagedFile as err:
            log.warning("%s; computing it again from %s", err, audio)
        path.unlink(missing_ok=True)
        image = image_from_file(audio, self.spec)
        atomic_save_checked(path, image)
        self.repaired += 1
        return image

    def widths(self, files: Sequence[Path], names: Sequence[str]) -> np.ndarray:
        """Frames of each file's entry (``-1`` where it has none, or where a damaged one cannot be computed again),
        from the ``.npy`` headers: the entries' bytes are checked where they are read (:meth:`read`). An entry whose
        header cannot be read, or that is shorter than its header says, is repaired here."""
        out = np.full(len(files), -1, dtype=np.int64)
        for i, (audio, name) in enumerate(zip(files, names, strict=True)):
            try:
                out[i] = np.load(self.entry(audio, name), mmap_mode="r").shape[1]
                continue
            except FileNotFoundError:
                continue
            except (ValueError, OSError, EOFError, IndexError):  # a damaged header, or cut short
                pass
            try:
                out[i] = self.read(audio, name).shape[1]
            except (AudioError, ValueError) as err:
                log.warning("%s", _message(audio, err))
        return out

    def load(self, files: Sequence[Path], names: Sequence[str], width: int | None = None,
             progress: bool = False) -> np.ndarray:
        """Stack the entries of ``files`` into one uint8 array ``[N, height, width]``.

        ``width`` defaults to the narrowest entry; wider entries are cut to it (the TAU clips all have 10 s).
        The array is allocated once and filled entry by entry, so memory peaks at its own size.
        """
        if width is None:
            widths = self.widths(files, names)
            if (widths < 0).any():
                raise FileNotFoundError(f"{self.dir}: no entry for {files[int(np.argmax(widths < 0))]}")
            width = int(widths.min()) if len(widths) else 0
            if len(set(widths.tolist())) > 1:
                log.warning("clips differ in length; all images are cut to %d frames", width)
        out = np.empty((len(files), self.spec.height, width), dtype=np.uint8)
        pairs = tqdm(list(zip(files, names, strict=True)), desc="loading cache", unit="clip", disable=not progress)
        for i, (audio, name) in enumerate(pairs):
            image = self.read(audio, name)
            if image.shape[1] < width:
                raise ValueError(f"{audio}: {image.shape[1]} frames, fewer than the {width} asked for")
            out[i] = image[:, :width]
        return out

    def each(self, files: Sequence[Path], names: Sequence[str], progress: bool = False,
             desc: str = "loading cache") -> Iterator[np.ndarray]:
        """The entries of ``files`` one by one, each at its own length ``[height, frames]``."""
        for audio, name in tqdm(list(zip(files, names, strict=True)), desc=desc, unit="clip", disable=not progress):
            yield self.read(audio, name)


@contextmanager
def _restore_threads(threads: int) -> Iterator[None]:
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _message(audio: Path, err: Exception) -> str:
    msg = str(err)
    return msg if str(audio) in msg else f"{audio}: {msg}"


def _extract_one(audio: Path, dst: Path, spec: FeatureSpec) -> tuple[Path, str | int | None]:
    """Worker: compute one image and write it atomically. Returns ``(audio, None)``, ``(audio, error message)``, or
    ``(audio, bytes of the entry)`` when the disk is full (the temporary file is removed, nothing is left)."""
    try:
        image = image_from_file(audio, spec)
    except Exception as err:  # noqa: BLE001 - reported per file; the caller decides to raise or skip
        return audio, _message(audio, err)
    try:
        atomic_save_checked(dst, image)
    except OSError as err:
        if no_space(err):
            return audio, checked_size(image)
        raise
    return audio, None


class _Decode:
    """Decoding worker of the torch backend: item ``i`` is ``(i, emphasised float32 audio [samples] or None,
    error message or None)`` for ``todo[i]`` (a map-style dataset for ``torch.utils.data.DataLoader``)."""

    def __init__(self, todo: list[tuple[Path, Path]], spec: FeatureSpec) -> None:
        self.files = [audio for audio, _ in todo]
        self.spec = spec

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[int, np.ndarray | None, str | None]:
        audio, spec = self.files[i], self.spec
        try:
            y = audio_from_file(audio, spec)
            if spec.emphasis_alpha is not None:
                y = emphasis(y, spec.sample_rate, spec.emphasis_alpha)
        except Exception as err:  # noqa: BLE001 - reported per file; the caller decides to raise or skip
            return i, None, _message(audio, err)
        return i, y, None
