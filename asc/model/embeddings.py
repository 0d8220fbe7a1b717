"""The frozen-backbone cache: the backbone's output for a fixed set of windows, computed once per clip.

A frozen backbone maps the same input to the same output, so a run that only trains the head need not
run it at every step. With ``model.embedding_cache.enabled=true`` the training clips are seen through
``positions`` fixed windows (evenly spaced from the first frame to the last, the centre one when
``positions`` is 1; with ``model.crop=reference``, crop positions evenly spaced in [0, 1]) instead of a window at
a continuous random position, and the validation/test clips through their evaluation windows
(``model.eval_windows``). Views are made by :mod:`asc.data.augment` with the run's crop and band rules. The head then
trains on the stored outputs: each step picks one of a clip's stored views at random.

Masking (``mask > 0``) draws from a finite set: each training window is stored with ``masks`` band masks
drawn once (from a generator seeded by the cache key, so the set is the same in every run that shares the
cache), and a step picks one of the ``positions x masks`` views. ``masks: 0`` instead runs masked
configurations on the full path (continuous positions, a fresh band at every step), without the cache.

Layout: ``<cache_dir>/embeddings-<key>/{train,val,test}.npy`` (``[clips, views, D]``, float16 by default)
and ``info.json``, which is written last. The key hashes everything that changes the numbers: the
spectrogram settings, the backbone and a hash of its weights, image size, window, crop and band rules, positions,
masks, the mask fraction, the evaluation windows, the compute precision, and the exact inputs (a hash of every part's
spectrogram images, in order). Every file is written to a temporary name and renamed. Jobs that need the same
entry at once (the seeds of a sweep cell under joblib) take turns on ``.embeddings-<key>.lock``: the first
computes it, the others wait and load it.

:class:`EmbeddingData` serves the stored outputs to Lightning in place of the spectrogram data module: the
banks are moved to the training device once and each batch is one indexing operation there.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Iterator, Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch import nn

from asc.data import augment
from asc.files import atomic_save_npy, atomic_write_text, exclusive

log = logging.getLogger(__name__)

#: Bump when the computation changes in a way that invalidates cached embeddings.
EMBEDDING_VERSION = 1
_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


@dataclass
class EmbeddingCacheConfig:
    """The ``model.embedding_cache`` settings."""

    enabled: bool = False
    positions: int = 4  # fixed window positions per training clip
    masks: int = 2  # band masks per position when mask > 0; 0 = masked runs use the full path instead
    batch_size: int = 256  # backbone inputs per forward pass while filling the cache
    dtype: str = "float16"  # storage: float16 | bfloat16 | float32
    steps_per_call: int = 16  # optimiser steps per Lightning training step (the same updates, less overhead)

    def __post_init__(self) -> None:
        if self.positions < 1:
            raise ValueError(f"model.embedding_cache.positions: {self.positions} must be at least 1")
        if self.masks < 0:
            raise ValueError(f"model.embedding_cache.masks: {self.masks} must be 0 (full path when masking) or more")
        if self.batch_size < 1:
            raise ValueError(f"model.embedding_cache.batch_size: {self.batch_size} must be at least 1")
        if self.dtype not in _DTYPES:
            raise ValueError(f"model.embedding_cache.dtype: {self.dtype!r} is not one of {sorted(_DTYPES)}")
        if self.steps_per_call < 1:
            raise ValueError(f"model.embedding_cache.steps_per_call: {self.steps_per_call} must be at least 1")

    def applies(self, mask: float) -> bool:
        """Whether a run with this ``mask`` trains from the cache (else it takes the full path)."""
        return self.enabled and (mask == 0 or self.masks > 0)

    def views(self, mask: float) -> int:
        """Stored views per training clip."""
        return self.positions * (self.masks if mask > 0 else 1)


def train_starts(frames: int, width: int, positions: int, crop: str = "exact") -> torch.Tensor:
    """``positions`` evenly spaced windows ``[K]`` (K = 1: the centre): starts from 0 to ``frames - width`` frames
    (``crop="exact"``), or crop positions from 0 to 1 (``crop="reference"``)."""
    if crop == "reference":
        if positions == 1:
            return torch.full((1,), 0.5, dtype=torch.float64)
        return torch.linspace(0, 1, positions, dtype=torch.float64)
    if positions == 1:
        return augment.centre_offsets(1, frames, width)
    return torch.linspace(0, frames - width, positions).round().long()


def training_views(
    images: torch.Tensor,
    starts: torch.Tensor,
    width: int,
    size: int,
    mask: float = 0.0,
    masks: int = 1,
    generator: torch.Generator | None = None,
    channels_last: bool = False,
    norm: augment.Norm | None = None,
    *,
    crop: str = "exact",
    resized: int | None = None,
    band: str = "uniform",
) -> torch.Tensor:
    """Network inputs ``[B, V, 3, size, size]`` for images ``[B, H, W]``: ``V = K`` windows, or ``K * masks``
    when ``mask > 0`` (view ``k * masks + m`` is window ``k`` with its ``m``-th band, drawn from ``generator``).
    ``starts``, ``crop``, ``resized``: as :func:`asc.data.augment.windows_at`; ``band``: the band-height rule;
    ``norm``: the backbone's input normalisation (see :func:`asc.data.augment.to_network`).
    """
    B = images.shape[0]
    win = augment.windows_at(images, starts, width, size, crop=crop, resized=resized)  # [B, K, S, S]
    if mask > 0:
        win = augment.band_mask(win.repeat_interleave(masks, 1).flatten(0, 1), mask, generator=generator, rule=band)
    x = augment.to_network(win.reshape(-1, size, size), channels_last, norm)
    return x.view(B, -1, 3, size, size)


def eval_views(images: torch.Tensor, width: int, size: int, windows: str = "centre", channels_last: bool = False,
               norm: augment.Norm | None = None, *, crop: str = "exact", resized: int | None = None) -> torch.Tensor:
    """Network inputs ``[B, n, 3, size, size]`` of the evaluation windows (what the full path evaluates)."""
    return augment.eval_batch(images, width, size, windows, channels_last, crop=crop, resized=resized, norm=norm)


def weights_digest(module: nn.Module) -> str:
    """sha1 of a module's parameters and buffers (names, shapes, dtypes, bytes)."""
    h = hashlib.sha1()
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{tuple(t.shape)}|{t.dtype}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def images_digest(images: Mapping[str, torch.Tensor]) -> str:
    """sha1 over every part's images (names, shapes and bytes, in order): the cache's "which clips"."""
    h = hashlib.sha1()
    for part in sorted(images):
        t = images[part].detach().cpu().contiguous()
        h.update(f"{part}|{tuple(t.shape)}|{t.dtype}".encode())
        h.update(memoryview(t.reshape(-1).view(torch.uint8).numpy()))
    return h.hexdigest()


def autocast_dtype(precision: str | int | None) -> torch.dtype | None:
    """The autocast dtype of a Lightning ``precision`` setting (None: full precision)."""
    p = str(precision)
    if p.startswith("bf16"):
        return torch.bfloat16
    if p.startswith("16"):
        return torch.float16
    return None


@torch.no_grad()
def embed(
    backbone: nn.Module,
    make_views,
    n_clips: int,
    views_per_clip: int,
    batch_size: int,
    device: torch.device,
    dtype: torch.dtype = torch.float16,
    precision: torch.dtype | None = None,
    channels_last: bool = False,
) -> torch.Tensor:
    """Backbone outputs ``[n_clips, views, D]`` (``dtype``, on the CPU), computed batch-wise on ``device``.

    ``make_views(lo, hi)`` returns the network inputs ``[hi - lo, views, 3, S, S]`` of clips ``lo:hi``.
    ``precision``: autocast dtype for the backbone (None: float32).
    """
    backbone = backbone.to(device).eval()
    if channels_last:
        backbone = backbone.to(memory_format=torch.channels_last)
    clips = max(1, batch_size // views_per_clip)
    out: torch.Tensor | None = None
    cast = torch.autocast(device.type, dtype=precision) if precision is not None else nullcontext()
    for lo in range(0, n_clips, clips):
        hi = min(n_clips, lo + clips)
        x = make_views(lo, hi).flatten(0, 1)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with cast:
            y = backbone(x)
        y = y.float().view(hi - lo, views_per_clip, -1)
        if out is None:
            out = torch.empty((n_clips, views_per_clip, y.shape[-1]), dtype=dtype)
        out[lo:hi] = y.to("cpu", dtype)
    assert out is not None, "no clips to embed"
    return out


class EmbeddingCache:
    """Backbone outputs for one run setup, on disk under ``<root>/embeddings-<key>``."""

    PARTS = ("train", "val", "test")

    def __init__(self, root: str | Path, key_fields: Mapping[str, object]) -> None:
        payload = json.dumps({"v": EMBEDDING_VERSION, **key_fields}, sort_keys=True, default=str)
        self.key = hashlib.sha1(payload.encode()).hexdigest()
        self.fields = dict(key_fields)
        self.dir = Path(root) / f"embeddings-{self.key[:16]}"

    def complete(self) -> bool:
        return (self.dir / "info.json").is_file() and all((self.dir / f"{p}.npy").is_file() for p in self.PARTS)

    def load(self) -> dict[str, torch.Tensor]:
        """``{part: [clips, views, D]}`` (CPU tensors in the stored dtype)."""
        info = json.loads((self.dir / "info.json").read_text())
        out = {}
        for part in self.PARTS:
            arr = np.load(self.dir / f"{part}.npy")
            t = torch.from_numpy(arr)
            out[part] = t.view(_DTYPES[info["dtype"]]) if info["dtype"] == "bfloat16" else t
        return out

    def save(self, banks: Mapping[str, torch.Tensor], dtype: str) -> None:
        """Write every part atomically, then ``info.json`` (its presence marks the entry complete)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        for part in self.PARTS:
            t = banks[part].contiguous()
            arr = t.view(torch.int16).numpy() if t.dtype == torch.bfloat16 else t.numpy()  # numpy has no bfloat16
            atomic_save_npy(self.dir / f"{part}.npy", arr)
        info = {"dtype": dtype, "shapes": {p: list(banks[p].shape) for p in self.PARTS}, "key": self.fields}
        atomic_write_text(self.dir / "info.json", json.dumps(info, indent=2, default=str))


def build_or_load(
    net: nn.Module,
    images: Mapping[str, torch.Tensor],
    cfg: EmbeddingCacheConfig,
    *,
    root: str | Path,
    spec_key: str,
    backbone: str,
    width: int,
    size: int,
    mask: float,
    eval_windows: str = "centre",
    precision: str | int | None = None,
    channels_last: bool = False,
    device: torch.device | str = "cpu",
    crop: str = "exact",
    band: str = "uniform",
    resized: int | None = None,
) -> tuple[dict[str, torch.Tensor], EmbeddingCache, bool]:
    """The cached backbone outputs of every part, computing (and storing) them if missing.

    Args:
        net: a :class:`asc.model.networks.SceneNet` with a frozen backbone (its ``backbone`` is run).
        images: ``{part: uint8 [N, H, W]}`` spectrogram images of "train", "val" and "test".
        width, size: window width in frames, network input side in pixels.
        crop, band, resized: the crop rule, the band rule and (``crop="reference"``) the resized width of
            :mod:`asc.data.augment` (what :class:`asc.model.module.SceneClassifier` uses: its ``resized_width(frames)``).
    Returns:
        ``({"train": [N, positions * (masks or 1), D], "val": [N, n, D], "test": [N, n, D]}, cache, computed)``.
    """
    if not getattr(net, "freeze", False):
        raise ValueError("model.embedding_cache.enabled=true needs a frozen backbone (model.freeze=true)")
    frames = int(images["train"].shape[2])
    views = cfg.views(mask)
    fields = {
        "spectrogram": spec_key,
        "backbone": backbone,
        "weights": weights_digest(net.backbone),
        "image_size": size,
        "window_frames": width,
        "crop": crop,
        "resized": resized,
        "band": band,
        "frames": frames,
        "positions": cfg.positions,
        "masks": cfg.masks if mask > 0 else 0,
        "mask": float(mask),
        "eval_windows": eval_windows,
        "precision": str(autocast_dtype(precision)),
        "dtype": cfg.dtype,
        "images": images_digest({p: images[p] for p in EmbeddingCache.PARTS}),
    }
    cache = EmbeddingCache(root, fields)
    if not cache.complete():
        # jobs of one sweep cell (its seeds) share the entry: the first computes it, the others wait and load it
        Path(root).mkdir(parents=True, exist_ok=True)
        with exclusive(Path(root) / f".{cache.dir.name}.lock", f"{cache.dir}: another job is computing it; waiting"):
            if not cache.complete():
                banks = _compute(net, images, cfg, cache, frames=frames, views=views, width=width, size=size, mask=mask,
                                 eval_windows=eval_windows, precision=precision, channels_last=channels_last, device=device,
                                 crop=crop, band=band, resized=resized)
                cache.save(banks, cfg.dtype)
                return banks, cache, True
    log.info("embedding cache: using %s", cache.dir)
    return cache.load(), cache, False


def _compute(
    net: nn.Module, images: Mapping[str, torch.Tensor], cfg: EmbeddingCacheConfig, cache: EmbeddingCache, *,
    frames: int, views: int, width: int, size: int, mask: float, eval_windows: str, precision: str | int | None,
    channels_last: bool, device: torch.device | str, crop: str = "exact", band: str = "uniform", resized: int | None = None,
) -> dict[str, torch.Tensor]:
    """The backbone outputs of every part (see :func:`build_or_load`)."""
    device = torch.device(device)
    starts = train_starts(frames, width, cfg.positions, crop)
    gen = torch.Generator().manual_seed(int(cache.key[:15], 16))  # the mask set is a function of the key
    dtype = _DTYPES[cfg.dtype]
    amp = autocast_dtype(precision)
    log.info("embedding cache: computing %s (%d training views per clip) on %s", cache.dir, views, device)

    def bank(part: str, make, n_views: int) -> torch.Tensor:
        return embed(net.backbone, make, len(images[part]), n_views, cfg.batch_size, device, dtype, amp, channels_last)

    def train_views(lo: int, hi: int) -> torch.Tensor:
        x = images["train"][lo:hi].to(device, non_blocking=True)
        return training_views(x, starts, width, size, mask, cfg.masks, gen, channels_last, net.norm, crop=crop,
                              resized=resized, band=band)

    if crop == "reference":
        n_eval = augment.eval_positions(eval_windows, resized, int(images["train"].shape[1])).numel()
    else:
        n_eval = augment.eval_starts(frames, width, eval_windows).numel()
    banks = {"train": bank("train", train_views, views)}
    for part in ("val", "test"):
        banks[part] = bank(
            part, lambda lo, hi, p=part: eval_views(images[p][lo:hi].to(device), width, size, eval_windows, channels_last,
                                                    net.norm, crop=crop, resized=resized), n_eval
        )
    return banks


class EmbeddingLoader:
    """Batches ``(x[idx], y[idx])`` cut from tensors on one device, shuffled or in order.

    The order comes from torch's CPU generator (seeded by ``seed_everything``), so it is the same on every
    device. With ``pick_view``, ``x`` is ``[N, V, D]`` and each sample of a batch is one of its ``V`` stored
    views, drawn uniformly (training); otherwise batches are ``[B, V, D]`` (evaluation windows).

    With ``group > 1`` each item is a list of up to ``group`` consecutive batches, the same batches in the
    same order: :class:`asc.model.module.SceneClassifier` with ``steps_per_call`` takes one optimiser step per batch.
    """

    def __init__(
        self, x: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool, pick_view: bool = False, group: int = 1
    ) -> None:
        if len(x) != len(y):
            raise ValueError(f"EmbeddingLoader: {len(x)} inputs but {len(y)} labels")
        self.x, self.y = x, y
        self.batch_size, self.shuffle, self.pick_view, self.group = batch_size, shuffle, pick_view, group

    def __len__(self) -> int:
        return math.ceil(math.ceil(len(self.y) / self.batch_size) / self.group)

    def __iter__(self) -> Iterator:
        batches = self._batches()
        if self.group == 1:
            yield from batches
            return
        pending: list[tuple[torch.Tensor, torch.Tensor]] = []
        for batch in batches:
            pending.append(batch)
            if len(pending) == self.group:
                yield pending
                pending = []
        if pending:
            yield pending

    def _batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.y)
        # the epoch's order and views are drawn at once and copied to the device once: no transfer per batch
        order = (torch.randperm(n) if self.shuffle else torch.arange(n)).to(self.x.device)
        views = torch.randint(self.x.shape[1], (n,)).to(self.x.device) if self.pick_view else None
        for lo in range(0, n, self.batch_size):
            idx = order[lo : lo + self.batch_size]
            x = self.x[idx, views[lo : lo + self.batch_size]] if views is not None else self.x[idx]
            yield x, self.y[idx]


class EmbeddingData(L.LightningDataModule):
    """Cached backbone outputs ``{part: [N, V, D]}`` and labels ``{part: [N]}`` as a Lightning data module."""

    def __init__(
        self, banks: Mapping[str, torch.Tensor], labels: Mapping[str, torch.Tensor], batch_size: int,
        eval_batch_size: int = 1024, steps_per_call: int = 1,
    ) -> None:
        super().__init__()
        for part in EmbeddingCache.PARTS:
            if len(banks[part]) != len(labels[part]):
                raise ValueError(f"embedding cache: {len(banks[part])} {part} clips, the split has {len(labels[part])}")
        self.banks, self.labels, self.batch_size = dict(banks), dict(labels), batch_size
        self.eval_batch_size = max(batch_size, eval_batch_size)  # evaluation does not depend on the batch size
        self.steps_per_call = steps_per_call  # training batches per item (see EmbeddingLoader's group)
        self._placed: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def _loader(self, part: str, shuffle: bool) -> EmbeddingLoader:
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        if part not in self._placed or self._placed[part][0].device != device:  # moved once per device
            self._placed[part] = (self.banks[part].to(device), self.labels[part].to(device))
        x, y = self._placed[part]
        if part == "train":
            return EmbeddingLoader(x, y, self.batch_size, shuffle, pick_view=True, group=self.steps_per_call)
        return EmbeddingLoader(x, y, self.eval_batch_size, shuffle)

    def train_dataloader(self) -> EmbeddingLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> EmbeddingLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> EmbeddingLoader:
        return self._loader("test", shuffle=False)
