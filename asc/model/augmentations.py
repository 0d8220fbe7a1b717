"""Augmentations beyond the paper's (config group ``augment``), batched tensor ops on the training device.

The paper's own augmentation -- a random time window and a masked frequency band -- stays in
:class:`asc.data.augment.ViewSpec` (``window``, ``mask``, ``model.crop``, ``model.band``); everything here is an
option, off in the faithful setup (``augment`` absent from the config). Each is a small typed object that
``hydra.utils.instantiate`` builds from ``conf/augment/*.yaml`` (``_target_``), and the LightningModule applies:

- **on the spectrogram images** ``[B, H, W]`` (grey 0..255, frequency rows x time frames), before the paper's
  window and band: :class:`TimeRoll` (circular shift along time), :class:`RandomGain` (a level change in dB,
  i.e. a grey-level offset on the dB-scaled image), :class:`SpecMasks` (SpecAugment's time and frequency masks);
- **on the network inputs** ``[B, ...]`` (images ``[B, 3, S, S]`` on the full path, cached backbone outputs
  ``[B, D]`` on the embedding path): :class:`Mixup`, whose loss is the soft-target cross-entropy of the mixed label.

Randomness comes from torch's generator on the batch's device (seeded by Lightning's ``seed_everything``), so a
seeded run is reproducible. A new augmentation is one class here (or in its own module) with an ``images`` or
``mix`` method, and one YAML file in ``conf/augment`` naming it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

#: The grey level masked rows and frames are filled with: the paper's band mask's (asc.data.augment.MASK_FILL).
FILL = 127.0


def _as_float(x: torch.Tensor) -> torch.Tensor:
    return x if x.is_floating_point() else x.float()


def _like(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``y`` (float, 0..255) back in ``x``'s dtype: rounded and clamped for uint8 (the reference crop is 8-bit)."""
    if x.is_floating_point():
        return y.to(x.dtype)
    return y.round().clamp(0, 255).to(x.dtype)


@dataclass(frozen=True)
class TimeRoll:
    """Circular shift of each image along time by a uniform ``-max_fraction .. max_fraction`` of its width."""

    max_fraction: float = 0.5

    def __post_init__(self) -> None:
        if not 0 <= self.max_fraction <= 1:
            raise ValueError(f"augment.roll.max_fraction={self.max_fraction}: must be in [0, 1]")

    def shifts(self, batch: int, width: int, device: torch.device | str) -> torch.Tensor:
        """Frames to roll each image by, ``[B]`` (long)."""
        most = int(self.max_fraction * width)
        return torch.randint(-most, most + 1, (batch,), device=device)

    def images(self, x: torch.Tensor, shifts: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, H, W]`` -> ``[B, H, W]``, each row of image ``b`` rolled by ``shifts[b]`` frames (one gather)."""
        B, _, W = x.shape
        if shifts is None:
            shifts = self.shifts(B, W, x.device)
        index = (torch.arange(W, device=x.device) - shifts.view(B, 1)) % W  # [B, W]: source frame of each frame
        return x.gather(2, index.view(B, 1, W).expand_as(x))


@dataclass(frozen=True)
class RandomGain:
    """A level change drawn uniformly in ``[low_db, high_db]`` per image: on an image whose 0..255 grey levels
    span ``top_db`` decibels (``features.top_db``: 80) it is an offset of ``gain * 255 / top_db`` levels, clamped."""

    low_db: float = -6.0
    high_db: float = 6.0
    top_db: float = 80.0

    def __post_init__(self) -> None:
        if self.low_db > self.high_db or self.top_db <= 0:
            raise ValueError(f"augment.gain: low_db={self.low_db} must be <= high_db={self.high_db}, top_db > 0")

    def images(self, x: torch.Tensor, gain_db: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, H, W]`` -> ``[B, H, W]``; ``gain_db`` ``[B]`` (dB) instead of fresh draws."""
        B = x.shape[0]
        if gain_db is None:
            gain_db = torch.empty(B, device=x.device).uniform_(self.low_db, self.high_db)
        y = _as_float(x) + (gain_db.to(x.device) * 255.0 / self.top_db).view(B, 1, 1)
        return _like(y.clamp(0, 255), x)


def _spans(batch: int, count: int, most: int, length: int, device: torch.device | str) -> torch.Tensor:
    """``[B, length]`` bool: ``count`` spans per row, each ``0 .. most`` long at a uniform start."""
    if count == 0 or most == 0:
        return torch.zeros(batch, length, dtype=torch.bool, device=device)
    widths = torch.randint(0, most + 1, (batch, count, 1), device=device)
    starts = (torch.rand(batch, count, 1, device=device) * (length - widths + 1)).long()
    pos = torch.arange(length, device=device).view(1, 1, length)
    return ((pos >= starts) & (pos < starts + widths)).any(1)


@dataclass(frozen=True)
class SpecMasks:
    """SpecAugment's masks (Park et al. 2019): ``freq_masks`` bands of up to ``freq_width`` rows and ``time_masks``
    spans of up to ``time_width`` frames per image, filled with mid-grey (127, as the paper's band)."""

    freq_masks: int = 2
    freq_width: int = 16
    time_masks: int = 2
    time_width: int = 32

    def __post_init__(self) -> None:
        if min(self.freq_masks, self.freq_width, self.time_masks, self.time_width) < 0:
            raise ValueError("augment.spec_masks: counts and widths must be >= 0")

    def masks(self, batch: int, height: int, frames: int, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
        """Masked rows ``[B, H]`` and masked frames ``[B, W]`` (bool)."""
        rows = _spans(batch, self.freq_masks, min(self.freq_width, height), height, device)
        cols = _spans(batch, self.time_masks, min(self.time_width, frames), frames, device)
        return rows, cols

    def images(self, x: torch.Tensor, rows: torch.Tensor | None = None, cols: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, H, W]`` -> ``[B, H, W]``: the masked rows and frames set to :data:`FILL`, nothing else touched."""
        B, H, W = x.shape
        if rows is None or cols is None:
            rows, cols = self.masks(B, H, W, x.device)
        hit = rows.view(B, H, 1) | cols.view(B, 1, W)
        return x.masked_fill(hit, FILL)


@dataclass(frozen=True)
class Mixup:
    """Mixup (Zhang et al. 2018): ``x' = lam * x + (1 - lam) * x[perm]``, ``lam ~ Beta(alpha, alpha)`` once per
    batch, and the loss is the cross-entropy against the soft target ``lam * y + (1 - lam) * y[perm]``."""

    alpha: float = 0.4

    def __post_init__(self) -> None:
        if self.alpha <= 0:
            raise ValueError(f"augment.mixup.alpha={self.alpha}: must be > 0 (leave mixup out to turn it off)")

    def draw(self, batch: int, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
        """``lam`` (a 0-d tensor) and the partner permutation ``[B]``."""
        a = torch.tensor(float(self.alpha), device=device)
        lam = torch.distributions.Beta(a, a).sample()
        return lam, torch.randperm(batch, device=device)

    def mix(self, x: torch.Tensor, lam: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
        """Mixed inputs, same shape as ``x`` ``[B, ...]`` (float)."""
        lam = lam.to(x.dtype)
        return lam * x + (1 - lam) * x[perm]

    @staticmethod
    def loss(logits: torch.Tensor, y: torch.Tensor, lam: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
        """Soft-target cross-entropy ``[]``: ``lam * CE(y) + (1 - lam) * CE(y[perm])``, which is the cross-entropy
        against ``lam * onehot(y) + (1 - lam) * onehot(y[perm])`` (CE is linear in the target); at ``lam = 1`` it
        is ``F.cross_entropy(logits, y)`` bit for bit."""
        lam = lam.to(logits.dtype)
        return lam * F.cross_entropy(logits, y) + (1 - lam) * F.cross_entropy(logits, y[perm])


@dataclass(frozen=True)
class Augmentations:
    """The ``augment`` group: the image augmentations in the order given, then mixup (or none)."""

    images: Sequence[TimeRoll | RandomGain | SpecMasks] = field(default_factory=tuple)
    mixup: Mixup | None = None

    @property
    def on_images(self) -> bool:
        return bool(self.images)

    def apply_images(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, H, W]`` spectrogram images through each image augmentation in turn."""
        for step in self.images:
            x = step.images(x)
        return x
