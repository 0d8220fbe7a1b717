"""The paper's constant-Q image as batched tensor operations, on a GPU or the CPU (``features.backend=torch``).

The same algorithm as :mod:`asc.data.features` (librosa 0.7's ``cqt`` as the reference ran it), step for step -- the
same octave plan (early downsampling, or the top octave at the full rate first, where librosa 0.7 chose them) --
on a batch of equally long clips ``[B, samples]`` at once:

1. per-octave downsampling by 2 with resampy <= 0.2's ``kaiser_fast`` filter: at a ratio of 1/2 resampy's table
   interpolation always lands on table entries, so it is an exact 63-tap FIR (taps ``win[256 |d|] / 2``,
   ``|d| <= 31``, zeros beyond the signal) at every second sample; computed as one matrix product of overlapping
   blocks of the signal with a banded matrix (a single-channel strided ``conv1d`` ran 20 times slower on the CPU),
   then librosa's ``fix_length`` (a trailing zero for an odd length) and ``scale=True`` (times sqrt 2);
2. each octave's centred frames (``pad_mode`` padding as ``numpy.pad`` does it, mirrored again where the pad is
   longer than the signal; rectangular window, ``n_fft = 256`` for the paper's settings) times one real matrix
   per octave: the ``rfft`` folded with librosa's sparsified filter spectra (the matrices
   :func:`asc.data.features._octave` builds, computed with librosa) and divided by the square root of the filter
   lengths, ``[n_fft, 2 x 24]`` (real and imaginary parts), in float64;
3. ``power_to_db`` of ``|C|`` (amin, top_db relative to each clip's maximum), each frame min-max scaled to
   0..255 and matplotlib's 8-bit ``gray`` mapping, in float64, as :func:`asc.data.features.frame_minmax_uint8`.

The signal path runs in float32, as librosa's does (float32 audio, resampy accumulating in float32, a complex64 STFT);
the filter bank, dB and 8-bit steps in float64. The images differ from the faithful ones by floating-point rounding
only (another summation order in the FIR, a float64 DFT instead of librosa's float32 FFT): 2-3 pixels in
10,000 move by one level (two next to the gray table's missing levels); ``experiments/bench/README.md``.
TF32 is switched off for the transform (its 10-bit mantissa would move the quiet octaves: a FIR rounded to
bfloat16 already moves 0.47 levels on average, up to 14).

This module holds no settings of its own: :func:`asc.data.features.torch_transform` builds a :class:`ConstantQImages`
from a :class:`~asc.data.features.FeatureSpec` and passes in the filter table, the relative bandwidth and the gray
table that the faithful path uses.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import librosa
import numpy as np
import torch

#: ``features.pad_mode`` values the torch backend implements (numpy's ``constant``, ``reflect``, ``edge``).
TORCH_PAD_MODES = ("constant", "reflect", "edge")


def default_device() -> torch.device:
    """CUDA when a GPU is visible, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@contextlib.contextmanager
def _full_float32() -> Iterator[None]:
    """float32 matrix products in full precision for the transform (no TF32 or bf16 passes, whatever the training
    code set globally), restored afterwards."""
    precision = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(precision)


def _two_factors(x: int) -> int:
    """How many times 2 divides ``x`` (librosa's ``__num_two_factors``: how many octaves a hop lets it halve the rate)."""
    n = 0
    while x > 0 and x % 2 == 0:
        x //= 2
        n += 1
    return n


#: One octave of librosa 0.7's constant-Q transform: ``(factor, sr, hop, freqs)``: downsample the signal by
#: ``factor`` (1: not at all) before it, then its filters at ``freqs`` on the signal at rate ``sr`` with ``hop``.
Octave = tuple[int, float, int, np.ndarray]


def octave_plan(spec: Any) -> list[Octave]:
    """librosa 0.7's octave plan for ``spec`` (a :class:`~asc.data.features.FeatureSpec`), top octave first: early
    downsampling as far as the filters and the hop allow when the top filter's band ends below 0.85 x Nyquist
    (kaiser_fast's roll-off), else the top octave at the full rate first; then one halving per octave. Both the
    faithful numpy transform and :class:`ConstantQImages` follow it."""
    bpo, n_bins = spec.bins_per_octave, spec.n_bins
    n_octaves = math.ceil(n_bins / bpo)
    n_filters = min(bpo, n_bins)
    top = spec.fmin * 2.0 ** (np.arange(n_bins - n_filters, n_bins) / bpo)
    cutoff = top[-1] * (1 + 0.5 * librosa.filters.window_bandwidth("hann") * (2.0 ** (1.0 / bpo) - 1))
    sr, hop = float(spec.sample_rate), spec.hop_length
    plan: list[Octave] = []
    pending = 1
    if cutoff < 0.85 * sr / 2:  # early downsampling
        count = min(max(0, math.ceil(math.log2(0.85 * sr / 2 / cutoff)) - 2), max(0, _two_factors(hop) - n_octaves + 1))
        if count > 0:
            pending, sr, hop = 2**count, sr / 2**count, hop // 2**count
    else:  # the top octave at the full rate first
        plan.append((1, sr, hop, top))
        top = top / 2
        n_octaves -= 1
    if _two_factors(hop) < n_octaves - 1:
        raise ValueError(f"features.hop_length must be a multiple of 2^{n_octaves - 1} for a {n_octaves}-octave CQT")
    for i in range(n_octaves):
        if i > 0:
            pending, sr, hop = 2, sr / 2, hop // 2
        plan.append((pending, sr, hop, top / 2**i))
        pending = 1
    return plan


def octave_filters(freqs: np.ndarray, sr: float, alpha: float) -> tuple[Any, np.ndarray]:
    """One octave's filters as librosa 0.7 built them: Hann-windowed complex filters of length ``sr / (alpha f)``,
    L1-normalised, as spectra ``[filters, n_fft / 2 + 1]`` (sparsified to 99 % of their energy, complex128) and
    their lengths."""
    basis, lengths = librosa.filters.wavelet(freqs=freqs, sr=sr, window="hann", filter_scale=1, pad_fft=True, norm=1,
                                             gamma=0, alpha=np.full(len(freqs), alpha))
    n_fft = basis.shape[1]
    basis *= lengths[:, None] / float(n_fft)
    fft_basis = np.fft.fft(basis, n=n_fft, axis=1)[:, : n_fft // 2 + 1]
    return librosa.util.sparsify_rows(fft_basis, quantile=0.01, dtype=np.complex128), lengths  # 0.7's precision


def resampy_fir(window: np.ndarray, num_table: int, factor: int) -> np.ndarray:
    """Taps ``[2 R + 1]`` (offsets ``-R..R``, float64) of resampy's ``resample(x, factor, 1, filter=...)``.

    At an integer downsampling ``factor`` (a power of two up to ``num_table``) every output sample ``t`` sits on
    input sample ``factor t``, so resampy's table interpolation picks exact entries: the left wing
    ``win[i s] / factor`` for ``x[n - i]``, ``i < len(win) // s``, and the right wing ``win[(k + 1) s] / factor``
    for ``x[n + k + 1]``, ``k < (len(win) - s) // s``, with ``s = num_table / factor``.
    """
    step = num_table // factor
    if step < 1 or step * factor != num_table:
        raise ValueError(f"downsampling factor {factor} does not divide the filter table's {num_table} entries per crossing")
    left = np.asarray(window[: (len(window) // step) * step : step], dtype=np.float64)  # offsets 0, -1, -2, ...
    right = np.asarray(window[step : step + ((len(window) - step) // step) * step : step], dtype=np.float64)
    radius = max(len(left) - 1, len(right))
    taps = np.zeros(2 * radius + 1)
    taps[radius - np.arange(len(left))] = left
    taps[radius + 1 + np.arange(len(right))] = right
    return taps / factor


class ConstantQImages:
    """Batched constant-Q images on ``device``: ``[B, samples]`` emphasised float32 audio -> ``uint8 [B, H, frames]``.

    Args:
        spec: a :class:`~asc.data.features.FeatureSpec` with ``kind="cqt"`` and ``res_type`` resampy 0.2's kaiser_fast.
        window, num_table: resampy's filter table (half window, table entries per zero crossing).
        alpha: the filters' relative bandwidth (filter length ``sr / (alpha f)``).
        lut: the 8-bit gray table ``[256]`` uint8.
        device: where the transform runs (default: CUDA if available, else the CPU).
    """

    def __init__(self, spec: Any, window: np.ndarray, num_table: int, alpha: float, lut: np.ndarray,
                 device: str | torch.device | None = None) -> None:
        if spec.pad_mode not in TORCH_PAD_MODES:
            raise ValueError(f"features.pad_mode={spec.pad_mode!r} is not available with features.backend=torch "
                             f"(use one of {sorted(TORCH_PAD_MODES)}, or backend=librosa)")
        self.spec = spec
        self.device = torch.device(device) if device is not None else default_device()
        self.pad = spec.pad_mode
        self.plan = plan = octave_plan(spec)
        dev = self.device
        self._fir = {f: self._toeplitz(resampy_fir(window, num_table, f), f) for f in {p[0] for p in plan if p[0] > 1}}
        # each octave's filters as one real matrix on the frame's samples: [n_fft, 2 * filters] = [Re K | Im K] with
        # K = (rfft of the frame) @ (librosa's sparsified filter spectra).T / sqrt(filter lengths)
        self._kernels: list[torch.Tensor] = []
        for _, sr_o, _, freqs in plan:
            fft_basis, lengths = octave_filters(freqs, sr_o, alpha)
            n_fft = 2 * (fft_basis.shape[1] - 1)
            fft_basis = np.asarray(fft_basis.todense() if hasattr(fft_basis, "todense") else fft_basis)
            k = np.arange(n_fft // 2 + 1)
            dft = np.exp(-2j * np.pi * np.outer(np.arange(n_fft), k) / n_fft)  # rfft as a matrix [n_fft, bins]
            K = dft @ fft_basis.T / np.sqrt(lengths)[None, :]
            self._kernels.append(torch.tensor(np.concatenate([K.real, K.imag], axis=1), dtype=torch.float64, device=dev))
        self._lut = torch.tensor(np.asarray(lut, dtype=np.uint8), device=dev)
        self._frame_index: dict[tuple[int, int, int, int], tuple[torch.Tensor, torch.Tensor | None]] = {}

    # -- steps ------------------------------------------------------------------------------------------------
    #: outputs per block of the downsampling matrix product (more: bigger products, more multiplications by zero)
    BLOCK = 32

    def _toeplitz(self, taps: np.ndarray, factor: int) -> torch.Tensor:
        """``[L, BLOCK]`` float32: column ``m`` holds ``taps`` from row ``factor m`` (one block's outputs)."""
        M = self.BLOCK
        T = np.zeros((factor * (M - 1) + len(taps), M))
        for m in range(M):
            T[factor * m : factor * m + len(taps), m] = taps
        return torch.tensor(T, dtype=torch.float32, device=self.device)

    def _downsample(self, y: torch.Tensor, factor: int) -> torch.Tensor:
        """librosa 0.7's ``resample(y, factor, 1, res_type=kaiser_fast, scale=True)`` with resampy 0.2's filter,
        ``[B, n] -> [B, ceil(n / factor)]``: the FIR at every ``factor``-th sample as one matrix product over blocks
        of ``BLOCK`` outputs (overlapping windows of the zero-padded signal times a banded matrix)."""
        T = self._fir[factor]
        L, M = T.shape
        radius = (L - factor * (M - 1) - 1) // 2
        n = y.shape[-1]
        n_out = -(-n // factor)
        blocks = -(-n_out // M)
        right = factor * (blocks * M - 1) + 2 * radius + 1 - n - radius
        padded = torch.cat([y.new_zeros(y.shape[0], radius), y, y.new_zeros(y.shape[0], max(0, right))], dim=1)
        out = (padded.unfold(-1, L, factor * M) @ T).reshape(y.shape[0], -1)[:, :n_out]
        keep = n // factor  # resampy's length; librosa's fix_length pads to ceil(n / factor) with zeros
        if n_out > keep:
            out[:, keep:] = 0
        return out * math.sqrt(factor)

    def _frames(self, y: torch.Tensor, hop: int, n_fft: int, frames: int) -> torch.Tensor:
        """The centred frames ``[B, frames, n_fft]`` of ``y`` ``[B, n]``, as ``librosa.stft`` cuts them from
        ``numpy.pad(y, n_fft // 2, mode=pad_mode)`` (reflect: repeated mirroring when the pad exceeds the signal)."""
        key = (y.shape[-1], hop, n_fft, frames)
        if key not in self._frame_index:
            n = y.shape[-1]
            pos = torch.arange(frames)[:, None] * hop + torch.arange(n_fft)[None, :] - n_fft // 2
            inside = (pos >= 0) & (pos < n)
            if self.pad == "reflect" and n > 1:
                period = 2 * n - 2
                pos = pos.abs() % period
                pos = torch.where(pos >= n, period - pos, pos)
            else:  # edge (constant: the outside is zeroed below)
                pos = pos.clamp(0, n - 1)
            mask = None if self.pad != "constant" or bool(inside.all()) else inside.to(torch.float32).to(self.device)
            self._frame_index[key] = (pos.to(self.device), mask)
        index, mask = self._frame_index[key]
        framed = y[:, index]
        return framed if mask is None else framed * mask

    def _octave(self, y: torch.Tensor, hop: int, index: int, frames: int) -> torch.Tensor:
        """One octave's magnitudes ``|C|`` ``[B, filters, frames]`` (float64) from ``[B, n]`` float32."""
        K = self._kernels[index]
        n_fft, n_filters = K.shape[0], K.shape[1] // 2
        framed = self._frames(y, hop, n_fft, frames)  # [B, frames, n_fft]
        C = framed.to(torch.float64) @ K  # [B, frames, 2 * filters]
        return torch.hypot(C[..., :n_filters], C[..., n_filters:]).transpose(1, 2)

    def frames(self, samples: int) -> int:
        """Image width for a clip of ``samples``: the fewest frames of any octave (librosa's centred frames).
        Raises ValueError, as the faithful path does, when the signal is too short to be halved once more."""
        n, out = samples, None
        for factor, _, hop, _ in self.plan:
            if factor > 1 and n < factor:
                raise ValueError(f"signal of {samples} samples is too short for a {len(self.plan)}-octave CQT")
            n = -(-n // factor)
            out = n // hop + 1 if out is None else min(out, n // hop + 1)
        return int(out)

    def spectrogram_db(self, y: torch.Tensor) -> torch.Tensor:
        """``[B, samples]`` float32 (emphasised) -> dB ``[B, n_bins, frames]`` float64, row 0 = lowest frequency."""
        if y.ndim != 2:
            raise ValueError(f"expected audio [B, samples], got shape {tuple(y.shape)}")
        width = self.frames(y.shape[-1])
        y = y.to(self.device, torch.float32)
        nf = self._kernels[0].shape[1] // 2
        rows = len(self.plan) * nf
        S = torch.empty(y.shape[0], rows, width, dtype=torch.float64, device=self.device)
        with _full_float32():
            for index, (factor, _, hop, _) in enumerate(self.plan):
                if factor > 1:
                    y = self._downsample(y, factor)
                top = rows - index * nf  # the plan starts at the top octave; row 0 is the lowest frequency
                S[:, top - nf : top] = self._octave(y, hop, index, width)
        S = S[:, -self.spec.n_bins :]
        if not self.spec.magnitude:
            S = S**2
        db = 10.0 * torch.log10(torch.clamp(S, min=self.spec.amin))  # ref = 1: 10 log10(max(amin, ref)) = 0
        if self.spec.top_db is not None:
            db = torch.maximum(db, db.amax(dim=(1, 2), keepdim=True) - self.spec.top_db)
        return db

    def to_uint8(self, S: torch.Tensor) -> torch.Tensor:
        """dB ``[B, bins, frames]`` float64 -> ``uint8 [B, bins, frames]`` exactly as
        :func:`asc.data.features.frame_minmax_uint8` does it for one image (rows not flipped)."""
        lo = S.amin(dim=1, keepdim=True)
        rng = S.amax(dim=1, keepdim=True) - lo
        rng = torch.where(rng == 0, torch.ones_like(rng), rng)
        scale = 255.0 / rng
        X = S * scale
        X = X + (-lo * scale)
        vmin = X.amin(dim=(1, 2), keepdim=True)
        vmax = X.amax(dim=(1, 2), keepdim=True)
        span = vmax - vmin
        flat = span == 0
        X = (X - vmin) / torch.where(flat, torch.ones_like(span), span) * 256
        X = torch.where(X == 256, torch.full_like(X, 255), X)
        index = torch.nan_to_num(X, nan=0.0).clamp(0, 255).to(torch.int64)  # non-finite images are flagged, not used
        index = torch.where(flat, torch.zeros_like(index), index)
        return self._lut[index]

    def __call__(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, samples]`` emphasised float32 audio -> ``(uint8 [B, H, frames] images, low frequencies at the
        bottom, on the device; bool [B]: the clip's spectrogram is finite)``. An image whose flag is false must
        not be used (see :func:`asc.data.features.image_from_audio`)."""
        S = self.spectrogram_db(y)
        finite = torch.isfinite(S).all(dim=2).all(dim=1)
        return self.to_uint8(S).flip(1), finite

