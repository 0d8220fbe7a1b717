"""Batched, device-side input pipeline: window crop -> resize -> band mask -> 3-channel ImageNet input.

Everything takes a batch of spectrogram images ``[B, H, W]`` (uint8 or float, 0..255, on any device)
and runs as tensor operations, so it lives on the GPU next to the model. Randomness comes from
torch's generator on that device (seeded by Lightning's ``seed_everything``).

Reference semantics: a time window of ``window`` seconds over the full height is cut at a uniform
random position and resized (bicubic) to ``size x size``; a frequency band of height uniform in
``[0, mask * size]`` at a uniform position, spanning the whole width, is filled with mid-grey (127);
grey is copied to 3 channels and normalised with ImageNet's mean and std.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MASK_FILL = 127.0


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


def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """Bicubic resize of ``[B, H, w]`` to ``[B, size, size]``, float, clamped to 0..255."""
    y = F.interpolate(x.unsqueeze(1).float(), size=(size, size), mode="bicubic", align_corners=False)
    return y.squeeze(1).clamp_(0, 255)


def band_mask(x: torch.Tensor, max_fraction: float, fill: float = MASK_FILL) -> torch.Tensor:
    """Frequency masking on ``[B, H, W]``: one band per image, height uniform in ``[0, max_fraction * H]``.

    Returns a new tensor; rows ``start <= h < start + height`` are set to ``fill``.
    """
    if not 0 <= max_fraction < 1:
        raise ValueError(f"mask: {max_fraction} must be in [0, 1)")
    if max_fraction == 0:
        return x
    B, H, _ = x.shape
    height = torch.floor(torch.rand(B, device=x.device) * (math.floor(max_fraction * H) + 1)).long()
    start = torch.floor(torch.rand(B, device=x.device) * (H - height + 1).float()).long()
    rows = torch.arange(H, device=x.device).view(1, H)
    band = (rows >= start.view(B, 1)) & (rows < (start + height).view(B, 1))
    return torch.where(band.unsqueeze(2), torch.as_tensor(fill, dtype=x.dtype, device=x.device), x)


def to_network(x: torch.Tensor) -> torch.Tensor:
    """``[B, H, W]`` grey 0..255 -> ``[B, 3, H, W]`` ImageNet-normalised float."""
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return (x.float().unsqueeze(1) / 255.0 - mean) / std


def train_batch(x: torch.Tensor, width: int, size: int, mask: float) -> torch.Tensor:
    """Training input ``[B, 3, size, size]`` from images ``[B, H, W]``: random window, resize, band mask."""
    offsets = random_offsets(x.shape[0], x.shape[2], width, x.device)
    return to_network(band_mask(resize(crop(x, offsets, width), size), mask))


def eval_batch(x: torch.Tensor, width: int, size: int, windows: str = "centre") -> torch.Tensor:
    """Evaluation input ``[B, n, 3, size, size]``: the centre window (n = 1), or ``"cover"`` windows."""
    B, _, W = x.shape
    if windows == "centre":
        starts = centre_offsets(1, W, width, x.device)
    elif windows == "cover":
        starts = cover_offsets(W, width, x.device)
    else:
        raise ValueError(f"eval_windows: {windows!r} is not one of 'centre', 'cover'")
    n = starts.numel()
    crops = crop(x.repeat_interleave(n, 0), starts.repeat(B), width)
    return to_network(resize(crops, size)).view(B, n, 3, size, size)
