"""The on-disk spectrogram cache: each clip's image computed once, in parallel, and written atomically.

Layout: ``<cache_root>/<kind>-<spec hash>/<file stem>.<source hash>.npy`` (uint8 ``[height, frames]``) plus
``spec.json`` describing the settings. The source hash covers the file's dataset-relative name, size and
modification time, so a replaced recording is recomputed. Entries are written to a temporary name and
renamed into place: a killed extraction leaves no half-written entry under a valid name, a rerun computes
only what is missing, and two jobs filling the same cache at once end with one correct copy of each entry.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from asc.features import FeatureSpec, image_from_file

log = logging.getLogger(__name__)


@dataclass
class ExtractReport:
    """What :meth:`FeatureCache.build` did."""

    computed: int = 0
    cached: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)


def atomic_save_npy(path: Path, array: np.ndarray) -> None:
    """Write ``array`` to ``path`` via a temporary file in the same folder and an atomic rename."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, array)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class FeatureCache:
    """Spectrogram images of one feature setup, for any number of datasets."""

    def __init__(self, root: str | Path, spec: FeatureSpec) -> None:
        self.spec = spec
        self.dir = Path(root) / f"{spec.kind}-{spec.key()[:12]}"
        self.dir.mkdir(parents=True, exist_ok=True)
        info = self.dir / "spec.json"
        if not info.exists():
            tmp = info.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(asdict(spec), indent=2))
            os.replace(tmp, info)

    def entry(self, audio: Path, name: str) -> Path:
        """Cache file for the audio file ``audio`` known in its dataset as ``name``."""
        st = audio.stat()
        digest = hashlib.sha1(f"{name}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]
        return self.dir / f"{Path(name).stem}.{digest}.npy"

    def build(
        self,
        files: Sequence[Path],
        names: Sequence[str],
        workers: int | None = None,
        on_error: str = "raise",
        progress: bool = True,
    ) -> ExtractReport:
        """Compute every missing entry, using ``workers`` processes (default: all cores).

        ``on_error``: ``"raise"`` stops at the first bad file with an error naming it; ``"skip"`` leaves it
        out, counts it in the report and logs a warning. Memory stays bounded: workers write their own
        entries and return only a status.
        """
        from joblib import Parallel, delayed
        from tqdm.auto import tqdm

        if on_error not in ("raise", "skip"):
            raise ValueError(f"data.on_error: {on_error!r} is not one of 'raise', 'skip'")
        report = ExtractReport()
        todo = []
        for audio, name in zip(files, names, strict=True):
            if not audio.is_file():
                from asc.audio import AudioError

                raise AudioError(f"{audio}: no such audio file")
            dst = self.entry(audio, name)
            if dst.exists():
                report.cached += 1
            else:
                todo.append((audio, dst))
        if not todo:
            return report
        n_jobs = min(workers or os.cpu_count() or 1, len(todo))
        jobs = (delayed(_extract_one)(audio, dst, self.spec) for audio, dst in todo)
        runner = Parallel(n_jobs=n_jobs, return_as="generator_unordered", batch_size=1 if n_jobs > 1 else "auto")
        bar = tqdm(total=len(todo), desc=f"{self.spec.kind} spectrograms", unit="clip", disable=not progress)
        with bar:
            for audio, error in runner(jobs):
                bar.update()
                if error is None:
                    report.computed += 1
                elif on_error == "skip":
                    log.warning("skipped %s", error)
                    report.skipped.append((str(audio), error))
                else:
                    from asc.audio import AudioError

                    raise AudioError(error)
        if report.skipped:
            log.warning("%d file(s) skipped because they could not be used (data.on_error=skip)", len(report.skipped))
        return report

    def load(self, files: Sequence[Path], names: Sequence[str], progress: bool = False) -> np.ndarray:
        """Stack the entries of ``files`` into one uint8 array ``[N, height, frames]``.

        Clips of unequal length are cut to the shortest (the TAU clips all have 10 s).
        """
        from tqdm.auto import tqdm

        images = [np.load(self.entry(a, n)) for a, n in tqdm(list(zip(files, names)), desc="loading cache", disable=not progress)]
        if not images:
            return np.zeros((0, self.spec.height, 0), dtype=np.uint8)
        width = min(im.shape[1] for im in images)
        if any(im.shape[1] != width for im in images):
            log.warning("clips differ in length; all images are cut to %d frames", width)
        return np.stack([im[:, :width] for im in images])


def _extract_one(audio: Path, dst: Path, spec: FeatureSpec) -> tuple[Path, str | None]:
    """Worker: compute one image and write it atomically. Returns ``(audio, error message or None)``."""
    try:
        image = image_from_file(audio, spec)
    except Exception as err:  # noqa: BLE001 - reported per file; the caller decides to raise or skip
        msg = str(err)
        return audio, msg if str(audio) in msg else f"{audio}: {msg}"
    atomic_save_npy(dst, image)
    return audio, None
