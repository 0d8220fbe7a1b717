"""The real entry point, end to end: ``train.py`` through Hydra on a tiny synthetic set, into MLflow."""

import os
import subprocess
import sys

import pandas as pd
import pytest

from conftest import REPO, TINY_OVERRIDES

#: a module-scoped fixture runs before the per-test environment clean-up: leave out any inherited MLflow store
ENV = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
#: the tiny set with one city: 60 clips (10 scenes x 3 locations x 2 segments) are enough to prove the synthesis, the
#: cache and the artifacts, at half the tiny set's cost
ONE_CITY = [o if not o.startswith("data.synthetic.cities=") else "data.synthetic.cities=[lyon]" for o in TINY_OVERRIDES]
CLIPS = 60


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Not on the session's tiny set (``tiny_data``): this run proves that train.py synthesises the set and fills the
    feature cache itself."""
    work = tmp_path_factory.mktemp("run")
    cmd = [sys.executable, str(REPO / "train.py"), *ONE_CITY, "seed=3", "logger.experiment=e2e"]
    proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=600, env=ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return work, proc


@pytest.mark.slow
def test_run_is_in_mlflow_with_metrics_and_confusion_matrix(trained):
    import mlflow

    work, _ = trained
    client = mlflow.MlflowClient(f"sqlite:///{work / 'mlflow.db'}")
    exp = client.get_experiment_by_name("e2e")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.info.run_name == "window=2,mask=0.1,seed=3"
    assert run.data.tags["window"] == "2.0" and run.data.tags["seed"] == "3"
    m = run.data.metrics
    assert 0 <= m["test/acc"] <= 1 and "val/acc" in m and "train/loss" in m
    assert {f"test/acc_{c}" for c in ("bus", "park", "tram")} <= set(m)
    assert m["split/train"] + m["split/val"] + m["split/test"] == CLIPS
    assert m["params/trainable"] == m["params/total"] > 0  # small CNN: trained from scratch
    assert len(client.get_metric_history(run.info.run_id, "val/acc")) == 2  # per epoch
    assert run.data.params["model.backbone"] == "small_cnn"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "confusion_test.csv", "confusion_test.png"} <= artifacts
    csv = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="confusion_test.csv", tracking_uri=client.tracking_uri)
    lines = open(csv).read().splitlines()
    assert lines[0].split(",")[1:] == sorted(lines[0].split(",")[1:]) and len(lines) == 11
    total = sum(int(v) for line in lines[1:] for v in line.split(",")[1:])
    assert total == m["split/test"]  # every test clip counted once
    # the test probabilities for seed ensembles (asc compare): one row per test recording, scoring test/acc
    probs = pd.read_csv(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="test_probabilities.csv",
                                                            tracking_uri=client.tracking_uri))
    classes = list(probs.columns[2:])
    assert list(probs.columns[:2]) == ["filename", "label"] and len(probs) == m["split/test"]
    assert probs["filename"].is_unique and (probs[classes].sum(axis=1) - 1).abs().max() < 1e-4
    predicted = probs[classes].to_numpy().argmax(axis=1)
    assert (probs["label"].to_numpy() == [classes[i] for i in predicted]).mean() == pytest.approx(m["test/acc"])


@pytest.mark.slow
def test_feature_cache_is_reused_by_a_second_run(trained):
    work, _ = trained
    entries = list((work / "cache").glob("cqt-*/*.npy"))
    assert len(entries) == CLIPS
    cmd = [sys.executable, str(REPO / "train.py"), *ONE_CITY, "trainer.max_epochs=1", "logger.experiment=e2e2"]
    proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=600, env=ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"features: 0 computed, {CLIPS} cached" in proc.stderr + proc.stdout
    assert sorted((work / "cache").glob("cqt-*/*.npy")) == sorted(entries)
