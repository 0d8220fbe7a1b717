"""Train/validation/test splits. Each is deterministic from its seed and independent of file-system order.

- ``paper``: 60:20:20 per (scene, city), by file, cut as the reference did: of each shuffled group, the first
  ``floor(0.6 n)`` files train, the files up to ``floor(0.8 n)`` test, the rest validation (airport on TAU:
  859 / 290 / 291). Files of one recording location land in train and test alike -- the leakage the reference
  had; kept as the default to reproduce it.
- ``grouped``: 60:20:20 per (scene, city) by whole recording locations: no location is in two parts.
- ``fold1``: the official location-disjoint fold. ``fold1_train`` is split into train and validation by
  location; ``fold1_evaluate`` is the test set.
- ``given`` (folder datasets): the table's own ``split`` column (``train``/``val``/``test``).
- ``fold`` (folder datasets): the table's ``fold`` column; ``test_fold`` is the test set, the other folds
  are split into train and validation by location (group), as ``fold1``.

Copies: byte-identical files (the table's ``duplicate_of`` column, see :func:`asc.data.dataset.mark_copies`) are one
recording: every split but ``given`` keeps them in the part of their group's first file, and :func:`leakage`
counts a test clip with a copy in training as leaked.

Determinism: every random draw is seeded by the split seed and the group's name (label, city), and every
group is taken in sorted order, so the split depends on the table's content only, not on its row order. (The
reference seeded Python's ``random`` once with 42 and shuffled each folder's listing; a file system's listing
order is not knowable, so which files land where cannot be reproduced, only how many: the files are sorted
and each group gets its own seeded shuffle instead.)
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import pandas as pd

from asc.errors import SettingError

PARTS = ("train", "val", "test")
SPLITS = ("paper", "grouped", "fold1", "given", "fold")


def _group_rng(seed: int, *keys: object) -> np.random.Generator:
    digest = hashlib.sha256("/".join(map(str, (seed, *keys))).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def paper_cuts(n: int, fractions: Sequence[float] = (0.6, 0.2, 0.2)) -> tuple[int, int]:
    """The reference's cut points in a shuffled group of ``n`` files: ``floor(f_train n)``, ``floor((f_train + f_test) n)``.

    Files before the first are training, between the two test, after the second validation (``fractions`` are
    train, val, test, as everywhere). For 145 files: 87 / 29 / 29; for 128: 76 / 26 / 26.
    """
    return int(np.floor(fractions[0] * n)), int(np.floor((fractions[0] + fractions[2]) * n))


def paper_split(df: pd.DataFrame, seed: int = 42, fractions: Sequence[float] = (0.6, 0.2, 0.2)) -> pd.Series:
    """Per (label, city): sort files, shuffle with ``seed``, cut as the reference (:func:`paper_cuts`)."""
    part = pd.Series(index=df.index, dtype=object)
    for (label, city), group in df.groupby(["label", "city"], sort=True):
        order = group.sort_values("filename").index.to_numpy()
        order = order[_group_rng(seed, label, city).permutation(order.size)]
        train_end, test_end = paper_cuts(order.size, fractions)
        part[order[:train_end]] = "train"
        part[order[train_end:test_end]] = "test"
        part[order[test_end:]] = "val"
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


def _location_strata(df: pd.DataFrame, keys: list[str]):
    """``df`` grouped by each location's stratum: the most frequent value of ``keys`` among its clips.

    In TAU a location has one scene and one city, so this is simply a grouping by ``keys``; in a folder
    dataset whose groups span labels, a group still goes whole to one part (as its majority label).
    """
    counts = df.groupby(["location", *keys], sort=True).size().rename("n").reset_index()
    counts = counts.sort_values(["location", "n", *keys], ascending=[True, False, *[True] * len(keys)], kind="stable")
    owner = counts.drop_duplicates("location").set_index("location")[keys]
    strata = owner.loc[df["location"]].set_axis(df.index)
    return df.groupby([strata[k] for k in keys], sort=True)


def grouped_split(df: pd.DataFrame, seed: int = 42, fractions: Sequence[float] = (0.6, 0.2, 0.2)) -> pd.Series:
    """Per (label, city): whole recording locations go to train, val or test, about 60:20:20 by clips."""
    part = pd.Series(index=df.index, dtype=object)
    for (label, city), group in _location_strata(df, ["label", "city"]):
        part.update(_assign_locations(group, seed, (label, city), fractions, PARTS))
    return part


def _holdout_split(df: pd.DataFrame, test: pd.Series, pool: pd.Series, seed: int, val_fraction: float, key: str) -> pd.Series:
    """``test`` rows are the test set; ``pool`` rows are split by location into train and val per label."""
    part = pd.Series(index=df.index, dtype=object)
    part[test] = "test"
    for (label,), group in _location_strata(df[pool], ["label"]):
        part.update(_assign_locations(group, seed, (key, label), (1 - val_fraction, val_fraction), ("train", "val")))
    return part


def fold1_split(df: pd.DataFrame, seed: int = 42, val_fraction: float = 0.2) -> pd.Series:
    """Official fold 1: ``evaluate`` is test; ``train`` is split by location into train and val per label."""
    if df["fold1"].isna().all():
        raise SettingError("split=fold1: the dataset has no evaluation_setup/fold1_train.csv / fold1_evaluate.csv")
    return _holdout_split(df, df["fold1"] == "evaluate", df["fold1"] == "train", seed, val_fraction, "fold1")


def fold_split(df: pd.DataFrame, test_fold: object, seed: int = 42, val_fraction: float = 0.2) -> pd.Series:
    """A folder dataset's ``fold`` column: fold ``test_fold`` is test, the others train + val by location."""
    if "fold" not in df.columns or df["fold"].isna().all():
        raise SettingError("split=fold: the dataset's table has no 'fold' column")
    folds = sorted(df["fold"].dropna().astype(str).unique())
    if test_fold is None or str(test_fold) not in folds:
        raise SettingError(f"split=fold: data.test_fold={test_fold!r} is not one of the table's folds {folds}")
    fold = df["fold"].astype(str)
    return _holdout_split(df, fold == str(test_fold), df["fold"].notna() & (fold != str(test_fold)), seed,
                          val_fraction, f"fold{test_fold}")


def given_split(df: pd.DataFrame) -> pd.Series:
    """A folder dataset's own ``split`` column (rows without one are left out)."""
    if "given" not in df.columns or df["given"].isna().all():
        raise SettingError("split=given: the dataset's table has no 'split' column (train/val/test)")
    return df["given"].astype(object).where(df["given"].notna(), None)


def make_split(
    df: pd.DataFrame, name: str, seed: int = 42, fractions: Sequence[float] = (0.6, 0.2, 0.2), test_fold: object = None
) -> pd.Series:
    """The split called ``name`` as a Series of ``train``/``val``/``test`` (``None`` for unused files)."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise SettingError(f"data.fractions: {list(fractions)} must be three non-negative numbers summing to 1")
    if name == "given":
        return given_split(df)  # the table's own choice, copies included (asc verify reports them)
    val_fraction = fractions[1] / (fractions[0] + fractions[1])
    if name == "paper":
        part = paper_split(df, seed, fractions)
    elif name == "grouped":
        part = grouped_split(df, seed, fractions)
    elif name == "fold1":
        part = fold1_split(df, seed, val_fraction)
    elif name == "fold":
        part = fold_split(df, test_fold, seed, val_fraction)
    else:
        raise SettingError(f"data.split: {name!r} is not one of {list(SPLITS)}")
    return keep_copies_together(df, part)


def _copy_key(df: pd.DataFrame) -> pd.Series:
    """One name per recording: the first file of its group of copies, or the file itself."""
    if "duplicate_of" not in df.columns:
        return df["filename"]
    return df["duplicate_of"].where(df["duplicate_of"].notna(), df["filename"])


def keep_copies_together(df: pd.DataFrame, part: pd.Series) -> pd.Series:
    """``part`` with every byte-identical copy moved to the part of its group's first file."""
    if "duplicate_of" not in df.columns or df["duplicate_of"].isna().all():
        return part
    of_file = pd.Series(part.to_numpy(), index=df["filename"].to_numpy())
    key = _copy_key(df)
    known = key.isin(of_file.index)
    out = part.copy()
    out[known] = of_file[key[known]].to_numpy()
    return out


def leakage(df: pd.DataFrame, part: pd.Series, held_out: str = "test") -> float:
    """Share of ``held_out`` clips (test, or val) whose recording location, or a byte-identical copy, also appears
    in training (0 for a clean split)."""
    train, test = part == "train", part == held_out
    if not test.any():
        return 0.0
    leaked = df.loc[test, "location"].isin(set(df.loc[train, "location"]))
    key = _copy_key(df)
    leaked |= key[test].isin(set(key[train]))
    return float(leaked.mean())


def check_classes(df: pd.DataFrame, part: pd.Series) -> None:
    """Every class must be present in every part; otherwise the split cannot train and test it."""
    labels = set(df["label"])
    for name in PARTS:
        have = set(df.loc[part == name, "label"])
        if not have:
            raise SettingError(f"split: part {name!r} is empty; the dataset is too small for this split")
        lacking = sorted(labels - have)
        if lacking:
            raise SettingError(
                f"split: class(es) {lacking} have no clips in part {name!r} "
                "(too few clips or locations for this split; add data or change data.split)"
            )
