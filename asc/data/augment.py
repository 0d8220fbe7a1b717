"""Batched, device-side input pipeline: time window -> square image -> band mask -> 3-channel ImageNet input.

Everything takes a batch of spectrogram images ``[B, H, W]`` (uint8 or float, 0..255, on any device)
and runs as tensor operations, so it lives on the GPU next to the model. Randomness comes from
torch's generator on that device (seeded by Lightning's ``seed_everything``).

Two ways to turn a time window into the ``size x size`` input (``model.crop``):

- ``reference`` (the default, the reference implementation's): the whole image is resized with PIL's bicubic
  filter to ``224 / sample_size`` px wide (``sample_size = window / clip length``; 224 is the reference's input
  side: 448 px for 5 s of a 10 s clip), height unchanged, in 8 bit; ``PIL.ImageOps.fit`` then takes a square of
  the full height at a uniform random horizontal position ``u`` (the centre, ``u = 0.5``, for evaluation) and
  resizes it to ``size x size`` with the same filter, in 8 bit again. A "5 s" window therefore covers
  256 / 448 of the clip, 5.71 s (3.43 s for "3 s", 8.0 s for "7 s"). PIL's resampling is reproduced exactly:
  its coefficients (bicubic ``a = -0.5``, support widened when shrinking, edge weights renormalised), its 22-bit
  fixed-point arithmetic and its rounding to 8 bit after each pass, as integer tensor operations
  (:func:`pil_coefficients`, :func:`pil_resample`); the crop's fractional position enters the coefficients, which
  are computed per sample as one batched tensor. The clip length is read from the image's frame count
  (:func:`clip_length`: 10.0 s for TAU), so the width is the reference's ``int(224 / sample_size)`` (746, 448,
  320 px for 3, 5, 7 s). A window longer than ``clip * H / 224`` (8.75 s on TAU) gives an image narrower than
  high: ``fit`` then keeps its full width and the middle rows, as PIL does with vertical centring 0.5.
- ``exact``: a window of exactly ``window`` seconds (rounded to frames) is cut at a uniform random frame offset
  and resized once to ``size x size`` with torch's bicubic filter (``a = -0.75``, no antialiasing), in float.

Band masking (``model.band``), on the ``size x size`` image, before normalisation, filled with mid-grey (127):

- ``reference``: height ``h = size * mask * U[0, 1)``, ``ymin = floor((size - h) * U[0, 1))``, rows ``ymin`` to
  ``floor(h + ymin)`` inclusive: 1 to ``floor(mask * size) + 1`` rows (nothing when ``mask = 0``);
- ``uniform``: a height uniform in ``0 .. floor(mask * size)`` rows at a uniform position.

Grey is then copied to 3 channels and normalised with ImageNet's mean and std (or the backbone's own ``norm``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F

from asc.errors import SettingError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MASK_FILL = 127.0
#: ``(mean, std)`` per channel on the 0..1 scale (a backbone's ``norm``).
Norm = tuple[tuple[float, ...], tuple[float, ...]]
CROPS = ("reference", "exact")
BANDS = ("reference", "uniform")
#: The reference's network input side, which set its resized width (``224 / sample_size``) whatever our ``size``.
REFERENCE_SIZE = 224
#: PIL's fixed-point precision for 8-bit images (``Resample.c``: 32 - 8 - 2 bits).
PRECISION_BITS = 22


def crop(x: torch.Tensor, offsets: torch.Tensor, width: int) -> torch.Tensor:
    """Cut ``[B, H, W]`` to ``[B, H, width]`` starting at ``offsets`` ``[B]`` (frames)."""
    B, H, W = x.shape
    if width > W:
        raise ValueError(f"window of {width} frames is wider than the {W}-frame image")
    idx = offsets.view(B, 1, 1).to(x.device) + torch.arange(width, device=x.device).view(1, 1, width)
    return torch.gather(x, 2, idx.expand(B, H, width))


_crop_frames = crop  # for the functions whose ``crop`` argument names the crop rule


def random_offsets(batch: int, frames: int, width: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Uniform window starts in ``[0, frames - width]``, ``[B]`` long."""
    return torch.randint(0, frames - width + 1, (batch,), device=device)


def centre_offsets(batch: int, frames: int, width: int, device: torch.device | str = "cpu") -> torch.Tensor:
    return torch.full((batch,), (frames - width) // 2, dtype=torch.long, device=device)


def cover_offsets(frames: int, width: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Starts of the fewest evenly spaced windows that together cover the whole image, ``[n]``."""
    n = max(1, math.ceil(frames / width))
    return torch.linspace(0, frames - width, n, device=device).round().long()


@lru_cache(maxsize=32)
def _bicubic_matrix(n_in: int, n_out: int, device: str) -> torch.Tensor:
    """``[n_out, n_in]``: torch's bicubic resampling (``align_corners=False``, no antialias) as a matrix.

    Row ``i`` holds the weights output sample ``i`` gives the input samples. Built by resampling the
    identity, so it is torch's own kernel, border clamping included.
    """
    eye = torch.eye(n_in, dtype=torch.float64).view(1, 1, n_in, n_in)
    m = F.interpolate(eye, size=(n_out, n_in), mode="bicubic", align_corners=False)[0, 0]
    return m.to(device=device, dtype=torch.float32).contiguous()


def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """Bicubic resize of ``[B, H, w]`` to ``[B, size, size]``, float, clamped to 0..255.

    The same numbers as ``F.interpolate(mode="bicubic")`` (to float rounding), computed as the separable
    product ``Ry @ x @ Rx^T``: two matrix products run faster than torch's direct bicubic kernel on CPUs.
    """
    B, H, w = x.shape
    ry = _bicubic_matrix(H, size, str(x.device))
    rx = _bicubic_matrix(w, size, str(x.device))
    y = (x.float().reshape(B * H, w) @ rx.T).view(B, H, size)  # along time
    return torch.matmul(ry, y).clamp_(0, 255)  # along frequency


def clip_length(frames: int, hop_seconds: float) -> float:
    """A clip's length in seconds, from the frame count of its image: the whole number of tenths of a second among the
    lengths that give ``frames`` centred frames (``[frames - 1, frames)`` hops; TAU's 469 frames: 10.0 s), else the
    middle of that range."""
    lo, hi = (frames - 1) * hop_seconds, frames * hop_seconds
    tenths = math.ceil(round(lo * 10, 6)) / 10
    return tenths if tenths < hi else (frames - 0.5) * hop_seconds


def reference_width(frames: int, window: float, hop_seconds: float, base: int = REFERENCE_SIZE) -> int:
    """The width (px) the reference resizes an image of ``frames`` frames to: ``int(base / sample_size)``.

    ``sample_size = window / clip`` is the window's share of the clip (``window`` and the clip's
    :func:`clip_length` in seconds; ``hop_seconds`` is the hop, ``hop_length / sample_rate``). For TAU's 10 s clips:
    746, 448, 320 px for 3, 5, 7 s, the reference's ``int(224 / 0.3)``, ``int(224 / 0.5)``, ``int(224 / 0.7)``.
    """
    if window <= 0:
        raise ValueError(f"window of {window} s: must be positive")
    return max(1, math.floor(base * clip_length(frames, hop_seconds) / window + 1e-9))


def _bicubic_pil(x: torch.Tensor) -> torch.Tensor:
    """PIL's bicubic kernel (``a = -0.5``) on float64, in its own order of operations."""
    x = x.abs()
    near = ((1.5 * x - 2.5) * x) * x + 1  # ((a + 2) x - (a + 3)) x x + 1
    far = (((x - 5) * x + 8) * x - 4) * -0.5
    return torch.where(x < 1.0, near, torch.where(x < 2.0, far, torch.zeros_like(x)))


def pil_coefficients(
    in_size: int, out_size: int, in0: torch.Tensor, in1: torch.Tensor, span: float | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """PIL's bicubic resampling of one axis from the box ``[in0, in1)`` of ``in_size`` samples to ``out_size``.

    ``in0``, ``in1``: box edges ``[N]`` (float, one box per sample; PIL takes them as C floats, so they are rounded
    to float32 here). Returns ``(first [N, out_size] long, weights [N, out_size, K] int32)``: output sample ``j``
    is ``sum_k x[first + k] * weights[k]`` in 22-bit fixed point, as ``Resample.c``'s ``precompute_coeffs`` and
    ``normalize_coeffs_8bpc`` make them (float64 arithmetic in PIL's order; taps past the edge are dropped and
    the rest renormalised; the support widens by the shrink factor, which is PIL's antialiasing). ``span``: an
    upper bound of ``in1 - in0`` that sets ``K`` without reading the boxes back from the device (extra taps get
    weight 0); by default ``K`` comes from the boxes.
    """
    f0 = in0.to(torch.float32)
    f1 = in1.to(torch.float32)
    scale = (f1 - f0).to(torch.float64).view(-1, 1) / out_size  # (double)(in1 - in0) / outSize, in0/in1 floats
    filterscale = scale.clamp(min=1.0)
    support = 2.0 * filterscale
    widest = support.max().item() if span is None else 2.0 * max(1.0, span / out_size)
    k_max = math.ceil(widest) * 2 + 1
    xx = torch.arange(out_size, dtype=torch.float64, device=in0.device).view(1, -1)
    center = f0.to(torch.float64).view(-1, 1) + (xx + 0.5) * scale
    ss = 1.0 / filterscale
    first = torch.trunc(center - support + 0.5).clamp(min=0)  # C's (int) cast truncates
    count = torch.trunc(center + support + 0.5).clamp(max=in_size) - first
    taps = torch.arange(k_max, dtype=torch.float64, device=in0.device)
    w = _bicubic_pil(((taps + first.unsqueeze(-1)) - center.unsqueeze(-1) + 0.5) * ss.unsqueeze(-1))
    w = torch.where(taps < count.unsqueeze(-1), w, torch.zeros_like(w))
    total = torch.zeros_like(center)
    for k in range(k_max):  # PIL sums the taps in order
        total = total + w[..., k]
    w = torch.where(total.unsqueeze(-1) != 0, w / total.unsqueeze(-1), w)
    fixed = torch.trunc(w * float(1 << PRECISION_BITS) + torch.where(w < 0, -0.5, 0.5))
    return first.long(), fixed.to(torch.int32)


def pil_resample(x: torch.Tensor, first: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """One PIL 8-bit resampling pass along dim 1 of ``x`` ``[B, N, C]`` (integers 0..255): int32 ``[B, out, C]``.

    ``first``, ``weights`` from :func:`pil_coefficients`, one table for the batch (``[1, out(, K)]``) or one per
    sample (``[B, out(, K)]``). Exact integer arithmetic, as PIL's: ``(2^21 + sum_k x * w_k) >> 22``, clipped to
    0..255. Dim 1 so that every tap copies whole contiguous rows: transpose to resample the other axis.
    """
    B, N, C = x.shape
    out = first.shape[1]
    K = weights.shape[-1]
    x = x.to(torch.int32).reshape(B * N, C)  # rows of all images, sample b's at b N ...
    taps = torch.arange(K, device=x.device)
    rows = torch.arange(B, device=x.device).view(B, 1, 1) * N + (first.unsqueeze(-1) + taps).clamp(max=N - 1)
    rows = rows.permute(2, 0, 1).reshape(K, B * out)  # [K, B out]; taps past a row's count have weight 0
    w = weights.expand(B, out, K).permute(2, 0, 1).reshape(K, B * out, 1)
    acc = torch.full((B * out, C), 1 << (PRECISION_BITS - 1), dtype=torch.int32, device=x.device)
    gathered = torch.empty_like(acc)
    for k in range(K):  # tap k of every output row at once: one row gather, one multiply-add
        torch.index_select(x, 0, rows[k], out=gathered)
        acc.addcmul_(gathered, w[k])
    return torch.bitwise_right_shift(acc, PRECISION_BITS).clamp_(0, 255).view(B, out, C)


@lru_cache(maxsize=64)
def _pil_table(in_size: int, out_size: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Coefficients of a whole-axis resize ``in_size -> out_size`` (box ``[0, in_size)``), made once per device."""
    edge = torch.tensor([0.0, float(in_size)], dtype=torch.float64, device=device)
    return pil_coefficients(in_size, out_size, edge[:1], edge[1:])


def fit_boxes(resized: int, height: int, u: torch.Tensor, v: float = 0.5) -> tuple[torch.Tensor, torch.Tensor, float, float]:
    """``PIL.ImageOps.fit``'s crop of a square from ``[height, resized]`` images at ``centering = (u, v)``.

    Returns ``(left [N], top [N], width, height)`` of the box (float64; fractional positions are kept, as PIL's
    ``resize(box=...)`` does). The square has the full height when ``resized >= height``; otherwise the full
    width, at ``v`` vertically.
    """
    u = u.to(torch.float64)
    if resized >= height:
        side = float(height)
        return (resized - side) * u, torch.zeros_like(u), side, side
    side = float(resized)
    return torch.zeros_like(u), torch.full_like(u, (height - side) * v), side, side


def reference_views(x: torch.Tensor, u: torch.Tensor, resized: int, size: int) -> torch.Tensor:
    """The reference's view of each image: ``PIL.Image.resize((resized, H), BICUBIC)``, then
    ``PIL.ImageOps.fit(image, (size, size), BICUBIC, centering=(u, 0.5))``, both in 8 bit.

    ``x``: ``[B, H, W]`` 8-bit images (uint8 or integer-valued); ``u``: horizontal crop positions in ``[0, 1]``,
    ``[B]`` (one view per image) or ``[B, n]`` (``n`` views per image, the first resize done once). Returns float
    ``[B, size, size]`` or ``[B, n, size, size]`` holding integers 0..255: PIL's pixels, exactly.
    """
    B, H, W = x.shape
    views = u.dim() == 2
    n = u.shape[1] if views else 1
    columns = x.to(torch.uint8).transpose(1, 2).contiguous().to(torch.int32)  # [B, W, H]: passes resample dim 1
    if resized != W:  # PIL returns a copy when the size is unchanged
        columns = pil_resample(columns, *_pil_table(W, resized, str(x.device)))  # [B, resized, H]
    if n > 1:
        columns = columns.repeat_interleave(n, 0)
    left, top, cw, ch = fit_boxes(resized, H, u.reshape(-1).to(x.device))
    out = pil_resample(columns, *pil_coefficients(resized, size, left, left + cw, cw + 1))  # [B n, size, H], per view
    rows = pil_coefficients(H, size, top[:1], top[:1] + ch, ch + 1)  # the same rows in every view: one table
    out = pil_resample(out.to(torch.uint8).transpose(1, 2).contiguous(), *rows).float()  # [B n, size, size]
    return out.view(B, n, size, size) if views else out


def band_rows(height: int, max_fraction: float, u: torch.Tensor, rule: str = "reference") -> tuple[torch.Tensor, torch.Tensor]:
    """The masked rows ``[start, stop)`` ``([N], [N])`` of a band drawn from uniforms ``u`` ``[2, N]`` in ``[0, 1)``.

    ``reference``: ``h = height * max_fraction * u0``, ``ymin = floor((height - h) * u1)``, ``ymax = floor(h + ymin)``,
    rows ``ymin .. ymax`` inclusive (float64, as the reference's Python). ``uniform``: ``floor(u0 * (m + 1))`` rows,
    ``m = floor(max_fraction * height)``, starting at ``floor(u1 * (height - rows + 1))``.
    """
    if rule == "reference":
        u = u.to(torch.float64)
        h = height * max_fraction * u[0]
        start = torch.floor((height - h) * u[1])
        return start.long(), torch.floor(h + start).long() + 1
    if rule == "uniform":
        rows = torch.floor(u[0] * (math.floor(max_fraction * height) + 1)).long()
        start = torch.floor(u[1] * (height - rows + 1).float()).long()
        return start, start + rows
    raise ValueError(f"model.band: {rule!r} is not one of {list(BANDS)}")


def band_mask(
    x: torch.Tensor, max_fraction: float, fill: float = MASK_FILL, generator: torch.Generator | None = None,
    rule: str = "uniform", u: torch.Tensor | None = None,
) -> torch.Tensor:
    """Frequency masking on ``[B, H, W]``: one band of rows per image over the whole width (:func:`band_rows`).

    Returns a new tensor with the band set to ``fill`` (``x`` itself when ``max_fraction`` is 0). The uniforms
    ``u`` ``[2, B]`` are drawn from ``generator`` (on its own device) when given, else from torch's generator on
    ``x``'s device, unless passed in.
    """
    if not 0 <= max_fraction < 1:
        raise ValueError(f"mask: {max_fraction} must be in [0, 1)")
    if max_fraction == 0:
        return x
    B, H, _ = x.shape
    if u is None:
        where = generator.device if generator is not None else x.device
        u = torch.rand(2, B, device=where, generator=generator)
    start, stop = band_rows(H, max_fraction, u.to(x.device), rule)
    rows = torch.arange(H, device=x.device).view(1, H)
    band = (rows >= start.view(B, 1)) & (rows < stop.view(B, 1))
    return torch.where(band.unsqueeze(2), torch.as_tensor(fill, dtype=x.dtype, device=x.device), x)


def to_network(x: torch.Tensor, channels_last: bool = False, norm: Norm | None = None) -> torch.Tensor:
    """``[B, H, W]`` grey 0..255 -> ``[B, 3, H, W]`` normalised float, in one pass.

    ``norm``: ``(mean, std)`` per channel on the 0..1 scale, what the backbone's weights expect (its ``norm``);
    ``None``: ImageNet's. ``(x / 255 - mean_c) / std_c`` is computed as ``x * scale_c + bias_c``; with
    ``channels_last`` the result is laid out as the channels-last convolutions want it (no extra copy in the network).
    """
    mean, std = norm or (IMAGENET_MEAN, IMAGENET_STD)
    bias, scale = _affine(str(x.device), tuple(mean), tuple(std))
    B, H, W = x.shape
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    out = torch.empty((B, 3, H, W), device=x.device, memory_format=fmt)
    return torch.addcmul(bias, x.float().unsqueeze(1), scale, out=out)


@lru_cache(maxsize=8)
def _affine(device: str, mean: tuple[float, ...], std: tuple[float, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(bias, scale)`` ``[1, 3, 1, 1]`` with ``(x / 255 - mean) / std = x * scale + bias``, made once per device."""
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    return (-m / s).to(device), (1.0 / (255.0 * s)).to(device)


def _check_crop(crop: str, resized: int | None) -> None:
    if crop not in CROPS:
        raise ValueError(f"model.crop: {crop!r} is not one of {list(CROPS)}")
    if crop == "reference" and resized is None:
        raise ValueError("crop='reference' needs the resized width (augment.reference_width)")


def train_batch(
    x: torch.Tensor, width: int, size: int, mask: float, channels_last: bool = False, *, crop: str = "exact",
    resized: int | None = None, band: str = "uniform", u: torch.Tensor | None = None, norm: Norm | None = None,
) -> torch.Tensor:
    """Training input ``[B, 3, size, size]`` from images ``[B, H, W]``: random window, square image, band mask.

    ``crop="exact"``: a ``width``-frame window at a uniform frame offset, one float resize. ``crop="reference"``:
    the image resized to ``resized`` px wide, a full-height square at a uniform position (:func:`reference_views`).
    ``band``: the band-height rule (:func:`band_rows`). ``u`` ``[3, B]``: the uniforms to use (crop position,
    band height, band position) instead of fresh draws; the exact crop takes its offset from ``u[0]`` too.
    """
    _check_crop(crop, resized)
    B = x.shape[0]
    if u is None:
        u = torch.rand(3, B, device=x.device)
    u = u.to(x.device)
    if crop == "reference":
        views = reference_views(x, u[0], resized, size)
    else:
        offsets = torch.floor(u[0].to(torch.float64) * (x.shape[2] - width + 1)).long().clamp(max=x.shape[2] - width)
        views = resize(_crop_frames(x, offsets, width), size)
    return to_network(band_mask(views, mask, rule=band, u=u[1:]), channels_last, norm)


def eval_positions(windows: str, resized: int, height: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Crop positions ``[n]`` in ``[0, 1]`` of the reference crop's evaluation views: the centre (0.5), or
    ``"cover"``: the fewest evenly spaced squares that together cover the resized image (first and last at the edges)."""
    if windows == "centre":
        return torch.full((1,), 0.5, dtype=torch.float64, device=device)
    if windows == "cover":
        n = max(1, math.ceil(resized / min(resized, height)))
        return torch.linspace(0, 1, n, dtype=torch.float64, device=device) if n > 1 else torch.full(
            (1,), 0.5, dtype=torch.float64, device=device)
    raise ValueError(f"eval_windows: {windows!r} is not one of 'centre', 'cover'")


def eval_starts(frames: int, width: int, windows: str = "centre", device: torch.device | str = "cpu") -> torch.Tensor:
    """Window starts ``[n]`` used for evaluation: the centre window (n = 1), or ``"cover"`` windows."""
    if windows == "centre":
        return centre_offsets(1, frames, width, device)
    if windows == "cover":
        return cover_offsets(frames, width, device)
    raise ValueError(f"eval_windows: {windows!r} is not one of 'centre', 'cover'")


def windows_at(x: torch.Tensor, starts: torch.Tensor, width: int, size: int, *, crop: str = "exact",
               resized: int | None = None) -> torch.Tensor:
    """The views at the same ``starts`` ``[n]`` of every image ``[B, H, W]``, as ``[B, n, size, size]`` (0..255).

    ``starts``: window starts in frames (``crop="exact"``) or crop positions in ``[0, 1]`` (``crop="reference"``,
    the image resized to ``resized`` px wide once).
    """
    _check_crop(crop, resized)
    B, H, _ = x.shape
    n = starts.numel()
    if crop == "reference":
        return reference_views(x, starts.to(x.device).view(1, n).expand(B, n), resized, size)
    crops = _crop_frames(x.repeat_interleave(n, 0), starts.to(x.device).repeat(B), width)
    return resize(crops, size).view(B, n, size, size)


def eval_batch(
    x: torch.Tensor, width: int, size: int, windows: str = "centre", channels_last: bool = False, *,
    crop: str = "exact", resized: int | None = None, norm: Norm | None = None,
) -> torch.Tensor:
    """Evaluation input ``[B, n, 3, size, size]``: the centre view (n = 1), or ``"cover"`` views, with the
    crop rule of training (:func:`eval_starts` / :func:`eval_positions`)."""
    _check_crop(crop, resized)
    B = x.shape[0]
    if crop == "reference":
        starts = eval_positions(windows, resized, x.shape[1], x.device)
    else:
        starts = eval_starts(x.shape[2], width, windows, x.device)
    n = starts.numel()
    views = windows_at(x, starts, width, size, crop=crop, resized=resized).flatten(0, 1)
    return to_network(views, channels_last, norm).view(B, n, 3, size, size)


@dataclass(frozen=True)
class ViewSpec:
    """How a clip's image ``[H, W]`` becomes network inputs: the window, the crop rule, the square's side, the band
    mask and the evaluation views. Made for one clip length (the reference crop's ``resized`` width depends on it).

    ``window_frames``: the exact crop's window; ``size``: the network input side (px); ``mask``: the largest masked
    band (fraction of the height); ``crop``, ``band``: the rules (``model.crop``, ``model.band``, see the module
    docstring); ``eval_windows``: ``centre`` or ``cover``; ``resized``: the reference crop's resized width
    (:func:`reference_width`); ``channels_last``: the memory format the network wants.
    """

    window_frames: int
    size: int = 224
    mask: float = 0.0
    crop: str = "exact"
    band: str = "uniform"
    eval_windows: str = "centre"
    resized: int | None = None
    channels_last: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.mask < 1:
            raise SettingError(f"mask: {self.mask} must be in [0, 1)")
        if self.band not in BANDS:
            raise SettingError(f"model.band: {self.band!r} is not one of {list(BANDS)}")
        if self.eval_windows not in ("centre", "cover"):
            raise SettingError(f"model.eval_windows: {self.eval_windows!r} is not one of 'centre', 'cover'")
        _check_crop(self.crop, self.resized)

    @classmethod
    def for_clip(cls, clip_frames: int, window: float, hop_seconds: float, crop: str = "exact", **kwargs) -> ViewSpec:
        """The views of clips of ``clip_frames`` for a window of ``window`` seconds (``hop_seconds`` per frame)."""
        window_frames = max(1, int(round(window / hop_seconds)))
        if window_frames > clip_frames:
            raise SettingError(f"window={window:g} s ({window_frames} frames) is longer than the clips "
                             f"({clip_frames} frames, {(clip_frames - 1) * hop_seconds:.2f} s): choose a smaller "
                             "window or a longer data.clip_seconds")
        resized = reference_width(clip_frames, window, hop_seconds) if crop == "reference" else None
        return cls(window_frames, crop=crop, resized=resized, **kwargs)

    def train(self, x: torch.Tensor, norm: Norm | None = None, u: torch.Tensor | None = None) -> torch.Tensor:
        """Training inputs ``[B, 3, size, size]`` of clips ``[B, H, W]`` (:func:`train_batch`)."""
        return train_batch(x, self.window_frames, self.size, self.mask, self.channels_last, crop=self.crop,
                           resized=self.resized, band=self.band, u=u, norm=norm)

    def eval(self, x: torch.Tensor, norm: Norm | None = None) -> torch.Tensor:
        """Evaluation inputs ``[B, n, 3, size, size]`` of clips ``[B, H, W]`` (:func:`eval_batch`)."""
        return eval_batch(x, self.window_frames, self.size, self.eval_windows, self.channels_last, crop=self.crop,
                          resized=self.resized, norm=norm)

    def eval_clips(self, clips: torch.Tensor, real: torch.Tensor, norm: Norm | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Evaluation inputs of recordings covered by ``n`` clips ``[B, n, H, W]``: the ``m`` views of each clip,
        ``[B, n m, 3, size, size]``, and which are real ``[B, n m]`` (``real`` ``[B, n]``: which clips are)."""
        B, n = clips.shape[:2]
        x = self.eval(clips.flatten(0, 1), norm)  # [B n, m, 3, S, S]
        m = x.shape[1]
        return x.view(B, n * m, *x.shape[2:]), real.repeat_interleave(m, 1)

    def eval_clips_real(self, real: torch.Tensor, height: int, frames: int) -> torch.Tensor:
        """Which of :meth:`eval_clips`' views are real, ``[B, n m]``, from which clips are ``[B, n]``."""
        return real.repeat_interleave(self.eval_starts(height, frames).numel(), 1)

    def eval_starts(self, height: int, frames: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """The evaluation views of a clip ``[height, frames]``: window starts (exact crop) or crop positions
        (reference crop), ``[n]`` (what :meth:`eval` uses)."""
        if self.crop == "reference":
            return eval_positions(self.eval_windows, self.resized, height, device)
        return eval_starts(frames, self.window_frames, self.eval_windows, device)

    def views_at(self, x: torch.Tensor, starts: torch.Tensor) -> torch.Tensor:
        """The views at ``starts`` of every clip ``[B, H, W]``: ``[B, n, size, size]`` (0..255, :func:`windows_at`)."""
        return windows_at(x, starts, self.window_frames, self.size, crop=self.crop, resized=self.resized)
