import numpy as np
import pandas as pd
import pytest

from asc.splits import check_classes, leakage, make_split


def _table(n_locations=4, per_location=5, labels=("bus", "park"), cities=("lyon", "milan")):
    rows = []
    for label in labels:
        for city in cities:
            for loc in range(n_locations):
                for seg in range(per_location):
                    rows.append((f"audio/{label}-{city}-{loc}-{seg}-a.wav", label, city, f"{city}-{label}{loc}"))
    return pd.DataFrame(rows, columns=["filename", "label", "city", "location"]).assign(fold1=None)


def test_paper_split_is_60_20_20_per_scene_city_and_disjoint():
    df = _table()
    part = make_split(df, "paper", seed=42)
    assert part.notna().all()  # every file in exactly one part
    for _, group in df.assign(part=part).groupby(["label", "city"]):
        counts = group["part"].value_counts()
        assert (counts["train"], counts["val"], counts["test"]) == (12, 4, 4)


def test_split_does_not_depend_on_directory_order():
    df = _table()
    shuffled = df.sample(frac=1.0, random_state=7).reset_index(drop=True)
    for name in ("paper", "grouped"):
        a = dict(zip(df["filename"], make_split(df, name, seed=42)))
        b = dict(zip(shuffled["filename"], make_split(shuffled, name, seed=42)))
        assert a == b


def test_split_seed_changes_the_split():
    df = _table()
    assert not make_split(df, "paper", seed=1).equals(make_split(df, "paper", seed=2))


def test_paper_split_leaks_locations_grouped_does_not():
    df = _table(n_locations=5)
    paper, grouped = make_split(df, "paper"), make_split(df, "grouped")
    assert leakage(df, paper) > 0.5
    assert leakage(df, grouped) == 0.0
    for loc, parts in df.assign(part=grouped).groupby("location")["part"]:
        assert parts.nunique() == 1, loc


def test_fractions_are_checked():
    with pytest.raises(ValueError, match="data.fractions"):
        make_split(_table(), "paper", fractions=(0.5, 0.5, 0.5))


def test_class_missing_from_a_part_is_a_clear_error():
    df = _table()
    part = make_split(df, "paper")
    part[(df["label"] == "park") & (part == "test")] = "train"
    with pytest.raises(ValueError, match=r"\['park'\] have no clips in part 'test'"):
        check_classes(df, part)


def test_unknown_split_name():
    with pytest.raises(ValueError, match="data.split"):
        make_split(_table(), "random")
