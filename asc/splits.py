"""Train/validation/test splits. Each is deterministic from its seed and independent of file-system order.

- ``paper``: 60:20:20 per (scene, city), by file, as the reference did. Files of one recording location
  land in train and test alike -- the leakage the reference had; kept as the default to reproduce it.
- ``grouped``: 60:20:20 per (scene, city) by whole recording locations: no location is in two parts.
- ``fold1``: the official location-disjoint fold. ``fold1_train`` is split into train and validation by
  location; ``fold1_evaluate`` is the test set.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import pandas as pd

PARTS = ("train", "val", "test")


def _group_rng(seed: int, *keys: object) -> np.random.Generator:
    digest = hashlib.sha256("/".join(map(str, (seed, *keys))).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _counts(n: int, fractions: Sequence[float]) -> tuple[int, int]:
    n_train = int(round(fractions[0] * n))
    n_val = int(round(fractions[1] * n))
    return n_train, min(n_val, n - n_train)


def paper_split(df: pd.DataFrame, seed: int = 42, fractions: Sequence[float] = (0.6, 0.2, 0.2)) -> pd.Series:
    """Per (label, city): sort files, shuffle with ``seed``, cut at 60 % and 80 %."""
    part = pd.Series(index=df.index, dtype=object)
    for (label, city), group in df.groupby(["label", "city"], sort=True):
        order = group.sort_values("filename").index.to_numpy()
        order = order[_group_rng(seed, label, city).permutation(order.size)]
        n_train, n_val = _counts(order.size, fractions)
        part[order[:n_train]] = "train"
        part[order[n_train : n_train + n_val]] = "val"
        part[order[n_train + n_val :]] = "test"
    return part


def _assign_locations(group: pd.DataFrame, seed: int, key: tuple, fractions: Sequence[float], parts: Sequence[str]) -> pd.Series:
    """Whole locations to parts, in a seeded order, filling each part up to its share of clips."""
    sizes = group.groupby("location").size().sort_index()
    locations = sizes.index.to_numpy()[_group_rng(seed, *key).permutation(sizes.size)]
    bounds = np.cumsum(np.asarray(fractions, dtype=float) / sum(fractions)) * sizes.sum()
    out = pd.Series(index=group.index, dtype=object)
    done, k = 0, 0
    for i, loc in enumerate(locations):
        later_parts = len(parts) - 1 - k
        # next part once this one holds its share, or when the locations left are only enough for the later parts
        if later_parts and done > 0 and (done >= bounds[k] - 1e-9 or len(locations) - i <= later_parts):
            k += 1
        out[group.index[group["location"] == loc]] = parts[k]
        done += sizes[loc]
    return out


def grouped_split(df: pd.DataFrame, seed: int = 42, fractions: Sequence[float] = (0.6, 0.2, 0.2)) -> pd.Series:
    """Per (label, city): whole recording locations go to train, val or test, about 60:20:20 by clips."""
    part = pd.Series(index=df.index, dtype=object)
    for (label, city), group in df.groupby(["label", "city"], sort=True):
        part.update(_assign_locations(group, seed, (label, city), fractions, PARTS))
    return part


def fold1_split(df: pd.DataFrame, seed: int = 42, val_fraction: float = 0.2) -> pd.Series:
    """Official fold 1: ``evaluate`` is test; ``train`` is split by location into train and val per label."""
    if df["fold1"].isna().all():
        raise ValueError("split=fold1: the dataset has no evaluation_setup/fold1_train.csv / fold1_evaluate.csv")
    part = pd.Series(index=df.index, dtype=object)
    part[df["fold1"] == "evaluate"] = "test"
    train = df[df["fold1"] == "train"]
    for label, group in train.groupby("label", sort=True):
        part.update(_assign_locations(group, seed, ("fold1", label), (1 - val_fraction, val_fraction), ("train", "val")))
    return part


def make_split(df: pd.DataFrame, name: str, seed: int = 42, fractions: Sequence[float] = (0.6, 0.2, 0.2)) -> pd.Series:
    """The split called ``name`` as a Series of ``train``/``val``/``test`` (``None`` for unused files)."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"data.fractions: {list(fractions)} must be three non-negative numbers summing to 1")
    if name == "paper":
        return paper_split(df, seed, fractions)
    if name == "grouped":
        return grouped_split(df, seed, fractions)
    if name == "fold1":
        return fold1_split(df, seed, fractions[1] / (fractions[0] + fractions[1]))
    raise ValueError(f"data.split: {name!r} is not one of 'paper', 'grouped', 'fold1'")


def leakage(df: pd.DataFrame, part: pd.Series) -> float:
    """Share of test clips whose recording location also appears in training (0 for a clean split)."""
    train_locations = set(df.loc[part == "train", "location"])
    test = df.loc[part == "test", "location"]
    return float(test.isin(train_locations).mean()) if len(test) else 0.0


def check_classes(df: pd.DataFrame, part: pd.Series) -> None:
    """Every class must be present in every part; otherwise the split cannot train and test it."""
    labels = set(df["label"])
    for name in PARTS:
        have = set(df.loc[part == name, "label"])
        if not have:
            raise ValueError(f"split: part {name!r} is empty; the dataset is too small for this split")
        lacking = sorted(labels - have)
        if lacking:
            raise ValueError(
                f"split: class(es) {lacking} have no clips in part {name!r} "
                "(too few clips or locations for this split; add data or change data.split)"
            )
