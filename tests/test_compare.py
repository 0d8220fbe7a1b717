"""asc compare: sweeps (recipes) side by side, read back from an MLflow store built here."""

from __future__ import annotations

import io
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from asc.runs.compare import compare, sweep_parents
from asc.runs.ensemble import ARTIFACT, ensemble, probabilities_csv
from asc.tracking.store import PARENT_KEY_TAG, PARENT_TAG, TrackingError, TrackingStore


def sweep(store: TrackingStore, experiment: str, name: str, accs: list[float], faithful: bool, cells=None,
          unfinished: bool = False) -> str:
    exp = store.experiment(experiment)
    parent = store.create_run(exp, name, tags={PARENT_TAG: "sweep", PARENT_KEY_TAG: name})
    for seed, acc in enumerate(accs):
        cell = cells[seed] if cells else "w2.5_m0"
        run = store.create_run(exp, f"{name}-{seed}", parent=parent,
                               tags={"config_hash": f"{name}{seed}", "seed": seed, "cell": cell, "faithful": str(faithful).lower(),
                                     "faithful.why": "" if faithful else "model.backbone: CPResNet (paper: 'vgg16')"})
        store.log_metrics(run, {"test/acc": acc, "best_val/acc": acc - 0.01, "epoch": 9, "params/total": 4e6,
                                "params/trainable": 6.6e5, "flops_per_sample": 7.7e8})
        store.end_run(run, "RUNNING" if unfinished else "FINISHED")
    store.end_run(parent)
    return parent


@pytest.fixture
def store(tmp_path) -> TrackingStore:
    return TrackingStore(f"sqlite:///{tmp_path / 'mlflow.db'}", explicit=True)


@pytest.mark.slow
def test_recipes_in_one_table_against_the_faithful_one_with_a_chart_in_mlflow(store, tmp_path):
    other = sweep(store, "cpresnet", "cp", [0.90, 0.92, 0.94], faithful=False)
    base = sweep(store, "real-audio", "paper", [0.80, 0.82, 0.84], faithful=True)
    result = compare(store, [(other, "CP-ResNet"), (base, None)], tmp_path / "out")
    rows = result.table.set_index("recipe")
    assert rows.loc["CP-ResNet", "test_mean"] == pytest.approx(0.92)
    assert rows.loc["CP-ResNet", "test_std"] == pytest.approx(0.02)
    assert rows.loc["CP-ResNet", "n"] == 3 and rows.loc["CP-ResNet", "epochs"] == 10
    # the faithful row is the baseline even when it is not first; the other gets +10 pp
    line = next(l for l in result.markdown.splitlines() if l.startswith("| CP-ResNet"))
    assert "92.0 ± 2.0 (n=3)" in line and "+10.0" in line and "CPResNet" in line
    assert "| paper | 82.0 ± 2.0 (n=3) | baseline |" in result.markdown
    assert pd.read_csv(tmp_path / "out" / "compare.csv")["recipe"].tolist() == ["CP-ResNet", "paper"]
    assert (tmp_path / "out" / "compare.png").read_bytes()[:4] == b"\x89PNG"
    logged = {a.path for a in store.client.list_artifacts(result.run_id)}
    assert logged == {"compare.md", "compare.csv", "compare.png"}


@pytest.mark.slow
def test_a_grid_sweep_counts_its_best_cell_and_unfinished_sweeps_are_left_out_when_listing_all(store, tmp_path):
    grid = sweep(store, "real-audio", "grid", [0.5, 0.9, 0.52, 0.88], faithful=True,
                 cells=["w3_m0", "w5_m0", "w3_m0", "w5_m0"])
    running = sweep(store, "real-audio", "running", [0.7], faithful=False, unfinished=True)
    assert sweep_parents(store, ["real-audio"]) == [grid, running]
    result = compare(store, [(p, None) for p in sweep_parents(store)], tmp_path / "out", log_to=None,
                     skip_unfinished=True)
    assert result.table["recipe"].tolist() == ["grid"] and result.run_id is None
    assert result.table["test_mean"].iloc[0] == pytest.approx(0.89)  # the w5 cell, best by validation
    assert math.isclose(result.table["n"].iloc[0], 2)
    with pytest.raises(Exception, match="no finished run"):
        compare(store, [(running, None)], tmp_path / "out2", log_to=None)


@pytest.mark.slow
def test_cli_names_an_unknown_experiment_in_one_line(store, tmp_path):
    sweep(store, "real-audio", "paper", [0.8], faithful=True)
    out = subprocess.run([sys.executable, "-m", "asc", "compare", "--tracking-uri", store.uri, "--experiment", "real-audoi",
                          "--out", str(tmp_path / "o"), "--no-log"], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "'real-audoi'" in out.stderr and "real-audio" in out.stderr


@pytest.mark.slow
def test_the_seed_ensemble_averages_probabilities_recording_by_recording(store, tmp_path):
    classes = ["bird", "cat"]
    # three seeds, each right on two of three recordings (67 %); their mean is right on all three
    seeds = [[[0.9, 0.1], [0.6, 0.4], [0.4, 0.6]],
             [[0.4, 0.6], [0.1, 0.9], [0.3, 0.7]],
             [[0.8, 0.2], [0.2, 0.8], [0.6, 0.4]]]
    names, labels = ["a.wav", "b.wav", "c.wav"], [0, 1, 1]
    tables = [pd.read_csv(io.StringIO(probabilities_csv(names, labels, np.array(p), classes))) for p in seeds]
    assert ensemble(tables) == pytest.approx(1.0)
    assert ensemble([tables[0]]) == pytest.approx(2 / 3)
    # the rows are matched by file name, not by position
    assert ensemble([tables[0].iloc[::-1], tables[1], tables[2]]) == pytest.approx(1.0)
    # another test set is no ensemble
    other = tables[1].assign(filename=["a.wav", "b.wav", "d.wav"])
    assert math.isnan(ensemble([tables[0], other]))
    with pytest.raises(ValueError, match="2 names"):
        probabilities_csv(names[:2], labels, np.array(seeds[0]), classes)

    parent = sweep(store, "cpresnet", "cp", [2 / 3] * 3, faithful=False)
    for run, probs in zip(sorted(store.children(parent), key=lambda r: r.info.run_name), seeds):
        store.log_text(run.info.run_id, probabilities_csv(names, labels, np.array(probs), classes), ARTIFACT)
    old = sweep(store, "real-audio", "paper", [0.8, 0.82], faithful=True)  # runs without the artifact
    result = compare(store, [(old, None), (parent, "CP-ResNet")], tmp_path / "out", log_to=None)
    rows = result.table.set_index("recipe")
    assert rows.loc["CP-ResNet", "ensemble"] == pytest.approx(1.0) and math.isnan(rows.loc["paper", "ensemble"])
    assert "| CP-ResNet | 66.7 ± 0.0 (n=3) | -14.3 | 100.0 |" in result.markdown
    assert "| paper | 81.0 ± 1.4 (n=2) | baseline | — |" in result.markdown


@pytest.mark.slow
def test_two_recipes_combined_seed_by_seed(store, tmp_path):
    classes = ["bird", "cat"]
    names, labels = ["a.wav", "b.wav", "c.wav"], [0, 1, 1]
    # recipe A is wrong on c, recipe B on a; with B less sure of a, their mean is right on all three for seed 0,
    # and for seed 1 both are wrong on b: 2/3
    a = [[[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]], [[0.9, 0.1], [0.7, 0.3], [0.1, 0.9]]]
    b = [[[0.45, 0.55], [0.3, 0.7], [0.1, 0.9]], [[0.6, 0.4], [0.6, 0.4], [0.2, 0.8]]]
    parents = {}
    for name, seeds in (("A", a), ("B", b)):
        parents[name] = sweep(store, name, name, [2 / 3, 2 / 3], faithful=False)
        for run, probs in zip(sorted(store.children(parents[name]), key=lambda r: r.info.run_name), seeds):
            store.log_text(run.info.run_id, probabilities_csv(names, labels, np.array(probs), classes), ARTIFACT)
    result = compare(store, [(parents["A"], None), (parents["B"], None)], tmp_path / "out", log_to=None,
                     combine=["A+1"])
    row = result.table.set_index("recipe").loc["A + B"]
    assert row["n"] == 2 and row["test_mean"] == pytest.approx((1 + 2 / 3) / 2)
    assert row["test_std"] == pytest.approx(np.std([1, 2 / 3], ddof=1))
    # all four models averaged: right on a, b and c
    assert row["ensemble"] == pytest.approx(1.0)
    assert row["params_total"] == 8e6 and row["faithful"] == "false" and "an ensemble of A + B" in row["why"]
    assert "| A + B | 83.3 ± 23.6 (n=2) | +16.7 | 100.0 | — | — |" in result.markdown

    with pytest.raises(TrackingError, match=r"'C' is no row of the table \(its rows: 0=A, 1=B\)"):
        compare(store, [(parents["A"], None), (parents["B"], None)], tmp_path / "out", log_to=None, combine=["A+C"])
    with pytest.raises(TrackingError, match="two or more rows"):
        compare(store, [(parents["A"], None)], tmp_path / "out", log_to=None, combine=["A"])
    old = sweep(store, "old", "old", [0.8, 0.8], faithful=True)  # no probabilities logged
    with pytest.raises(TrackingError, match="--combine A \\+ old: a run has no test_probabilities.csv"):
        compare(store, [(parents["A"], None), (old, None)], tmp_path / "out", log_to=None, combine=["0+1"])
    # another test set
    other = sweep(store, "other", "other", [1.0, 1.0], faithful=False)
    for run in store.children(other):
        store.log_text(run.info.run_id, probabilities_csv(["x.wav"], [0], np.array([[1.0, 0.0]]), classes), ARTIFACT)
    with pytest.raises(TrackingError, match="tested on different recordings"):
        compare(store, [(parents["A"], None), (other, None)], tmp_path / "out", log_to=None, combine=["0+1"])
