"""A killed run resumes where it was: the same MLflow run, the next epochs, the optimiser, early stopping and the
random number generators as they were -- and it ends exactly as a run that was never killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, TINY_OVERRIDES

#: a module-scoped fixture runs before the per-test environment clean-up: leave out any inherited MLflow store
ENV = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
EPOCHS = 5


def command(data: list[str]) -> list[str]:
    return [sys.executable, str(REPO / "train.py"), *TINY_OVERRIDES, "model=small_cnn", "model.image_size=32",
            f"trainer.max_epochs={EPOCHS}", "trainer.patience=20", "trainer.deterministic=true", "seed=1",
            "logger.experiment=resume", *data]


def last_epoch(work: Path) -> int:
    """The epoch of the newest last.ckpt under ``work`` (-1 if there is none yet)."""
    import torch

    found = list((work / "outputs" / "checkpoints").glob("*/last.ckpt"))
    if not found:
        return -1
    try:
        return int(torch.load(found[0], map_location="cpu", weights_only=True)["epoch"])
    except (OSError, RuntimeError, EOFError, KeyError):  # being replaced right now
        return -1


def history(work: Path) -> tuple[object, dict[str, list[tuple[int, float]]]]:
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{work / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("resume").experiment_id])
    keys = ("val/acc", "val/loss", "train/loss", "test/acc", "best_val/acc")
    return run, {k: sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, k)) for k in keys}


@pytest.mark.slow
def test_a_run_killed_mid_training_resumes_and_ends_as_if_never_killed(tmp_path, tiny_data):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    for folder in (straight, killed):
        folder.mkdir()
    subprocess.run(command(tiny_data), cwd=straight, env=ENV, check=True, capture_output=True, timeout=900)

    proc = subprocess.Popen(command(tiny_data), cwd=killed, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while last_epoch(killed) < 1:  # two epochs done and checkpointed
        assert proc.poll() is None, "the run ended before it could be killed"
        assert time.time() < deadline, "no checkpoint of epoch 1 within 10 minutes"
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before, partial = history(killed)
    assert before.info.status == "RUNNING" and "test/acc" not in before.data.metrics  # killed, never told MLflow
    assert len(partial["val/acc"]) >= 2

    again = subprocess.run(command(tiny_data), cwd=killed, env=ENV, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resuming MLflow run {before.info.run_id}" in again.stdout + again.stderr
    after, resumed = history(killed)  # one run: the same one
    assert after.info.run_id == before.info.run_id and after.info.status == "FINISHED"
    assert after.data.tags["resumed"] == "1"
    _, reference = history(straight)
    for key, values in reference.items():
        steps = dict(resumed[key])  # an epoch logged before the kill and again after it: the same step, same value
        assert sorted(steps) == [s for s, _ in values], key
        for step, value in values:
            assert steps[step] == pytest.approx(value, abs=1e-6), (key, step)
    assert len(reference["val/acc"]) == EPOCHS
