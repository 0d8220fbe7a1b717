"""Spectrogram images: the paper's emphasised constant-Q power spectrogram, and a mel alternative.

Faithful to the reference implementation (see ``paper.md`` facts in the README):

1. mono mix-down (done by :func:`asc.data.audio.load_mono`);
2. emphasis filter ``y[n] = (x[n] - a x[n-1]) / (1 - a)`` with ``a = sr / (sr + alpha)`` and the first
   sample taken against ``x[-1] = 2 x[0] - x[1]`` (alpha = 1485 Hz gives the reference's a = 0.97 at 48 kHz);
3. ``librosa.cqt`` (fmin 10 Hz, 256 bins, 24 per octave, hop 1024, librosa's other defaults);
4. ``librosa.power_to_db`` of the *magnitude* ``|C|`` (ref 1, amin 1e-10, top_db 80), as the reference did;
5. each time frame min-max scaled over frequency to 0..255 and truncated to uint8;
6. rows flipped so the image has low frequencies at the bottom, as the reference's PNGs.

The result is an 8-bit image ``[n_bins, frames]`` -- 256 x 469 for 10 s at 48 kHz.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np

#: Bump when the computation changes in a way that invalidates cached images.
FEATURE_VERSION = 1


@dataclass(frozen=True)
class FeatureSpec:
    """Every setting that changes the image. Its :meth:`key` names the cache."""

    kind: Literal["cqt", "mel"] = "cqt"
    sample_rate: int = 48_000  # files at another rate are resampled (or rejected, see ``resample``)
    resample: bool = True
    channels: int | None = None  # expected channel count (TAU: 2); None accepts any (mixed down to mono)
    emphasis_alpha: float | None = 1485.0  # Hz; None disables the emphasis filter
    hop_length: int = 1024
    # constant-Q
    fmin: float = 10.0
    n_bins: int = 256
    bins_per_octave: int = 24
    # mel
    n_mels: int = 256
    n_fft: int = 2048
    # dB
    magnitude: bool = True  # the reference took power_to_db of |C|, not |C|**2
    amin: float = 1e-10
    top_db: float | None = 80.0

    def __post_init__(self) -> None:
        if self.kind not in ("cqt", "mel"):
            raise ValueError(f"features.kind: {self.kind!r} is not one of 'cqt', 'mel'")
        if self.sample_rate <= 0 or self.hop_length <= 0:
            raise ValueError("features.sample_rate and features.hop_length must be positive")
        if self.emphasis_alpha is not None and self.emphasis_alpha <= 0:
            raise ValueError(f"features.emphasis_alpha: {self.emphasis_alpha} Hz must be positive (or null to disable)")
        if self.kind == "cqt":
            f_top = self.fmin * 2 ** ((self.n_bins - 1) / self.bins_per_octave)
            # librosa needs the top filter's band (about one bin wide) below Nyquist too
            if f_top * 2 ** (1 / self.bins_per_octave) >= self.sample_rate / 2:
                raise ValueError(
                    f"features: the top CQT bin ({f_top:.0f} Hz) and its band reach Nyquist ({self.sample_rate / 2:.0f} Hz); "
                    "lower n_bins or fmin, or raise sample_rate"
                )

    @property
    def height(self) -> int:
        return self.n_bins if self.kind == "cqt" else self.n_mels

    def frames(self, seconds: float) -> int:
        """Image width for a clip of ``seconds`` (librosa's centred frames)."""
        return int(round(seconds * self.sample_rate)) // self.hop_length + 1

    def window_frames(self, seconds: float) -> int:
        """Width in frames of a time window of ``seconds``."""
        return max(1, int(round(seconds * self.sample_rate / self.hop_length)))

    def key(self) -> str:
        """Stable hash of the settings (and the code version)."""
        payload = json.dumps({"v": FEATURE_VERSION, **asdict(self)}, sort_keys=True)
        return hashlib.sha1(payload.encode()).hexdigest()


def emphasis_coefficient(sample_rate: int, alpha: float) -> float:
    """``a = sr / (sr + alpha)``: the filter ``y = x + dx/dt / alpha`` at this rate."""
    return sample_rate / (sample_rate + alpha)


def emphasis(y: np.ndarray, sample_rate: int, alpha: float) -> np.ndarray:
    """High-frequency emphasis ``[samples] -> [samples]``: gain 1 at DC, (1+a)/(1-a) at Nyquist.

    ``y[n] = (x[n] - a x[n-1]) / (1 - a)``, with the reference's first-sample rule ``x[-1] = 2 x[0] - x[1]``.
    """
    a = emphasis_coefficient(sample_rate, alpha)
    x = np.asarray(y, dtype=np.float64)
    if x.size < 2:
        raise ValueError("emphasis needs at least two samples")
    prev = np.empty_like(x)
    prev[0] = 2 * x[0] - x[1]
    prev[1:] = x[:-1]
    return ((x - a * prev) / (1 - a)).astype(np.float32)


def spectrogram_db(y: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """dB spectrogram ``[bins, frames]``, row 0 = lowest frequency (float32)."""
    import librosa

    if spec.emphasis_alpha is not None:
        y = emphasis(y, spec.sample_rate, spec.emphasis_alpha)
    if spec.kind == "cqt":
        S = np.abs(
            librosa.cqt(
                y, sr=spec.sample_rate, hop_length=spec.hop_length, fmin=spec.fmin,
                n_bins=spec.n_bins, bins_per_octave=spec.bins_per_octave,
            )
        )
        if not spec.magnitude:
            S = S**2
    else:
        S = librosa.feature.melspectrogram(
            y=y, sr=spec.sample_rate, n_fft=spec.n_fft, hop_length=spec.hop_length, n_mels=spec.n_mels, power=2.0
        )
        if spec.magnitude:
            S = np.sqrt(S)
    return librosa.power_to_db(S, ref=1.0, amin=spec.amin, top_db=spec.top_db).astype(np.float32)


def frame_minmax_uint8(S: np.ndarray) -> np.ndarray:
    """Scale each column (time frame) of ``[bins, frames]`` to 0..255 over frequency; truncate to uint8.

    A constant frame (e.g. digital silence) maps to 0, as scikit-learn's MinMaxScaler does.
    """
    S = np.asarray(S, dtype=np.float64)
    lo = S.min(axis=0, keepdims=True)
    rng = S.max(axis=0, keepdims=True) - lo
    rng[rng == 0] = 1.0
    scaled = (S - lo) / rng * 255.0
    return np.clip(scaled, 0, 255).astype(np.uint8)


def image_from_audio(y: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """The network's input image ``[height, frames]`` uint8, low frequencies at the bottom.

    Raises ValueError if the spectrogram is not finite (e.g. samples so large that the transform
    overflows): an image is never made from NaN or infinite values.
    """
    S = spectrogram_db(y, spec)
    if not np.isfinite(S).all():
        raise ValueError("the spectrogram holds NaN or infinite values (are the samples within [-1, 1]?)")
    return np.ascontiguousarray(frame_minmax_uint8(S)[::-1])


def image_from_file(path: str | Path, spec: FeatureSpec) -> np.ndarray:
    """Read ``path`` (mono mix-down, resampled to ``spec.sample_rate``) and compute its image."""
    from asc.data.audio import load_mono

    y, _ = load_mono(path, sr=spec.sample_rate, resample=spec.resample, channels=spec.channels)
    if y.size < spec.hop_length:
        from asc.data.audio import AudioError

        raise AudioError(f"{path}: only {y.size} samples, shorter than one hop ({spec.hop_length})")
    return image_from_audio(y, spec)
