"""Spectrogram images: the paper's emphasised constant-Q power spectrogram, and a mel alternative.

Faithful to the reference implementation, which ran on librosa 0.7 (2019) and wrote its images with
matplotlib (see the README's "The paper's setup"):

1. mono mix-down (done by :func:`asc.data.audio.load_mono`), as ``librosa.load(path, sr=None)``;
2. emphasis filter ``y[n] = (x[n] - a x[n-1]) / (1 - a)`` with ``a = sr / (sr + alpha)`` and the first
   sample taken against ``x[-1] = 2 x[0] - x[1]``, in float32 as numpy computes it on ``librosa.load``'s samples
   (alpha = 0.03 x 48000 / 0.97 = 1484.536 Hz gives the reference's a = 0.97 at 48 kHz; the rounded 1485 Hz
   of ``paper.md`` gives 0.96999, which moves 0.006 grey levels on average);
3. the constant-Q transform of librosa 0.7 (fmin 10 Hz, 256 bins, 24 per octave, hop 1024, Hann filters),
   which differs from today's ``librosa.cqt`` in three defaults, all settings of :class:`FeatureSpec`:

   - ``pad_mode``: frames are centred on ``reflect``-padded audio (librosa >= 0.9 pads with zeros);
   - ``res_type``: each octave is computed on the signal halved in rate by resampy's ``kaiser_fast`` filter as
     resampy <= 0.2 defined it (16 zero crossings, Kaiser beta 8.5555, roll-off 0.85): librosa 0.7's automatic
     choice for these settings (the top filter's band ends at 16.1 kHz, below 0.85 x Nyquist), with no early
     downsampling. resampy >= 0.3 ships another ``kaiser_fast`` (24 zero crossings, beta 9.90, roll-off 0.868)
     and librosa >= 0.10 resamples with soxr by default; ``RES_TYPE_2019`` is the old filter, rebuilt exactly;
   - ``bandwidth``: filter lengths ``Q sr / f`` with ``Q = 1 / (2^(1/b) - 1)`` (librosa <= 0.9); librosa >= 0.10
     uses ``Q = 1 / alpha``, ``alpha = (2^(2/b) - 1) / (2^(2/b) + 1)``: 1.5 % longer filters at 24 bins/octave;

4. ``librosa.power_to_db`` of the *magnitude* ``|C|`` (ref 1, amin 1e-10, top_db 80), as the reference did;
5. each time frame min-max scaled over frequency to 0..255 (scikit-learn's ``MinMaxScaler``), then mapped to
   8 bit as ``matplotlib.pyplot.imsave(..., cmap="gray")`` did (:func:`frame_minmax_uint8`);
6. rows flipped so the image has low frequencies at the bottom, as the reference's PNGs.

The result is an 8-bit image ``[n_bins, frames]`` -- 256 x 469 for 10 s at 48 kHz. Measured on generated TAU-format
clips against librosa 0.7.2 itself: the dB values agree to 3e-6 dB on average (at most 1e-3 dB).

``backend="torch"`` computes the same constant-Q image with batched tensor operations on a GPU or the CPU
(:mod:`asc.data.features_torch`, the same algorithm; rounding moves 2-3 pixels in 10,000 by one level); the
librosa path above stays the default and the reference.
"""

from __future__ import annotations

import functools
import hashlib
import json
import threading
import warnings
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Literal

import librosa
import numpy as np
import scipy.signal
import torch

from asc.data.audio import AudioError, load_mono
from asc.data.features_torch import TORCH_PAD_MODES, ConstantQImages, octave_filters, octave_plan

#: Bump when the computation changes in a way that invalidates cached images.
#: 2: librosa 0.7's constant-Q transform (padding, resampler, bandwidth) and matplotlib's 8-bit mapping.
FEATURE_VERSION = 2

#: ``res_type`` of librosa 0.7's automatic choice for the paper's settings: resampy's ``kaiser_fast`` filter as
#: resampy <= 0.2 defined it (resampy >= 0.3 ships a different filter under that name).
RES_TYPE_2019 = "kaiser_fast_resampy0.2"
#: ``bandwidth`` values: librosa 0.7's constant-Q filter lengths, or those of the installed librosa (>= 0.10).
BANDWIDTHS = ("librosa0.7", "librosa")
PAD_MODES = ("constant", "reflect", "edge", "symmetric", "wrap", "linear_ramp", "maximum", "mean", "median", "minimum")
#: ``backend`` values: the faithful librosa/numpy path (default), or the same transform as batched tensor operations.
BACKENDS = ("librosa", "torch")


@dataclass(frozen=True)
class FeatureSpec:
    """Every setting that changes the image. Its :meth:`key` names the cache.

    The defaults are the reference's (librosa 0.7's ``cqt`` defaults included); ``pad_mode="constant"``,
    ``res_type="soxr_hq"``, ``bandwidth="librosa"`` give today's ``librosa.cqt``.
    """

    kind: Literal["cqt", "mel"] = "cqt"
    sample_rate: int = 48_000  # files at another rate are resampled (or rejected, see ``resample``)
    resample: bool = True
    channels: int | None = None  # expected channel count (TAU: 2); None accepts any (mixed down to mono)
    emphasis_alpha: float | None = 1484.536082474227  # Hz: a = 0.97 at 48 kHz; None disables the filter
    hop_length: int = 1024
    pad_mode: str = "reflect"  # padding of the centred frames (librosa 0.7's default; >= 0.9: "constant")
    # constant-Q
    fmin: float = 10.0
    n_bins: int = 256
    bins_per_octave: int = 24
    res_type: str = RES_TYPE_2019  # per-octave resampler: RES_TYPE_2019, or any librosa res_type ("soxr_hq", ...)
    bandwidth: str = "librosa0.7"  # filter lengths: "librosa0.7" (Q = 1/(2^(1/b) - 1)) | "librosa" (installed)
    # mel
    n_mels: int = 256
    n_fft: int = 2048
    # dB
    magnitude: bool = True  # the reference took power_to_db of |C|, not |C|**2
    amin: float = 1e-10
    top_db: float | None = 80.0
    # implementation: "librosa" (the faithful path) | "torch" (asc.data.features_torch: batched, GPU or CPU)
    backend: str = "librosa"

    def __post_init__(self) -> None:
        if self.kind not in ("cqt", "mel"):
            raise ValueError(f"features.kind: {self.kind!r} is not one of 'cqt', 'mel'")
        if self.sample_rate <= 0 or self.hop_length <= 0:
            raise ValueError("features.sample_rate and features.hop_length must be positive")
        if self.emphasis_alpha is not None and self.emphasis_alpha <= 0:
            raise ValueError(f"features.emphasis_alpha: {self.emphasis_alpha} Hz must be positive (or null to disable)")
        if self.pad_mode not in PAD_MODES:
            raise ValueError(f"features.pad_mode: {self.pad_mode!r} is not one of {list(PAD_MODES)}")
        if self.bandwidth not in BANDWIDTHS:
            raise ValueError(f"features.bandwidth: {self.bandwidth!r} is not one of {list(BANDWIDTHS)}")
        if not self.res_type:
            raise ValueError(f"features.res_type: give {RES_TYPE_2019!r} or a librosa res_type such as 'soxr_hq'")
        if self.backend not in BACKENDS:
            raise ValueError(f"features.backend: {self.backend!r} is not one of {list(BACKENDS)}")
        if self.backend == "torch":
            if self.kind != "cqt" or self.res_type != RES_TYPE_2019 or self.pad_mode not in TORCH_PAD_MODES:
                raise ValueError(
                    f"features.backend=torch computes the constant-Q image with res_type={RES_TYPE_2019} and pad_mode "
                    f"in {sorted(TORCH_PAD_MODES)} (here kind={self.kind}, res_type={self.res_type}, "
                    f"pad_mode={self.pad_mode}); use backend=librosa for these settings"
                )
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

    def libraries(self) -> dict[str, str]:
        """Versions of the libraries whose numbers the images depend on (librosa; resampy or soxr for the CQT;
        torch for ``backend="torch"``)."""
        libs = ["librosa"]
        if self.kind == "cqt":
            libs.append("soxr" if self.res_type.startswith("soxr") else "resampy" if "kaiser" in self.res_type else None)
        if self.backend == "torch":
            libs.append("torch")
        return {lib: version(lib) for lib in libs if lib}

    def key(self) -> str:
        """Stable hash of the settings, the code version and the versions of :meth:`libraries`.

        ``backend="librosa"`` is left out of the hash, so the faithful path keeps the cache folders it had before
        the setting existed; any other backend is part of it (and adds torch's version).
        """
        settings = asdict(self)
        if settings["backend"] == "librosa":
            del settings["backend"]
        payload = json.dumps({"v": FEATURE_VERSION, "libraries": self.libraries(), **settings}, sort_keys=True)
        return hashlib.sha1(payload.encode()).hexdigest()


def emphasis_coefficient(sample_rate: int, alpha: float) -> float:
    """``a = sr / (sr + alpha)``: the filter ``y = x + dx/dt / alpha`` at this rate."""
    return sample_rate / (sample_rate + alpha)


def emphasis(y: np.ndarray, sample_rate: int, alpha: float) -> np.ndarray:
    """High-frequency emphasis ``[samples] -> [samples]``: gain 1 at DC, (1+a)/(1-a) at Nyquist.

    ``y[n] = (x[n] - a x[n-1]) / (1 - a)``, with the reference's first-sample rule ``x[-1] = 2 x[0] - x[1]``.
    Computed in the input's precision (float32 audio: float32 arithmetic, as numpy does the formula on
    ``librosa.load``'s samples), returned as float32.
    """
    a = emphasis_coefficient(sample_rate, alpha)
    x = np.asarray(y)
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    if x.size < 2:
        raise ValueError("emphasis needs at least two samples")
    prev = np.empty_like(x)
    prev[0] = 2 * x[0] - x[1]
    prev[1:] = x[:-1]
    return ((x - a * prev) / (1 - a)).astype(np.float32)


_RESAMPY_LOCK = threading.Lock()


def _resampy():
    """resampy, imported on first use (it compiles with numba on import, 0.7 s; only the 2019 resampler needs it) and
    loaded whole under a lock: once librosa has registered it as a lazy module (lazy_loader), threads touching it at
    once could see it half-loaded -- "module 'resampy' has no attribute 'resample'" in the extraction threads of a
    job of the joblib launcher (Python < 3.12.3; cpython#114763, scientific-python/lazy-loader#88). Every path that
    reaches resampy goes through here first: the 2019 resampler, and ``librosa.cqt`` with a ``kaiser_*`` res_type."""
    with _RESAMPY_LOCK:
        import resampy
        import resampy.filters

        resampy.resample  # noqa: B018 - an attribute access is what loads a lazy module
        return resampy


@functools.lru_cache(maxsize=1)
def kaiser_fast_2019() -> tuple[np.ndarray, int, float]:
    """resampy <= 0.2's ``kaiser_fast`` filter as resampy wants it: ``(half window, samples per zero crossing, roll-off)``.

    Rebuilt with resampy's own ``sinc_window`` from the parameters resampy 0.2 documents for it (16 zero crossings,
    512 table entries per crossing, Kaiser window with beta 8.555504641634386, roll-off 0.85): the table resampy
    0.2.2 ships as ``data/kaiser_fast.npz``, to 7e-18.
    """
    resampy = _resampy()
    window = functools.partial(scipy.signal.windows.kaiser, beta=8.555504641634386)
    return resampy.filters.sinc_window(num_zeros=16, precision=9, window=window, rolloff=0.85)


def _downsample_2019(y: np.ndarray, factor: int) -> np.ndarray:
    """librosa 0.7's ``resample(y, factor, 1, res_type="kaiser_fast", scale=True)`` with resampy 0.2's filter."""
    y_hat = _resampy().resample(y, factor, 1, filter=kaiser_fast_2019, axis=-1)
    n = int(np.ceil(y.shape[-1] / factor))
    y_hat = np.pad(y_hat, (0, max(0, n - y_hat.shape[-1])))[:n]  # librosa's fix_length
    return (y_hat / np.sqrt(1.0 / factor)).astype(y.dtype)  # scale=True


def relative_bandwidth(spec: FeatureSpec) -> float:
    """The constant-Q filters' relative bandwidth ``alpha`` (filter length ``sr / (alpha f)``) of ``spec.bandwidth``.

    ``"librosa0.7"``: ``2^(1/b) - 1``; ``"librosa"`` (librosa >= 0.10): ``(2^(2/b) - 1) / (2^(2/b) + 1)``.
    """
    b = spec.bins_per_octave
    if spec.bandwidth == "librosa0.7":
        return 2.0 ** (1.0 / b) - 1
    r = 2.0 ** (2.0 / b)
    return (r - 1) / (r + 1)


def _octave(y: np.ndarray, sr: float, hop: int, freqs: np.ndarray, alpha: float, pad_mode: str) -> np.ndarray:
    """The constant-Q response ``[len(freqs), frames]`` (complex128) of one octave's filters, as librosa computes it:
    Hann-windowed complex filters of length ``sr / (alpha f)``, L1-normalised, applied in the frequency domain to
    the centred STFT (rectangular window) of ``y``, the basis sparsified to 99 % of its energy, the response
    divided by the square root of the filter lengths (``scale=True``)."""
    fft_basis, lengths = octave_filters(freqs, sr, alpha)
    n_fft = 2 * (fft_basis.shape[1] - 1)
    with warnings.catch_warnings():  # librosa >= 0.10 warns for a clip shorter than a low octave's filter; 0.7 padded
        warnings.filterwarnings("ignore", message=r"n_fft=\d+ is too large for input signal", category=UserWarning)
        D = librosa.stft(y, n_fft=n_fft, hop_length=hop, window="ones", pad_mode=pad_mode, dtype=np.complex64)
    return fft_basis.dot(D) / np.sqrt(lengths)[:, None]


def constant_q(y: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """Complex constant-Q transform ``[n_bins, frames]`` of ``y`` ``[samples]`` with ``spec``'s settings.

    With ``res_type=RES_TYPE_2019`` this follows librosa 0.7's ``cqt`` step by step (complex128, as it was): its
    automatic resampler choice (resampy's kaiser_fast when the top filter's band ends below 0.85 x Nyquist, else
    the top octave first at the full rate, kaiser_fast below), its early downsampling, then one octave at a time
    with the same filters in samples, the signal halved in rate (and scaled by sqrt 2) between octaves. Any other
    ``res_type`` goes to the installed ``librosa.cqt`` as it is (complex64).
    """
    alpha = relative_bandwidth(spec)
    if spec.res_type != RES_TYPE_2019:
        if "kaiser" in spec.res_type:
            _resampy()  # librosa resamples with resampy: load it whole first (see _resampy)
        r = 2.0 ** (2.0 / spec.bins_per_octave)  # librosa >= 0.10 has Q = filter_scale * (r + 1) / (r - 1)
        return librosa.cqt(y, sr=spec.sample_rate, hop_length=spec.hop_length, fmin=spec.fmin, n_bins=spec.n_bins,
                           bins_per_octave=spec.bins_per_octave, filter_scale=(r - 1) / (r + 1) / alpha,
                           pad_mode=spec.pad_mode, res_type=spec.res_type)
    plan = octave_plan(spec)
    octaves = []
    for factor, sr, hop, freqs in plan:
        if factor > 1:
            if y.shape[-1] < factor:
                raise ValueError(f"signal of {y.shape[-1]} samples is too short for a {len(plan)}-octave CQT")
            y = _downsample_2019(y, factor)
        octaves.append(_octave(y, sr, hop, freqs, alpha, spec.pad_mode))
    frames = min(c.shape[-1] for c in octaves)
    return np.vstack([c[:, :frames] for c in octaves][::-1])[-spec.n_bins:]


def spectrogram_db(y: np.ndarray, spec: FeatureSpec, dtype: type | None = np.float32) -> np.ndarray:
    """dB spectrogram ``[bins, frames]``, row 0 = lowest frequency (``dtype``; None: the transform's own precision,
    float64 for the reference's constant-Q transform)."""
    if spec.emphasis_alpha is not None:
        y = emphasis(y, spec.sample_rate, spec.emphasis_alpha)
    if spec.kind == "cqt":
        S = np.abs(constant_q(y, spec))
        if not spec.magnitude:
            S = S**2
    else:
        S = librosa.feature.melspectrogram(
            y=y, sr=spec.sample_rate, n_fft=spec.n_fft, hop_length=spec.hop_length, n_mels=spec.n_mels, power=2.0,
            pad_mode=spec.pad_mode,
        )
        if spec.magnitude:
            S = np.sqrt(S)
    S = librosa.power_to_db(S, ref=1.0, amin=spec.amin, top_db=spec.top_db)
    return S if dtype is None else S.astype(dtype)


@functools.lru_cache(maxsize=1)
def gray_lut() -> np.ndarray:
    """matplotlib's ``gray`` colour map as 8-bit levels ``[256]``: ``(lut * 255).astype(uint8)``.

    Its table holds ``(255 * linspace(0, 1, 256)[i]) / 255``, a hair below ``i / 255`` for 24 entries, which the
    cast truncates: levels 33, 37, ..., 244 never occur, their neighbours below occur twice as often. The same
    in matplotlib 3.1 (2019) and 3.11.
    """
    ramp = 255.0 * np.linspace(0.0, 1.0, 256)
    return (ramp / 255.0 * 255.0).astype(np.uint8)


def frame_minmax_uint8(S: np.ndarray) -> np.ndarray:
    """``[bins, frames]`` -> uint8, as the reference: per-frame min-max to 0..255, then ``pyplot.imsave(cmap="gray")``.

    1. Each column (time frame) is scaled over frequency to 0..255 as scikit-learn's ``MinMaxScaler`` does it
       (``x * s + m`` with ``s = 255 / (max - min)``, ``m = -min * s``; a constant frame gives 0), in float64
       (librosa 0.7's CQT was complex128).
    2. matplotlib normalises the image by its own minimum and maximum, multiplies by 256, truncates to an index
       (256 -> 255) and looks the index up in the 8-bit ``gray`` table (:func:`gray_lut`).
    """
    S = np.asarray(S, dtype=np.float64)
    lo = S.min(axis=0, keepdims=True)
    rng = S.max(axis=0, keepdims=True) - lo
    rng[rng == 0] = 1.0
    scale = 255.0 / rng
    X = S * scale
    X += -lo * scale
    vmin, vmax = X.min(), X.max()
    if vmin == vmax:
        index = np.zeros(X.shape, dtype=np.intp)
    else:
        X -= vmin
        X /= vmax - vmin
        X *= 256
        X[X == 256] = 255
        index = np.clip(X, 0, 255).astype(np.intp)
    return gray_lut()[index]


@functools.lru_cache(maxsize=4)
def torch_transform(spec: FeatureSpec, device: str | None = None):
    """The batched constant-Q image of ``spec`` on ``device`` (default: CUDA if available, else the CPU): an
    :class:`asc.data.features_torch.ConstantQImages` holding the filters this module uses (kept for reuse)."""
    if spec.kind != "cqt" or spec.res_type != RES_TYPE_2019:
        raise ValueError(f"the torch transform computes kind=cqt with res_type={RES_TYPE_2019}")
    window, num_table, _ = kaiser_fast_2019()
    return ConstantQImages(spec, window, num_table, relative_bandwidth(spec), gray_lut(), device)


NOT_FINITE = "the spectrogram holds NaN or infinite values (are the samples within [-1, 1]?)"


def image_from_audio(y: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """The network's input image ``[height, frames]`` uint8, low frequencies at the bottom.

    Raises ValueError if the spectrogram is not finite (e.g. samples so large that the transform
    overflows): an image is never made from NaN or infinite values.
    """
    if spec.backend == "torch":
        y = emphasis(y, spec.sample_rate, spec.emphasis_alpha) if spec.emphasis_alpha is not None else y
        images, finite = torch_transform(spec)(torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32))[None])
        if not bool(finite[0]):
            raise ValueError(NOT_FINITE)
        return images[0].cpu().numpy()
    S = spectrogram_db(y, spec, dtype=None)  # the reference mapped float64 values to 8 bit
    if not np.isfinite(S).all():
        raise ValueError(NOT_FINITE)
    return np.ascontiguousarray(frame_minmax_uint8(S)[::-1])


def audio_from_file(path: str | Path, spec: FeatureSpec) -> np.ndarray:
    """Read ``path`` as ``spec`` wants it: mono float32 ``[samples]`` at ``spec.sample_rate`` (AudioError if the file
    cannot be used, or holds less than one hop)."""
    y, _ = load_mono(path, sr=spec.sample_rate, resample=spec.resample, channels=spec.channels)
    if y.size < spec.hop_length:
        raise AudioError(f"{path}: only {y.size} samples, shorter than one hop ({spec.hop_length})")
    return y


def image_from_file(path: str | Path, spec: FeatureSpec) -> np.ndarray:
    """Read ``path`` (mono mix-down, resampled to ``spec.sample_rate``) and compute its image."""
    return image_from_audio(audio_from_file(path, spec), spec)
