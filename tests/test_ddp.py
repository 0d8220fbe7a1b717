"""One run on several devices (DDP on the CPU: gloo, 2 processes): one MLflow run, one checkpoint folder, metrics
and confusion matrix over all ranks, the embedding cache filled once; and DDP inside a Hydra sweep."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, TINY_OVERRIDES

ENV = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
DDP = ["trainer.accelerator=cpu", "trainer.devices=2", "trainer.strategy=ddp"]


def train(work: Path, *overrides: str, multirun: bool = False) -> str:
    flags = ["-m"] if multirun else []
    proc = subprocess.run([sys.executable, str(REPO / "train.py"), *flags, *TINY_OVERRIDES, *DDP, *overrides], cwd=work,
                          env=ENV, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return proc.stdout + proc.stderr


def runs(work: Path, experiment: str) -> list:
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{work / 'mlflow.db'}")
    return client.search_runs([client.get_experiment_by_name(experiment).experiment_id])


@pytest.mark.slow
def test_one_run_on_two_devices(tmp_path, tiny_tau, own_cache):
    import numpy as np
    from mlflow import MlflowClient

    # the session's tiny set, this test's own cache (own_cache: links to the session's images): the embedding cache
    # must be filled here, once
    out = train(tmp_path, f"data.root={tiny_tau}", "logger.experiment=ddp", "model=efficientnet_lite0", "model.image_size=32",
                "model.embedding_cache.enabled=true", "model.hidden=[16]")
    (run,) = runs(tmp_path, "ddp")  # one MLflow run, not one per device
    assert run.info.status == "FINISHED" and 0 <= run.data.metrics["test/acc"] <= 1
    assert out.count("embedding cache: computing") == 1  # filled once (rank 0), loaded by the other rank
    assert run.data.metrics["embedding_cache/computed"] == 1
    folder = Path(run.data.tags["checkpoint_dir"])
    assert sorted(p.name for p in folder.iterdir()) == ["best.ckpt", "last.ckpt"]  # one checkpoint, not per rank
    assert len(list((tmp_path / "outputs" / "checkpoints").iterdir())) == 1
    import torch

    hp = torch.load(folder / "best.ckpt", map_location="cpu", weights_only=True)["hyper_parameters"]
    assert hp["inputs"] == "embeddings" and hp["steps_per_call"] == 1  # DDP averages one backward per forward
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    matrix = np.loadtxt(client.download_artifacts(run.info.run_id, "confusion_test.csv", str(tmp_path)),
                        delimiter=",", skiprows=1, usecols=range(1, 11))
    assert matrix.sum() == run.data.metrics["split/test"]  # every test clip counted once, over both ranks
    assert np.trace(matrix) / matrix.sum() == pytest.approx(run.data.metrics["test/acc"], abs=1e-6)
    assert out.count("test accuracy") == 1  # the result, printed by rank 0 only


@pytest.mark.slow
def test_ddp_jobs_in_a_sweep(tmp_path, tiny_data):
    """Each job of a sweep runs on two devices: the other rank runs that job only, not the sweep again."""
    out = train(tmp_path, *tiny_data, "seed=0,1", "logger.experiment=ddp-sweep", "model.image_size=32", multirun=True)
    children = [r for r in runs(tmp_path, "ddp-sweep") if "mlflow.parentRunId" in r.data.tags]
    assert sorted(r.data.tags["seed"] for r in children) == ["0", "1"]  # two jobs, two runs: no nested sweeps
    assert {r.info.status for r in children} == {"FINISHED"}
    assert out.count("Launching 2 jobs locally") == 1  # the sweep was launched once, by the command
    assert len([r for r in runs(tmp_path, "ddp-sweep") if r.data.tags.get("asc.parent") == "sweep"]) == 1
