"""The LightningDataModule: metadata -> split -> cached spectrogram images held in memory as clips.

``prepare_data`` (once per machine) generates the synthetic set if asked and fills the feature cache in
parallel; ``setup`` reads the split's images from the cache into one :class:`asc.data.clips.ClipBank` per part:
recordings of any length as clips of ``data.clip_seconds`` (shorter ones padded by ``data.pad``, longer ones kept
whole and cut at random in training, covered by several clips in evaluation; every case counted and logged).
Batches are then cut from the banks with one gather each -- no file is read per step -- and augmented on the
device by the LightningModule. With ``data.on_device=true`` the banks are moved to the training device once (the
first time a loader is asked for), so batches are cut there and nothing is copied per step; on a CPU-only run the
option changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from asc.data.cache import FeatureCache
from asc.data.clips import PADS, ClipBank, fit_length, fit_report
from asc.data.dataset import read_folder, read_tau, safe_path
from asc.data.features import FeatureSpec
from asc.data.splits import PARTS, check_classes, leakage, make_split
from asc.data.synth import SynthConfig, generate
from asc.errors import SettingError

log = logging.getLogger(__name__)


@dataclass
class DataConfig:
    """The ``data`` config group (see ``conf/data/*.yaml``)."""

    root: str
    kind: str = "tau"  # "tau" (meta.csv + evaluation_setup/) or "folder" (labels.csv: filename,label[,group,...])
    split: str = "paper"  # paper | grouped | fold1 (TAU) | given | fold (folder datasets with those columns)
    split_seed: int = 42
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)
    batch_size: int = 32
    num_workers: int = 0
    extract_workers: int | None = None
    on_error: str = "raise"
    cache_dir: str = "cache"
    synthetic: dict[str, Any] | None = None  # generator settings: the set is written to ``root`` if missing
    labels_csv: str = "labels.csv"
    test_fold: str | int | None = None  # split=fold: the fold that is the test set
    on_device: bool = False  # hold the split's tensors on the training device (GPU); no-op on CPU
    clip_seconds: float = 10.0  # the clip length recordings are trained and evaluated as (TAU: 10 s)
    pad: str = "none"  # recordings shorter than a clip: repeat | silence | none (an error, or skipped with on_error)

    def __post_init__(self) -> None:
        if self.pad not in PADS:
            raise SettingError(f"data.pad: {self.pad!r} is not one of {list(PADS)}")
        if self.clip_seconds <= 0:
            raise SettingError(f"data.clip_seconds: {self.clip_seconds} must be positive")


def count_copies(df: pd.DataFrame) -> int:
    """Files that repeat another file byte for byte: a group of ``k`` identical files counts ``k - 1`` (the table's
    ``duplicate_of`` names each group's first file, that file included)."""
    if "duplicate_of" not in df:
        return 0
    return int((df["duplicate_of"].notna() & (df["duplicate_of"] != df["filename"])).sum())


class TensorBatches(Dataset):
    """Tensors indexed by a whole batch of indices at once: ``ds[[i, j, ...]] -> (x[idx], y[idx])``.

    The DataLoader fetches a batch through ``__getitems__`` (one gather on the tensors' device instead of
    per-sample indexing and stacking) and :func:`as_batch` passes it through. The loader keeps its ordinary
    ``batch_size``/``shuffle``/``sampler``, so Lightning can still swap in a distributed sampler.
    """

    def __init__(self, *tensors: torch.Tensor) -> None:
        if len({len(t) for t in tensors}) != 1:
            raise ValueError("TensorBatches: tensors differ in length")
        self.tensors = tensors

    def __len__(self) -> int:
        return len(self.tensors[0])

    def __getitem__(self, index: Any) -> tuple[torch.Tensor, ...]:
        index = torch.as_tensor(index, dtype=torch.long, device=self.tensors[0].device)
        return tuple(t[index] for t in self.tensors)

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, ...]:
        return self[indices]

    def to(self, device: torch.device) -> TensorBatches:
        return TensorBatches(*(t.to(device) for t in self.tensors))


def as_batch(batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """``collate_fn`` for :class:`TensorBatches` and :class:`ClipBatches`: the batch is already made."""
    return batch


class ClipBatches(Dataset):
    """A part's :class:`ClipBank`, indexed a whole batch at a time (``__getitems__``, like :class:`TensorBatches`).

    Training items: one clip per recording at a random position, ``(clips [B, H, W], labels [B])``. Evaluation
    items: the clips covering each recording, ``(clips [B, n, H, W], labels [B], real [B, n])``.
    """

    def __init__(self, bank: ClipBank, train: bool) -> None:
        self.bank, self.train = bank, train
        self.table = None if train else bank.chunk_table()

    def __len__(self) -> int:
        return len(self.bank)

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, ...]:
        index = torch.as_tensor(indices, dtype=torch.long, device=self.bank.device)
        if self.train:
            return self.bank.random_clips(index), self.bank.labels[index]
        clips, real = self.bank.covering_clips(index, self.table)
        return clips, self.bank.labels[index], real

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        return tuple(t[0] for t in self.__getitems__([index]))

    def to(self, device: torch.device) -> ClipBatches:
        return ClipBatches(self.bank.to(device), self.train)


class Shard(DistributedSampler):
    """Evaluation on several devices: rank ``r`` of ``n`` takes items ``r, r + n, ...``, each item exactly once in all
    (torch's DistributedSampler repeats items to even the ranks out, which would count them twice)."""

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False)
        self.num_samples = len(range(rank, len(dataset), num_replicas))

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, len(self.dataset), self.num_replicas))


class SceneDataModule(L.LightningDataModule):
    def __init__(self, data: DataConfig, spec: FeatureSpec, window: float, progress: bool = True) -> None:
        super().__init__()
        self.cfg = data
        self.spec = spec
        self.window = window
        self.progress = progress
        self.root = Path(data.root)
        self.class_names: list[str] = []
        self.split_sizes: dict[str, int] = {}
        self.names: dict[str, list[str]] = {}  # each part's file names (the table's), in its loader's order
        self.leakage: float = 0.0  # share of test clips whose recording location is also in training
        self.leakage_val: float = 0.0  # the same for validation clips (model selection uses them)
        self.skipped: int = 0
        self.counts: dict[str, int] = {}  # recordings padded, cropped (longer than a clip), skipped, copies
        self._parts: dict[str, ClipBatches] = {}
        self._prepared = False

    # -- metadata ------------------------------------------------------------------------------------------
    def table(self) -> pd.DataFrame:
        """The dataset's file table, with a ``part`` column from the configured split."""
        if self.cfg.kind == "tau":
            df = read_tau(self.root)
        elif self.cfg.kind == "folder":
            df = read_folder(self.root, self.cfg.labels_csv)
        else:
            raise SettingError(f"data.kind: {self.cfg.kind!r} is not one of 'tau', 'folder'")
        df["part"] = make_split(df, self.cfg.split, self.cfg.split_seed, self.cfg.fractions, self.cfg.test_fold)
        return df[df["part"].notna()].reset_index(drop=True)

    def _files(self, df: pd.DataFrame) -> list[Path]:
        return [safe_path(self.root, name) for name in df["filename"]]

    # -- Lightning hooks -----------------------------------------------------------------------------------
    def prepare_data(self) -> None:
        if self._prepared:  # Lightning calls it again for fit and test
            return
        if self.cfg.synthetic is not None and not (self.root / "meta.csv").exists():
            settings = dict(self.cfg.synthetic)
            settings["cities"] = tuple(settings.get("cities", SynthConfig.cities))
            generate(self.root, SynthConfig(**settings), progress=self.progress)
        df = self.table()
        cache = FeatureCache(self.cfg.cache_dir, self.spec)
        report = cache.build(self._files(df), list(df["filename"]), self.cfg.extract_workers, self.cfg.on_error, self.progress)
        log.info("features: %d computed, %d cached, %d skipped", report.computed, report.cached, len(report.skipped))
        self._prepared = True

    @property
    def clip_frames(self) -> int:
        """The clip length in frames (``data.clip_seconds`` at the features' rate and hop)."""
        return self.spec.frames(self.cfg.clip_seconds)

    def setup(self, stage: str | None = None) -> None:
        if self._parts:
            return
        df = self.table()
        cache = FeatureCache(self.cfg.cache_dir, self.spec)
        files = self._files(df)
        widths = cache.widths(files, list(df["filename"]))
        clip = self.clip_frames
        missing = widths < 0
        short = ~missing & (widths < clip) if self.cfg.pad == "none" else np.zeros(len(df), dtype=bool)
        if missing.any():
            if self.cfg.on_error != "skip":
                raise RuntimeError(f"{int(missing.sum())} file(s) have no cached features: run prepare_data() first")
            log.warning("%d file(s) without features are left out (data.on_error=skip)", int(missing.sum()))
        if short.any():
            hop = self.spec.hop_length / self.spec.sample_rate
            shown = ", ".join(f"{n} ({(w - 1) * hop:.2f} s)" for n, w in zip(df["filename"][short][:5], widths[short][:5], strict=True))
            text = (f"{int(short.sum())} recording(s) of {self.root} are shorter than a clip, "
                    f"data.clip_seconds={self.cfg.clip_seconds:g} s ({clip} frames): {shown}")
            if self.cfg.on_error != "skip":
                raise SettingError(f"{text}; set data.pad=repeat (or silence) to pad them, a shorter data.clip_seconds, "
                                 "or data.on_error=skip to leave them out")
            log.warning("%s; left out (data.on_error=skip)", text)
        keep = ~(missing | short)
        self.skipped = int((~keep).sum())
        df, files, widths = df[keep].reset_index(drop=True), [f for f, k in zip(files, keep, strict=True) if k], widths[keep]
        check_classes(df, df["part"])
        self.counts = {**fit_report(widths, clip), "skipped": self.skipped, "copies": count_copies(df)}
        if any(self.counts.values()):  # what was done to the recordings, in one line (also data/* in MLflow)
            log.info("clips of %g s (%d frames): %d recording(s) padded (data.pad=%s), %d longer ones cut at random in "
                     "training and covered by several clips in evaluation, %d skipped, %d byte-identical copies of "
                     "another file kept in its part", self.cfg.clip_seconds, clip, self.counts["padded"], self.cfg.pad,
                     self.counts["cropped"], self.counts["skipped"], self.counts["copies"])
        self.class_names = sorted(df["label"].unique())
        self.leakage = leakage(df, df["part"])
        self.leakage_val = leakage(df, df["part"], "val")
        index = {name: i for i, name in enumerate(self.class_names)}
        for part in PARTS:
            rows = np.flatnonzero((df["part"] == part).to_numpy())
            images = [fit_length(image, clip, self.cfg.pad) for image in cache.each(
                [files[i] for i in rows], list(df["filename"].iloc[rows]), self.progress, desc=f"loading {part}")]
            labels = [index[x] for x in df["label"].iloc[rows]]
            self._parts[part] = ClipBatches(ClipBank.from_images(images, labels, clip), train=part == "train")
            self.split_sizes[part] = len(rows)
            self.names[part] = list(df["filename"].iloc[rows])
        log.info("split %s: %s, leakage %.3f (validation %.3f)", self.cfg.split, self.split_sizes, self.leakage,
                 self.leakage_val)
        self.counts["repaired"] = cache.repaired  # damaged cache entries found and computed again
        if cache.repaired:
            log.warning("%d damaged cache entr%s computed again", cache.repaired, "y was" if cache.repaired == 1 else "ies were")

    def _device(self) -> torch.device:
        """Where the tensors live: the trainer's device with ``data.on_device``, else the CPU."""
        if self.cfg.on_device and self.trainer is not None:
            return self.trainer.strategy.root_device
        return torch.device("cpu")

    def _loader(self, part: str, shuffle: bool) -> DataLoader:
        device = self._device()
        if device.type != "cpu" and self._parts[part].bank.device != device:
            self._parts[part] = self._parts[part].to(device)  # once: later calls find it there
        data = self._parts[part]
        on_host = data.bank.device.type == "cpu"
        workers = self.cfg.num_workers if on_host else 0  # worker processes cannot share device tensors
        world = self.trainer.world_size if self.trainer is not None else 1
        sampler = Shard(data, world, self.trainer.global_rank) if world > 1 and not shuffle else None
        return DataLoader(  # training on several devices: Lightning adds a DistributedSampler
            data,
            batch_size=self.cfg.batch_size,
            shuffle=shuffle,
            sampler=sampler,
            collate_fn=as_batch,
            num_workers=workers,
            pin_memory=on_host and torch.cuda.is_available(),
            persistent_workers=workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def bank(self, part: str) -> ClipBank:
        """The part's clips (recordings, labels) as :meth:`setup` loaded them."""
        return self._parts[part].bank
