"""Recordings of any length as clips of one length: the unit the network is trained and evaluated on.

Every image is brought to at least ``frames`` (the clip length, ``data.clip_seconds``: TAU's 10 s), and nothing is
thrown away:

- **Shorter recordings are padded** (``data.pad``). ``repeat`` (the default for folders of real recordings) tiles
  the image in time until it is a clip long: a short recording of a scene or an animal then fills the clip with its
  own sound, as PANNs and most audio-tagging pipelines pad. ``silence`` pads with silent frames (grey level 0, what
  a constant frame becomes). Measured on 875 animal recordings of 0.2-40 s (``experiments/real-audio/README.md``:
  5 s clips, 2.5 s window, frozen EfficientNet-Lite0, 3 seeds), silence cost 13.5 points of test accuracy against
  repeat (68.8 +- 0.9 % vs 82.3 +- 1.2 %), all of it on the padded recordings: a window that falls on the padding
  sees no sound, only the black band, and what the network learns from the band is the recording's length, not
  its sound -- the 35 test recordings shorter than 1.07 s, whose centre evaluation window holds padding only, were
  nearly all (33-35 of 35) given "bird", the most common label among short training recordings (41.9 % correct,
  against 70.5 % with repeat). ``none`` refuses them (TAU: every clip is 10 s, a shorter one is a damaged file).
- **Longer recordings keep all of their frames.** Training cuts a clip at a uniform random position at every step;
  evaluation covers the recording with the fewest evenly spaced clips (:func:`chunk_starts`) and averages their
  class probabilities.

:class:`ClipBank` holds one split part: the images concatenated in time as one uint8 tensor ``[H, T]`` (memory as
the recordings' own length), with each recording's start and length, so a batch of clips is one gather on whatever
device the bank lives on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from asc.errors import SettingError

PADS = ("repeat", "silence", "none")


def fit_length(image: np.ndarray, frames: int, pad: str = "repeat") -> np.ndarray:
    """``image`` ``[H, L]`` with at least ``frames`` frames: tiled in time (``repeat``) or followed by silent frames
    (``silence``) when shorter; unchanged when long enough."""
    length = image.shape[1]
    if length >= frames:
        return image
    if pad == "repeat":
        return np.tile(image, (1, math.ceil(frames / length)))[:, :frames]
    if pad == "silence":
        return np.concatenate([image, np.zeros((image.shape[0], frames - length), dtype=image.dtype)], axis=1)
    raise SettingError(f"data.pad: {pad!r} cannot pad a clip of {length} frames to {frames} (use repeat or silence)")


def chunk_starts(length: int, frames: int) -> np.ndarray:
    """Starts of the fewest evenly spaced clips of ``frames`` that cover ``length`` frames (first and last at the edges)."""
    n = max(1, math.ceil(length / frames))
    return np.linspace(0, length - frames, n).round().astype(np.int64) if n > 1 else np.zeros(1, dtype=np.int64)


@dataclass
class ClipBank:
    """One split part as clips of ``frames``: images ``[H, T]`` (uint8, recordings end to end), each recording's
    ``starts`` and ``lengths`` (``>= frames``) in the bank, and ``labels`` ``[N]``."""

    images: torch.Tensor
    starts: torch.Tensor
    lengths: torch.Tensor
    labels: torch.Tensor
    frames: int

    @classmethod
    def from_images(cls, images: Sequence[np.ndarray], labels: Sequence[int], frames: int) -> ClipBank:
        """A bank of images ``[H, L_i]``, each already at least ``frames`` long (:func:`fit_length`)."""
        lengths = np.array([im.shape[1] for im in images], dtype=np.int64)
        if len(images) and lengths.min() < frames:
            raise ValueError(f"ClipBank: an image of {lengths.min()} frames is shorter than a clip ({frames})")
        height = images[0].shape[0] if len(images) else 0
        flat = np.concatenate(images, axis=1) if len(images) else np.zeros((height, 0), dtype=np.uint8)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]) if len(images) else lengths
        return cls(torch.from_numpy(np.ascontiguousarray(flat)), torch.from_numpy(starts), torch.from_numpy(lengths),
                   torch.as_tensor(np.asarray(labels), dtype=torch.long), frames)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def device(self) -> torch.device:
        return self.images.device

    def to(self, device: torch.device | str) -> ClipBank:
        return ClipBank(self.images.to(device), self.starts.to(device), self.lengths.to(device),
                        self.labels.to(device), self.frames)

    def clips(self, index: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """The clips ``[B, H, frames]`` of recordings ``index`` ``[B]`` starting ``offsets`` ``[B]`` frames in."""
        cols = (self.starts[index] + offsets).view(-1, 1) + torch.arange(self.frames, device=self.device).view(1, -1)
        return self.images[:, cols].permute(1, 0, 2).contiguous()

    def random_clips(self, index: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Training: one clip ``[B, H, frames]`` per recording at a uniform random position (its only clip when it is
        a clip long). Drawn from torch's generator on the CPU, so the same on every device."""
        u = torch.rand(len(index), generator=generator).to(self.device)
        slack = (self.lengths[index] - self.frames + 1).to(torch.float64)
        offsets = torch.floor(u.to(torch.float64) * slack).long().clamp_min(0)
        return self.clips(index, torch.minimum(offsets, self.lengths[index] - self.frames))

    def clips_at(self, index: torch.Tensor, fraction: float) -> torch.Tensor:
        """The clip ``[B, H, frames]`` of each recording at ``fraction`` of its slack (0: the start, 1: the end)."""
        offsets = torch.round((self.lengths[index] - self.frames).to(torch.float64) * fraction).long()
        return self.clips(index, offsets)

    def chunk_table(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Evaluation: per recording the starts of the clips that cover it (:func:`chunk_starts`), ``[N, n]`` with
        ``n`` the most any recording needs, and which of them are real ``[N, n]`` (the rest repeat the last)."""
        per = [chunk_starts(int(length), self.frames) for length in self.lengths.tolist()]
        n = max((len(p) for p in per), default=1)
        offsets = torch.tensor(np.stack([np.pad(p, (0, n - len(p)), mode="edge") for p in per]) if per
                               else np.zeros((0, n), dtype=np.int64))
        valid = torch.tensor(np.stack([np.arange(n) < len(p) for p in per]) if per else np.zeros((0, n), dtype=bool))
        return offsets.to(self.device), valid.to(self.device)

    def covering_clips(self, index: torch.Tensor, table: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Evaluation: the clips covering recordings ``index`` ``[B]``, ``[B, n, H, frames]``, and which are real ``[B, n]``."""
        offsets, valid = (t[index] for t in table)
        B, n = offsets.shape
        return self.clips(index.repeat_interleave(n), offsets.reshape(-1)).view(B, n, -1, self.frames), valid


def fit_report(lengths: Sequence[int], frames: int) -> dict[str, int]:
    """How many recordings a clip length pads (shorter), keeps whole (equal) and crops or covers (longer)."""
    lengths = np.asarray(lengths)
    return {"padded": int((lengths < frames).sum()), "cropped": int((lengths > frames).sum())}
