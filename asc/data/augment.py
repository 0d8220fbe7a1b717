"""Batched, device-side input pipeline: window crop -> resize -> band mask -> 3-channel ImageNet input.

Everything takes a batch of spectrogram images ``[B, H, W]`` (uint8 or float, 0..255, on any device)
and runs as tensor operations, so it lives on the GPU next to the model. Randomness comes from
torch's generator on that device (seeded by Lightning's ``seed_everything``).

Reference semantics: a time window of ``window`` seconds over the full height is cut at a uniform
random position and resized (bicubic) to ``size x size``; a frequency band of height uniform in
``[0, mask * size]`` at a uniform position, spanning the whole width, is filled with mid-grey (127);
grey is copied to 3 channels and normalised with ImageNet's mean and std (or the backbone's own ``norm``).
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MASK_FILL = 127.0
#: ``(mean, std)`` per channel on the 0..1 scale (a backbone's ``norm``).
Norm = tuple[tuple[float, ...], tuple[float, ...]]


def crop(x: torch.Tensor, offsets: torch.Tensor, width: int) -> torch.Tensor:
    """Cut ``[B, H, W]`` to ``[B, H, width]`` starting at ``offsets`` ``[B]`` (frames)."""
    B, H, W = x.shape
    if width > W:
        raise ValueError(f"window of {width} frames is wider than the {W}-frame image")
    idx = offsets.view(B, 1, 1).to(x.device) + torch.arange(width, device=x.device).view(1, 1, width)
    return torch.gather(x, 2, idx.expand(B, H, width))


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


def band_mask(
    x: torch.Tensor, max_fraction: float, fill: float = MASK_FILL, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Frequency masking on ``[B, H, W]``: one band per image, height uniform in ``[0, max_fraction * H]``.

    Returns a new tensor; rows ``start <= h < start + height`` are set to ``fill``. The bands are drawn
    from ``generator`` (on its own device) when given, else from torch's generator on ``x``'s device.
    """
    if not 0 <= max_fraction < 1:
        raise ValueError(f"mask: {max_fraction} must be in [0, 1)")
    if max_fraction == 0:
        return x
    B, H, _ = x.shape
    where = generator.device if generator is not None else x.device
    u = torch.rand(2, B, device=where, generator=generator).to(x.device)
    height = torch.floor(u[0] * (math.floor(max_fraction * H) + 1)).long()
    start = torch.floor(u[1] * (H - height + 1).float()).long()
    rows = torch.arange(H, device=x.device).view(1, H)
    band = (rows >= start.view(B, 1)) & (rows < (start + height).view(B, 1))
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


def train_batch(
    x: torch.Tensor, width: int, size: int, mask: float, channels_last: bool = False, norm: Norm | None = None
) -> torch.Tensor:
    """Training input ``[B, 3, size, size]`` from images ``[B, H, W]``: random window, resize, band mask."""
    offsets = random_offsets(x.shape[0], x.shape[2], width, x.device)
    return to_network(band_mask(resize(crop(x, offsets, width), size), mask), channels_last, norm)


def eval_starts(frames: int, width: int, windows: str = "centre", device: torch.device | str = "cpu") -> torch.Tensor:
    """Window starts ``[n]`` used for evaluation: the centre window (n = 1), or ``"cover"`` windows."""
    if windows == "centre":
        return centre_offsets(1, frames, width, device)
    if windows == "cover":
        return cover_offsets(frames, width, device)
    raise ValueError(f"eval_windows: {windows!r} is not one of 'centre', 'cover'")


def windows_at(x: torch.Tensor, starts: torch.Tensor, width: int, size: int) -> torch.Tensor:
    """The windows at the same ``starts`` ``[n]`` of every image ``[B, H, W]``, resized: ``[B, n, size, size]``."""
    B, H, _ = x.shape
    n = starts.numel()
    crops = crop(x.repeat_interleave(n, 0), starts.to(x.device).repeat(B), width)
    return resize(crops, size).view(B, n, size, size)


def eval_batch(
    x: torch.Tensor, width: int, size: int, windows: str = "centre", channels_last: bool = False, norm: Norm | None = None
) -> torch.Tensor:
    """Evaluation input ``[B, n, 3, size, size]``: the centre window (n = 1), or ``"cover"`` windows."""
    B = x.shape[0]
    starts = eval_starts(x.shape[2], width, windows, x.device)
    n = starts.numel()
    views = windows_at(x, starts, width, size).flatten(0, 1)
    return to_network(views, channels_last, norm).view(B, n, 3, size, size)
