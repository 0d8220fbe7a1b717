"""The LightningDataModule: metadata -> split -> cached spectrogram images held in memory.

``prepare_data`` (once per machine) generates the synthetic set if asked and fills the feature cache in
parallel; ``setup`` reads the split's images from the cache into one uint8 tensor per part. Batches are
then cut from memory -- no file is read per step -- and augmented on the device by the LightningModule.
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
from torch.utils.data import DataLoader, TensorDataset

from asc.cache import FeatureCache
from asc.dataset import read_folder, read_tau, safe_path
from asc.features import FeatureSpec
from asc.splits import PARTS, check_classes, leakage, make_split

log = logging.getLogger(__name__)


@dataclass
class DataConfig:
    """The ``data`` config group (see ``conf/data/*.yaml``)."""

    root: str
    kind: str = "tau"  # "tau" (meta.csv + evaluation_setup/) or "folder" (labels.csv: filename,label[,group,split])
    split: str = "paper"
    split_seed: int = 42
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)
    batch_size: int = 32
    num_workers: int = 0
    extract_workers: int | None = None
    on_error: str = "raise"
    cache_dir: str = "cache"
    synthetic: dict[str, Any] | None = None  # generator settings: the set is written to ``root`` if missing
    labels_csv: str = "labels.csv"


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
        self.leakage: float = 0.0
        self.skipped: int = 0
        self._parts: dict[str, TensorDataset] = {}
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
        df["part"] = make_split(df, self.cfg.split, self.cfg.split_seed, self.cfg.fractions)
        return df[df["part"].notna()].reset_index(drop=True)

    def _files(self, df: pd.DataFrame) -> list[Path]:
        return [safe_path(self.root, name) for name in df["filename"]]

    # -- Lightning hooks -----------------------------------------------------------------------------------
    def prepare_data(self) -> None:
        if self._prepared:  # Lightning calls it again for fit and test
            return
        if self.cfg.synthetic is not None and not (self.root / "meta.csv").exists():
            from asc.synth import SynthConfig, generate

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
        present = np.array([cache.entry(f, n).exists() for f, n in zip(files, df["filename"], strict=True)])
        self.skipped = int((~present).sum())
        if self.skipped:
            if self.cfg.on_error != "skip":
                raise RuntimeError(f"{self.skipped} file(s) have no cached features: run prepare_data() first")
            log.warning("%d file(s) without features are left out (data.on_error=skip)", self.skipped)
        df = df[present].reset_index(drop=True)
        check_classes(df, df["part"])
        self.class_names = sorted(df["label"].unique())
        self.leakage = leakage(df, df["part"])
        width = self.spec.window_frames(self.window)
        index = {name: i for i, name in enumerate(self.class_names)}
        for part in PARTS:
            sub = df[df["part"] == part]
            images = cache.load(self._files(sub), list(sub["filename"]))
            if width > images.shape[2]:
                seconds = (images.shape[2] - 1) * self.spec.hop_length / self.spec.sample_rate
                raise ValueError(
                    f"window={self.window} s is longer than the clips of {self.root} ({seconds:.2f} s); "
                    "choose a smaller window"
                )
            labels = torch.tensor([index[x] for x in sub["label"]], dtype=torch.long)
            self._parts[part] = TensorDataset(torch.from_numpy(images), labels)
            self.split_sizes[part] = len(sub)
        log.info("split %s: %s, leakage %.3f", self.cfg.split, self.split_sizes, self.leakage)

    def _loader(self, part: str, shuffle: bool) -> DataLoader:
        return DataLoader(
            self._parts[part],
            batch_size=self.cfg.batch_size,
            shuffle=shuffle,
            num_workers=self.cfg.num_workers,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=self.cfg.num_workers > 0,
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
