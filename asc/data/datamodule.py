"""The LightningDataModule: metadata -> split -> cached spectrogram images held in memory.

``prepare_data`` (once per machine) generates the synthetic set if asked and fills the feature cache in
parallel; ``setup`` reads the split's images from the cache into one uint8 tensor per part. Batches are
then cut from those tensors with one indexing operation each -- no file is read per step -- and augmented
on the device by the LightningModule. With ``data.on_device=true`` the tensors are moved to the training
device once (the first time a loader is asked for), so batches are cut there and nothing is copied per
step; on a CPU-only run the option changes nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from asc.data.cache import FeatureCache
from asc.data.dataset import read_folder, read_tau, safe_path
from asc.data.features import FeatureSpec
from asc.data.splits import PARTS, check_classes, leakage, make_split

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
    """``collate_fn`` for :class:`TensorBatches`: the batch is already made."""
    return batch


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
        self.leakage: float = 0.0  # share of test clips whose recording location is also in training
        self.leakage_val: float = 0.0  # the same for validation clips (model selection uses them)
        self.skipped: int = 0
        self._parts: dict[str, TensorBatches] = {}
        self._prepared = False

    # -- metadata ------------------------------------------------------------------------------------------
    def table(self) -> pd.DataFrame:
        """The dataset's file table, with a ``part`` column from the configured split."""
        if self.cfg.kind == "tau":
            df = read_tau(self.root)
        elif self.cfg.kind == "folder":
            df = read_folder(self.root, self.cfg.labels_csv)
        else:
            raise ValueError(f"data.kind: {self.cfg.kind!r} is not one of 'tau', 'folder'")
        df["part"] = make_split(df, self.cfg.split, self.cfg.split_seed, self.cfg.fractions, self.cfg.test_fold)
        return df[df["part"].notna()].reset_index(drop=True)

    def _files(self, df: pd.DataFrame) -> list[Path]:
        return [safe_path(self.root, name) for name in df["filename"]]

    # -- Lightning hooks -----------------------------------------------------------------------------------
    def prepare_data(self) -> None:
        if self._prepared:  # Lightning calls it again for fit and test
            return
        if self.cfg.synthetic is not None and not (self.root / "meta.csv").exists():
            from asc.data.synth import SynthConfig, generate

            settings = dict(self.cfg.synthetic)
            settings["cities"] = tuple(settings.get("cities", SynthConfig.cities))
            generate(self.root, SynthConfig(**settings), progress=self.progress)
        df = self.table()
        cache = FeatureCache(self.cfg.cache_dir, self.spec)
        report = cache.build(self._files(df), list(df["filename"]), self.cfg.extract_workers, self.cfg.on_error, self.progress)
        log.info("features: %d computed, %d cached, %d skipped", report.computed, report.cached, len(report.skipped))
        self._prepared = True

    def setup(self, stage: str | None = None) -> None:
        if self._parts:
            return
        df = self.table()
        cache = FeatureCache(self.cfg.cache_dir, self.spec)
        files = self._files(df)
        widths = cache.widths(files, list(df["filename"]))
        need = self.spec.window_frames(self.window)
        missing = widths < 0
        short = ~missing & (widths < need)
        if missing.any():
            if self.cfg.on_error != "skip":
                raise RuntimeError(f"{int(missing.sum())} file(s) have no cached features: run prepare_data() first")
            log.warning("%d file(s) without features are left out (data.on_error=skip)", int(missing.sum()))
        if short.any():
            hop = self.spec.hop_length / self.spec.sample_rate
            shown = ", ".join(f"{n} ({(w - 1) * hop:.2f} s)" for n, w in zip(df["filename"][short][:5], widths[short][:5], strict=True))
            text = (f"{int(short.sum())} clip(s) of {self.root} are shorter than window={self.window:g} s "
                    f"({need} frames): {shown}")
            if self.cfg.on_error != "skip":
                raise ValueError(f"{text}; choose a smaller window, or set data.on_error=skip to leave them out")
            log.warning("%s; left out (data.on_error=skip)", text)
        keep = ~(missing | short)
        self.skipped = int((~keep).sum())
        df, files, widths = df[keep].reset_index(drop=True), [f for f, k in zip(files, keep, strict=True) if k], widths[keep]
        check_classes(df, df["part"])
        width = int(widths.min())
        if (widths != width).any():
            log.warning("clips differ in length (%d to %d frames); all images are cut to %d", width, widths.max(), width)
        self.class_names = sorted(df["label"].unique())
        self.leakage = leakage(df, df["part"])
        self.leakage_val = leakage(df, df["part"], "val")
        index = {name: i for i, name in enumerate(self.class_names)}
        for part in PARTS:
            rows = np.flatnonzero((df["part"] == part).to_numpy())
            images = cache.load([files[i] for i in rows], list(df["filename"].iloc[rows]), width, self.progress)
            labels = torch.tensor([index[x] for x in df["label"].iloc[rows]], dtype=torch.long)
            self._parts[part] = TensorBatches(torch.from_numpy(images), labels)
            self.split_sizes[part] = len(rows)
        log.info("split %s: %s, leakage %.3f (validation %.3f)", self.cfg.split, self.split_sizes, self.leakage,
                 self.leakage_val)

    def _device(self) -> torch.device:
        """Where the tensors live: the trainer's device with ``data.on_device``, else the CPU."""
        if self.cfg.on_device and self.trainer is not None:
            return self.trainer.strategy.root_device
        return torch.device("cpu")

    def _loader(self, part: str, shuffle: bool) -> DataLoader:
        device = self._device()
        if device.type != "cpu" and self._parts[part].tensors[0].device != device:
            self._parts[part] = self._parts[part].to(device)  # once: later calls find it there
        data = self._parts[part]
        on_host = data.tensors[0].device.type == "cpu"
        workers = self.cfg.num_workers if on_host else 0  # worker processes cannot share device tensors
        return DataLoader(
            data,
            batch_size=self.cfg.batch_size,
            shuffle=shuffle,
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

    @property
    def frames(self) -> int:
        """Image width in frames (of the loaded clips)."""
        return int(self._parts["train"].tensors[0].shape[2])

    def tensors(self, part: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The part's images, uint8 ``[N, H, W]``, and labels ``[N]``, as :meth:`setup` loaded them."""
        images, labels = self._parts[part].tensors
        return images, labels
