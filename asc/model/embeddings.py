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
spectrogram images, in order). Every file is written to a temporary name and renamed, the arrays as checked ``.npy``
files (a CRC-32 of their bytes, :func:`asc.files.atomic_save_checked`): an entry whose bytes changed or that was cut
short is found when it is loaded, deleted and computed again, never trained on. Jobs that need the same
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
from dataclasses import asdict, dataclass
from pathlib import Path

import lightning as L
import torch
from torch import nn
from tqdm.auto import tqdm

from asc.data import augment
from asc.data.augment import ViewSpec
from asc.data.clips import ClipBank
from asc.files import DamagedFile, atomic_save_checked, atomic_write_text, exclusive, load_checked

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


def position_fractions(positions: int) -> list[float]:
    """Where in a recording longer than a clip each of the ``positions`` training clips sits (0: start, 1: end)."""
    return [0.5] if positions == 1 else [k / (positions - 1) for k in range(positions)]


def training_views(
    bank: ClipBank, index: torch.Tensor, views: ViewSpec, positions: int, masks: int = 1,
    generator: torch.Generator | None = None, norm: augment.Norm | None = None,
) -> torch.Tensor:
    """Network inputs ``[B, V, 3, size, size]`` of recordings ``index`` ``[B]``: ``V = K`` positions, or ``K * masks``
    when ``views.mask > 0`` (view ``k * masks + m`` is position ``k`` with its ``m``-th band, drawn from ``generator``).

    Position ``k`` is the window at the ``k``-th of :func:`train_starts` in the clip at the same share of the
    recording (:meth:`ClipBank.clips_at`): for a recording one clip long, only the window moves.
    """
    starts = train_starts(bank.frames, views.window_frames, positions, views.crop)
    wins = [views.views_at(bank.clips_at(index, f), starts[k : k + 1]) for k, f in enumerate(position_fractions(positions))]
    win = torch.cat(wins, 1)  # [B, K, S, S]
    B, S = win.shape[0], views.size
    if views.mask > 0:
        win = augment.band_mask(win.repeat_interleave(masks, 1).flatten(0, 1), views.mask, generator=generator,
                                rule=views.band)
    x = augment.to_network(win.reshape(-1, S, S), views.channels_last, norm)
    return x.view(B, -1, 3, S, S)


def weights_digest(module: nn.Module) -> str:
    """sha1 of a module's parameters and buffers (names, shapes, dtypes, bytes)."""
    h = hashlib.sha1()
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{tuple(t.shape)}|{t.dtype}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def images_digest(banks: Mapping[str, ClipBank]) -> str:
    """sha1 over every part's recordings (images, starts, lengths; names, shapes and bytes, in order): the cache's
    "which clips"."""
    h = hashlib.sha1()
    for part in sorted(banks):
        for name, t in (("images", banks[part].images), ("starts", banks[part].starts), ("lengths", banks[part].lengths)):
            t = t.detach().cpu().contiguous()
            h.update(f"{part}|{name}|{tuple(t.shape)}|{t.dtype}".encode())
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
    progress: bool = False,
    desc: str = "backbone outputs",
) -> torch.Tensor:
    """Backbone outputs ``[n_clips, views, D]`` (``dtype``, on the CPU), computed batch-wise on ``device`` and gathered
    there (the paper's 8640 training clips x 8 views of VGG16's 25088 outputs are 3.5 GB in float16), copied once.

    ``make_views(lo, hi)`` returns the network inputs ``[hi - lo, views, 3, S, S]`` of clips ``lo:hi``.
    ``precision``: autocast dtype for the backbone (None: float32). ``progress``: a bar in views, with rate and ETA.
    """
    backbone = backbone.to(device).eval()
    if channels_last:
        backbone = backbone.to(memory_format=torch.channels_last)
    clips = max(1, batch_size // views_per_clip)
    out: torch.Tensor | None = None
    cast = torch.autocast(device.type, dtype=precision) if precision is not None else nullcontext()
    bar = tqdm(total=n_clips * views_per_clip, desc=desc, unit="view", disable=not progress, dynamic_ncols=True)
    for lo in range(0, n_clips, clips):
        hi = min(n_clips, lo + clips)
        x = make_views(lo, hi).flatten(0, 1)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with cast:
            y = backbone(x)
        y = y.view(hi - lo, views_per_clip, -1)
        if out is None:  # on the device: no copy back, and no wait for the device, per batch
            out = torch.empty((n_clips, views_per_clip, y.shape[-1]), dtype=dtype, device=device)
        out[lo:hi] = y.to(dtype)
        bar.update((hi - lo) * views_per_clip)
    bar.close()
    assert out is not None, "no clips to embed"
    return out.cpu()


class EmbeddingCache:
    """Backbone outputs for one run setup, on disk under ``<root>/embeddings-<key>``."""

    PARTS = ("train", "val", "test")

    def __init__(self, root: str | Path, key_fields: Mapping[str, object]) -> None:
        payload = json.dumps({"v": EMBEDDING_VERSION, **key_fields}, sort_keys=True, default=str)
        self.key = hashlib.sha1(payload.encode()).hexdigest()
        self.fields = dict(key_fields)
        self.dir = Path(root) / f"embeddings-{self.key[:16]}"

    EVAL = ("val", "test")

    def complete(self) -> bool:
        files = [f"{p}.npy" for p in self.PARTS] + [f"{p}_real.npy" for p in self.EVAL]
        return (self.dir / "info.json").is_file() and all((self.dir / f).is_file() for f in files)

    def load(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """``({part: [recordings, views, D]}, {val/test: which views are real [recordings, views]})`` (CPU tensors,
        the outputs in the stored dtype). :class:`asc.files.DamagedFile` if a file's bytes are not the ones written."""
        try:
            info = json.loads((self.dir / "info.json").read_text())
            dtype, shapes = info["dtype"], info["shapes"]
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as err:
            raise DamagedFile(f"{self.dir / 'info.json'}: damaged ({err})") from err
        out = {}
        for part in self.PARTS:
            t = torch.from_numpy(load_checked(self.dir / f"{part}.npy"))
            if list(t.shape) != shapes.get(part):
                raise DamagedFile(f"{self.dir / f'{part}.npy'}: shape {list(t.shape)}, info.json says {shapes.get(part)}")
            out[part] = t.view(_DTYPES[dtype]) if dtype == "bfloat16" else t
        real = {part: torch.from_numpy(load_checked(self.dir / f"{part}_real.npy")) for part in self.EVAL}
        return out, real

    def save(self, banks: Mapping[str, torch.Tensor], real: Mapping[str, torch.Tensor], dtype: str) -> None:
        """Write every part atomically, then ``info.json`` (its presence marks the entry complete)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        for part in self.PARTS:
            t = banks[part].contiguous()
            arr = t.view(torch.int16).numpy() if t.dtype == torch.bfloat16 else t.numpy()  # numpy has no bfloat16
            atomic_save_checked(self.dir / f"{part}.npy", arr)
        for part in self.EVAL:
            atomic_save_checked(self.dir / f"{part}_real.npy", real[part].cpu().numpy())
        info = {"dtype": dtype, "shapes": {p: list(banks[p].shape) for p in self.PARTS}, "key": self.fields}
        atomic_write_text(self.dir / "info.json", json.dumps(info, indent=2, default=str))

    def usable(self, warn: bool = True) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]] | None:
        """:meth:`load` of a complete entry; None if there is none, or if it is damaged (said in a warning)."""
        if not self.complete():
            return None
        try:
            loaded = self.load()
        except DamagedFile as err:
            if warn:
                log.warning("embedding cache: %s; computing it again", err)
            return None
        log.info("embedding cache: using %s", self.dir)
        return loaded

    def discard(self) -> None:
        """Delete the entry (``info.json`` first: it is incomplete from the first deletion on)."""
        (self.dir / "info.json").unlink(missing_ok=True)
        for f in self.dir.glob("*.npy"):
            f.unlink(missing_ok=True)


def build_or_load(
    net: nn.Module,
    banks: Mapping[str, ClipBank],
    cfg: EmbeddingCacheConfig,
    views: ViewSpec,
    *,
    root: str | Path,
    spec_key: str,
    backbone: str,
    precision: str | int | None = None,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], EmbeddingCache, bool]:
    """The cached backbone outputs of every part, computing (and storing) them if missing.

    Args:
        net: a :class:`asc.model.networks.SceneNet` with a frozen backbone (its ``backbone`` is run).
        banks: ``{part: ClipBank}`` of "train", "val" and "test" (:mod:`asc.data.clips`).
        views: how clips become network inputs (the run's :class:`asc.data.augment.ViewSpec`).
    Returns:
        ``(outputs, real, cache, computed)``: ``outputs`` ``{"train": [N, positions * (masks or 1), D], "val"/"test":
        [N, n, D]}`` (``n``: the clips covering the longest recording times the evaluation views) and ``real``
        ``{"val"/"test": [N, n]}``, which of those views are real.
    """
    if not getattr(net, "freeze", False):
        raise ValueError("model.embedding_cache.enabled=true needs a frozen backbone (model.freeze=true)")
    fields = {
        "spectrogram": spec_key,
        "backbone": backbone,
        "weights": weights_digest(net.backbone),
        "views": {k: v for k, v in asdict(views).items() if k != "channels_last"},
        "clip_frames": banks["train"].frames,
        "positions": cfg.positions,
        "masks": cfg.masks if views.mask > 0 else 0,
        "precision": str(autocast_dtype(precision)),
        "dtype": cfg.dtype,
        "images": images_digest({p: banks[p] for p in EmbeddingCache.PARTS}),
    }
    cache = EmbeddingCache(root, fields)
    if (loaded := cache.usable()) is not None:
        return (*loaded, cache, False)
    # jobs of one sweep cell (its seeds) share the entry: the first computes it, the others wait and load it
    Path(root).mkdir(parents=True, exist_ok=True)
    with exclusive(Path(root) / f".{cache.dir.name}.lock", f"{cache.dir}: another job is computing it; waiting"):
        if (loaded := cache.usable(warn=False)) is not None:  # computed by the job we waited for
            return (*loaded, cache, False)
        cache.discard()  # a damaged entry, or the files of a job killed while it saved one
        outputs, real = _compute(net, banks, cfg, views, cache, precision=precision, device=device,
                                 progress=progress)
        cache.save(outputs, real, cfg.dtype)
        return outputs, real, cache, True


def _compute(
    net: nn.Module, banks: Mapping[str, ClipBank], cfg: EmbeddingCacheConfig, views: ViewSpec, cache: EmbeddingCache,
    *, precision: str | int | None, device: torch.device | str, progress: bool = False,
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The backbone outputs of every part, and which evaluation views are real (see :func:`build_or_load`)."""
    device = torch.device(device)
    gen = torch.Generator().manual_seed(int(cache.key[:15], 16))  # the mask set is a function of the key
    dtype = _DTYPES[cfg.dtype]
    amp = autocast_dtype(precision)
    n_train = cfg.views(views.mask)
    log.info("embedding cache: computing %s (%d training views per recording) on %s", cache.dir, n_train, device)
    placed = {part: bank.to(device) for part, bank in banks.items()}

    def outputs(part: str, make, n_views: int) -> torch.Tensor:
        return embed(net.backbone, make, len(banks[part]), n_views, cfg.batch_size, device, dtype, amp,
                     views.channels_last, progress=progress, desc=f"embedding cache: {part}")

    def train_views(lo: int, hi: int) -> torch.Tensor:
        index = torch.arange(lo, hi, device=device)
        return training_views(placed["train"], index, views, cfg.positions, cfg.masks, gen, net.norm)

    result, real = {"train": outputs("train", train_views, n_train)}, {}
    for part in EmbeddingCache.EVAL:
        bank, table = placed[part], placed[part].chunk_table()
        height = bank.images.shape[0]
        n = table[0].shape[1] * views.eval_starts(height, bank.frames).numel()

        def eval_views(lo: int, hi: int, bank=bank, table=table) -> torch.Tensor:
            clips, valid = bank.covering_clips(torch.arange(lo, hi, device=device), table)
            return views.eval_clips(clips, valid, net.norm)[0]

        result[part] = outputs(part, eval_views, n)
        index = torch.arange(len(bank), device=device)
        real[part] = views.eval_clips_real(table[1][index], height, bank.frames).cpu()
    return result, real


class EmbeddingLoader:
    """Batches cut from tensors on one device, shuffled or in order.

    The order comes from torch's CPU generator (seeded by ``seed_everything``), so it is the same on every
    device. With ``pick_view``, ``x`` is ``[N, V, D]`` and each sample of a batch is one of its ``V`` stored
    views, drawn uniformly: ``(x [B, D], y [B])`` (training); otherwise ``(x [B, V, D], y [B], real [B, V])``,
    every evaluation view and which are real (``real``, default all).

    With ``group > 1`` each item is a list of up to ``group`` consecutive batches, the same batches in the
    same order: :class:`asc.model.module.SceneClassifier` with ``steps_per_call`` takes one optimiser step per batch.
    """

    def __init__(
        self, x: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool, pick_view: bool = False, group: int = 1,
        real: torch.Tensor | None = None, rank: int = 0, world: int = 1,
    ) -> None:
        if len(x) != len(y):
            raise ValueError(f"EmbeddingLoader: {len(x)} inputs but {len(y)} labels")
        self.x, self.y, self.real = x, y, real
        self.batch_size, self.shuffle, self.pick_view, self.group = batch_size, shuffle, pick_view, group
        self.rank, self.world = rank, world

    def _count(self) -> int:
        """Samples this rank takes: training evens the ranks out (their gradients are averaged step by step),
        evaluation takes every sample exactly once over all ranks."""
        n = len(self.y)
        return math.ceil(n / self.world) if self.pick_view else len(range(self.rank, n, self.world))

    def __len__(self) -> int:
        return math.ceil(math.ceil(self._count() / self.batch_size) / self.group)

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
        # the epoch's order and views are drawn at once and copied to the device once: no transfer per batch. On
        # several devices every rank draws the same (same seed) and takes its share: r, r + world, ...
        order = torch.randperm(n) if self.shuffle else torch.arange(n)
        views = torch.randint(self.x.shape[1], (n,)) if self.pick_view else None
        if self.world > 1:
            if self.pick_view:  # repeat the first samples so that every rank takes as many steps
                pad = self._count() * self.world - n
                order, views = torch.cat([order, order[:pad]]), torch.cat([views, views[:pad]])
            share = slice(self.rank, None, self.world)
            order, views = order[share], views[share] if views is not None else None
        order = order.to(self.x.device)
        views = views.to(self.x.device) if views is not None else None
        n = len(order)
        for lo in range(0, n, self.batch_size):
            idx = order[lo : lo + self.batch_size]
            if views is not None:
                yield self.x[idx, views[lo : lo + self.batch_size]], self.y[idx]
            else:  # evaluation: every stored view, and which are real
                yield self.x[idx], self.y[idx], self.real[idx] if self.real is not None else torch.ones(
                    self.x.shape[:2], dtype=torch.bool, device=self.x.device)[idx]


class EmbeddingData(L.LightningDataModule):
    """Cached backbone outputs ``{part: [N, V, D]}`` and labels ``{part: [N]}`` as a Lightning data module."""

    def __init__(
        self, banks: Mapping[str, torch.Tensor], labels: Mapping[str, torch.Tensor], batch_size: int,
        eval_batch_size: int = 1024, steps_per_call: int = 1, real: Mapping[str, torch.Tensor] | None = None,
    ) -> None:
        super().__init__()
        for part in EmbeddingCache.PARTS:
            if len(banks[part]) != len(labels[part]):
                raise ValueError(f"embedding cache: {len(banks[part])} {part} clips, the split has {len(labels[part])}")
        self.banks, self.labels, self.batch_size = dict(banks), dict(labels), batch_size
        self.real = {p: (real or {}).get(p, torch.ones(banks[p].shape[:2], dtype=torch.bool)) for p in EmbeddingCache.EVAL}
        self.eval_batch_size = max(batch_size, eval_batch_size)  # evaluation does not depend on the batch size
        self.steps_per_call = steps_per_call  # training batches per item (see EmbeddingLoader's group)
        self._placed: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def _loader(self, part: str, shuffle: bool) -> EmbeddingLoader:
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        if part not in self._placed or self._placed[part][0].device != device:  # moved once per device
            real = self.real[part].to(device) if part in self.real else None
            self._placed[part] = (self.banks[part].to(device), self.labels[part].to(device), real)
        x, y, real = self._placed[part]
        shard = dict(rank=self.trainer.global_rank, world=self.trainer.world_size) if self.trainer is not None else {}
        if part == "train":
            return EmbeddingLoader(x, y, self.batch_size, shuffle, pick_view=True, group=self.steps_per_call, **shard)
        return EmbeddingLoader(x, y, self.eval_batch_size, shuffle, real=real, **shard)

    def train_dataloader(self) -> EmbeddingLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> EmbeddingLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> EmbeddingLoader:
        return self._loader("test", shuffle=False)
