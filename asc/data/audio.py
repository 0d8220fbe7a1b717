"""Reading audio files into mono float32 signals, with errors that name the file."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import soundfile as sf


#: Extensions treated as audio in a folder (anything libsndfile reads, plus MP3 through libsndfile >= 1.1).
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au", ".w64", ".rf64")


class AudioError(ValueError):
    """A file that cannot be used as audio: unreadable, empty, non-finite, or at a refused sample rate."""


#: Formats libsndfile decodes itself: a file of these kinds that it cannot open is broken, not exotic.
_SNDFILE_SUFFIXES = (".wav", ".flac", ".ogg", ".aif", ".aiff", ".w64", ".rf64")


def wav_truncation(path: str | Path) -> tuple[int, int] | None:
    """``(declared, present)`` bytes of a RIFF/WAVE file's ``data`` chunk when the file is shorter than its
    header says (an interrupted download or unzip), else ``None``. libsndfile silently reads such a file's
    remainder, so this is checked separately. Reads only the chunk headers."""
    import struct

    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        pos = 12
        while pos + 8 <= size:
            f.seek(pos)
            chunk_id, length = struct.unpack("<4sI", f.read(8))
            if chunk_id == b"data":
                present = size - pos - 8
                # 0 and 0xFFFFFFFF mark streamed / RF64-style files whose length is not in this header
                return (length, present) if 0 < length < 0xFFFFFFFF and present < length else None
            pos += 8 + length + (length & 1)
    return None


def load_mono(
    path: str | Path, sr: int | None = None, resample: bool = True, channels: int | None = None
) -> tuple[np.ndarray, int]:
    """Read ``path`` and mix it down to mono (mean of channels).

    Args:
        path: WAV/FLAC/OGG/MP3 (anything libsndfile reads; other formats fall back to audioread).
        sr: wanted rate in Hz; ``None`` keeps the file's rate.
        resample: if False, a file at a rate other than ``sr`` raises :class:`AudioError`.
        channels: expected channel count (TAU: 2); a file with another count raises :class:`AudioError`.
            ``None`` accepts any count (a mono file then gives the same signal as a stereo file holding it
            twice).

    Returns:
        ``(y, sr)`` with ``y`` a float32 array ``[samples]`` in [-1, 1].

    Raises:
        AudioError: naming the file, for a missing, empty (0 bytes), truncated or undecodable file, one
        without samples, with NaN/inf samples, or with a refused sample rate or channel count.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: no such audio file")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: empty file (0 bytes); download or copy it again")
    cut = wav_truncation(path)
    if cut is not None:
        raise AudioError(
            f"{path}: truncated WAV: the header declares {cut[0]} bytes of audio, the file holds {cut[1]} "
            "(an interrupted download or unzip?); replace the file"
        )
    try:
        data, file_sr = sf.read(path, dtype="float32", always_2d=True)
    except sf.LibsndfileError as err:
        if path.suffix.lower() in _SNDFILE_SUFFIXES:
            raise AudioError(f"{path}: cannot read audio, the file is damaged or not a {path.suffix} file ({err})") from err
        data, file_sr = _read_fallback(path, err)
    except (RuntimeError, OSError) as err:
        raise AudioError(f"{path}: cannot read audio ({err})") from err
    if data.size == 0:
        raise AudioError(f"{path}: the file holds no samples")
    if channels is not None and data.shape[1] != channels:
        raise AudioError(
            f"{path}: {data.shape[1]} channel(s), expected {channels} (set features.channels=null to accept "
            "any count; channels are mixed down to mono)"
        )
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
        raise AudioError(
            f"{path}: cannot read audio ({first_error}; fallback decoder: {str(err) or type(err).__name__})"
        ) from err
    y = np.atleast_2d(y).T  # [samples, channels]
    return y.astype(np.float32), int(file_sr)


def audio_files(folder: str | Path) -> list[Path]:
    """Every audio file under ``folder`` (recursively, by :data:`AUDIO_EXTENSIONS`), sorted."""
    return sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
