"""The three TAU splits (and the folder datasets' two): sizes, leakage, determinism, order independence."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from asc.data.dataset import read_tau
from asc.data.scenes import CITIES, SCENES
from asc.data.splits import PARTS, check_classes, leakage, make_split


def tau_like(seed: int = 0) -> pd.DataFrame:
    """A table shaped like TAU 2019: 10 scenes x 10 cities, 3-7 locations each with 2-12 clips, fold1 by location."""
    rng = np.random.default_rng(seed)
    rows = []
    for s, scene in enumerate(SCENES):
        for c, city in enumerate(CITIES):
            n_loc = int(rng.integers(3, 8))
            for loc in range(n_loc):
                ident = f"{city}-{100 * s + 10 * c + loc}"
                fold1 = "evaluate" if loc == n_loc - 1 or city == "milan" else "train"
                for seg in range(int(rng.integers(2, 13))):
                    rows.append((f"audio/{scene}-{ident}-{seg}-a.wav", scene, city, ident, fold1))
    return pd.DataFrame(rows, columns=["filename", "label", "city", "location", "fold1"])


def _parts_by_file(df: pd.DataFrame, part: pd.Series) -> dict[str, str]:
    return dict(zip(df["filename"], part, strict=True))


@pytest.mark.parametrize("name", ["paper", "grouped", "fold1"])
def test_split_is_independent_of_row_order_and_seeded(name):
    df = tau_like()
    base = _parts_by_file(df, make_split(df, name, seed=42))
    shuffled = df.sample(frac=1.0, random_state=7).reset_index(drop=True)
    assert _parts_by_file(shuffled, make_split(shuffled, name, seed=42)) == base
    reindexed = df.set_axis(np.arange(len(df))[::-1] * 3 + 5)  # any index labels
    assert _parts_by_file(reindexed, make_split(reindexed, name, seed=42)) == base
    assert _parts_by_file(df, make_split(df, name, seed=43)) != base


def test_paper_split_leaks_and_has_60_20_20_per_scene_city():
    df = tau_like()
    part = make_split(df, "paper")
    assert leakage(df, part) > 0.5  # most test locations also appear in training
    for (_, _), group in df.groupby(["label", "city"]):
        counts = part[group.index].value_counts()
        n = len(group)
        # the reference's cuts: train up to floor(0.6 n), test up to floor(0.8 n), validation the rest
        assert counts.get("train", 0) == int(0.6 * n) and counts.get("test", 0) == int(0.8 * n) - int(0.6 * n)
        assert counts.get("val", 0) == n - int(0.8 * n)


@pytest.mark.parametrize("name", ["grouped", "fold1"])
def test_location_disjoint_splits_do_not_leak(name):
    df = tau_like()
    part = make_split(df, name)
    assert leakage(df, part) == 0.0
    owners = df.assign(part=part).groupby("location")["part"].nunique()
    assert (owners == 1).all()  # no location in two parts (val included)
    check_classes(df, part)
    share = part.value_counts(normalize=True)
    if name == "grouped":
        assert 0.5 < share["train"] < 0.7 and 0.12 < share["val"] < 0.28 and 0.12 < share["test"] < 0.28
    else:
        assert (part[df["fold1"] == "evaluate"] == "test").all() and (part[df["fold1"] == "train"] != "test").all()


def test_tiny_set_splits(tiny_tau):
    df = read_tau(tiny_tau)
    figures = {}
    for name in ("paper", "grouped", "fold1"):
        part = make_split(df, name)
        check_classes(df, part)
        figures[name] = (leakage(df, part), {p: int((part == p).sum()) for p in PARTS})
    assert figures["paper"][0] > 0
    assert figures["grouped"][0] == 0 and figures["fold1"][0] == 0
    # 6 clips per scene-city: paper cuts 3/1/2 (train floor(3.6), test up to floor(4.8), validation the rest);
    # grouped has 3 locations, one per part; fold1's evaluate is one location in three, its train part 4
    # locations per scene: 3 train, 1 val
    assert figures["paper"][1] == {"train": 60, "val": 40, "test": 20}
    assert figures["grouped"][1] == {"train": 40, "val": 40, "test": 40}
    assert figures["fold1"][1] == {"train": 60, "val": 20, "test": 40}


def test_folder_given_and_fold_splits():
    rows = [(f"{i}.wav", ["dog", "cat"][i % 2], "all", f"g{i // 4}", None, ["train", "val", "test", None][i % 4],
             str(i % 3)) for i in range(36)]
    df = pd.DataFrame(rows, columns=["filename", "label", "city", "location", "fold1", "given", "fold"])
    given = make_split(df, "given")
    assert given.fillna("-").tolist() == df["given"].fillna("-").tolist()
    fold = make_split(df, "fold", test_fold=2)
    assert (fold[df["fold"] == "2"] == "test").all() and set(fold[df["fold"] != "2"]) == {"train", "val"}
    train_val = df[fold.isin(["train", "val"])].assign(part=fold)
    assert (train_val.groupby("location")["part"].nunique() == 1).all()  # train/val cut by group
    grouped = make_split(df, "grouped")  # groups here hold both labels: each still goes whole to one part
    assert (df.assign(part=grouped).groupby("location")["part"].nunique() == 1).all()
    assert leakage(df, grouped) == 0.0 and set(grouped) == set(PARTS)
    with pytest.raises(ValueError, match=r"test_fold=7 is not one of the table's folds \['0', '1', '2'\]"):
        make_split(df, "fold", test_fold=7)
    with pytest.raises(ValueError, match="no 'split' column"):
        make_split(df.assign(given=None), "given")
    with pytest.raises(ValueError, match="not one of"):
        make_split(df, "random")


def test_bad_split_settings_are_named():
    df = tau_like()
    with pytest.raises(ValueError, match="data.fractions"):
        make_split(df, "paper", fractions=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="data.split"):
        make_split(df, "random")
    part = make_split(df, "paper")
    part[(df["label"] == "park") & (part == "test")] = "train"
    with pytest.raises(ValueError, match=r"\['park'\] have no clips in part 'test'"):
        check_classes(df, part)
