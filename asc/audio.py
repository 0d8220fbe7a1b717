"""Reading audio files into mono float32 signals, with errors that name the file."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import soundfile as sf


class AudioError(ValueError):
    """A file that cannot be used as audio: unreadable, empty, non-finite, or at a refused sample rate."""


def load_mono(path: str | Path, sr: int | None = None, resample: bool = True) -> tuple[np.ndarray, int]:
    """Read ``path`` and mix it down to mono (mean of channels).

    Args:
        path: WAV/FLAC/OGG/MP3 (anything libsndfile reads; other formats fall back to audioread).
        sr: wanted rate in Hz; ``None`` keeps the file's rate.
        resample: if False, a file at a rate other than ``sr`` raises :class:`AudioError`.

    Returns:
        ``(y, sr)`` with ``y`` a float32 array ``[samples]`` in [-1, 1].
    """
    path = Path(path)
    try:
        data, file_sr = sf.read(path, dtype="float32", always_2d=True)
    except sf.LibsndfileError as err:
        if not path.exists():
            raise AudioError(f"{path}: no such audio file") from err
        data, file_sr = _read_fallback(path, err)
    except (RuntimeError, OSError) as err:
        raise AudioError(f"{path}: cannot read audio ({err})") from err
    if data.size == 0:
        raise AudioError(f"{path}: the file holds no samples")
    y = data.mean(axis=1) if data.ndim == 2 else data
    if not np.isfinite(y).all():
        raise AudioError(f"{path}: the audio holds NaN or infinite samples")
    if sr is not None and file_sr != sr:
        if not resample:
            raise AudioError(
                f"{path}: sample rate {file_sr} Hz, expected {sr} Hz (set features.resample=true to resample)"
            )
        import librosa

        y = librosa.resample(y, orig_sr=file_sr, target_sr=sr)
        file_sr = sr
    return np.ascontiguousarray(y, dtype=np.float32), int(file_sr)


def _read_fallback(path: Path, first_error: Exception) -> tuple[np.ndarray, int]:
    """Formats libsndfile does not read: try librosa/audioread before giving up."""
    try:
        import librosa

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            y, file_sr = librosa.load(path, sr=None, mono=False)
    except Exception as err:  # noqa: BLE001 - any decoder failure means "unreadable"
        raise AudioError(f"{path}: cannot read audio ({first_error}; fallback decoder: {err})") from err
    y = np.atleast_2d(y).T  # [samples, channels]
    return y.astype(np.float32), int(file_sr)
